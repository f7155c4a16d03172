package agent

import (
	"os"
	"strings"
	"testing"

	"github.com/periscope-apm/periscope/internal/kernel"
)

// TestCheckOnThisKernel runs the real probes. It needs root; without it the
// probes fail and the test says so rather than passing.
func TestCheckOnThisKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test loads eBPF programs and must run as root")
	}
	r := Check()
	t.Log("\n" + r.String())
	for _, name := range []string{kernel.BTF, kernel.BPF, kernel.RingBuf, kernel.Tracefs, kernel.Uprobe, kernel.RawTracepoint, kernel.SyscallTracepoint} {
		if !r.Features.Has(name) {
			t.Errorf("%s: not available, but this machine offers it", name)
		}
	}
	if m := r.Features.Missing(); len(m) > 0 {
		t.Errorf("missing required features: %v", m)
	}
	for _, p := range r.Paths {
		if !p.OK {
			t.Errorf("collector %s cannot run: %s", p.Collector, p.Path)
		}
	}
	if !strings.Contains(r.String(), "COLLECTOR") {
		t.Error("report lacks the collector table")
	}
}
