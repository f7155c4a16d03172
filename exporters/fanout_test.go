package exporters_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/exporters"
	"github.com/periscope-apm/periscope/exporters/console"
	"github.com/periscope-apm/periscope/span"
)

type recorder struct {
	mu       sync.Mutex
	spans    []*span.Span
	shutdown bool
	err      error
}

func (r *recorder) Export(s *span.Span) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans = append(r.spans, s)
}

func (r *recorder) Shutdown(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.shutdown = true
	return r.err
}

func TestMulti(t *testing.T) {
	a, b := &recorder{}, &recorder{err: errors.New("b failed")}
	m := exporters.NewMulti(a, nil, b)
	if m.Len() != 2 {
		t.Fatalf("Len = %d, want 2 (nil skipped)", m.Len())
	}
	s1, s2 := &span.Span{Name: "one"}, &span.Span{Name: "two"}
	m.Export(s1)
	m.Export(s2)
	for _, r := range []*recorder{a, b} {
		if len(r.spans) != 2 || r.spans[0] != s1 || r.spans[1] != s2 {
			t.Errorf("exporter got %v, want both spans in order", r.spans)
		}
	}
	err := m.Shutdown(t.Context())
	if err == nil || !strings.Contains(err.Error(), "b failed") {
		t.Errorf("Shutdown = %v, want b's error", err)
	}
	if !a.shutdown || !b.shutdown {
		t.Error("not every exporter was shut down")
	}
}

// Exporters register the same metric names with their own exporter label:
// they must be able to share one registry.
func TestSelfMetricsShareRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := console.New(console.ModeText, &bytes.Buffer{}, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown(context.Background())
	if _, err := exporters.NewSpanMetrics(reg, "other", exporters.Gauges{QueueLen: func() int { return 3 }}); err != nil {
		t.Fatalf("second exporter's metrics: %v", err)
	}
	if _, err := exporters.NewSpanMetrics(reg, "other", exporters.Gauges{QueueLen: func() int { return 3 }}); err == nil {
		t.Fatal("the same exporter name registered twice")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		want := 2
		if mf.GetName() == "periscope_spans_dropped_total" {
			want = 6 // every reason is exported from the start, at zero
		}
		if len(mf.GetMetric()) != want {
			t.Errorf("%s has %d series, want %d", mf.GetName(), len(mf.GetMetric()), want)
		}
	}
}
