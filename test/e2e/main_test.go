// Package e2e holds the end-to-end tests: they build the agent, load its real
// eBPF programs into this kernel, drive real programs (nginx, curl, python,
// node) and assert on exactly what arrives at a real OTLP receiver. They need
// root and fail, not skip, without it.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// otlpSpan is a span as the receiver got it.
type otlpSpan = otlpreceiver.Span

func TestMain(m *testing.M) { harness.Main(m) }

// env is one running agent exporting to an in-test OTLP receiver.
type env struct {
	agent *harness.Agent
	recv  *otlpreceiver.Receiver
}

// startAgent starts the agent exporting to a fresh receiver and waits until
// it is ready.
func startAgent(t *testing.T, args ...string) *env {
	t.Helper()
	return startAgentOTLP(t, nil, args...)
}

// startAgentOTLP starts the agent exporting to a fresh receiver, with the
// extra environment extra (OTEL_METRIC_EXPORT_INTERVAL, say), and waits
// until it is ready.
func startAgentOTLP(t *testing.T, extra []string, args ...string) *env {
	t.Helper()
	recv := otlpreceiver.Start(t)
	a := startAgentEnv(t, append([]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint(),
		"OTEL_EXPORTER_OTLP_INSECURE=true",
		"OTEL_BSP_SCHEDULE_DELAY=200",
	}, extra...), args...)
	return &env{agent: a, recv: recv}
}

// startAgentEnv starts `periscope run --console=json ARGS` with the extra
// environment env and waits until it is ready.
func startAgentEnv(t *testing.T, env []string, args ...string) *harness.Agent {
	t.Helper()
	harness.RequireRoot(t)
	bin := harness.BuildAgent(t)
	a := harness.StartAgent(t, bin, append([]string{"run", "--console=json"}, args...), env)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatalf("agent not ready: %v", err)
	}
	return a
}

// waitMetric polls the agent's /metrics until cond holds for the value of
// name (summed over the series matching labels) and returns that value.
func waitMetric(t *testing.T, a *harness.Agent, name string, labels map[string]string, what string, cond func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v := a.Metric(t, name, labels)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v is %v after 30 s, want %s", name, labels, v, what)
		}
		select {
		case <-a.Done():
			t.Fatalf("agent exited while waiting for %s%v (%s)", name, labels, what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// equals is a waitMetric condition.
func equals(want float64) func(float64) bool { return func(v float64) bool { return v == want } }

// instrumented waits until the agent has probes on every pid.
func (e *env) instrumented(t *testing.T, pids ...int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, pid := range pids {
		if _, err := e.agent.WaitInstrumented(ctx, pid); err != nil {
			t.Fatalf("pid %d not instrumented: %v", pid, err)
		}
	}
}

// spans waits for exactly n spans matching filter: it fails if fewer arrive
// within the timeout, and also if more than n arrive during a settling
// period after the n-th.
func (e *env) spans(t *testing.T, n int, filter func(otlpreceiver.Span) bool) []otlpreceiver.Span {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := e.recv.WaitForSpans(ctx, n, filter)
	if err != nil {
		t.Fatalf("waiting for %d spans: %v; got %d:\n%s%s", n, err, len(got), describe(got), e.losses(t))
	}
	time.Sleep(1500 * time.Millisecond)
	got = filterSpans(e.recv.Spans(), filter)
	if len(got) != n {
		t.Fatalf("got %d spans, want exactly %d:\n%s%s", len(got), n, describe(got), e.losses(t))
	}
	return got
}

// losses describes what the agent lost (events the kernel could not queue,
// spans its exporters dropped) and how much it saw: when spans are missing
// because other programs on this machine (a benchmark) flood the agent,
// this says so.
func (e *env) losses(t *testing.T) string {
	t.Helper()
	select {
	case <-e.agent.Done():
		return "\n(the agent has exited)"
	default:
	}
	fams := e.agent.MetricFamilies(t)
	var b strings.Builder
	b.WriteString("agent counters:")
	for _, m := range []struct {
		name   string
		labels map[string]string
	}{
		{"periscope_spans_total", nil},
		{"periscope_events_dropped_total", nil},
		{"periscope_spans_dropped_total", map[string]string{"exporter": "otlp"}},
		{"periscope_spans_dropped_total", map[string]string{"exporter": "console"}},
		{"periscope_export_failures_total", nil},
		{"periscope_exporter_queue_length", map[string]string{"exporter": "otlp"}},
		{"periscope_calls_unmatched_total", nil},
		{"periscope_request_ends_unmatched_total", nil},
		{"periscope_requests_incomplete_total", nil},
		{"periscope_connections_not_http_total", nil},
		{"periscope_http_parse_errors_total", nil},
		{"periscope_requests_without_end_total", nil},
		{"periscope_events_read_total", map[string]string{"collector": "gohttp", "type": "request_start"}},
		{"periscope_events_read_total", map[string]string{"collector": "gohttp", "type": "request_end"}},
	} {
		v, err := harness.SumMetric(fams, m.name, m.labels)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, " %s%v=%v", m.name, m.labels, v)
	}
	return "\n" + b.String()
}

func filterSpans(all []otlpreceiver.Span, filter func(otlpreceiver.Span) bool) []otlpreceiver.Span {
	var out []otlpreceiver.Span
	for _, s := range all {
		if filter == nil || filter(s) {
			out = append(out, s)
		}
	}
	return out
}

// distinctSpanIDs is how many span IDs spans hold, each counted once: a
// span received twice counts once.
func distinctSpanIDs(spans []otlpreceiver.Span) int {
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.SpanID] = true
	}
	return len(ids)
}

