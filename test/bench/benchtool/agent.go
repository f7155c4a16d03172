package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// agent is one run of `periscope run` selecting nginx only.
type agent struct {
	bin     string
	addr    string
	logPath string
	pidFile string
	cmd     *exec.Cmd
	exited  chan struct{}
	progs   map[uint32]bool // BPF programs the agent holds
}

// agentCmd is how the benchmark runs the agent: its binary and the
// environment added to ours (the OTLP endpoint of the counting receiver,
// PERISCOPE_PPROF).
type agentCmd struct {
	bin string
	env []string
	// wrap runs the agent through a command (`ip netns exec NS`, which
	// execs it: same PID) and host is its /metrics address ("127.0.0.1"
	// when empty): the linking mode.
	wrap []string
	host string
}

// startAgent starts the agent selecting the executable at path exe only;
// extra are more arguments of `periscope run`.
func startAgent(ac agentCmd, exe, work, pidDir string, n int, extra ...string) (*agent, error) {
	bin := ac.bin
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("free port: %w", err)
	}
	a := &agent{
		bin:     bin,
		addr:    fmt.Sprintf("%s:%d", orLoopback(ac.host), port),
		logPath: filepath.Join(work, fmt.Sprintf("agent-%d.log", n)),
		pidFile: filepath.Join(pidDir, "agent"),
	}
	log, err := os.Create(a.logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	argv := append(append(slices.Clone(ac.wrap), bin, "run", "--console=off", "--include-exe", exe, "--metrics-addr", a.addr), extra...)
	a.cmd = exec.Command(argv[0], argv[1:]...)
	a.cmd.Stdout, a.cmd.Stderr = log, log
	a.cmd.Env = append(withoutOTEL(os.Environ()), ac.env...)
	// Own process group: a Ctrl-C reaches us, and we stop the agent ourselves
	// (it detaches its probes) after wrk.
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	_ = os.WriteFile(a.pidFile, []byte(strconv.Itoa(a.cmd.Process.Pid)+"\n"), 0o644)
	a.exited = make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(a.exited) }()
	return a, nil
}

func (a *agent) pid() int { return a.cmd.Process.Pid }

func (a *agent) logTail() string {
	b, _ := os.ReadFile(a.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return "agent log (" + a.logPath + ", last lines):\n  " + strings.Join(lines, "\n  ")
}

type agentStatus struct {
	Ready     bool `json:"ready"`
	Processes []struct {
		PID uint32 `json:"pid"`
	} `json:"processes"`
}

// waitReady polls /status until the agent is ready and follows every nginx
// worker, then records the BPF programs the agent holds.
func (a *agent) waitReady(ctx context.Context, workers []int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := http.Client{Timeout: 2 * time.Second}
	var last string
poll:
	for {
		select {
		case <-a.exited:
			return fmt.Errorf("agent exited during start (%s)\n%s", a.cmd.ProcessState, a.logTail())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent not ready with nginx workers %v after %s (last /status: %s)\n%s", workers, timeout, last, a.logTail())
		}
		resp, err := c.Get("http://" + a.addr + "/status")
		if err != nil {
			last = err.Error()
			time.Sleep(100 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = strings.Join(strings.Fields(string(b)), " ")
		var st agentStatus
		if err := json.Unmarshal(b, &st); err == nil && st.Ready {
			have := map[int]bool{}
			for _, p := range st.Processes {
				have[int(p.PID)] = true
			}
			all := true // no workers: ready is enough
			for _, w := range workers {
				all = all && have[w]
			}
			if all {
				break poll
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	ids, err := bpfProgIDs(a.pid())
	if err != nil {
		return fmt.Errorf("agent's BPF programs: %w", err)
	}
	a.progs = ids
	return nil
}

// metrics scrapes /metrics.
func (a *agent) metrics() (promText, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + a.addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape agent metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape agent metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape agent metrics: %s", resp.Status)
	}
	return parsePromText(string(b)), nil
}

// stop sends SIGTERM (the agent detaches every probe, flushes and exits 0;
// SIGINT would do the same, but a shell may have started us with SIGINT
// ignored) and waits.
func (a *agent) stop() error {
	if a == nil || a.cmd == nil || a.cmd.Process == nil {
		return nil
	}
	defer os.Remove(a.pidFile)
	select {
	case <-a.exited:
		return fmt.Errorf("agent had exited (%s)", a.cmd.ProcessState)
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
		if !a.cmd.ProcessState.Success() {
			return fmt.Errorf("agent stopped with %s\n%s", a.cmd.ProcessState, a.logTail())
		}
		return nil
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-a.pid(), syscall.SIGKILL)
		<-a.exited
		return fmt.Errorf("agent did not stop within 15s of SIGTERM; killed\n%s", a.logTail())
	}
}

// promText is a parsed Prometheus text exposition: one sample per line.
type promText []promSample

type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

func parsePromText(s string) promText {
	var out promText
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		var smp promSample
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
			smp.name = line[:i]
			end := strings.LastIndexByte(line, '}')
			if end < i {
				continue
			}
			smp.labels = parseLabels(line[i+1 : end])
			rest = strings.TrimSpace(line[end+1:])
		} else {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			smp.name, rest = f[0], strings.Join(f[1:], " ")
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		smp.value = v
		out = append(out, smp)
	}
	return out
}

func parseLabels(s string) map[string]string {
	m := make(map[string]string)
	for len(s) > 0 {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			break
		}
		key := strings.TrimSpace(strings.TrimLeft(s[:eq], ","))
		var val strings.Builder
		i := eq + 2
		for ; i < len(s); i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[i])
				}
				continue
			}
			if s[i] == '"' {
				break
			}
			val.WriteByte(s[i])
		}
		m[key] = val.String()
		if i+1 >= len(s) {
			break
		}
		s = s[i+1:]
	}
	return m
}

// sum adds the samples of name whose labels include match.
func (p promText) sum(name string, match map[string]string) (float64, bool) {
	var total float64
	found := false
	for _, s := range p {
		if s.name != name {
			continue
		}
		ok := true
		for k, v := range match {
			if s.labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			total += s.value
			found = true
		}
	}
	return total, found
}

// withoutOTEL drops the OTEL_* variables of env: the agent exports where
// the benchmark says, not where the caller's environment points.
func withoutOTEL(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "OTEL_") {
			out = append(out, kv)
		}
	}
	return out
}
