package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Main runs the tests of a package that uses BuildAgent or BuildGo and removes the
// binaries built for this run afterwards. Use it from TestMain:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
//
// Without it the tests work the same, but the binary stays in the temporary directory.
func Main(m *testing.M) {
	removeStaleAgentDirs()
	code := m.Run()
	_ = os.RemoveAll(agentBuildDir(os.Getpid()))
	os.Exit(code)
}

// agentBuildDir is where BuildGo puts the binaries for the test process pid. The
// path is derived from the PID, so the "build once per test binary run" cache
// needs no package state: the file system is the cache.
func agentBuildDir(pid int) string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("periscope-e2e-agent-%d", pid))
}

func removeStaleAgentDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "periscope-e2e-agent-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "periscope-e2e-agent-"))
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		_ = os.RemoveAll(d)
	}
}

// GoTool returns the path of the go command (PATH, then /usr/local/go, then the
// GOROOT this test was built with: sudo may reset PATH).
func GoTool(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/local/go/bin/go", filepath.Join(runtime.GOROOT(), "bin", "go")} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("the go command is not in PATH (%s) nor in /usr/local/go/bin", os.Getenv("PATH"))
	return ""
}

// BuildAgent builds ./cmd/periscope once per test binary run (later calls return the
// same binary) and returns its path.
func BuildAgent(t testing.TB) string {
	t.Helper()
	return BuildGo(t, "./cmd/periscope", "periscope")
}

// BuildGo builds the main package pkg (a path relative to the repository root, such
// as "./cmd/periscope") into a binary called name, once per test binary run: later
// calls with the same name return the binary built first. Parallel callers wait for
// one build.
func BuildGo(t testing.TB, pkg, name string) string {
	t.Helper()
	if name == "" || strings.ContainsAny(name, "/\\") || strings.HasPrefix(name, ".") {
		t.Fatalf("BuildGo: bad binary name %q", name)
	}
	dir := agentBuildDir(os.Getpid())
	bin := filepath.Join(dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("BuildGo: %v", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("BuildGo: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("BuildGo: flock: %v", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin
	}
	root := RepoRoot(t)
	tmp := bin + ".tmp"
	start := time.Now()
	cmd := exec.Command(GoTool(t), "build", "-o", tmp, pkg)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("BuildGo: go build -o %s %s (in %s): %v\n%s", tmp, pkg, root, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatalf("BuildGo: %v", err)
	}
	t.Logf("built %s from %s in %v", bin, pkg, time.Since(start).Round(time.Millisecond))
	return bin
}

// Agent is a running agent process started by StartAgent.
type Agent struct {
	Bin         string
	Args        []string // as passed to the process, --metrics-addr included
	MetricsAddr string   // host:port of /status and /metrics
	PID         int
	StdoutPath  string
	StderrPath  string

	t        testing.TB
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	exitCode int           // valid once done is closed
	stopped  chan struct{} // closed when Stop has finished
	stopCode int
}

// AgentStatus is the JSON document served at GET /status.
type AgentStatus struct {
	Ready      bool             `json:"ready"`
	Processes  []AgentProcess   `json:"processes"`
	Collectors []AgentCollector `json:"collectors"`
	Syscalls   string           `json:"syscalls"` // the attach path of the agent's syscall programs
}

// AgentCollector is one running collector in AgentStatus.
type AgentCollector struct {
	Name       string `json:"name"`
	AttachPath string `json:"attach_path"`
}

// AgentProcess is one instrumented process in AgentStatus.
type AgentProcess struct {
	PID        int      `json:"pid"`
	Exe        string   `json:"exe"`
	Collectors []string `json:"collectors"`
}

// StartAgent starts bin with args and extra environment entries env (added to the
// test's environment). When args have no --metrics-addr, "--metrics-addr
// 127.0.0.1:<free port>" is appended. stdout and stderr go to files in t.TempDir()
// that are copied into the test log when the test fails. The agent is stopped in
// t.Cleanup when the test has not stopped it.
func StartAgent(t testing.TB, bin string, args []string, env []string) *Agent {
	t.Helper()
	dir := t.TempDir()
	a := &Agent{
		Bin:        bin,
		StdoutPath: filepath.Join(dir, "agent.stdout"),
		StderrPath: filepath.Join(dir, "agent.stderr"),
		t:          t,
		done:       make(chan struct{}),
		stopped:    make(chan struct{}),
	}
	a.Args = append([]string(nil), args...)
	a.MetricsAddr = flagValue(args, "metrics-addr")
	if a.MetricsAddr == "" {
		a.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		a.Args = append(a.Args, "--metrics-addr", a.MetricsAddr)
	}
	if strings.HasPrefix(a.MetricsAddr, ":") {
		a.MetricsAddr = "127.0.0.1" + a.MetricsAddr
	}

	stdout, err := os.Create(a.StdoutPath)
	if err != nil {
		t.Fatalf("StartAgent: %v", err)
	}
	defer stdout.Close()
	stderr, err := os.Create(a.StderrPath)
	if err != nil {
		t.Fatalf("StartAgent: %v", err)
	}
	defer stderr.Close()

	argv := append([]string{bin}, a.Args...)
	if caps, ok := os.LookupEnv(CapsEnv); ok {
		argv = append(setprivArgs(LookTool(t, "setpriv"), caps), argv...)
		t.Logf("%s=%s: the agent runs with exactly these capabilities", CapsEnv, caps)
	}
	a.cmd = exec.Command(argv[0], argv[1:]...)
	a.cmd.Env = append(os.Environ(), env...)
	a.cmd.Stdout, a.cmd.Stderr = stdout, stderr
	// If the test binary dies, the agent must not outlive it.
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("---- agent %s %s ----", bin, strings.Join(a.Args, " "))
		if dir := os.Getenv(KeepEnv); dir != "" {
			keepOutput(t, dir, a)
		}
		t.Logf("---- agent stdout (%s) ----\n%s", a.StdoutPath, tail(a.StdoutPath, 64<<10))
		t.Logf("---- agent stderr (%s) ----\n%s", a.StderrPath, tail(a.StderrPath, 64<<10))
	})
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("StartAgent: start %s: %v", bin, err)
	}
	a.PID = a.cmd.Process.Pid
	go func() {
		_ = a.cmd.Wait()
		a.exitCode = a.cmd.ProcessState.ExitCode()
		close(a.done)
	}()
	// Registered after the log dump, so it runs before it (cleanups run LIFO).
	t.Cleanup(func() {
		select {
		case <-a.stopped:
			return
		default:
		}
		if code := a.Stop(); code != 0 {
			t.Logf("agent (stopped in cleanup) exited with code %d", code)
		}
	})
	t.Logf("agent started: pid %d, %s %s", a.PID, bin, strings.Join(a.Args, " "))
	return a
}

