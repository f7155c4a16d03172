package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The plain mode (-mode plain, `make bench MODE=plain`): what the sockets
// collector costs. nginx over plain HTTP (no TLS) under wrk, rounds without
// and with the agent in ABBA order (baseline, agent, agent, baseline, ...);
// in each round, after wrk, what a process that is not HTTP pays for
// syscalls: dd copying 1-byte blocks from /dev/zero to /dev/null (a read and
// a write per byte), and a pipe between two such dds.

// plainRound is one round of the plain mode.
type plainRound struct {
	n         int
	withAgent bool
	load1     float64
	wrk       wrkResult
	nginxReqs uint64
	agentCPU  float64
	spans     uint64  // server spans
	drops     uint64  // events the kernel could not queue
	ddNs      float64 // ns per syscall of dd bs=1 to /dev/null
	pipeNs    float64 // ns per byte through dd | dd
}

// ddBytes is how many 1-byte blocks each dd copies.
const ddBytes = 1_000_000

func runPlainMode(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (loads eBPF programs)")
	}
	start, load0 := time.Now(), loadAvg()
	pidDir := filepath.Join(o.work, "pids")
	if err := os.MkdirAll(pidDir, 0o755); err != nil {
		return err
	}
	ng := &nginx{plain: true}
	if err := ng.setup(o.work, o.workers); err != nil {
		return fmt.Errorf("nginx setup: %w", err)
	}
	defer ng.stop()
	if err := ng.start(ctx, pidDir); err != nil {
		return err
	}
	logf("nginx %s: master %d, workers %v, %s (plain HTTP)", ng.version, ng.masterPID(), ng.workerPIDs(), ng.url())
	wc := wrkConfig{threads: o.threads, connections: o.connections, url: ng.url()}
	if err := warmUp(ctx, o, wc, pidDir); err != nil {
		return err
	}
	var rounds []*plainRound
	for i := 0; i < 2*o.rounds; i++ {
		// ABBA: 0 baseline, 1 agent, 2 agent, 3 baseline, ...
		r := &plainRound{n: i + 1, withAgent: i%4 == 1 || i%4 == 2}
		if err := measurePlainRound(ctx, o, ng, wc, pidDir, r); err != nil {
			return fmt.Errorf("round %d (%s): %w", r.n, cfgName(r.withAgent), err)
		}
		rounds = append(rounds, r)
		logf("round %d %-8s %9.0f req/s  p99 %-8s spans %d/%d drops %d  agent CPU %5.1f%%  dd %6.0f ns/syscall  pipe %6.0f ns/byte  load %.2f",
			r.n, cfgName(r.withAgent), r.wrk.rps, fmtDur(r.wrk.p99), r.spans, r.nginxReqs, r.drops, r.agentCPU, r.ddNs, r.pipeNs, r.load1)
	}
	md := plainReport(o, ng, wc, rounds, start, load0, loadAvg())
	fmt.Println(md)
	if err := writeFileAtomic(o.out, []byte(md)); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	logf("wrote %s", o.out)
	return nil
}

func measurePlainRound(ctx context.Context, o options, ng *nginx, wc wrkConfig, pidDir string, r *plainRound) (err error) {
	r.load1 = load1()
	var a *agent
	var m0 promText
	var ticks0 uint64
	if r.withAgent {
		if a, err = startAgent(o.agentBin, ng.bin, o.work, pidDir, r.n); err != nil {
			return err
		}
		defer func() {
			if serr := a.stop(); serr != nil && err == nil {
				err = serr
			}
		}()
		if err = a.waitReady(ctx, ng.workerPIDs(), 60*time.Second); err != nil {
			return err
		}
		if m0, err = a.metrics(); err != nil {
			return err
		}
		if ticks0, err = cpuTicks(a.pid()); err != nil {
			return err
		}
	}
	req0, err := ng.requests()
	if err != nil {
		return err
	}
	t0 := time.Now()
	if r.wrk, _, err = runWrk(ctx, wc, o.duration, pidDir); err != nil {
		return err
	}
	elapsed := time.Since(t0).Seconds()
	req1, err := ng.requests()
	if err != nil {
		return err
	}
	r.nginxReqs = req1 - req0 - 1 // the second stub_status request counted itself
	if a != nil {
		ticks1, err := cpuTicks(a.pid())
		if err != nil {
			return fmt.Errorf("agent CPU (did the agent die?): %w\n%s", err, a.logTail())
		}
		r.agentCPU = 100 * float64(ticks1-ticks0) / clockTicks / elapsed
		spans0, _ := m0.sum("periscope_spans_total", map[string]string{"kind": "server"})
		m1, err := settleSpans(ctx, a, spans0, r.nginxReqs)
		if err != nil {
			return err
		}
		spans1, _ := m1.sum("periscope_spans_total", map[string]string{"kind": "server"})
		d0, _ := m0.sum("periscope_events_dropped_total", nil)
		d1, _ := m1.sum("periscope_events_dropped_total", nil)
		r.spans, r.drops = uint64(spans1-spans0), uint64(d1-d0)
	}
	if r.ddNs, err = timeShell(ctx, fmt.Sprintf("dd if=/dev/zero of=/dev/null bs=1 count=%d status=none", ddBytes), 2*ddBytes); err != nil {
		return err
	}
	r.pipeNs, err = timeShell(ctx, fmt.Sprintf("dd if=/dev/zero bs=1 count=%d status=none | dd of=/dev/null bs=1 status=none", ddBytes), ddBytes)
	return err
}

