package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// benchMode is one row of the mode table: `make bench MODE=name` runs
// run with the options, rounds/duration/warm-up defaulting to the row's
// when the caller gives none.
//
// Adding a mode (say redis), three steps:
//  1. redismode.go: runRedisMode(ctx, o) starts the server and describes it
//     as an abTarget: name, exe (the agent's --include-exe), pids (the
//     application's processes), the load (wc for wrk, or load and loadDesc
//     for another generator), served (the server's request count, optional),
//     extra (more per-round figures, optional); then runAB(ctx, abEnv{o: o,
//     pidDir: ..., recv: o.recv}, t) and newABHeader(o)...write(results). The
//     engine does the ABBA rounds, the OTLP receiver's counts, the
//     application's and the agent's CPU, the profiles and the verdicts
//     (plainmode.go is ~40 lines of this).
//  2. a row below: name, what it measures, results file, default rounds,
//     round length and warm-up.
//  3. run.sh: the case that builds its binary, if it needs one, and its pid
//     file in cleanup's list.
type benchMode struct {
	name     string
	about    string
	out      string // results file written
	rounds   int    // per configuration
	duration time.Duration
	warmup   time.Duration
	run      func(context.Context, options) error
}

func benchModes() []benchMode {
	return []benchMode{
		{"go", "the Go hello-world server (test/e2e/testdata/goapp) over HTTPS (SCHEMES=http,https for both), no agent vs the agent exporting to the counting OTLP receiver, ABBA rounds; completeness as spans received ÷ requests, the application's CPU per request and where the difference goes, the agent's CPU per span by stage",
			"test/bench/results.md", 4, 10 * time.Second, 5 * time.Second, runGoMode},
		{"plain", "nginx over plain HTTP (the sockets collector), no agent vs the agent, the same measures as go, plus what dd's syscalls pay",
			"test/bench/results-plain.md", 4, 10 * time.Second, 5 * time.Second, runPlainMode},
		{"agent", "nginx + TLS (libssl uprobes), no agent vs the agent, plus the price of one uprobe hit on this kernel",
			"test/bench/results-nginx.md", 4, 10 * time.Second, 5 * time.Second, runNginxTLSMode},
		{"metrics", "the agent with RED metrics off vs on over 1,000 routes", "test/bench/results-metrics.md", 3, 10 * time.Second, 5 * time.Second, runMetricsMode},
		{"tcp", "the agent with its TCP collector off vs on", "test/bench/results-tcp.md", 3, 10 * time.Second, 5 * time.Second, runTCPMode},
		{"firstspan", "exec to first traced request per kind of process", "test/bench/results-firstspan.md", 10, 10 * time.Second, 0, runFirstSpanMode},
		{"memory", "agent RSS with COPIES large Go binaries running", "test/bench/results-memory.md", 1, 10 * time.Second, 0, runMemoryMode},
		{"procmetrics", "the agent with process metrics off vs on, 100 idle traced processes", "test/bench/results-procmetrics.md", 3, 10 * time.Second, 5 * time.Second, runProcMode},
		{"redis", "redis-server under redis-benchmark -t get,set -P 1 and -P 16, no agent vs the agent (tracing redis-server), ABBA: throughput ratio, SERVER spans vs commands, agent CPU per span",
			"test/bench/results-redis.md", 4, 10 * time.Second, 5 * time.Second, runRedisMode},
		{"postgres", "PostgreSQL under pgbench -S (CONNECTIONS/5 clients), no agent vs the agent (tracing the server), ABBA: tps ratio, SERVER spans vs transactions, agent CPU per span",
			"test/bench/results-postgres.md", 3, 10 * time.Second, 5 * time.Second, runPostgresMode},
		{"syscall", "what a process that is not HTTP pays per syscall: CPU time of dd bs=1 and of a pipe ping-pong with no agent, empty programs on the read/write syscall tracepoints and on raw sys_enter/exit (the floors), the agent; blocks in alternating order",
			"test/bench/results-syscall.md", 3, 10 * time.Second, 0, runSyscallMode},
		{"grpc", "a grpc-go server over TLS (the gotls collector) under unary calls from CONNECTIONS callers, then 1, on one connection, no agent vs the agent, ABBA: calls/s and throughput ratio (≥ 60%), server spans received ÷ calls (100%), agent CPU per span, uprobe hits per call, with verdicts",
			"test/bench/results-grpc.md", 3, 10 * time.Second, 3 * time.Second, runGRPCMode},
		{"linking", "two network namespaces (wrk in A, nginx plain HTTP in B), an agent in each, cross-node linking off vs on, ABBA: each agent's CPU per request apart, nginx's CPU per request, lookups by result",
			"test/bench/results-linking.md", 3, 10 * time.Second, 3 * time.Second, runLinkMode},
	}
}

func findMode(name string) (benchMode, error) {
	var names []string
	for _, m := range benchModes() {
		if m.name == name {
			return m, nil
		}
		names = append(names, m.name)
	}
	return benchMode{}, fmt.Errorf("unknown -mode %q (modes: %s)", name, strings.Join(names, ", "))
}

// withDefaults fills what the caller left unset (0, or a negative warm-up)
// from the mode's row.
func (m benchMode) withDefaults(o options) options {
	if o.out == "" {
		o.out = m.out
	}
	if o.rounds <= 0 {
		o.rounds = m.rounds
	}
	if o.duration <= 0 {
		o.duration = m.duration
	}
	if o.warmup < 0 {
		o.warmup = m.warmup
	}
	return o
}

func modeHelp() string {
	var b strings.Builder
	for _, m := range benchModes() {
		fmt.Fprintf(&b, "\n  %-12s %s (%s)", m.name, m.about, m.out)
	}
	return b.String()
}
