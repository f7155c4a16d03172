package agent

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMissingCaps(t *testing.T) {
	bit := func(caps ...uint) uint64 {
		var m uint64
		for _, c := range caps {
			m |= 1 << c
		}
		return m
	}
	all := bit(unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_SYS_PTRACE, unix.CAP_DAC_READ_SEARCH)
	tests := []struct {
		name string
		eff  uint64
		want []string // names in the error, in order; none: no error
	}{
		{"exactly the set", all, nil},
		{"full root", ^uint64(0), nil},
		{"nothing", 0, []string{"CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"}},
		{"no bpf", all &^ bit(unix.CAP_BPF), []string{"CAP_BPF"}},
		{"no perfmon", all &^ bit(unix.CAP_PERFMON), []string{"CAP_PERFMON"}},
		{"no ptrace", all &^ bit(unix.CAP_SYS_PTRACE), []string{"CAP_SYS_PTRACE"}},
		{"no dac_read_search", all &^ bit(unix.CAP_DAC_READ_SEARCH), []string{"CAP_DAC_READ_SEARCH"}},
		{"sys_admin for bpf and perfmon", bit(unix.CAP_SYS_ADMIN, unix.CAP_SYS_PTRACE, unix.CAP_DAC_READ_SEARCH), nil},
		{"sys_admin is not ptrace", bit(unix.CAP_SYS_ADMIN, unix.CAP_DAC_READ_SEARCH), []string{"CAP_SYS_PTRACE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := capsError(missingCaps(tt.eff))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want one naming %v", tt.want)
			}
			msg := err.Error()
			prefix := "missing capability "
			if len(tt.want) > 1 {
				prefix = "missing capabilities "
			}
			if !strings.HasPrefix(msg, prefix+tt.want[0]+": needed to ") {
				t.Errorf("%q does not start with %q", msg, prefix+tt.want[0]+": needed to ")
			}
			last := -1
			for _, n := range tt.want {
				i := strings.Index(msg, n+":")
				if i <= last {
					t.Errorf("%q does not name %s (in order)", msg, n)
				}
				last = i
			}
			for _, c := range requiredCaps {
				if !contains(tt.want, c.name) && strings.Contains(msg, c.name+":") {
					t.Errorf("%q names %s, which is present", msg, c.name)
				}
			}
		})
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestEffectiveCaps reads the test's own set: as root it holds every
// required capability.
func TestEffectiveCaps(t *testing.T) {
	eff, err := effectiveCaps()
	if err != nil {
		t.Fatal(err)
	}
	if unix.Geteuid() == 0 && eff&(1<<unix.CAP_SYS_ADMIN) != 0 {
		if err := requireCapabilities(); err != nil {
			t.Fatalf("root with CAP_SYS_ADMIN: %v", err)
		}
	}
}