// timeShell runs script and returns its wall time divided by per, in ns.
func timeShell(ctx context.Context, script string, per int) (float64, error) {
	t0 := time.Now()
	if out, err := exec.CommandContext(ctx, "sh", "-c", script).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("%s: %w\n%s", script, err, out)
	}
	return float64(time.Since(t0).Nanoseconds()) / float64(per), nil
}

func plainReport(o options, ng *nginx, wc wrkConfig, rounds []*plainRound, start time.Time, load0, load1 string) string {
	pick := func(agent bool, f func(*plainRound) float64) []float64 {
		var v []float64
		for _, r := range rounds {
			if r.withAgent == agent {
				v = append(v, f(r))
			}
		}
		return v
	}
	rps := func(r *plainRound) float64 { return r.wrk.rps }
	dd := func(r *plainRound) float64 { return r.ddNs }
	pipe := func(r *plainRound) float64 { return r.pipeNs }
	var spans, reqs, drops uint64
	for _, r := range rounds {
		if r.withAgent {
			spans, reqs, drops = spans+r.spans, reqs+r.nginxReqs, drops+r.drops
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Plain HTTP benchmark (the sockets collector)\n\n")
	fmt.Fprintf(&b, "Generated by `make bench MODE=plain` (test/bench/benchtool, plainmode.go) at %s, commit %s, %d CPUs, %s.\n",
		start.UTC().Format(time.RFC3339), o.commit, numCPU(), time.Since(start).Round(time.Second))
	fmt.Fprintf(&b, "Machine load (1, 5, 15 min) at start: %s; at end: %s (a shared VM: other work ran meanwhile).\n\n", load0, load1)
	fmt.Fprintf(&b, "nginx %s, %d worker(s), plain HTTP, `wrk %s`, rounds in ABBA order (baseline, agent, agent, baseline, ...).\n\n",
		ng.version, o.workers, strings.Join(wc.args(o.duration), " "))
	b.WriteString("| round | config | req/s | p99 | server spans / nginx requests | ring drops | agent CPU % | dd bs=1 ns/syscall | pipe ns/byte | load1 |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rounds {
		span := "-"
		if r.withAgent {
			span = fmt.Sprintf("%d / %d", r.spans, r.nginxReqs)
		}
		fmt.Fprintf(&b, "| %d | %s | %.0f | %s | %s | %d | %.1f | %.0f | %.0f | %.2f |\n", r.n, cfgName(r.withAgent), r.wrk.rps,
			fmtDur(r.wrk.p99), span, r.drops, r.agentCPU, r.ddNs, r.pipeNs, r.load1)
	}
	br, ar := pick(false, rps), pick(true, rps)
	fmt.Fprintf(&b, "\n- **Throughput with the agent**: %.1f%% of the baseline (medians %.0f vs %.0f req/s; spread %.1f%% / %.1f%%; target ≥ 80%%).\n",
		100*median(ar)/median(br), median(ar), median(br), spreadPct(ar), spreadPct(br))
	fmt.Fprintf(&b, "- **A syscall of a process that is not HTTP** (dd bs=1 to /dev/null): %.0f ns with the agent, %.0f ns without: %+.0f ns (spread %.1f%% / %.1f%%; target ≤ 150 ns).\n",
		median(pick(true, dd)), median(pick(false, dd)), median(pick(true, dd))-median(pick(false, dd)), spreadPct(pick(true, dd)), spreadPct(pick(false, dd)))
	fmt.Fprintf(&b, "- **A byte through a pipe** (dd bs=1 | dd bs=1: per byte a read and a write in each of the two processes, which run in parallel): %.0f ns with, %.0f ns without.\n",
		median(pick(true, pipe)), median(pick(false, pipe)))
	pct := 0.0
	if reqs > 0 {
		pct = 100 * float64(spans) / float64(reqs)
	}
	fmt.Fprintf(&b, "- **Spans at saturation**: %d server spans for %d requests (%.2f%%), %d ring drops.\n", spans, reqs, pct, drops)
	return b.String()
}
