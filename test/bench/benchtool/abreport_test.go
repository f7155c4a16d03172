package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

// TestABReport renders rounds made up here: every figure in the report is
// computed from them, verdicts follow the noise rule, and every table row
// has its header's width.
func TestABReport(t *testing.T) {
	round := func(n int, agent bool, rps float64, appSec float64) *abRound {
		r := &abRound{n: n, withAgent: agent, elapsed: 10, requests: uint64(rps * 10), appSec: appSec,
			wrk:  wrkResult{rps: rps, requests: uint64(rps * 10), p50: time.Millisecond, p99: 5 * time.Millisecond},
			perf: perfEvents{ok: true, wakeAgent: 10, wakeAll: 100, irqWork: 20},
			sys:  sysCPU{busy: 190, total: 200}}
		if agent {
			r.agentSec, r.built, r.hwmKiB = 2, r.requests, 60<<10
			r.recv = recvCounts{Exports: 10, ResourceSpans: 10, Spans: r.requests, ServerSpans: r.requests, Bytes: 470 * r.requests}
			r.exported, r.dropped = r.requests, map[string]uint64{"queue_full": 0}
			r.progs = map[string]progDelta{"go_serve_http": {typ: "kprobe", runs: r.requests, ns: 3000 * r.requests, ownUprobe: true}}
		}
		return r
	}
	res := &abResult{
		target: abTarget{name: "goapp HTTPS", wc: wrkConfig{threads: 2, connections: 50, url: "https://x/hello"}},
		rounds: []*abRound{round(1, false, 10000, 2), round(2, true, 7000, 2.1), round(3, true, 7100, 2.1), round(4, false, 10200, 2)},
	}
	h := &abHeader{o: options{rounds: 2, duration: 10 * time.Second, commit: "abc123"}, mode: "go", title: "T", start: time.Now(),
		targets: abTargets{throughputPct: 60, agentUsPerSpan: 3, completenessPct: 99.9, hwmMiB: 64}}
	md := abReport(h, []*abResult{res})
	for _, want := range []string{
		"throughput with the agent ÷ baseline 69.8 ± 0.9% (≥ 60%): met",
		"agent CPU per span 28.37 ± 0.20 µs (≤ 3 µs): NOT met",
		"completeness, worst round 100.000 ± 0.000% (≥ 99.9%): met",
		"agent peak RSS 60.0 ± 0.0 MiB (≤ 64 MiB): met",
		"**Periscope commit**: abc123",
		"| time inside the agent's uprobe programs (µs; the trap around them is not included) | 0.00 | 3.00 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, bad := range []string{"NaN", "Inf", "%!"} {
		if strings.Contains(md, bad) {
			t.Errorf("report contains %q", bad)
		}
	}
	cols := -1
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "| ") {
			cols = -1
			continue
		}
		n := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|")
		if cols < 0 {
			cols = n
		} else if n != cols {
			t.Errorf("row with %d cells under a header of %d: %s", n-1, cols-1, line)
		}
	}
	if x := ratioOf([]float64{1}, []float64{0}); x.v != 0 || math.IsNaN(x.noise) {
		t.Errorf("ratioOf with a zero baseline: %+v", x)
	}
}
