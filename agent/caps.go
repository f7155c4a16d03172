package agent

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// capability is a Linux capability the agent needs, and why.
type capability struct {
	bit  uint
	name string
	why  string
}

// requiredCaps is the least-privilege set, measured on Linux 6.x by running the
// end-to-end tests with exactly these capabilities (deploy/README.md says what
// fails without each). The DaemonSet and the Helm chart grant exactly this set;
// test/e2e/caps_test.go checks that they agree.
var requiredCaps = []capability{
	{unix.CAP_BPF, "CAP_BPF", "needed to load eBPF programs and create their maps"},
	{unix.CAP_PERFMON, "CAP_PERFMON", "needed to attach uprobes and tracepoints (perf events) and to read kernel memory from eBPF programs"},
	{unix.CAP_SYS_PTRACE, "CAP_SYS_PTRACE", "needed to read /proc/PID/exe, /proc/PID/root and /proc/PID/environ of other users' and more privileged processes, to find and probe their binaries"},
	{unix.CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH", "needed to read executables and libraries that are not world-readable (mode 0700 binaries of other users) to find the functions to probe"},
}

// effectiveCaps returns the calling thread's effective capability set as a
// bit mask (bit N: capability N).
func effectiveCaps() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("capget: %w", err)
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, nil
}

// missingCaps returns the required capabilities absent from the effective set
// eff. CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, as it does in the
// kernel (and on kernels older than 5.8, which have neither).
func missingCaps(eff uint64) []capability {
	has := func(bit uint) bool { return eff&(1<<bit) != 0 }
	var out []capability
	for _, c := range requiredCaps {
		if has(c.bit) {
			continue
		}
		if (c.bit == unix.CAP_BPF || c.bit == unix.CAP_PERFMON) && has(unix.CAP_SYS_ADMIN) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// capsError describes the missing capabilities, each with the reason it is
// needed; nil when none is missing.
func capsError(missing []capability) error {
	if len(missing) == 0 {
		return nil
	}
	parts := make([]string, len(missing))
	for i, c := range missing {
		parts[i] = c.name + ": " + c.why
	}
	word := "capability"
	if len(missing) > 1 {
		word = "capabilities"
	}
	return fmt.Errorf("missing %s %s (run as root, or grant them: deploy/README.md lists the set)", word, strings.Join(parts, "; "))
}

// requireCapabilities fails, naming each one, when the agent lacks a
// capability it needs.
func requireCapabilities() error {
	eff, err := effectiveCaps()
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	return capsError(missingCaps(eff))
}
