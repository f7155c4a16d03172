package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
)

// TestShortLivedIdentity: a curl that runs and exits while the agent's user
// space is frozen (SIGSTOP) is gone before the agent can read /proc. Its
// span still names it: service.name, executable and command line come from
// the exec event the kernel recorded, not from /proc.
func TestShortLivedIdentity(t *testing.T) {
	e := startAgent(t)
	ngx := harness.StartNginx(t, harness.NginxOptions{})
	e.instrumented(t, ngx.WorkerPIDs...)
	curl := harness.LookTool(t, "curl")

	e.whileFrozen(t, func() {
		run(t, curl, "-sS", "-o", "/dev/null", "--cacert", ngx.CAFile, ngx.URL+"/index.html?short=lived")
	})

	s := e.spans(t, 1, byPort("curl", kindClient, ngx.Port))[0]
	if got := s.Resource["process.executable.name"]; got != "curl" {
		t.Errorf("process.executable.name %v, want curl (resource %v)", got, s.Resource)
	}
	if got := s.Resource["process.executable.path"]; got != curl {
		t.Errorf("process.executable.path %v, want %s", got, curl)
	}
	args, _ := s.Resource["process.command_args"].([]any)
	// Query values are redacted in command lines (internal/redact).
	if len(args) < 2 || args[len(args)-1] != ngx.URL+"/index.html?short=REDACTED" {
		t.Errorf("process.command_args %v (exec events without argv: %v)", s.Resource["process.command_args"],
			e.agent.Metric(t, "periscope_process_exec_argv_unread_total", nil))
	}
	e.spans(t, 1, byPort("nginx", kindServer, ngx.Port))
}

// TestExecIdentity: shells the agent has read and named exec curl, which
// does its request and exits while the agent's user space is frozen. On
// thaw, discovery's ring (with the exec events) and the OpenSSL
// collector's ring (with curl's data) are read by different goroutines in
// either order. Every span must name curl, never the shell: the OpenSSL
// ring carries a marker for each exec, so the shell's name is known to be
// stale before curl's data is read.
func TestExecIdentity(t *testing.T) {
	e := startAgent(t)
	ngx := harness.StartNginx(t, harness.NginxOptions{})
	e.instrumented(t, ngx.WorkerPIDs...)
	curl := harness.LookTool(t, "curl")
	sh := harness.LookTool(t, "sh")

	const n = 8
	var (
		shells []*exec.Cmd
		gates  []io.WriteCloser
		pids   []int
		urls   = map[int]string{}
	)
	for i := range n {
		url := fmt.Sprintf("%s/index.html?exec=%d", ngx.URL, i)
		cmd := exec.Command(sh, "-c", `read line && exec "$0" "$@"`, curl, "-sS", "-o", "/dev/null", "--cacert", ngx.CAFile, url)
		gate, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		shells, gates = append(shells, cmd), append(gates, gate)
		pids = append(pids, cmd.Process.Pid)
		// Query values are redacted in command lines (internal/redact):
		// curl's arguments still tell it from the shell's.
		urls[cmd.Process.Pid] = ngx.URL + "/index.html?exec=REDACTED"
	}
	// Discovery reads a new process within milliseconds of its exec; the
	// shells wait on their stdin for a second, named "sh" by then.
	time.Sleep(time.Second)

	e.whileFrozen(t, func() {
		for i, cmd := range shells {
			if _, err := io.WriteString(gates[i], "go\n"); err != nil {
				t.Fatal(err)
			}
			gates[i].Close()
			if err := cmd.Wait(); err != nil {
				t.Fatalf("sh -c exec curl: %v", err)
			}
		}
	})

	for _, s := range e.spans(t, n, byPIDs(kindClient, pids...)) {
		pid, _ := s.Resource["process.pid"].(int64)
		if s.ServiceName() != "curl" || s.Resource["process.executable.name"] != "curl" {
			t.Errorf("pid %d: service.name %q, process.executable.name %v, want curl", pid, s.ServiceName(), s.Resource["process.executable.name"])
		}
		if args, _ := s.Resource["process.command_args"].([]any); len(args) == 0 || args[len(args)-1] != urls[int(pid)] {
			t.Errorf("pid %d: process.command_args %v, want curl's, ending with %s", pid, s.Resource["process.command_args"], urls[int(pid)])
		}
	}
	e.spans(t, n, byPort("nginx", kindServer, ngx.Port))
}