// CapsEnv names the environment variable that makes StartAgent run the agent as
// root with exactly the listed capabilities ("bpf,perfmon,sys_ptrace"; "" for
// none) in its effective, permitted, inheritable, ambient and bounding sets, by
// way of setpriv(1). Unset, the agent gets the test's own privileges.
const CapsEnv = "PERISCOPE_E2E_CAPS"

// KeepEnv names a directory where a failed test's agent output is copied
// whole (the log shows its last 64 KiB only): <test>-<pid>.stdout and
// .stderr, for a span-by-span look after the test's files are gone.
const KeepEnv = "PERISCOPE_E2E_KEEP"

// keepOutput copies agent a's stdout and stderr into dir, which it creates
// when missing (CI names a fresh directory).
func keepOutput(t testing.TB, dir string, a *Agent) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Logf("%s: %v", KeepEnv, err)
		return
	}
	base := filepath.Join(dir, fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "_"), a.PID))
	for src, dst := range map[string]string{a.StdoutPath: base + ".stdout", a.StderrPath: base + ".stderr"} {
		b, err := os.ReadFile(src)
		if err == nil {
			err = os.WriteFile(dst, b, 0o600)
		}
		if err != nil {
			t.Logf("%s: keep %s: %v", KeepEnv, src, err)
			continue
		}
		t.Logf("%s: agent output kept in %s", KeepEnv, dst)
	}
}

// setprivArgs returns the setpriv command line that runs a program as uid and
// gid 0 with only the capabilities caps (comma-separated, "cap_" prefix and
// case optional).
func setprivArgs(setpriv, caps string) []string {
	set := "-all"
	for _, c := range strings.Split(caps, ",") {
		c = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(c)), "cap_")
		if c != "" {
			set += ",+" + c
		}
	}
	return []string{setpriv, "--reuid=0", "--regid=0", "--clear-groups",
		"--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set, "--"}
}

