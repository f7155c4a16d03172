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
// under pgbench -S (select-only, simple protocol), rounds without and with
// the agent in ABBA order. The agent traces the server (--include-exe
// postgres): every SELECT a backend answers must be a SERVER span.

// pgBin is where Debian's postgresql 15 keeps its programs.
const pgBin = "/usr/lib/postgresql/15/bin"

// pgRound is one round of the postgres mode.
type pgRound struct {
	n         int
	withAgent bool
	load1     float64
	tps       float64
	xacts     uint64 // transactions pgbench completed (one SELECT each)
	dbMeasure
}

func runPostgresMode(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (loads eBPF programs)")
	}
	for _, t := range []string{"initdb", "pg_ctl", "postgres", "pgbench"} {
		if _, err := os.Stat(filepath.Join(pgBin, t)); err != nil {
			return fmt.Errorf("%s not found (scripts/deps.sh installs postgresql): %w", t, err)
		}
	}
	start, load0 := time.Now(), loadAvg()
	pidDir := filepath.Join(o.work, "pids")
	if err := os.MkdirAll(pidDir, 0o755); err != nil {
		return err
	}
	port, stop, err := startPostgres()
	if err != nil {
		return err
	}
	defer stop()
	var rounds []*pgRound
	for i := 0; i < 2*o.rounds; i++ {
		r := &pgRound{n: i + 1, withAgent: i%4 == 1 || i%4 == 2}
		if err := measurePgRound(ctx, o, port, pidDir, r); err != nil {
			return fmt.Errorf("round %d (%s): %w", r.n, cfgName(r.withAgent), err)
		}
		rounds = append(rounds, r)
		logf("round %d %-8s %9.0f tps  xacts %d spans %d drops %d agent CPU %5.1f%% (%.1f µs/span) load %.2f",
			r.n, cfgName(r.withAgent), r.tps, r.xacts, r.spans, r.drops, r.agentCPU, r.cpuPerOp, r.load1)
	}
	md := pgReport(o, rounds, start, load0, loadAvg())
	fmt.Println(md)
	if err := writeFileAtomic(o.out, []byte(md)); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	logf("wrote %s", o.out)
	return nil
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
// port and a function that stops the server.
func startPostgres() (int, func(), error) {
	// Not under work: mktemp made that 0700, closed to user postgres.
	dir, err := os.MkdirTemp("", "periscope-bench-pg-")
	if err != nil {
		return 0, nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return 0, nil, err
	}
	if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
		return 0, nil, fmt.Errorf("chown: %w\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	if err := asPostgres(fmt.Sprintf("%s/initdb -D %s -A trust >/dev/null", pgBin, data)); err != nil {
		os.RemoveAll(dir)
		return 0, nil, err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return 0, nil, err
	}
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c max_connections=50", port, dir)
	if err := asPostgres(fmt.Sprintf("%s/pg_ctl -D %s -l %s/log -w -o '%s' start >/dev/null", pgBin, data, dir, opts)); err != nil {
		return 0, nil, err
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
			return 0, nil, errors.New("postgres did not listen within 10s")
		}
	}
	if err := asPostgres(fmt.Sprintf("%s/pgbench -q -i -s 2 -h 127.0.0.1 -p %d postgres >/dev/null 2>&1", pgBin, port)); err != nil {
		stop()
		return 0, nil, err
	}
	return port, stop, nil
}

var (
	tpsRe   = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	xactsRe = regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)
)

func measurePgRound(ctx context.Context, o options, port int, pidDir string, r *pgRound) (err error) {
	r.load1 = load1()
	var a *dbAgent
	if r.withAgent {
		if a, err = startDBAgent(ctx, o, filepath.Join(pgBin, "postgres"), pidDir, r.n, nil); err != nil {
			return err
		}
		defer func() {
			if serr := a.stop(); serr != nil && err == nil {
				err = serr
			}
		}()
	}
	secs := int(o.duration.Seconds())
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, "su", "postgres", "-s", "/bin/sh", "-c",
		fmt.Sprintf("%s/pgbench -S -n -c %d -j 2 -T %d -h 127.0.0.1 -p %d postgres", pgBin, o.connections/5, secs, port)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgbench: %w\n%s", err, out)
	}
	elapsed := time.Since(t0).Seconds()
	tps, x := tpsRe.FindSubmatch(out), xactsRe.FindSubmatch(out)
	if tps == nil || x == nil {
		return fmt.Errorf("pgbench output without tps: %s", out)
	}
	r.tps, _ = strconv.ParseFloat(string(tps[1]), 64)
	r.xacts, _ = strconv.ParseUint(string(x[1]), 10, 64)
	if a != nil {
		r.dbMeasure, err = a.measure(ctx, elapsed, r.xacts)
	}
	return err
}

func pgReport(o options, rounds []*pgRound, start time.Time, load0, load1 string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# PostgreSQL benchmark (make bench MODE=postgres)\n\n")
	fmt.Fprintf(&b, "Commit %s, %s, %d rounds ABBA (baseline, agent, agent, baseline, ...), pgbench -S (select only, simple "+
		"protocol) -c %d -j 2 for %s per round, scale 2, plaintext on loopback; the agent traces the server (--include-exe "+
		"postgres): SERVER spans vs transactions (a SELECT each; pgbench's own setup statements add a few spans per "+
		"connection). Load average before %s, after %s; %s in all.\n\n",
		o.commit, time.Now().UTC().Format("2006-01-02 15:04 UTC"), len(rounds), o.connections/5, o.duration, load0, load1,
		time.Since(start).Round(time.Second))
	fmt.Fprintf(&b, "| round | config | tps | transactions | spans | drops | agent CPU | CPU/span | load |\n|---|---|---|---|---|---|---|---|---|\n")
	var base, with []float64
	var xacts, spans uint64
	for _, r := range rounds {
		fmt.Fprintf(&b, "| %d | %s | %.0f | %d | %d | %d | %.1f%% | %.1f µs | %.2f |\n", r.n, cfgName(r.withAgent), r.tps,
			r.xacts, r.spans, r.drops, r.agentCPU, r.cpuPerOp, r.load1)
		if r.withAgent {
			with = append(with, r.tps)
			xacts += r.xacts
			spans += r.spans
		} else {
			base = append(base, r.tps)
		}
	}
	wlo, whi := minMax(with)
	blo, bhi := minMax(base)
	fmt.Fprintf(&b, "\nThroughput with the agent / without: median %.1f%% (spread %.1f%% .. %.1f%%: worst and best pairing of rounds).\n",
		100*median(with)/median(base), 100*wlo/bhi, 100*whi/blo)
	fmt.Fprintf(&b, "Spans / transactions over the agent rounds: %d / %d (%.2f%%).\n", spans, xacts, 100*float64(spans)/float64(max(xacts, 1)))
	return b.String()
}