func byService(name string, kind int) func(otlpreceiver.Span) bool {
	return func(s otlpreceiver.Span) bool { return s.ServiceName() == name && int(s.Kind) == kind }
}

// byPort selects the spans of kind from service name on connections to the
// server port port, so that other programs on the machine do not count.
func byPort(name string, kind, port int) func(otlpreceiver.Span) bool {
	return func(s otlpreceiver.Span) bool {
		return s.ServiceName() == name && int(s.Kind) == kind && attrInt(s, "server.port") == int64(port)
	}
}

const (
	kindServer = 2
	kindClient = 3
)

func describe(spans []otlpreceiver.Span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "  %s kind=%d %q status=%s code=%v path=%v trace=%s parent=%s\n", s.ServiceName(), s.Kind, s.Name,
			s.Status, s.Attributes["http.response.status_code"], s.Attributes["url.path"], s.TraceID, s.ParentSpanID)
	}
	return b.String()
}

// attrInt reads an integer attribute.
func attrInt(s otlpreceiver.Span, key string) int64 {
	v, _ := s.Attributes[key].(int64)
	return v
}

func attrStr(s otlpreceiver.Span, key string) string {
	v, _ := s.Attributes[key].(string)
	return v
}

// counts tallies spans by a key.
func counts(spans []otlpreceiver.Span, key func(otlpreceiver.Span) string) map[string]int {
	m := make(map[string]int)
	for _, s := range spans {
		m[key(s)]++
	}
	return m
}

func sortedKeys(m map[string]int) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// run runs a command and fails the test with its output if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// byPIDs selects the spans of one kind from the given processes: other
// programs on this node (another test, a benchmark) may be traced by the
// same agent, so service names alone are not enough.
func byPIDs(kind int, pids ...int) func(otlpreceiver.Span) bool {
	return func(s otlpreceiver.Span) bool {
		if int(s.Kind) != kind {
			return false
		}
		pid, _ := s.Resource["process.pid"].(int64)
		for _, p := range pids {
			if int64(p) == pid {
				return true
			}
		}
		return false
	}
}

// testdataPath returns the absolute path of a file under testdata/.
func testdataPath(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("testdata: %v", err)
	}
	return p
}

// readFile returns the contents of a file, failing the test if it cannot.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// python returns the Debian python3 (its ssl module uses the system
// libssl.so.3), else the first python3 in PATH.
func python(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	return harness.LookTool(t, "python3")
}

// exeBase is the base name of the file an executable path resolves to: the
// agent's default service.name (/usr/bin/python3 -> python3.11).
func exeBase(t *testing.T, path string) string {
	t.Helper()
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(real)
}

// proc is a helper process started by startProc: its stdout is read line by
// line, its stderr is kept for error messages, its stdin stays open.
type proc struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	PID   int
	stdin io.WriteCloser
	lines chan string
	done  chan struct{} // closed when the process has exited
	code  int           // exit code, valid once done is closed

	mu     sync.Mutex
	output strings.Builder // stdout and stderr, for messages
}

// startProc starts name with args; env is added to the test's environment.
// The process is killed at the end of the test if it still runs, and its
// output is logged if the test failed.
func startProc(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: filepath.Base(name), lines: make(chan string, 1024), done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p.PID = p.cmd.Process.Pid
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.record("out: " + sc.Text())
			select {
			case p.lines <- sc.Text():
			default: // nobody reads: keep only the record
			}
		}
	}()
	go func() {
		defer readers.Done()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.record("err: " + sc.Text())
		}
	}()
	go func() {
		readers.Wait() // Wait closes the pipes: read them to the end first
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("---- %s (pid %d) output ----\n%s", p.name, p.PID, p.Output())
		}
	})
	return p
}

func (p *proc) record(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.output.WriteString(line)
	p.output.WriteByte('\n')
}

// Output returns what the process printed so far.
func (p *proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

// expect waits for a stdout line starting with prefix and returns the rest
// of it, trimmed.
func (p *proc) expect(prefix string, timeout time.Duration) string {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				<-p.done
				p.t.Fatalf("%s (pid %d) exited with code %d before printing %q:\n%s", p.name, p.PID, p.code, prefix, p.Output())
			}
			if rest, found := strings.CutPrefix(line, prefix); found {
				return strings.TrimSpace(rest)
			}
		case <-deadline:
			p.t.Fatalf("%s (pid %d) did not print %q within %v:\n%s", p.name, p.PID, prefix, timeout, p.Output())
		}
	}
}

// send writes a line to the process's stdin.
func (p *proc) send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("write to %s: %v", p.name, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		p.t.Fatalf("%s (pid %d) still runs after %v:\n%s", p.name, p.PID, timeout, p.Output())
		return -1
	}
}

// mustSucceed waits for the process to exit 0.
func (p *proc) mustSucceed(timeout time.Duration) {
	p.t.Helper()
	if code := p.wait(timeout); code != 0 {
		p.t.Fatalf("%s (pid %d) exited with code %d:\n%s", p.name, p.PID, code, p.Output())
	}
}

// kill kills the process if it still runs and waits for it.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}
