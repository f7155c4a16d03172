package e2e

import (
	"fmt"
	"io"
	"os/exec"
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
