package otlp

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/periscope-apm/periscope/span"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

func randomTraceID(rng *rand.Rand) trace.TraceID {
	var id trace.TraceID
	for i := range id {
		id[i] = byte(rng.Uint32())
	}
	return id
}

func TestSamplerFromEnv(t *testing.T) {
	root := &span.Span{TraceID: trace.TraceID{15: 1}, SpanID: trace.SpanID{1}}
	remoteChild := &span.Span{TraceID: trace.TraceID{15: 1}, SpanID: trace.SpanID{2}, ParentSpanID: trace.SpanID{1}, RemoteParent: true}
	localChild := &span.Span{TraceID: trace.TraceID{15: 1}, SpanID: trace.SpanID{3}, ParentSpanID: trace.SpanID{1}}
	for _, tc := range []struct {
		sampler, arg string
		wantName     string
		wantWarning  bool
		// decisions for root, remoteChild, localChild
		want [3]bool
	}{
		{"", "", "parentbased_always_on", false, [3]bool{true, true, true}},
		{"always_on", "", "always_on", false, [3]bool{true, true, true}},
		{"always_off", "", "always_off", false, [3]bool{false, false, false}},
		{"parentbased_always_on", "", "parentbased_always_on", false, [3]bool{true, true, true}},
		{"parentbased_always_off", "", "parentbased_always_off", false, [3]bool{false, true, false}},
		{"traceidratio", "0", "traceidratio", false, [3]bool{false, false, false}},
		{"traceidratio", "1", "traceidratio", false, [3]bool{true, true, true}},
		{"traceidratio", "", "traceidratio", false, [3]bool{true, true, true}},
		{"parentbased_traceidratio", "0", "parentbased_traceidratio", false, [3]bool{false, true, false}},
		{"TraceIdRatio", " 0 ", "traceidratio", false, [3]bool{false, false, false}},
		{"traceidratio", "1.5", "traceidratio", true, [3]bool{true, true, true}},
		{"traceidratio", "-0.1", "traceidratio", true, [3]bool{true, true, true}},
		{"traceidratio", "half", "traceidratio", true, [3]bool{true, true, true}},
		{"jaeger_remote", "", "parentbased_always_on", true, [3]bool{true, true, true}},
	} {
		setEnv(t, envSampler, tc.sampler, envSamplerArg, tc.arg)
		sm, err := samplerFromEnv()
		if (err != nil) != tc.wantWarning {
			t.Errorf("%s=%q %s=%q: warning %v, want one: %v", envSampler, tc.sampler, envSamplerArg, tc.arg, err, tc.wantWarning)
		}
		if err != nil && !strings.Contains(err.Error(), "OTEL_TRACES_SAMPLER") {
			t.Errorf("warning %q does not name the variable", err)
		}
		if sm.name != tc.wantName {
			t.Errorf("%s=%q: sampler %s, want %s", envSampler, tc.sampler, sm.name, tc.wantName)
		}
		got := [3]bool{sm.keep(root), sm.keep(remoteChild), sm.keep(localChild)}
		if got != tc.want {
			t.Errorf("%s=%q %s=%q: decisions (root, remote child, local child) %v, want %v",
				envSampler, tc.sampler, envSamplerArg, tc.arg, got, tc.want)
		}
	}
}

// The ratio decision must agree with the OpenTelemetry SDK's
// TraceIDRatioBased, so that a trace sampled upstream by an SDK at the same
// ratio is sampled here too.
func TestRatioMatchesSDK(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, ratio := range []float64{0.01, 0.25, 0.5, 0.9} {
		sm := ratioSampler("traceidratio", false, ratio)
		sdk := sdktrace.TraceIDRatioBased(ratio)
		kept := 0
		const n = 20000
		for range n {
			id := randomTraceID(rng)
			ours := sm.keep(&span.Span{TraceID: id})
			theirs := sdk.ShouldSample(sdktrace.SamplingParameters{ParentContext: context.Background(), TraceID: id}).Decision == sdktrace.RecordAndSample
			if ours != theirs {
				t.Fatalf("ratio %v, trace %s: we keep=%v, SDK keep=%v", ratio, id, ours, theirs)
			}
			if ours {
				kept++
			}
		}
		if got := float64(kept) / n; got < ratio*0.8-0.005 || got > ratio*1.2+0.005 {
			t.Errorf("ratio %v kept %.3f of traces", ratio, got)
		}
	}
}

// With a ratio sampler all spans of a trace arrive, or none.
func TestSamplerKeepsTracesWhole(t *testing.T) {
	r := otlpreceiver.Start(t)
	setEnv(t, envEndpoint, r.Endpoint(), envSampler, "parentbased_traceidratio", envSamplerArg, "0.5")
	reg := prometheus.NewRegistry()
	e, err := New(t.Context(), Config{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	spans := makeSpans(3000, 9)
	// Make the children local, so that the ratio decides them too.
	for _, s := range spans {
		s.RemoteParent = false
	}
	want := ratioSampler("", true, 0.5)
	var kept int
	perTrace := map[string]int{}
	for _, s := range spans {
		e.Export(s)
		perTrace[s.TraceID.String()]++
		if want.keep(s) {
			kept++
		}
	}
	if err := e.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := r.Spans()
	if len(got) != kept || kept < 1000 || kept > 2000 {
		t.Fatalf("received %d spans, expected %d of %d", len(got), kept, len(spans))
	}
	arrived := map[string]int{}
	for _, g := range got {
		arrived[g.TraceID]++
	}
	for id, n := range arrived {
		if n != perTrace[id] {
			t.Errorf("trace %s: %d of its %d spans arrived", id, n, perTrace[id])
		}
	}
	if n := metric(t, reg, "periscope_spans_dropped_total", map[string]string{"reason": "sampled_out"}); int(n) != len(spans)-kept {
		t.Errorf("sampled_out = %v, want %d", n, len(spans)-kept)
	}
}

func TestAlwaysOffExportsNothing(t *testing.T) {
	r := otlpreceiver.Start(t)
	setEnv(t, envEndpoint, r.Endpoint(), envSampler, "always_off")
	reg := prometheus.NewRegistry()
	e, err := New(t.Context(), Config{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range makeSpans(50, 10) {
		e.Export(s)
	}
	if err := e.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(r.Spans()); n != 0 {
		t.Errorf("always_off: %d spans arrived", n)
	}
	if traces, _ := r.Requests(); traces != 0 {
		t.Errorf("always_off: %d requests", traces)
	}
	if n := metric(t, reg, "periscope_spans_dropped_total", map[string]string{"reason": "sampled_out"}); n != 50 {
		t.Errorf("sampled_out = %v, want 50", n)
	}
}
