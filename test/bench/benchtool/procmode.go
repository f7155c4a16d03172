package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The process metrics mode (-mode procmetrics, `MODE=procmetrics make
// bench`): what reading the resource usage of traced processes costs the
// agent. procTraced idle Go processes (goapp linger) are traced; the agent
// runs with process_metrics.enabled off and on, rounds in ABBA order, each
// measuring the agent's CPU over procWindow with the interval at
// procInterval (the cost of a read does not depend on the interval; a short
// one gives many intervals per round). The figure is the on − off
// difference of the medians, per interval, per 100 processes.

const (
	procTraced   = 100
	procInterval = time.Second
	procWindow   = 20 * time.Second
)

type procRound struct {
	n       int
	on      bool
	cpuSec  float64 // agent CPU over the window (sum of its threads' schedstat)
	reads   float64 // periscope_process_metrics_reads_total over the window
	selfCPU float64 // periscope_process_metrics_cpu_seconds_total over the window
	series  int     // process_* workload series on /metrics
	load1   float64
}

func procCfgName(on bool) string {
	if on {
		return "process metrics on"
	}
	return "process metrics off"
}

// threadsCPU is the CPU time of every thread of pid, from schedstat (ns,
// unlike stat's 10 ms ticks).
func threadsCPU(pid int) (float64, error) {
	dirs, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(dirs) == 0 {
		return 0, fmt.Errorf("schedstat of %d: %v", pid, err)
	}
	var ns float64
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // a thread that exited
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			v, _ := strconv.ParseFloat(f[0], 64)
			ns += v
		}
	}
	return ns / 1e9, nil
}

func runProcMode(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (loads eBPF programs)")
	}
	if o.goapp == "" {
		return errors.New("-goapp is required in procmetrics mode")
	}
	start := time.Now()
	load0 := loadAvg()
	pidDir := filepath.Join(o.work, "pids")
	if err := os.MkdirAll(pidDir, 0o755); err != nil {
		return err
	}
	cfgs := map[bool]string{false: filepath.Join(o.work, "proc-off.yaml"), true: filepath.Join(o.work, "proc-on.yaml")}
	if err := writeAgentConfigs(cfgs, func(on bool) string {
		return fmt.Sprintf("process_metrics:\n  enabled: %v\n  interval: %s\n", on, procInterval)
	}); err != nil {
		return err
	}
	pids, stop, err := startLingerers(o.goapp, procTraced)
	defer stop()
	if err != nil {
		return err
	}
	logf("%d traced processes (%s linger)", len(pids), o.goapp)
	var rounds []*procRound
	for i := 0; i < 2*o.rounds; i++ {
		r := &procRound{n: i + 1, on: i%4 == 1 || i%4 == 2} // off on on off ...
		if err := measureProcRound(ctx, o, pids, pidDir, cfgs[r.on], r); err != nil {
			return fmt.Errorf("round %d (%s): %w", r.n, procCfgName(r.on), err)
		}
		rounds = append(rounds, r)
		logf("round %d %-19s agent CPU %.1f ms over %s, %0.f reads taking %.1f ms of CPU, %d series, load %.2f",
			r.n, procCfgName(r.on), 1000*r.cpuSec, procWindow, r.reads, 1000*r.selfCPU, r.series, r.load1)
	}
	md := procReport(o, rounds, start, load0, loadAvg())
	fmt.Println(md)
	if err := writeFileAtomic(o.out, []byte(md)); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	logf("wrote %s", o.out)
	return nil
}

// startLingerers starts n idle goapp processes; stop kills them.
func startLingerers(goapp string, n int) ([]int, func(), error) {
	var cmds []*exec.Cmd
	stop := func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
	var pids []int
	for range n {
		c := exec.Command(goapp, "linger", "1h")
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			return nil, stop, fmt.Errorf("start %s linger: %w", goapp, err)
		}
		cmds = append(cmds, c)
		pids = append(pids, c.Process.Pid)
	}
	return pids, stop, nil
}

