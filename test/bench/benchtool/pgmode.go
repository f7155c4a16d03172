package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The postgres mode (-mode postgres, `make bench MODE=postgres`): what
// tracing PostgreSQL costs. A PostgreSQL 15 on loopback (plaintext, trust)
// under pgbench -S (select-only, simple protocol), by the A/B engine
// (abround.go) as the other modes: ABBA rounds without and with the agent
// (tracing the server, --include-exe postgres), throughput ratio,
// completeness as SERVER spans received by the counting OTLP receiver ÷
// transactions pgbench completed (a SELECT each), agent CPU per span.

// pgBin is where Debian's postgresql 15 keeps its programs.
const pgBin = "/usr/lib/postgresql/15/bin"

func runPostgresMode(ctx context.Context, o options) error {
	for _, t := range []string{"initdb", "pg_ctl", "postgres", "pgbench"} {
		if _, err := os.Stat(filepath.Join(pgBin, t)); err != nil {
			return fmt.Errorf("%s not found (scripts/deps.sh installs postgresql): %w", t, err)
		}
	}
	h, env, closer, err := startAB(o)
	if err != nil {
		return err
	}
	defer closer.Close()
	port, postmaster, stop, err := startPostgres()
	if err != nil {
		return err
	}
	defer stop()
	clients := o.connections / 5
	aux := auxiliaries(postmaster)
	t := abTarget{
		name:     "postgres, pgbench -S",
		exe:      filepath.Join(pgBin, "postgres"),
		load:     pgbenchLoad(port, clients),
		loadDesc: fmt.Sprintf("`pgbench -S -n -c %d -j 2 -T SECONDS` (select only, simple protocol; a transaction is one SELECT)", clients),
		pids:     func() []int { return []int{postmaster} },
		appCPU:   func() (uint64, error) { return postgresTicks(postmaster, aux) },
	}
	res, err := runAB(ctx, env, t)
	if err != nil {
		return err
	}
	h.title = "PostgreSQL benchmark: postgres without and with the agent"
	h.mode = "postgres"
	h.target = fmt.Sprintf("PostgreSQL 15 (%s), loopback, plaintext, trust, pgbench scale 2, %d clients; requests are the transactions pgbench completed (its per-connection setup statements are spans too, a few per round); the application's CPU is the postmaster's and its reaped backends' (a backend is forked per pgbench connection each round), while the per-process counters (context switches, wake-ups, perf) cover the postmaster alone", pgVersion(), clients)
	h.agentSelects = "the postgres executable (pgbench is not traced)"
	h.targets = abTargets{throughputPct: 85, completenessPct: 100}
	return h.write([]*abResult{res})
}

// pgbenchLoad returns the load of the mode: pgbench -S for d, in
// wrkResult's terms (requests: transactions).
func pgbenchLoad(port, clients int) func(ctx context.Context, d time.Duration) (wrkResult, error) {
	return func(ctx context.Context, d time.Duration) (wrkResult, error) {
		var res wrkResult
		secs := max(int(d.Round(time.Second).Seconds()), 1)
		t0 := time.Now()
		out, err := exec.CommandContext(ctx, "su", "postgres", "-s", "/bin/sh", "-c",
			fmt.Sprintf("%s/pgbench -S -n -c %d -j 2 -T %d -h 127.0.0.1 -p %d postgres", pgBin, clients, secs, port)).CombinedOutput()
		if err != nil {
			return res, fmt.Errorf("pgbench: %w\n%s", err, out)
		}
		res.seconds = time.Since(t0).Seconds()
		tps, x := tpsRe.FindSubmatch(out), xactsRe.FindSubmatch(out)
		if tps == nil || x == nil {
			return res, fmt.Errorf("pgbench output without tps: %s", out)
		}
		res.rps, _ = strconv.ParseFloat(string(tps[1]), 64)
		res.requests, _ = strconv.ParseUint(string(x[1]), 10, 64)
		return res, nil
	}
}

// postgresTicks is the CPU of the postmaster and of the children it has
// reaped (pgbench's backends, gone by the time its load returns), in
// clock ticks: it waits until the postmaster's only children are its
// auxiliary processes aux (checkpointer, writers, launchers), so that
// every backend's CPU is in its cutime.
func postgresTicks(postmaster int, aux map[int]bool) (uint64, error) {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		n := 0
		for _, c := range childrenOf(postmaster) {
			if !aux[c] {
				n++
			}
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d backends of postmaster %d not reaped after 5s", n, postmaster)
		}
	}
	s, err := readProcStat(postmaster)
	if err != nil {
		return 0, err
	}
	return s.utime + s.stime + s.cutime + s.cstime, nil
}

// auxiliaries returns the postmaster's children once no client backend
// is left (after pgbench -i): its auxiliary processes.
func auxiliaries(postmaster int) map[int]bool {
	aux := map[int]bool{}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		clear(aux)
		backends := 0
		for _, c := range childrenOf(postmaster) {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c))
			if strings.Contains(string(b), "127.0.0.1(") || len(b) == 0 {
				backends++
			}
			aux[c] = true
		}
		if backends == 0 {
			break
		}
	}
	return aux
}

// pgVersion is the server's version, as postgres --version says it.
func pgVersion() string {
	out, err := exec.Command(filepath.Join(pgBin, "postgres"), "--version").Output()
	if err != nil {
		return "unknown version"
	}
	return strings.TrimSpace(string(out))
}

// asPostgres runs a shell command as user postgres.
func asPostgres(cmd string) error {
	if out, err := exec.Command("su", "postgres", "-s", "/bin/sh", "-c", cmd).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", cmd, err, out)
	}
	return nil
}

// startPostgres makes a data directory, starts the server on a
// free loopback port and fills pgbench's tables (scale 2); it returns the
// port, the postmaster's PID and a function that stops the server.
func startPostgres() (int, int, func(), error) {
	// Not under work: mktemp made that 0700, closed to user postgres.
	dir, err := os.MkdirTemp("", "periscope-bench-pg-")
	if err != nil {
		return 0, 0, nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return 0, 0, nil, err
	}
	if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
		return 0, 0, nil, fmt.Errorf("chown: %w\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	if err := asPostgres(fmt.Sprintf("%s/initdb -D %s -A trust >/dev/null", pgBin, data)); err != nil {
		os.RemoveAll(dir)
		return 0, 0, nil, err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return 0, 0, nil, err
	}
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c max_connections=50", port, dir)
	if err := asPostgres(fmt.Sprintf("%s/pg_ctl -D %s -l %s/log -w -o '%s' start >/dev/null", pgBin, data, dir, opts)); err != nil {
		return 0, 0, nil, err
	}
	stop := func() {
		_ = asPostgres(fmt.Sprintf("%s/pg_ctl -D %s -m immediate stop >/dev/null", pgBin, data))
		os.RemoveAll(dir)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return 0, 0, nil, errors.New("postgres did not listen within 10s")
		}
	}
	if err := asPostgres(fmt.Sprintf("%s/pgbench -q -i -s 2 -h 127.0.0.1 -p %d postgres >/dev/null 2>&1", pgBin, port)); err != nil {
		stop()
		return 0, 0, nil, err
	}
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		stop()
		return 0, 0, nil, err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		stop()
		return 0, 0, nil, fmt.Errorf("postmaster.pid: %w", err)
	}
	return port, pid, stop, nil
}

var (
	tpsRe   = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	xactsRe = regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)
)
