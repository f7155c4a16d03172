package main

import (
	"context"
	"fmt"
	"strings"
)

// The agent mode (-mode agent, `make bench MODE=agent`): nginx with TLS
// (libssl uprobes) under wrk, rounds without and with the agent by the A/B
// engine (abround.go), after a micro-benchmark of one uprobe hit on this
// kernel (uprobecost.go) that prices the agent's probe sites.

func runNginxTLSMode(ctx context.Context, o options) error {
	h, env, closer, err := startAB(o)
	if err != nil {
		return err
	}
	defer closer.Close()
	pidDir := env.pidDir
	logf("uprobe micro-benchmark: %d variants x %d modes, %d repetitions, %d calls per probed run", len(probeVariants), len(probeModes), o.probeReps, o.probeCalls)
	probe, err := measureUprobeCost(ctx, o.callloop, o.probeCalls, o.probeReps)
	if err != nil {
		return fmt.Errorf("uprobe micro-benchmark: %w", err)
	}
	ng, err := startBenchNginx(ctx, o, pidDir)
	defer ng.stop()
	if err != nil {
		return err
	}
	var sites []probeSite
	t := abTarget{
		name:   "nginx + TLS",
		exe:    ng.bin,
		wc:     wrkConfig{threads: o.threads, connections: o.connections, url: ng.url()},
		pids:   ng.workerPIDs,
		served: ng.requests,
		ready: func(a *agent) {
			if s, err := agentSites(a.pid()); err == nil {
				sites = s
			} else {
				logf("could not list the agent's uprobe sites: %v", err)
			}
		},
	}
	res, err := runAB(ctx, env, t)
	if err != nil {
		return err
	}
	h.title = "nginx + TLS (the OpenSSL collector), without and with the agent"
	h.mode = "agent"
	h.target = fmt.Sprintf("%s, `worker_processes %d`, TLS (%s, self-signed RSA-2048), keep-alive, `access_log off`, a static file of %d bytes; requests counted by nginx's stub_status", ng.version, o.workers, ng.tlsInfo(), ng.fileSize)
	h.agentSelects = "NGINX, the full path of a private copy of the nginx executable (wrk is not traced)"
	h.targets = abTargets{completenessPct: 99.9}
	h.extra = func(res *abResult) string { return uprobeSection(o, probe, sites, res) }
	return h.write([]*abResult{res})
}

// uprobeSection prices the agent's uprobe hits per request at the
// micro-benchmark's prices for the instructions at its probe sites.
func uprobeSection(o options, probe []*probeCost, sites []probeSite, res *abResult) string {
	var b strings.Builder
	b.WriteString("\n### What a uprobe hit costs on this kernel\n\n")
	fmt.Fprintf(&b, "A small function called in a loop (test/bench/callloop.c), timed with `clock_gettime`, with a no-op BPF program attached as an entry uprobe, a uretprobe, or both; medians of %d interleaved runs of %s calls (bare: %s). The cost depends on the instruction the probe replaces, so the functions differ only in their first one.\n\n",
		o.probeReps, fmtInt(uint64(o.probeCalls)), fmtInt(uint64(100*o.probeCalls)))
	t := table{{"first instruction of the probed function", "bare call (µs)"}}
	for _, m := range probeModes[1:] {
		t[0] = append(t[0], m.name+" (µs added)")
	}
	for _, c := range probe {
		row := []string{fmt.Sprintf("`%s`: %s", c.variant.first, c.variant.how), fmtUs(c.median[0])}
		for m := 1; m < len(probeModes); m++ {
			lo, hi := minMax(c.runs[m])
			row = append(row, fmt.Sprintf("%s (runs %s–%s)", fmtUs(c.added(m)), fmtUs(lo-c.median[0]), fmtUs(hi-c.median[0])))
		}
		t = append(t, row)
	}
	b.WriteString(t.markdown())
	var parts []string
	seen := map[string]bool{}
	kinds := map[string]bool{}
	for _, s := range sites {
		if str := s.String(); !seen[str] {
			seen[str] = true
			parts = append(parts, str)
		}
		switch {
		case s.insn == "nop5":
			kinds["nop5"] = true
		case s.emulated:
			kinds["push"] = true
		default:
			kinds["xol"] = true
		}
	}
	if len(parts) == 0 {
		return b.String()
	}
	var entry, ret, reqs uint64
	for _, r := range res.rounds {
		if !r.withAgent || r.profiled {
			continue
		}
		reqs += r.requests
		for name, p := range r.progs {
			switch {
			case !p.ownUprobe:
			case name == returnProg:
				ret += p.runs
			default:
				entry += p.runs
			}
		}
	}
	// An entry and a return probe on the same call share one trap: such a
	// call costs the "entry + uretprobe" price, not the sum.
	paired := min(entry, ret)
	var prices []string
	for _, c := range probe {
		if !kinds[c.variant.name] {
			continue
		}
		us := (float64(paired)*c.added(3) + float64(entry-paired)*c.added(1) + float64(ret-paired)*c.added(2)) / float64(max(reqs, 1))
		prices = append(prices, fmt.Sprintf("%.1f µs per request where the instruction is %s", us, c.variant.how))
	}
	fmt.Fprintf(&b, "\nThe agent's probe sites: %s. Measured per request: %.2f entry and %.2f return hits; at the micro-benchmark's prices for those sites: %s.\n",
		strings.Join(parts, ", "), ratio(entry, reqs), ratio(ret, reqs), strings.Join(prices, "; "))
	return b.String()
}