// flagValue finds --name VALUE, --name=VALUE, -name VALUE or -name=VALUE in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		for _, p := range []string{"--" + name, "-" + name} {
			if a == p && i+1 < len(args) {
				return args[i+1]
			}
			if strings.HasPrefix(a, p+"=") {
				return strings.TrimPrefix(a, p+"=")
			}
		}
	}
	return ""
}

// Done is closed when the agent process has exited.
func (a *Agent) Done() <-chan struct{} { return a.done }

// Stop sends SIGINT, waits up to 15 s for the agent to exit and returns its exit
// code: 0 for a clean shutdown, -1 when it died of a signal or had to be killed
// (after 15 s it gets SIGQUIT, which makes a Go program print all goroutine stacks
// to stderr, then SIGKILL). Safe to call more than once: later calls return the
// first result.
func (a *Agent) Stop() int {
	select {
	case <-a.stopped:
		return a.stopCode
	default:
	}
	defer close(a.stopped)
	select {
	case <-a.done:
		a.stopCode = a.exitCode
		a.t.Logf("agent pid %d had already exited with code %d before Stop", a.PID, a.exitCode)
		return a.stopCode
	default:
	}
	start := time.Now()
	_ = a.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-a.done:
		a.stopCode = a.exitCode
		a.t.Logf("agent pid %d exited with code %d %v after SIGINT", a.PID, a.exitCode, time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		a.t.Errorf("agent pid %d did not exit within 15 s of SIGINT: sending SIGQUIT (goroutine dump in stderr) and SIGKILL", a.PID)
		_ = a.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-a.done:
		case <-time.After(3 * time.Second):
			_ = a.cmd.Process.Kill()
			<-a.done
		}
		a.stopCode = -1
	}
	return a.stopCode
}

// Logs returns the agent's stderr followed by its stdout, as written so far.
func (a *Agent) Logs() string {
	return tail(a.StderrPath, 1<<20) + "\n" + tail(a.StdoutPath, 1<<20)
}

func (a *Agent) exitedError(what string) error {
	return fmt.Errorf("agent exited with code %d %s; stderr:\n%s", a.exitCode, what, tail(a.StderrPath, 8<<10))
}

func (a *Agent) get(ctx context.Context, path string, accept string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.MetricsAddr+path, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// Status fetches and decodes GET /status.
func (a *Agent) Status(ctx context.Context) (*AgentStatus, error) {
	body, err := a.get(ctx, "/status", "application/json")
	if err != nil {
		return nil, err
	}
	var st AgentStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("decode /status %q: %w", body, err)
	}
	return &st, nil
}

