package main

import (
	"strings"
	"testing"
)

func TestCountSeries(t *testing.T) {
	p := parsePromText(`# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_bucket{http_route="/r0",le="0.005"} 4
http_server_request_duration_seconds_bucket{http_route="/r0",le="+Inf"} 5
http_server_request_duration_seconds_sum{http_route="/r0"} 0.01
http_server_request_duration_seconds_count{http_route="/r0"} 5
http_server_request_duration_seconds_count{http_route="/r1"} 2
http_client_request_duration_seconds_count{http_route="/r1"} 2
periscope_spans_total{kind="server"} 7
`)
	for _, c := range []struct {
		name string
		want int
	}{
		{serverCountSeries, 2},
		{"http_server_request_duration_seconds_bucket", 2},
		{"http_client_request_duration_seconds_count", 1},
		{"absent_total", 0},
	} {
		if got := p.countSeries(c.name); got != c.want {
			t.Errorf("countSeries(%s) = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestSpreadPct(t *testing.T) {
	for _, c := range []struct {
		v    []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 0},
		{[]float64{9, 10, 11}, 10}, // half of 2 over 10
		{[]float64{0, 0}, 0},
	} {
		if got := spreadPct(c.v); got != c.want {
			t.Errorf("spreadPct(%v) = %g, want %g", c.v, got, c.want)
		}
	}
}

func TestMetricsRoundPerSpan(t *testing.T) {
	for _, c := range []struct {
		r                 metricsRound
		ms, pct, spansSec float64
	}{
		// 2 s of CPU over 10 s for 100,000 spans: 20 ms per 1,000 spans,
		// 10,000 spans/s at 20% of a core.
		{metricsRound{elapsed: 10, cpuSec: 2, spans: 100000}, 20, 20, 10000},
		{metricsRound{elapsed: 10, cpuSec: 1}, 0, 10, 0},
	} {
		if got := c.r.msPer1000Spans(); got != c.ms {
			t.Errorf("%+v: ms per 1,000 spans = %g, want %g", c.r, got, c.ms)
		}
		if got := c.r.cpuPct(); got != c.pct {
			t.Errorf("%+v: CPU = %g%%, want %g%%", c.r, got, c.pct)
		}
		if got := c.r.spansPerSec(); got != c.spansSec {
			t.Errorf("%+v: spans/s = %g, want %g", c.r, got, c.spansSec)
		}
	}
}

func TestRoutesScript(t *testing.T) {
	s := routesScript(1000)
	for _, want := range []string{`"/r" .. (i % 1000)`, "request = function()", "wrk.format(nil, path)", "/r999"} {
		if !strings.Contains(s, want) {
			t.Errorf("routes script lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "%!") {
		t.Errorf("routes script has a formatting error:\n%s", s)
	}
}

func TestWrkArgsScript(t *testing.T) {
	c := wrkConfig{threads: 2, connections: 50, url: "https://127.0.0.1:1/", script: "/tmp/r.lua"}
	got := strings.Join(c.args(10e9), " ")
	if want := "-t2 -c50 -d10s -s /tmp/r.lua --latency https://127.0.0.1:1/"; got != want {
		t.Errorf("wrk args = %q, want %q", got, want)
	}
}
