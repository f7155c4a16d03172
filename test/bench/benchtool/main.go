// Command benchtool is the driver of `make bench` (test/bench/run.sh builds
// and runs it): nginx with TLS under wrk, rounds without and with the
// Periscope agent alternated in one run, plus a micro-benchmark of one uprobe
// hit on this kernel. It prints a table and writes a markdown summary.
//
// It exits non-zero only when something failed to run; performance figures
// are reported, never asserted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

type options struct {
	agentBin    string
	work        string
	callloop    string
	out         string
	rounds      int
	duration    time.Duration
	warmup      time.Duration
	workers     int
	threads     int
	connections int
	probeCalls  int
	probeReps   int
	commit      string
	// mode "tcp" compares the agent with its TCP collector off and on
	// (tcpmode.go), mode "metrics" with its RED metrics off and on
	// (metricsmode.go), instead of no agent and the agent.
	mode     string
	newConns bool          // tcp mode: a new TLS connection per request
	goapp    string        // go mode: the built test/e2e/testdata/goapp
	helm     string        // memory mode: a helm build (large, with DWARF)
	copies   int           // memory mode: distinct helm copies running
	settle   time.Duration // memory mode: wait before the steady RSS
}

func main() {
	var o options
	flag.StringVar(&o.agentBin, "agent", "bin/periscope", "periscope binary")
	flag.StringVar(&o.work, "work", "", "scratch directory (required; run.sh makes and removes it)")
	flag.StringVar(&o.callloop, "callloop", "", "the compiled test/bench/callloop.c (required)")
	flag.StringVar(&o.out, "out", "test/bench/results.md", "markdown summary to write")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds per configuration")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of one wrk round")
	flag.DurationVar(&o.warmup, "warmup", 5*time.Second, "wrk warm-up before the rounds (0: none)")
	flag.IntVar(&o.workers, "workers", 1, "nginx worker_processes")
	flag.IntVar(&o.threads, "threads", 2, "wrk -t")
	flag.IntVar(&o.connections, "connections", 50, "wrk -c")
	flag.IntVar(&o.probeCalls, "probe-calls", 10000, "calls per probed run of the uprobe micro-benchmark (bare: 100x)")
	flag.IntVar(&o.probeReps, "probe-reps", 5, "repetitions of each uprobe micro-benchmark case")
	flag.StringVar(&o.commit, "commit", "", "the source revision being measured (for the report)")
	flag.StringVar(&o.mode, "mode", "agent", `"agent": no agent vs the agent (nginx); "tcp": the agent with its TCP collector off vs on; "metrics": the agent with RED metrics off vs on; "go": no agent vs the agent on a Go server; "firstspan": exec to first traced request; "memory": RSS with many large Go binaries; "procmetrics": the agent with process metrics off vs on, 100 traced processes; "plain": no agent vs the agent on nginx over plain HTTP, and the syscalls of dd; "syscall": no agent vs the agent, CPU per syscall of dd bs=1 and a pipe ping-pong`)
	flag.BoolVar(&o.newConns, "new-conns", false, `tcp mode: wrk sends "Connection: close" (a TCP and TLS handshake per request)`)
	flag.StringVar(&o.goapp, "goapp", "", "go and firstspan modes: the goapp binary (test/e2e/testdata/goapp); firstspan: GOAPP-stripped too")
	flag.StringVar(&o.helm, "helm", "", "memory mode: a helm binary (scripts/tools.sh helm)")
	flag.IntVar(&o.copies, "copies", 20, "memory mode: distinct helm copies running")
	flag.DurationVar(&o.settle, "settle", 30*time.Second, "memory mode: wait after the last attach before reading the steady RSS")
	flag.Parse()
	if o.work == "" || o.callloop == "" || o.rounds < 1 || o.duration < time.Second {
		fmt.Fprintln(os.Stderr, "usage: benchtool -work DIR -callloop PATH [-agent BIN] [-rounds N] [-duration D] ...")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	switch o.mode {
	case "agent":
		err = run(ctx, o)
	case "tcp":
		err = runTCPMode(ctx, o)
	case "go":
		err = runGoMode(ctx, o)
	case "metrics":
		err = runMetricsMode(ctx, o)
	case "firstspan":
		err = runFirstSpanMode(ctx, o)
	case "memory":
		err = runMemoryMode(ctx, o)
	case "procmetrics":
		err = runProcMode(ctx, o)
	case "plain":
		err = runPlainMode(ctx, o)
	case "syscall":
		err = runSyscallMode(ctx, o)
	default:
		err = fmt.Errorf("unknown -mode %q", o.mode)
	}
	stop()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "bench: interrupted; nginx and agent stopped")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "bench: FAILED: %v\n", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// round is one wrk run and what was measured around it.
