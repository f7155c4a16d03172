package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// The memory mode (-mode memory, `MODE=memory bash test/bench/run.sh`): the
// agent's memory and attach times with many large Go binaries with DWARF
// running when it starts. N distinct copies of a helm build (~110 MB, DWARF;
// a copy with bytes appended is another file) wait on their stdin in
// `helm registry login`; the agent starts, selecting them, and /status is
// polled until each is instrumented. Three configurations in one run: the
// agent with none of them selected (the baseline), with an empty symbol
// cache (every file analysed), and restarted on that cache. Reported per
// configuration: peak RSS (VmHWM) when all are attached, RSS after a settling
// time, and seconds from the agent's start to each copy's probes.

// memRun is one start of the agent.
type memRun struct {
	name           string
	peakKiB        uint64
	steadyKiB      uint64
	attach         []time.Duration // per copy, from the agent's start
	readyAt        time.Duration
	attachedCopies int
}

func runMemoryMode(ctx context.Context, o options) error {
	if o.helm == "" {
		return fmt.Errorf("-helm is required in memory mode (scripts/tools.sh helm builds it)")
	}
	work := filepath.Join(o.work, "memory")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	var pids []int
	var cmds []*exec.Cmd
	defer func() {
		for _, c := range cmds {
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			_ = c.Wait()
		}
	}()
	src, err := os.ReadFile(o.helm)
	if err != nil {
		return err
	}
	for i := 0; i < o.copies; i++ {
		bin := filepath.Join(work, fmt.Sprintf("helm-%d", i))
		if err := os.WriteFile(bin, append(src, fmt.Sprintf("copy %d", i)...), 0o755); err != nil {
			return err
		}
		c := exec.Command(bin, "registry", "login", "127.0.0.1:1", "-u", "x", "--password-stdin")
		r, w, err := os.Pipe() // never written: helm waits for the password
		if err != nil {
			return err
		}
		defer w.Close()
		c.Stdin = r
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			return err
		}
		r.Close()
		cmds = append(cmds, c)
		pids = append(pids, c.Process.Pid)
	}
	src = nil
	logf("%d helm copies running (%d MB each)", len(pids), fileMB(o.helm))
	cache := filepath.Join(work, "cache")
	var runs []memRun
	for _, cfg := range []struct {
		name, include string
	}{
		{"baseline (no helm selected)", "no-such-exe"},
		{"empty symbol cache", "helm-*"},
		{"restarted on that cache", "helm-*"},
	} {
		os.Setenv("PERISCOPE_SYMBOLS_CACHE_DIR", cache)
		r, err := memoryRun(ctx, o, work, cfg.name, cfg.include, pids)
		if err != nil {
			return fmt.Errorf("%s: %w", cfg.name, err)
		}
		logf("%s: peak %d MiB, steady %d MiB, %d of %d attached", r.name, r.peakKiB>>10, r.steadyKiB>>10, r.attachedCopies, len(pids))
		runs = append(runs, r)
	}
	return writeMemoryReport(o, runs)
}

func fileMB(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size() >> 20
}

// memoryRun starts the agent, waits until every copy is instrumented
// (unless none is selected), and measures.
func memoryRun(ctx context.Context, o options, work, name, include string, pids []int) (memRun, error) {
	r := memRun{name: name}
	start := time.Now()
	ag, err := startAgent(o.agentCmd(), include, work, pidDir(o), len(pids))
	if err != nil {
		return r, err
	}
	defer ag.stop()
	want := map[int]bool{}
	if include != "no-such-exe" {
		for _, p := range pids {
			want[p] = true
		}
	}
	seen := map[int]time.Duration{}
	c := http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(5 * time.Minute)
	ready := false
	for len(seen) < len(want) || !ready {
		if time.Now().After(deadline) {
			return r, fmt.Errorf("%d of %d copies instrumented after 5 min\n%s", len(seen), len(want), ag.logTail())
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-ag.exited:
			return r, fmt.Errorf("agent exited\n%s", ag.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := c.Get("http://" + ag.addr + "/status")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var st agentStatus
		if json.Unmarshal(b, &st) != nil {
			continue
		}
		if st.Ready && !ready {
			ready, r.readyAt = true, time.Since(start)
		}
		for _, p := range st.Processes {
			if want[int(p.PID)] && seen[int(p.PID)] == 0 {
				seen[int(p.PID)] = time.Since(start)
			}
		}
	}
	for _, d := range seen {
		r.attach = append(r.attach, d)
	}
	sort.Slice(r.attach, func(i, j int) bool { return r.attach[i] < r.attach[j] })
	r.attachedCopies = len(seen)
	if r.peakKiB, err = statusKiB(ag.pid(), "VmHWM"); err != nil {
		return r, err
	}
	time.Sleep(o.settle)
	if r.steadyKiB, err = statusKiB(ag.pid(), "VmRSS"); err != nil {
		return r, err
	}
	if hwm, err := statusKiB(ag.pid(), "VmHWM"); err == nil {
		r.peakKiB = hwm
	}
	return r, nil
}

func writeMemoryReport(o options, runs []memRun) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Memory with many large Go binaries (`MODE=memory`)\n\nCommit %s, %s, %d distinct copies of helm (%d MB, "+
		"with DWARF) running when the agent starts (`--include-exe helm-*`, per-process probes); steady RSS read %s "+
		"after the last copy was attached; load average at the end %s.\n\n",
		o.commit, time.Now().UTC().Format("2006-01-02 15:04 MST"), o.copies, fileMB(o.helm), o.settle, loadAvg())
	b.WriteString("| agent run | peak RSS (VmHWM) | steady RSS | ready after | copies attached | seconds from start to each copy's probes (min / median / max) |\n|---|---|---|---|---|---|\n")
	for _, r := range runs {
		att := "-"
		if len(r.attach) > 0 {
			att = fmt.Sprintf("%.2f / %.2f / %.2f", r.attach[0].Seconds(), r.attach[len(r.attach)/2].Seconds(), r.attach[len(r.attach)-1].Seconds())
		}
		fmt.Fprintf(&b, "| %s | %d MiB | %d MiB | %.2f s | %d | %s |\n", r.name, r.peakKiB>>10, r.steadyKiB>>10, r.readyAt.Seconds(), r.attachedCopies, att)
	}
	fmt.Print(b.String())
	return os.WriteFile(o.out, []byte(b.String()), 0o644)
}

// pidDir is where the pid files run.sh's cleanup reads are written.
func pidDir(o options) string {
	d := filepath.Join(o.work, "pids")
	_ = os.MkdirAll(d, 0o755)
	return d
}
