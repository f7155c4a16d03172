package e2e

import (
	"syscall"
	"testing"

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

	if err := syscall.Kill(e.agent.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			syscall.Kill(e.agent.PID, syscall.SIGCONT)
		}
	}()
	run(t, curl, "-sS", "-o", "/dev/null", "--cacert", ngx.CAFile, ngx.URL+"/index.html?short=lived")
	if err := syscall.Kill(e.agent.PID, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false

	s := e.spans(t, 1, byPort("curl", kindClient, ngx.Port))[0]
	if got := s.Resource["process.executable.name"]; got != "curl" {
		t.Errorf("process.executable.name %v, want curl (resource %v)", got, s.Resource)
	}
	if got := s.Resource["process.executable.path"]; got != curl {
		t.Errorf("process.executable.path %v, want %s", got, curl)
	}
	args, _ := s.Resource["process.command_args"].([]any)
	if len(args) < 2 || args[len(args)-1] != ngx.URL+"/index.html?short=lived" {
		t.Errorf("process.command_args %v", s.Resource["process.command_args"])
	}
	e.spans(t, 1, byPort("nginx", kindServer, ngx.Port))
}