type round struct {
	n         int
	withAgent bool
	load1     float64
	wrk       wrkResult

	nginxReqs   uint64  // requests nginx served (stub_status), stub requests excluded
	nginxCPU    float64 // % of one core, all workers, over the wrk run
	nginxCPUSec float64

	// with the agent only
	startup     time.Duration // start to ready with every worker followed
	stopTime    time.Duration // SIGTERM to exit
	agentCPU    float64       // % of one core over the wrk run
	hwmKiB      uint64        // VmHWM at the end of the round
	spans       uint64        // server spans
	clientSpans uint64
	drops       uint64
	unmatched   uint64
	incomplete  uint64
	probes      probeCounts // deltas over the wrk run
	foreign     uint64      // ssl_* runs of programs not ours (both configurations)
	sites       []probeSite // the agent's uprobe sites
	others      []string
}

type env struct {
	o        options
	ng       *nginx
	pidDir   string
	statsHow string
	tls      string
	start    time.Time
	loadAt   [2]string
	probe    []*probeCost
	rounds   []*round
	warnings []string
}

func run(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (loads eBPF programs)")
	}
	e := &env{o: o, start: time.Now(), pidDir: filepath.Join(o.work, "pids")}
	e.loadAt[0] = loadAvg()
	if err := os.MkdirAll(e.pidDir, 0o755); err != nil {
		return err
	}

	// The uprobe micro-benchmark first: quick, and it proves uprobes work.
	closer, how, err := enableBPFStats()
	if err != nil {
		return err
	}
	defer closer.Close()
	e.statsHow = how
	logf("uprobe micro-benchmark: %d variants x %d modes, %d repetitions, %d calls per probed run", len(probeVariants), len(probeModes), o.probeReps, o.probeCalls)
	if e.probe, err = measureUprobeCost(ctx, o.callloop, o.probeCalls, o.probeReps); err != nil {
		return fmt.Errorf("uprobe micro-benchmark: %w", err)
	}
	for _, c := range e.probe {
		parts := make([]string, len(probeModes))
		for m, mode := range probeModes {
			parts[m] = fmt.Sprintf("%s %s", mode.name, fmtUs(c.median[m]))
		}
		logf("  %-5s µs/call: %s", c.variant.name, strings.Join(parts, ", "))
	}

	e.ng = &nginx{}
	if err := e.ng.setup(o.work, o.workers); err != nil {
		return fmt.Errorf("nginx setup: %w", err)
	}
	defer e.ng.stop()
	if err := e.ng.start(ctx, e.pidDir); err != nil {
		return err
	}
	e.tls = e.ng.tlsInfo()
	logf("nginx %s: master %d, workers %v, %s, %s", e.ng.version, e.ng.masterPID(), e.ng.workerPIDs(), e.ng.url(), e.tls)

	wc := wrkConfig{threads: o.threads, connections: o.connections, url: e.ng.url()}
	if o.warmup > 0 {
		logf("warm-up: wrk %s", strings.Join(wc.args(o.warmup), " "))
		if _, _, err := runWrk(ctx, wc, o.warmup, e.pidDir); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}

	total := 2 * o.rounds
	for i := 0; i < total; i++ {
		r := &round{n: i + 1, withAgent: i%2 == 1}
		if err := e.measure(ctx, wc, r); err != nil {
			return fmt.Errorf("round %d (%s): %w", r.n, cfgName(r.withAgent), err)
		}
		e.rounds = append(e.rounds, r)
		logf("%s", r.summary())
		if r.withAgent {
			logf("  agent stopped in %.1fs", r.stopTime.Seconds())
		}
	}
	e.loadAt[1] = loadAvg()

	rep := e.report()
	fmt.Println(rep.text())
	// Keep the go mode's section of the same file.
	old, _ := os.ReadFile(o.out)
	if err := writeFileAtomic(o.out, []byte(keepGoSection(rep.markdown(), string(old)))); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	logf("wrote %s", o.out)
	return nil
}

func cfgName(agent bool) string {
	if agent {
		return "agent"
	}
	return "baseline"
}

