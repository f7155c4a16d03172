package agent

import (
	"log/slog"
	"runtime"
	"testing"
)

func TestReadOnlyMapping(t *testing.T) {
	const exe = "/usr/bin/periscope"
	for _, tc := range []struct {
		line       string
		start, end uintptr
		ok         bool
	}{
		{"00400000-00e53000 r-xp 00000000 fd:01 1234 /usr/bin/periscope", 0x400000, 0xe53000, true},
		{"00e53000-02361000 r--p 00a53000 fd:01 1234 /usr/bin/periscope", 0xe53000, 0x2361000, true},
		{"02361000-023b8000 rw-p 01f61000 fd:01 1234 /usr/bin/periscope", 0, 0, false}, // writable data
		{"7f0000000000-7f0000200000 r--p 00000000 fd:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6", 0, 0, false},
		{"c000000000-c000400000 rw-p 00000000 00:00 0", 0, 0, false}, // anonymous
		{"00400000-00e53000 r-xp 00000000 fd:01 1234 /usr/bin/periscope (deleted)", 0x400000, 0xe53000, true},
		{"zz-00e53000 r-xp 00000000 fd:01 1234 /usr/bin/periscope", 0, 0, false},
		{"00e53000-00400000 r-xp 00000000 fd:01 1234 /usr/bin/periscope", 0, 0, false},
		{"", 0, 0, false},
	} {
		start, end, ok := readOnlyMapping(tc.line, exe)
		if start != tc.start || end != tc.end || ok != tc.ok {
			t.Errorf("readOnlyMapping(%q) = %#x, %#x, %v; want %#x, %#x, %v", tc.line, start, end, ok, tc.start, tc.end, tc.ok)
		}
	}
}

func TestSetMaxProcs(t *testing.T) {
	prev := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	log := slog.New(slog.DiscardHandler)
	setMaxProcs(log, 0)
	if got := runtime.GOMAXPROCS(0); got != prev {
		t.Fatalf("max_procs 0: GOMAXPROCS %d, want Go's %d unchanged", got, prev)
	}
	setMaxProcs(log, 1)
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Fatalf("max_procs 1: GOMAXPROCS %d", got)
	}
}
