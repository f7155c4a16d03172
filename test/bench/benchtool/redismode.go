package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The redis mode (-mode redis, `make bench MODE=redis`): what tracing Redis
// costs. A redis-server on loopback (no persistence) under
// redis-benchmark -t get,set at pipeline depths 1 and 16, rounds without
// and with the agent in ABBA order. The agent traces redis-server
// (--include-exe): every command it answers must be a SERVER span, counted
// against the server's own total_commands_processed.

// redisDepths are the pipeline depths (redis-benchmark -P) of each round.
var redisDepths = []int{1, 16}

// redisRound is one round of the redis mode.
type redisRound struct {
	n         int
	withAgent bool
	load1     float64
	rps       map[string]float64 // by "SET -P1" ...
	commands  uint64             // answered by redis-server during the round
	elapsed   float64
	dbMeasure
}

func runRedisMode(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (loads eBPF programs)")
	}
	for _, t := range []string{"redis-server", "redis-benchmark", "redis-cli"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s not found (scripts/deps.sh installs redis-server and redis-tools)", t)
		}
	}
	start, load0 := time.Now(), loadAvg()
	pidDir := filepath.Join(o.work, "pids")
	if err := os.MkdirAll(pidDir, 0o755); err != nil {
		return err
	}
	srv, port, err := startRedis(o.work, pidDir)
	if err != nil {
		return err
	}
	defer func() { _ = syscall.Kill(-srv.Process.Pid, syscall.SIGKILL); _ = srv.Wait() }()
	// Debian's redis-server is a link to redis-check-rdb: the agent selects
	// the file the process runs.
	bin, err := exec.LookPath("redis-server")
	if err == nil {
		bin, err = filepath.EvalSymlinks(bin)
	}
	if err != nil {
		return err
	}
	var rounds []*redisRound
	for i := 0; i < 2*o.rounds; i++ {
		r := &redisRound{n: i + 1, withAgent: i%4 == 1 || i%4 == 2, rps: map[string]float64{}}
		if err := measureRedisRound(ctx, o, bin, srv.Process.Pid, port, pidDir, r); err != nil {
			return fmt.Errorf("round %d (%s): %w", r.n, cfgName(r.withAgent), err)
		}
		rounds = append(rounds, r)
		logf("round %d %-8s %v commands %d spans %d drops %d agent CPU %5.1f%% (%.1f µs/span) load %.2f",
			r.n, cfgName(r.withAgent), r.rps, r.commands, r.spans, r.drops, r.agentCPU, r.cpuPerOp, r.load1)
	}
	md := redisReport(o, rounds, start, load0, loadAvg())
	fmt.Println(md)
	if err := writeFileAtomic(o.out, []byte(md)); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	logf("wrote %s", o.out)
	return nil
}