// measure runs one round. With the agent, the agent is started before and
// stopped after it, so that baseline rounds run with no probe at all.
func (e *env) measure(ctx context.Context, wc wrkConfig, r *round) (err error) {
	r.load1 = load1()
	var a *agent
	if r.withAgent {
		t0 := time.Now()
		if a, err = startAgent(e.o.agentBin, e.ng.bin, e.o.work, e.pidDir, r.n); err != nil {
			return err
		}
		defer func() {
			t := time.Now()
			if serr := a.stop(); serr != nil && err == nil {
				err = serr
			}
			r.stopTime = time.Since(t)
		}()
		if err = a.waitReady(ctx, e.ng.workerPIDs(), 60*time.Second); err != nil {
			return err
		}
		r.startup = time.Since(t0)
		if len(a.progs) == 0 {
			return fmt.Errorf("the agent holds no BPF programs")
		}
		if r.sites, err = agentSites(a.pid()); err != nil {
			e.warn(fmt.Sprintf("could not list the agent's uprobe sites: %v", err))
			err = nil
		}
		r.others = otherPeriscopes(a.pid())
	} else {
		r.others = otherPeriscopes(0)
	}

	// Before.
	var m0 promText
	var agentTicks0 uint64
	if a != nil {
		if m0, err = a.metrics(); err != nil {
			return err
		}
		if agentTicks0, err = cpuTicks(a.pid()); err != nil {
			return fmt.Errorf("agent CPU: %w", err)
		}
	}
	progs0, err := bpftoolProgs()
	if err != nil {
		return err
	}
	req0, err := e.ng.requests()
	if err != nil {
		return err
	}
	nginxTicks0 := e.ng.workerTicks()
	t0 := time.Now()

	if r.wrk, _, err = runWrk(ctx, wc, e.o.duration, e.pidDir); err != nil {
		return err
	}

	// Right after wrk: CPU and probe counts over the run.
	elapsed := time.Since(t0).Seconds()
	nginxTicks1 := e.ng.workerTicks()
	var agentTicks1 uint64
	if a != nil {
		if agentTicks1, err = cpuTicks(a.pid()); err != nil {
			return fmt.Errorf("agent CPU (did the agent die?): %w\n%s", err, a.logTail())
		}
	}
	progs1, err := bpftoolProgs()
	if err != nil {
		return err
	}
	req1, err := e.ng.requests()
	if err != nil {
		return err
	}
	r.nginxReqs = req1 - req0 - 1 // the second stub_status request counted itself
	r.nginxCPUSec = float64(nginxTicks1-nginxTicks0) / clockTicks
	r.nginxCPU = 100 * r.nginxCPUSec / elapsed
	var ours map[uint32]bool
	if a != nil {
		ours = a.progs
		r.agentCPU = 100 * float64(agentTicks1-agentTicks0) / clockTicks / elapsed
	}
	r.probes = countProbes(progs1, ours).sub(countProbes(progs0, ours))
	r.foreign = r.probes.foreign

	if a == nil {
		return nil
	}
	// Spans trail the requests by the reader's timer: wait until the span
	// count covers every request nginx served, or stops moving.
	spans0, _ := m0.sum("periscope_spans_total", map[string]string{"kind": "server"})
	m1, err := settleSpans(ctx, a, spans0, r.nginxReqs)
	if err != nil {
		return err
	}
	delta := func(name string, labels map[string]string) uint64 {
		v0, _ := m0.sum(name, labels)
		v1, _ := m1.sum(name, labels)
		if v1 < v0 {
			return 0
		}
		return uint64(v1 - v0)
	}
	if _, ok := m1.sum("periscope_spans_total", map[string]string{"kind": "server"}); !ok {
		e.warn(`the agent's /metrics has no periscope_spans_total{kind="server"} sample`)
	}
	if _, ok := m1.sum("periscope_events_dropped_total", nil); !ok {
		e.warn("the agent's /metrics has no periscope_events_dropped_total")
	}
	r.spans = delta("periscope_spans_total", map[string]string{"kind": "server"})
	r.clientSpans = delta("periscope_spans_total", map[string]string{"kind": "client"})
	r.drops = delta("periscope_events_dropped_total", nil)
	r.unmatched = delta("periscope_calls_unmatched_total", nil)
	r.incomplete = delta("periscope_requests_incomplete_total", nil)
	if r.hwmKiB, err = statusKiB(a.pid(), "VmHWM"); err != nil {
		return fmt.Errorf("agent VmHWM: %w", err)
	}
	return nil
}

// settleSpans waits until the agent's server span count has grown by want
// since spans0, or stops moving, or 10 s pass: spans trail the requests by
// the reader's timer. It returns the last scrape.
func settleSpans(ctx context.Context, a *agent, spans0 float64, want uint64) (promText, error) {
	var last float64 = -1
	stable := time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := a.metrics()
		if err != nil {
			return nil, err
		}
		v, _ := m.sum("periscope_spans_total", map[string]string{"kind": "server"})
		if v-spans0 >= float64(want) || time.Since(stable) >= 1500*time.Millisecond || time.Now().After(deadline) {
			return m, nil
		}
		if v != last {
			last, stable = v, time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (e *env) warn(msg string) {
	for _, w := range e.warnings {
		if w == msg {
			return
		}
	}
	e.warnings = append(e.warnings, msg)
}

func (r *round) summary() string {
	s := fmt.Sprintf("round %d %-8s %9.0f req/s  p50 %-8s p99 %-8s nginx CPU %5.1f%%  load %.2f",
		r.n, cfgName(r.withAgent), r.wrk.rps, fmtDur(r.wrk.p50), fmtDur(r.wrk.p99), r.nginxCPU, r.load1)
	if r.withAgent {
		s += fmt.Sprintf("  | ready in %.1fs, agent CPU %.1f%%, HWM %.1f MiB, spans %d / wrk %d / nginx %d, drops %d, uprobe hits/req %.2f (entry %.2f, return %.2f)",
			r.startup.Seconds(), r.agentCPU, float64(r.hwmKiB)/1024, r.spans, r.wrk.requests, r.nginxReqs, r.drops,
			ratio(r.probes.uprobes(), r.wrk.requests), ratio(r.probes.entry, r.wrk.requests), ratio(r.probes.ret, r.wrk.requests))
	}
	if r.foreign > 0 {
		s += fmt.Sprintf("  | WARNING: other agents' ssl_* uprobe programs ran %d times", r.foreign)
	}
	return s
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func numCPU() int { return runtime.NumCPU() }