// poll calls check every 100 ms until it reports done, ctx ends or the agent exits.
func (a *Agent) poll(ctx context.Context, what string, check func(*AgentStatus) bool) error {
	var last string
	for {
		st, err := a.Status(ctx)
		if err == nil {
			if check(st) {
				return nil
			}
			b, _ := json.Marshal(st)
			last = string(b)
		} else {
			last = err.Error()
		}
		select {
		case <-a.done:
			return a.exitedError("while waiting " + what)
		case <-ctx.Done():
			return fmt.Errorf("waiting %s: %w; last /status: %s", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitReady polls /status until it reports ready.
func (a *Agent) WaitReady(ctx context.Context) error {
	return a.poll(ctx, "for the agent to be ready", func(st *AgentStatus) bool { return st.Ready })
}

// WaitInstrumented polls /status until pid is among the instrumented processes and
// returns its entry. The agent may still list a new process as the fork of its
// parent, with the parent's probes, until it has handled the exec: the entry
// must name the program /proc shows at the same poll (a wrapper such as env
// execs again before it settles).
func (a *Agent) WaitInstrumented(ctx context.Context, pid int) (AgentProcess, error) {
	var found AgentProcess
	err := a.poll(ctx, fmt.Sprintf("for pid %d to be instrumented", pid), func(st *AgentStatus) bool {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			return false
		}
		exe = strings.TrimSuffix(exe, " (deleted)") // as the agent names it
		for _, p := range st.Processes {
			if p.PID == pid && p.Exe == exe {
				found = p
				return true
			}
		}
		return false
	})
	return found, err
}

// MetricFamilies scrapes /metrics (Prometheus text format) and parses it.
func (a *Agent) MetricFamilies(t testing.TB) map[string]*dto.MetricFamily {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body, err := a.get(ctx, "/metrics", "text/plain;version=0.0.4")
	if err != nil {
		select {
		case <-a.done:
			t.Fatalf("scrape /metrics: %v (%v)", err, a.exitedError(""))
		default:
		}
		t.Fatalf("scrape /metrics: %v", err)
	}
	fams, err := ParseMetrics(body)
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// ParseMetrics parses the Prometheus text exposition format.
func ParseMetrics(text []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(string(text)))
}

// Metric scrapes /metrics and returns the sum of the values of the series of name
// whose labels include all of labels (nil matches every series). name is a
// counter, gauge or untyped family, or NAME_count / NAME_sum of a histogram or
// summary, or NAME_bucket of a histogram (then labels must hold "le", e.g.
// "0.25" or "+Inf"). A family that is absent, or no matching series, sums to 0.
func (a *Agent) Metric(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	v, err := SumMetric(a.MetricFamilies(t), name, labels)
	if err != nil {
		t.Fatalf("Metric(%s, %v): %v", name, labels, err)
	}
	return v
}

// SumMetric is Metric on already parsed families.
func SumMetric(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, error) {
	if f, ok := fams[name]; ok {
		switch f.GetType() {
		case dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_UNTYPED:
			return sumSeries(f, labels, func(m *dto.Metric) (float64, bool) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue(), true
				case m.Gauge != nil:
					return m.Gauge.GetValue(), true
				case m.Untyped != nil:
					return m.Untyped.GetValue(), true
				}
				return 0, false
			}), nil
		default:
			return 0, fmt.Errorf("%s is a %s: ask for %s_count, %s_sum or %s_bucket", name, f.GetType(), name, name, name)
		}
	}
	for _, suffix := range []string{"_count", "_sum", "_bucket"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		f, ok := fams[base]
		if !ok {
			break
		}
		switch suffix {
		case "_count":
			return sumSeries(f, labels, func(m *dto.Metric) (float64, bool) {
				switch {
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount()), true
				case m.Summary != nil:
					return float64(m.Summary.GetSampleCount()), true
				}
				return 0, false
			}), nil
		case "_sum":
			return sumSeries(f, labels, func(m *dto.Metric) (float64, bool) {
				switch {
				case m.Histogram != nil:
					return m.Histogram.GetSampleSum(), true
				case m.Summary != nil:
					return m.Summary.GetSampleSum(), true
				}
				return 0, false
			}), nil
		case "_bucket":
			le, ok := labels["le"]
			if !ok {
				return 0, fmt.Errorf("%s needs an \"le\" label", name)
			}
			bound, err := strconv.ParseFloat(le, 64)
			if err != nil {
				return 0, fmt.Errorf("bad le %q: %v", le, err)
			}
			rest := make(map[string]string, len(labels))
			for k, v := range labels {
				if k != "le" {
					rest[k] = v
				}
			}
			return sumSeries(f, rest, func(m *dto.Metric) (float64, bool) {
				if m.Histogram == nil {
					return 0, false
				}
				if math.IsInf(bound, 1) {
					return float64(m.Histogram.GetSampleCount()), true
				}
				for _, b := range m.Histogram.GetBucket() {
					if b.GetUpperBound() == bound {
						return float64(b.GetCumulativeCount()), true
					}
				}
				return 0, false
			}), nil
		}
	}
	return 0, nil
}

func sumSeries(f *dto.MetricFamily, labels map[string]string, value func(*dto.Metric) (float64, bool)) float64 {
	var sum float64
	for _, m := range f.GetMetric() {
		if !labelsMatch(m, labels) {
			continue
		}
		if v, ok := value(m); ok {
			sum += v
		}
	}
	return sum
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	have := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		have[lp.GetName()] = lp.GetValue()
	}
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// MetricNames returns the sorted family names, for error messages.
func MetricNames(fams map[string]*dto.MetricFamily) []string {
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
