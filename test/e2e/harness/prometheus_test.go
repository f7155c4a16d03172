package harness

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// TestRunPrometheus scrapes a counter served by the test and reads it back
// through the query API.
func TestRunPrometheus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, "# TYPE harness_test_total counter\nharness_test_total{kind=\"a\"} 42\n")
	}))
	defer srv.Close()
	target := strings.TrimPrefix(srv.URL, "http://")

	p := RunPrometheus(t)
	p.SetTargets(target)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.WaitScraped(ctx, target); err != nil {
		t.Fatal(err)
	}
	vec, err := p.QueryVector(ctx, `harness_test_total{kind="a"}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(vec) != 1 || vec[0].Value != 42 || vec[0].Metric["job"] != PrometheusJob || vec[0].Metric["instance"] != model.LabelValue(target) {
		t.Fatalf("got %v, want one sample 42 with job %q instance %q", vec, PrometheusJob, target)
	}
	if _, err := p.QueryVector(ctx, `sum(rate(harness_test_total[`); err == nil {
		t.Fatal("a bad query gave no error")
	}
	v, err := p.Query(ctx, `scalar(harness_test_total)`)
	if err != nil || v.Type() != model.ValScalar || v.(*model.Scalar).Value != 42 {
		t.Fatalf("scalar query: %v, %v", v, err)
	}
}