// startRedis starts redis-server on a free loopback port in its own
// process group.
func startRedis(work, pidDir string) (*exec.Cmd, int, error) {
	port, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	dir := filepath.Join(work, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, 0, err
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--logfile", filepath.Join(dir, "log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, 0, fmt.Errorf("start redis-server: %w", err)
	}
	_ = os.WriteFile(filepath.Join(pidDir, "redis"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return cmd, port, nil
		}
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	return nil, 0, errors.New("redis-server did not listen within 10s")
}

// redisCommands is the server's total_commands_processed.
func redisCommands(port int) (uint64, error) {
	out, err := exec.Command("redis-cli", "-p", strconv.Itoa(port), "INFO", "stats").Output()
	if err != nil {
		return 0, fmt.Errorf("redis-cli INFO: %w", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "total_commands_processed:"); ok {
			return strconv.ParseUint(v, 10, 64)
		}
	}
	return 0, errors.New("no total_commands_processed in INFO stats")
}

// redisBenchmark runs redis-benchmark at depth p and returns requests per
// second by command.
func redisBenchmark(ctx context.Context, port, p, n, clients int) (map[string]float64, error) {
	out, err := exec.CommandContext(ctx, "redis-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(port),
		"-t", "get,set", "-P", strconv.Itoa(p), "-n", strconv.Itoa(n), "-c", strconv.Itoa(clients), "--csv").Output()
	if err != nil {
		return nil, fmt.Errorf("redis-benchmark -P %d: %w", p, err)
	}
	rps := map[string]float64{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 2 {
			continue
		}
		name := strings.Trim(f[0], `"`)
		v, err := strconv.ParseFloat(strings.Trim(f[1], `"`), 64)
		if err == nil && (name == "SET" || name == "GET") {
			rps[fmt.Sprintf("%s -P%d", name, p)] = v
		}
	}
	if len(rps) != 2 {
		return nil, fmt.Errorf("redis-benchmark -P %d: no SET and GET throughput in %q", p, out)
	}
	return rps, nil
}

func measureRedisRound(ctx context.Context, o options, bin string, srvPID, port int, pidDir string, r *redisRound) (err error) {
	r.load1 = load1()
	var a *dbAgent
	if r.withAgent {
		if a, err = startDBAgent(ctx, o, bin, pidDir, r.n, []int{srvPID}); err != nil {
			return err
		}
		defer func() {
			if serr := a.stop(); serr != nil && err == nil {
				err = serr
			}
		}()
	}
	c0, err := redisCommands(port)
	if err != nil {
		return err
	}
	t0 := time.Now()
	for _, p := range redisDepths {
		rps, err := redisBenchmark(ctx, port, p, 100_000*p, o.connections)
		if err != nil {
			return err
		}
		for k, v := range rps {
			r.rps[k] = v
		}
	}
	r.elapsed = time.Since(t0).Seconds()
	c1, err := redisCommands(port)
	if err != nil {
		return err
	}
	r.commands = c1 - c0 - 1 // the first INFO counted itself
	if a != nil {
		r.dbMeasure, err = a.measure(ctx, r.elapsed, r.commands+1) // + the second INFO
	}
	return err
}

func redisReport(o options, rounds []*redisRound, start time.Time, load0, load1 string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Redis benchmark (make bench MODE=redis)\n\n")
	fmt.Fprintf(&b, "Commit %s, %s, %d rounds ABBA (baseline, agent, agent, baseline, ...), %d clients, "+
		"redis-benchmark -t get,set -P 1 (-n 100000) and -P 16 (-n 1600000) per round; the agent traces redis-server "+
		"(--include-exe): SERVER spans vs commands the server counted. Load average before %s, after %s; %s in all.\n\n",
		o.commit, time.Now().UTC().Format("2006-01-02 15:04 UTC"), len(rounds), o.connections, load0, load1, time.Since(start).Round(time.Second))
	keys := []string{"SET -P1", "GET -P1", "SET -P16", "GET -P16"}
	fmt.Fprintf(&b, "| round | config | %s | commands | spans | drops | agent CPU | CPU/span | load |\n|---|---|%s---|---|---|---|---|---|\n",
		strings.Join(keys, " | "), strings.Repeat("---|", len(keys)))
	for _, r := range rounds {
		var cells []string
		for _, k := range keys {
			cells = append(cells, fmt.Sprintf("%.0f", r.rps[k]))
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %d | %d | %d | %.1f%% | %.1f µs | %.2f |\n", r.n, cfgName(r.withAgent),
			strings.Join(cells, " | "), r.commands, r.spans, r.drops, r.agentCPU, r.cpuPerOp, r.load1)
	}
	fmt.Fprintf(&b, "\n| throughput with the agent / without | median | min | max |\n|---|---|---|---|\n")
	for _, k := range keys {
		var base, with []float64
		for _, r := range rounds {
			if r.withAgent {
				with = append(with, r.rps[k])
			} else {
				base = append(base, r.rps[k])
			}
		}
		med := median(with) / median(base)
		wlo, whi := minMax(with)
		blo, bhi := minMax(base)
		lo, hi := wlo/bhi, whi/blo
		fmt.Fprintf(&b, "| %s | %.1f%% | %.1f%% | %.1f%% |\n", k, 100*med, 100*lo, 100*hi)
	}
	var cmds, spans uint64
	for _, r := range rounds {
		if r.withAgent {
			cmds += r.commands
			spans += r.spans
		}
	}
	fmt.Fprintf(&b, "\nSpans / commands over the agent rounds: %d / %d (%.2f%%). min/max is the worst/best pairing of rounds: the spread.\n",
		spans, cmds, 100*float64(spans)/float64(max(cmds, 1)))
	return b.String()
}
