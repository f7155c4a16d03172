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
// costs. A redis-server on loopback (no persistence) under redis-benchmark
// -t get,set, at pipeline depth 1 then 16, each by the A/B engine
// (abround.go): ABBA rounds without and with the agent (tracing
// redis-server, --include-exe), completeness as SERVER spans received by
// the counting OTLP receiver ÷ commands the server counted.

// redisDepths are the pipeline depths (redis-benchmark -P), a target each.
var redisDepths = []int{1, 16}

func runRedisMode(ctx context.Context, o options) error {
	for _, t := range []string{"redis-server", "redis-benchmark", "redis-cli"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s not found (scripts/deps.sh installs redis-server and redis-tools)", t)
		}
	}
	h, env, closer, err := startAB(o)
	if err != nil {
		return err
	}
	defer closer.Close()
	srv, port, err := startRedis(o.work, env.pidDir)
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
	var results []*abResult
	for _, p := range redisDepths {
		t := abTarget{
			name:     fmt.Sprintf("redis-server, -P %d", p),
			exe:      bin,
			load:     redisLoad(port, p, o.connections),
			loadDesc: fmt.Sprintf("`redis-benchmark -t get,set -P %d -n %d -c %d` repeated for the round's duration", p, redisRunN*p, o.connections),
			pids:     func() []int { return []int{srv.Process.Pid} },
			served:   func() (uint64, error) { return redisCommands(port) },
		}
		res, err := runAB(ctx, env, t)
		if err != nil {
			return fmt.Errorf("-P %d: %w", p, err)
		}
		results = append(results, res)
	}
	h.title = "Redis benchmark: redis-server without and with the agent"
	h.mode = "redis"
	h.target = fmt.Sprintf("redis-server (%s), loopback, no persistence, %d clients, `-t get,set` at pipeline depths 1 and 16; commands counted by the server's `INFO stats` total_commands_processed (redis-benchmark's CONFIG GETs and the INFO itself included, each a span too)", redisVersion(), o.connections)
	h.agentSelects = "the redis-server executable (redis-benchmark is not traced)"
	h.targets = abTargets{throughputPct: 85, completenessPct: 100}
	return h.write(results)
}

// redisRunN is the -n of one redis-benchmark run at depth 1 (times the
// depth at larger ones): runs are repeated for a round's duration.
const redisRunN = 20_000

// redisLoad returns the load of a target: redis-benchmark at depth p
// repeated for d, in wrkResult's terms (requests: SETs and GETs).
func redisLoad(port, p, clients int) func(ctx context.Context, d time.Duration) (wrkResult, error) {
	return func(ctx context.Context, d time.Duration) (wrkResult, error) {
		var res wrkResult
		t0 := time.Now()
		for time.Since(t0) < d {
			if _, err := redisBenchmark(ctx, port, p, redisRunN*p, clients); err != nil {
				return res, err
			}
			res.requests += 2 * uint64(redisRunN*p)
		}
		res.seconds = time.Since(t0).Seconds()
		res.rps = float64(res.requests) / res.seconds
		return res, nil
	}
}

// redisVersion is redis-server's version, as it says it.
func redisVersion() string {
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		return "unknown version"
	}
	f := strings.Fields(string(out))
	for _, w := range f {
		if v, ok := strings.CutPrefix(w, "v="); ok {
			return "v" + v
		}
	}
	return strings.TrimSpace(string(out))
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