// selfExecSource is a static Go program (CGO_ENABLED=0, no dynamic
// loader: it maps no file after an exec) that runs in two stages. "before"
// prints "before", waits for a line and exec's its own executable with
// OTEL_SERVICE_NAME=after, as "after", from the main thread (an exec from
// another thread ends the group's leader, which discovery sees as the
// process's exit, and the new program as a new process). "after" connects
// to port (whose SYNs the test drops) for 2.5 s, retransmitting its SYN,
// prints "after" and waits for a line.
const selfExecSource = `package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// init runs on the main thread: main stays on it.
func init() { runtime.LockOSThread() }

func main() {
	stage, port, after := os.Args[1], os.Args[2], os.Args[3]
	in := bufio.NewReader(os.Stdin)
	if stage == "after" {
		_, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 2500*time.Millisecond)
		fmt.Println("after", err)
		in.ReadString('\n')
		return
	}
	fmt.Println("before")
	in.ReadString('\n')
	env := []string{"OTEL_SERVICE_NAME=" + after}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_SERVICE_NAME=") {
			env = append(env, kv)
		}
	}
	exe, err := os.Executable()
	if err == nil {
		err = syscall.Exec(exe, []string{exe, "after", port, after}, env)
	}
	fmt.Println("error", err)
	os.Exit(1)
}
`

// buildSelfExec builds selfExecSource into dir as "selfexec".
func buildSelfExec(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"go.mod": "module selfexec\n\ngo 1.22\n", "main.go": selfExecSource} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "selfexec")
	cmd := exec.Command(harness.GoTool(t), "build", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOTOOLCHAIN=local")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build selfexec: %v\n%s", err, b)
	}
	return out
}

// TestSelfExecIdentity: a static Go program the agent has read and named
// (OTEL_SERVICE_NAME) exec's its own executable with another
// OTEL_SERVICE_NAME, then retransmits SYNs: they are charged to the new
// name. The agent runs the TCP collector alone, whose ring carries no exec
// markers: nothing marks the name read before the exec as stale, and the
// exec event's own identity (the executable's name, no environment) is
// all there is until /proc is read again. Discovery reports a process
// again only when it maps new files, which a static program exec'ing its
// own executable does not; nor does one that discovery read in the middle
// of its exec (the new executable mapped, its environment not laid out
// yet), as the grpc-go client of TestGoGRPC/h2c may have been when it was
// named "grpcgo". So the identity is read again once the exec is handled.
func TestSelfExecIdentity(t *testing.T) {
	const before, after = "periscope-e2e-before-exec", "periscope-e2e-after-exec"
	bin := buildSelfExec(t, t.TempDir())
	cfg := filepath.Join(t.TempDir(), "periscope.yaml")
	if err := os.WriteFile(cfg, []byte("openssl:\n  enabled: false\ngohttp:\n  enabled: false\ngotls:\n  enabled: false\nplaintext:\n  enabled: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := startAgent(t, "--config", cfg, "--include-exe", "selfexec")
	port := harness.FreePort(t)
	dropPackets(t, fmt.Sprintf("tcp dport %d", port))
	p := startProc(t, []string{"OTEL_SERVICE_NAME=" + before}, bin, "before", strconv.Itoa(port), after)
	p.expect("before", 30*time.Second)
	// Discovery has read it (the only program selected) and named it.
	waitMetric(t, e.agent, "periscope_processes_selected", nil, "= 1", equals(1))
	p.send("exec")
	p.expect("after", 30*time.Second)
	labels := map[string]string{"process_pid": strconv.Itoa(p.PID), "network_peer_port": strconv.Itoa(port)}
	waitMetric(t, e.agent, retransmitsMetric, labels, "> 0", func(v float64) bool { return v > 0 })
	for _, s := range retransmitSeries(t, e.agent) {
		if matches(s.labels, labels) && s.labels["service_name"] != after {
			t.Errorf("retransmissions after the exec charged to service_name %q, want %q: %v", s.labels["service_name"], after, s.labels)
		}
	}
}

// whileFrozen runs fn while the agent's user space is stopped (SIGSTOP):
// the kernel side keeps recording into the rings, and nothing is read
// until fn returns.
func (e *env) whileFrozen(t *testing.T, fn func()) {
	t.Helper()
	if err := syscall.Kill(e.agent.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := syscall.Kill(e.agent.PID, syscall.SIGCONT); err != nil {
			t.Errorf("resume the agent: %v", err)
		}
	}()
	fn()
}
