package e2e

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/periscope-apm/periscope/test/e2e/harness"
)

// TestCheck: `periscope check` on this kernel reports every required
// feature and an attach path for each collector, and exits 0; run without
// privileges it exits non-zero naming what is missing.
func TestCheck(t *testing.T) {
	harness.RequireRoot(t)
	bin := harness.BuildAgent(t)
	out, err := exec.Command(bin, "check").CombinedOutput()
	if err != nil {
		t.Fatalf("periscope check as root: %v\n%s", err, out)
	}
	for _, want := range []string{"BTF ", "uprobes ", "raw syscall tracepoints ", "kprobes ", "fentry/fexit ", "bpf_probe_write_user",
		"discovery  ok", "openssl    ok", "gohttp     ok", "gotls      ok", "sockets    ok", "tcp        ok"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if bytes.Contains(out, []byte("MISSING")) {
		t.Errorf("a required feature is missing on this kernel:\n%s", out)
	}
	// No collector attaches a per-syscall tracepoint: check neither probes
	// one nor names one as a need.
	if bytes.Contains(out, []byte("syscalls:sys_enter_")) || bytes.Contains(out, []byte("needs tracepoints")) {
		t.Errorf("check still names a syscalls:sys_* tracepoint:\n%s", out)
	}

	setpriv := harness.LookTool(t, "setpriv")
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", bin, "check")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("unprivileged check: %v, want exit status 1\n%s%s", err, out, stderr.String())
	}
	msg := stderr.String()
	for _, want := range []string{"cannot run here", "BPF programs", "uprobes"} {
		if !strings.Contains(msg, want) {
			t.Errorf("unprivileged check's message %q does not name %q", msg, want)
		}
	}
	if !bytes.Contains(out, []byte("permission denied")) {
		t.Errorf("the table does not say why:\n%s", out)
	}
}
