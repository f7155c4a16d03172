package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// The plain mode (-mode plain, `make bench MODE=plain`): what the sockets
// collector costs. nginx over plain HTTP (no TLS) under wrk, rounds without
// and with the agent by the A/B engine (abround.go); in each round, after
// wrk, what a process that is not HTTP pays for syscalls (measureDD).

// ddBytes is how many 1-byte blocks each dd copies.
const ddBytes = 1_000_000

func runPlainMode(ctx context.Context, o options) error {
	h, env, closer, err := startAB(o)
	if err != nil {
		return err
	}
	defer closer.Close()
	pidDir := env.pidDir
	ng := &nginx{plain: true}
	if err := ng.setup(o.work, o.workers); err != nil {
		return fmt.Errorf("nginx setup: %w", err)
	}
	defer ng.stop()
	if err := ng.start(ctx, pidDir); err != nil {
		return err
	}
	logf("nginx %s: master %d, workers %v, %s (plain HTTP)", ng.version, ng.masterPID(), ng.workerPIDs(), ng.url())
	t := abTarget{
		name:   "nginx, plain HTTP",
		exe:    ng.bin,
		wc:     wrkConfig{threads: o.threads, connections: o.connections, url: ng.url()},
		pids:   ng.workerPIDs,
		served: ng.requests,
		extra:  measureDD,
	}
	res, err := runAB(ctx, env, t)
	if err != nil {
		return err
	}
	h.title = "Plain HTTP benchmark (the sockets collector): nginx without and with the agent"
	h.mode = "plain"
	h.target = fmt.Sprintf("%s, %d worker(s), plain HTTP, keep-alive, `access_log off`, a static file; requests counted by nginx's stub_status", ng.version, o.workers)
	h.agentSelects = "NGINX, the full path of a private copy of the nginx executable (wrk is not traced)"
	h.targets = abTargets{throughputPct: 80, completenessPct: 99.9}
	h.extra = ddSection
	return h.write([]*abResult{res})
}

// measureDD times, after wrk, what a process that is not HTTP pays for
// syscalls: dd bs=1 from /dev/zero to /dev/null (a read and a write per
// byte), and a pipe between two such dds.
func measureDD(ctx context.Context, r *abRound) error {
	dd, err := timeShell(ctx, fmt.Sprintf("dd if=/dev/zero of=/dev/null bs=1 count=%d status=none", ddBytes), 2*ddBytes)
	if err != nil {
		return err
	}
	pipe, err := timeShell(ctx, fmt.Sprintf("dd if=/dev/zero bs=1 count=%d status=none | dd of=/dev/null bs=1 status=none", ddBytes), ddBytes)
	if err != nil {
		return err
	}
	r.extra = map[string]float64{"dd": dd, "pipe": pipe}
	return nil
}

func ddSection(res *abResult) string {
	f := func(k string) func(*abRound) float64 { return func(r *abRound) float64 { return r.extra[k] } }
	var b strings.Builder
	b.WriteString("\n### What a process that is not HTTP pays per syscall\n\n")
	t := table{{"", "baseline", "with the agent", "difference"}}
	for _, x := range []struct{ label, key string }{
		{"dd bs=1 to /dev/null, ns per syscall (a read and a write per byte)", "dd"},
		{"dd bs=1 | dd bs=1 through a pipe, ns per byte (two processes in parallel)", "pipe"},
	} {
		bv, av := pick(res.rounds, false, f(x.key)), pick(res.rounds, true, f(x.key))
		d := diffOf(av, bv)
		cell := fmtNoisy(d, "%+.0f")
		if x.key == "dd" && len(bv) > 1 && len(av) > 1 {
			cell += " — target ≤ 150 ns: **" + verdict(d, 150, true) + "**"
		}
		t = append(t, []string{x.label, fmtRange(bv, "%.0f"), fmtRange(av, "%.0f"), cell})
	}
	b.WriteString(t.markdown())
	return b.String()
}

// timeShell runs script and returns its wall time divided by per, in ns.
func timeShell(ctx context.Context, script string, per int) (float64, error) {
	t0 := time.Now()
	if out, err := exec.CommandContext(ctx, "sh", "-c", script).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("%s: %w\n%s", script, err, out)
	}
	return float64(time.Since(t0).Nanoseconds()) / float64(per), nil
}
