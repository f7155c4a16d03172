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
	grpcgo   string        // grpc mode: the built test/e2e/testdata/grpcgo
	settle   time.Duration // memory mode: wait before the steady RSS
	schemes  string        // go mode: "https", "http" or "http,https"
	profile  bool          // go, plain: the profiled pair of rounds
	recv     *receiver     // the counting OTLP receiver every agent exports to
}

func main() {
	subcommands := map[string]func([]string) int{
		"receive":      receiveMain,
		"uprobecost":   uprobeCostMain,
		"categories":   categoriesMain,
		"pace":         paceMain,
		"syscallfloor": syscallFloorMain,
		"floorhold":    floorHoldMain,
	}
	if len(os.Args) > 1 && subcommands[os.Args[1]] != nil {
		os.Exit(subcommands[os.Args[1]](os.Args[2:]))
	}
	var o options
	flag.StringVar(&o.agentBin, "agent", "bin/periscope", "periscope binary")
	flag.StringVar(&o.work, "work", "", "scratch directory (required; run.sh makes and removes it)")
	flag.StringVar(&o.callloop, "callloop", "", "the compiled test/bench/callloop.c (required)")
	flag.StringVar(&o.out, "out", "", "markdown summary to write (default: the mode's results file)")
	flag.IntVar(&o.rounds, "rounds", 0, "rounds per configuration (0: the mode's default)")
	flag.DurationVar(&o.duration, "duration", 0, "length of one wrk round (0: the mode's default)")
	flag.DurationVar(&o.warmup, "warmup", -1, "wrk warm-up before the rounds (0: none; negative: the mode's default)")
	flag.IntVar(&o.workers, "workers", 1, "nginx worker_processes")
	flag.IntVar(&o.threads, "threads", 2, "wrk -t")
	flag.IntVar(&o.connections, "connections", 50, "wrk -c")
	flag.IntVar(&o.probeCalls, "probe-calls", 10000, "calls per probed run of the uprobe micro-benchmark (bare: 100x)")
	flag.IntVar(&o.probeReps, "probe-reps", 5, "repetitions of each uprobe micro-benchmark case")
	flag.StringVar(&o.commit, "commit", "", "the source revision being measured (for the report)")
	flag.StringVar(&o.mode, "mode", "go", "what to measure:"+modeHelp())
	flag.BoolVar(&o.newConns, "new-conns", false, `tcp mode: wrk sends "Connection: close" (a TCP and TLS handshake per request)`)
	flag.StringVar(&o.goapp, "goapp", "", "go and firstspan modes: the goapp binary (test/e2e/testdata/goapp); firstspan: GOAPP-stripped too")
	flag.StringVar(&o.schemes, "schemes", "https", "go mode: http, https or http,https")
	flag.BoolVar(&o.profile, "profile", true, "go and plain modes: a pair of profiled rounds after the measured ones (perf record of the application, the agent's pprof)")
	flag.StringVar(&o.helm, "helm", "", "memory mode: a helm binary (scripts/tools.sh helm)")
	flag.StringVar(&o.grpcgo, "grpcgo", "", "grpc mode: the grpcgo binary (test/e2e/testdata/grpcgo)")
	flag.IntVar(&o.copies, "copies", 20, "memory mode: distinct helm copies running")
	flag.DurationVar(&o.settle, "settle", 30*time.Second, "memory mode: wait after the last attach before reading the steady RSS")
	flag.Parse()
	m, err := findMode(o.mode)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	o = m.withDefaults(o)
	if o.work == "" || o.callloop == "" || o.duration < 2*time.Second {
		fmt.Fprintln(os.Stderr, "usage: benchtool -work DIR -callloop PATH [-mode M] [-agent BIN] [-rounds N] [-duration D≥2s] ...")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// Every mode's agent exports its spans over OTLP/gRPC to a counting
	// receiver in a process of its own, as it would to a collector.
	recv, err := startReceiver(filepath.Join(o.work, "pids"), filepath.Join(o.work, "receiver.log"))
	if err == nil {
		o.recv = recv
		logf("OTLP receiver: pid %d, gRPC %s, counts on http://%s/counts", recv.pid(), recv.grpcAddr, recv.http)
		err = m.run(ctx, o)
		recv.stop()
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

// agentCmd runs the agent exporting to the receiver, pprof on.
func (o options) agentCmd() agentCmd {
	ac := agentCmd{bin: o.agentBin, env: []string{"PERISCOPE_PPROF=true"}}
	if o.recv != nil {
		ac.env = append(ac.env, o.recv.agentEnv()...)
	}
	return ac
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func cfgName(agent bool) string {
	if agent {
		return "agent"
	}
	return "baseline"
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
