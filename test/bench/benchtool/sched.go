package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// schedCounts are the scheduler's counts of a process, summed over its
// threads (/proc/PID/task/TID/sched), and its read- and write-family
// syscalls (/proc/PID/io: syscr, syscw; read, readv, write, writev... on
// sockets too, not recvmsg or epoll), read without tracing any syscall.
type schedCounts struct {
	voluntary, involuntary, migrations uint64
	syscr, syscw                       uint64
}

func (c schedCounts) sub(d schedCounts) schedCounts {
	return schedCounts{c.voluntary - min(c.voluntary, d.voluntary), c.involuntary - min(c.involuntary, d.involuntary), c.migrations - min(c.migrations, d.migrations),
		c.syscr - min(c.syscr, d.syscr), c.syscw - min(c.syscw, d.syscw)}
}

func (c schedCounts) add(d schedCounts) schedCounts {
	return schedCounts{c.voluntary + d.voluntary, c.involuntary + d.involuntary, c.migrations + d.migrations, c.syscr + d.syscr, c.syscw + d.syscw}
}

// readSched sums the sched counts of every thread of pids, and their
// processes' syscall counts. A thread that exits between two readings
// takes its scheduler counts with it.
func readSched(pids []int) schedCounts {
	var c schedCounts
	for _, pid := range pids {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
			c = c.add(parseIO(b))
		}
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/sched", pid))
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err == nil {
				c = c.add(parseSched(b))
			}
		}
	}
	return c
}

func parseSched(b []byte) schedCounts {
	var c schedCounts
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch strings.TrimSpace(k) {
		case "se.nr_migrations":
			c.migrations = n
		case "nr_voluntary_switches":
			c.voluntary = n
		case "nr_involuntary_switches":
			c.involuntary = n
		}
	}
	return c
}

// parseIO takes syscr and syscw from /proc/PID/io.
func parseIO(b []byte) schedCounts {
	var c schedCounts
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "syscr":
			c.syscr = n
		case "syscw":
			c.syscw = n
		}
	}
	return c
}

// cpuTicksOf is utime+stime summed over pids.
func cpuTicksOf(pids []int) (uint64, error) {
	var t uint64
	for _, pid := range pids {
		n, err := cpuTicks(pid)
		if err != nil {
			return 0, err
		}
		t += n
	}
	return t, nil
}

// sysCPU is the machine's CPU time from /proc/stat, in clock ticks.
type sysCPU struct{ busy, irq, softirq, total uint64 }

func readSysCPU() sysCPU {
	var s sysCPU
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return s
	}
	v := make([]uint64, len(f)-1)
	for i := range v {
		v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
	}
	// user nice system idle iowait irq softirq steal ...
	for i, x := range v {
		if i >= 8 {
			break // guest time is counted in user already
		}
		s.total += x
		if i != 3 && i != 4 {
			s.busy += x
		}
	}
	s.irq, s.softirq = v[5], v[6]
	return s
}

func (s sysCPU) sub(t sysCPU) sysCPU {
	return sysCPU{s.busy - t.busy, s.irq - t.irq, s.softirq - t.softirq, s.total - t.total}
}

// perfEvents are the tracepoint counts perf stat takes in the
// application's context over a round.
type perfEvents struct {
	wakeAgent uint64 // sched_waking of a thread named periscope: ring-buffer wake-ups of the agent
	wakeAll   uint64 // every sched_waking the application did
	irqWork   uint64 // irq_work interrupts (how BPF ring buffers deliver their wake-ups)
	ok        bool
}

// perfStat counts, in the context of pids only, over d: the wake-ups the
// application makes (of any thread, and of threads named periscope: the
// agent's reader, woken through the ring buffer) and the irq_work
// interrupts that deliver ring-buffer wake-ups. It runs `perf stat` in its
// own process group; the result arrives on the channel when d is over.
func perfStat(ctx context.Context, pids []int, d time.Duration) <-chan perfEvents {
	out := make(chan perfEvents, 1)
	ids := make([]string, len(pids))
	for i, p := range pids {
		ids[i] = strconv.Itoa(p)
	}
	args := []string{"stat", "-x", ",", "-p", strings.Join(ids, ","),
		"-e", "sched:sched_waking", "--filter", `comm == "periscope"`,
		"-e", "sched:sched_waking", "-e", "irq_vectors:irq_work_entry",
		"--", "sleep", strconv.FormatFloat(d.Seconds(), 'f', 1, 64)}
	cmd := exec.CommandContext(ctx, "perf", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	go func() {
		b, err := cmd.CombinedOutput()
		if err != nil {
			logf("perf stat: %v: %s", err, strings.TrimSpace(string(b)))
			out <- perfEvents{}
			return
		}
		out <- parsePerfStat(string(b))
	}()
	return out
}

// parsePerfStat reads `perf stat -x ,` lines: value,unit,event,...; the
// events come in the order they were given.
func parsePerfStat(s string) perfEvents {
	var vals []uint64
	for _, line := range strings.Split(s, "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 || !strings.Contains(f[2], ":") {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(f[0]), 10, 64)
		if err != nil {
			n = 0 // "<not counted>"
		}
		vals = append(vals, n)
	}
	if len(vals) != 3 {
		return perfEvents{}
	}
	return perfEvents{wakeAgent: vals[0], wakeAll: vals[1], irqWork: vals[2], ok: true}
}
