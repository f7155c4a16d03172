package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/periscope-apm/periscope/test/e2e/harness"
)

// enableBPFStats turns on the kernel's per-program run counters for the
// test and restores the old setting afterwards.
func enableBPFStats(t *testing.T) {
	t.Helper()
	const path = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if err := os.WriteFile(path, []byte("1"), 0); err != nil {
		t.Fatalf("enable BPF stats: %v", err)
	}
	t.Cleanup(func() { _ = os.WriteFile(path, old, 0) })
}

// probeRuns sums the run counts of the programs the agent process pid holds
// whose names start with prefix (the OpenSSL uprobe programs are ssl_*).
// Only that agent's programs count, whatever else is loaded.
func probeRuns(t *testing.T, pid int, prefix string) uint64 {
	t.Helper()
	fdinfo := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(fdinfo)
	if err != nil {
		t.Fatalf("agent fds: %v", err)
	}
	seen := make(map[uint64]bool)
	var total uint64
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(fdinfo, e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			v, ok := strings.CutPrefix(line, "prog_id:")
			if !ok {
				continue
			}
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil || seen[id] {
				continue
			}
			seen[id] = true
			p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
			if err != nil {
				continue
			}
			info, err := p.Info()
			if err == nil && info.Type == ebpf.Kprobe && strings.HasPrefix(info.Name, prefix) { // uprobes are kprobe-type programs
				stats, err := p.Stats()
				if err != nil {
					t.Fatalf("stats of program %s: %v", info.Name, err)
				}
				total += stats.RunCount
			}
			p.Close()
		}
	}
	if len(seen) == 0 {
		t.Fatalf("agent pid %d holds no BPF programs", pid)
	}
	return total
}

// TestSelectionCostsOthersNothing: with --include-exe, processes that are
// not selected never hit a probe (the kernel's per-process uprobe filter,
// not a filter after the trap), and only the selected ones produce spans.
func TestSelectionCostsOthersNothing(t *testing.T) {
	enableBPFStats(t)
	e := startAgent(t, "--include-exe", "python3*")
	curl := harness.LookTool(t, "curl")
	ngx := harness.StartNginx(t, harness.NginxOptions{Workers: 1})

	// Unselected nginx and curl: no probe runs, no spans.
	before := probeRuns(t, e.agent.PID, "ssl_")
	for i := 0; i < 5; i++ {
		run(t, curl, "-sS", "--cacert", ngx.CAFile, "-o", "/dev/null", ngx.URL+"/index.html")
	}
	if after := probeRuns(t, e.agent.PID, "ssl_"); after != before {
		t.Errorf("unselected nginx and curl ran OpenSSL probes %d times, want 0", after-before)
	}

	// A selected python client, instrumented before it sends: 3 CLIENT
	// spans, and none from nginx.
	cmd := exec.Command(harness.LookTool(t, "python3"), "-c", `
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[1])
sys.stdin.readline()
for _ in range(3):
    urllib.request.urlopen(sys.argv[2], context=ctx).read()
`, ngx.CAFile, ngx.URL+"/index.html")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.instrumented(t, cmd.Process.Pid)
	fmt.Fprintln(stdin, "go")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("python client: %v\n%s", err, out.String())
	}
	if after := probeRuns(t, e.agent.PID, "ssl_"); after == before {
		t.Error("the selected python client ran no OpenSSL probe")
	}
	spans := e.spans(t, 3, func(otlpSpan) bool { return true })
	for _, s := range spans {
		if int(s.Kind) != kindClient || attrStr(s, "url.path") != "/index.html" || s.Resource["process.pid"] != int64(cmd.Process.Pid) {
			t.Errorf("unexpected span: %s pid %v kind %d %q", s.ServiceName(), s.Resource["process.pid"], s.Kind, s.Name)
		}
	}
}
