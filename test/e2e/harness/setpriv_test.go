package harness

import (
	"reflect"
	"testing"
)

func TestSetprivArgs(t *testing.T) {
	tests := []struct {
		caps string
		want string // the capability set given to every setpriv option
	}{
		{"bpf,perfmon", "-all,+bpf,+perfmon"},
		{"CAP_BPF, cap_sys_ptrace ,DAC_READ_SEARCH", "-all,+bpf,+sys_ptrace,+dac_read_search"},
		{"", "-all"},
		{",,", "-all"},
	}
	for _, tt := range tests {
		got := setprivArgs("/usr/bin/setpriv", tt.caps)
		want := []string{"/usr/bin/setpriv", "--reuid=0", "--regid=0", "--clear-groups",
			"--inh-caps=" + tt.want, "--ambient-caps=" + tt.want, "--bounding-set=" + tt.want, "--"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("setprivArgs(%q) = %q, want %q", tt.caps, got, want)
		}
	}
}