func measureProcRound(ctx context.Context, o options, pids []int, pidDir, cfg string, r *procRound) (err error) {
	a, err := startAgent(o.agentCmd(), o.goapp, o.work, pidDir, r.n, "--config", cfg)
	if err != nil {
		return err
	}
	defer func() {
		if serr := a.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	if err := a.waitReady(ctx, pids, 60*time.Second); err != nil {
		return err
	}
	time.Sleep(2 * procInterval) // past the start's first reads
	readsOf := func() (float64, float64, error) {
		m, err := a.metrics()
		if err != nil {
			return 0, 0, err
		}
		v, _ := m.sum("periscope_process_metrics_reads_total", nil)
		c, _ := m.sum("periscope_process_metrics_cpu_seconds_total", nil)
		r.series = m.countSeries("process_threads")
		return v, c, nil
	}
	reads0, self0, err := readsOf()
	if err != nil {
		return err
	}
	cpu0, err := threadsCPU(a.pid())
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(procWindow):
	}
	cpu1, err := threadsCPU(a.pid())
	if err != nil {
		return err
	}
	r.cpuSec = cpu1 - cpu0
	reads1, self1, err := readsOf()
	if err != nil {
		return err
	}
	r.reads, r.selfCPU = reads1-reads0, self1-self0
	r.load1 = load1()
	return nil
}

func procReport(o options, rounds []*procRound, start time.Time, load0, load1 string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Resource metrics of traced processes: cost (`MODE=procmetrics make bench`)\n\n")
	fmt.Fprintf(&b, "Commit %s, %s, %d CPUs, load before %s, after %s, %s in all.\n\n", o.commit, time.Now().UTC().Format("2006-01-02 15:04 UTC"), numCPU(), load0, load1, time.Since(start).Round(time.Second))
	fmt.Fprintf(&b, "%d idle traced Go processes (`goapp linger`, selected with `--include-exe`); the agent with `process_metrics.enabled` off and on, rounds in ABBA order, interval %s, agent CPU (all threads' `schedstat`) over %s per round.\n\n", procTraced, procInterval, procWindow)
	b.WriteString("| round | configuration | agent CPU over the window | reads | CPU of the reads (self-metric) | workload series (`process_threads`) |\n|--:|---|--:|--:|--:|--:|\n")
	var off, on []float64
	var reads, self []float64
	for _, r := range rounds {
		fmt.Fprintf(&b, "| %d | %s | %.1f ms | %.0f | %.1f ms | %d |\n", r.n, procCfgName(r.on), 1000*r.cpuSec, r.reads, 1000*r.selfCPU, r.series)
		if r.on {
			on = append(on, r.cpuSec)
			reads = append(reads, r.reads)
			self = append(self, r.selfCPU)
		} else {
			off = append(off, r.cpuSec)
		}
	}
	intervals := procWindow.Seconds() / procInterval.Seconds()
	diff := median(on) - median(off)
	perInterval := 1000 * diff / intervals * 100 / procTraced
	spread := func(v []float64) float64 {
		lo, hi := minMax(v)
		return 1000 * (hi - lo)
	}
	fmt.Fprintf(&b, "\nMedians: off %.1f ms, on %.1f ms over %s (spread off %.1f ms, on %.1f ms); reads per on round %.0f (%d processes × %.0f intervals expected).\n\n",
		1000*median(off), 1000*median(on), procWindow, spread(off), spread(on), median(reads), procTraced, intervals)
	fmt.Fprintf(&b, "**Agent CPU per 100 traced processes per interval: %.2f ms** (on − off medians ÷ %.0f intervals × 100/%d).", perInterval, intervals, procTraced)
	if d := 1000 * diff; d < spread(off) || d < spread(on) {
		b.WriteString(" The difference is within the rounds' spread: read it as an upper bound of the order of magnitude, not a precise figure.")
	}
	fmt.Fprintf(&b, " At the default interval (15 s) that is %.3f%% of one core per 100 traced processes.\n", perInterval/15000*100)
	lo, hi := minMax(self)
	selfPer := 1000 * median(self) / intervals * 100 / procTraced
	fmt.Fprintf(&b, "\nThe agent's own count of the CPU its reads took (`periscope_process_metrics_cpu_seconds_total`, the reading thread's CPU time around each interval's reads; not the garbage collection they cause later) has no baseline to subtract and so far less noise: **%.2f ms per 100 traced processes per interval** (median of the on rounds; %.1f–%.1f ms per round).\n",
		selfPer, 1000*lo, 1000*hi)
	return b.String()
}
