package e2e

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// hookRuns counts, from the kernel, the runs and recursion misses of every
// loaded BPF program whose name starts with prefix (the kernel keeps the
// first 15 bytes of a name), so that a failure can say whether a program
// ran for an event the agent did not report or never ran for it. Runs are
// counted only while BPF statistics are on: start turns them on until the
// test ends.
type hookRuns struct{ prefix string }

// startHookRuns turns the kernel's BPF run statistics on for the rest of
// the test. A kernel that refuses (before 5.8) fails the test.
func startHookRuns(t *testing.T, prefix string) *hookRuns {
	t.Helper()
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enable BPF run statistics: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &hookRuns{prefix: prefix}
}

// programRuns is one program's counts.
type programRuns struct {
	id           ebpf.ProgramID
	runs, misses uint64
}

// read returns the counts of the programs loaded now.
func (h *hookRuns) read(t *testing.T) map[ebpf.ProgramID]programRuns {
	t.Helper()
	out := map[ebpf.ProgramID]programRuns{}
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return out
		}
		if err != nil {
			t.Fatalf("list BPF programs: %v", err)
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded meanwhile
		}
		info, err := p.Info()
		st, serr := p.Stats()
		p.Close()
		if err != nil || serr != nil || !strings.HasPrefix(info.Name, h.prefix) {
			continue
		}
		out[id] = programRuns{id: id, runs: st.RunCount, misses: st.RecursionMisses}
	}
}

// describe says how far each program's counts moved between before and
// after.
func (h *hookRuns) describe(before, after map[ebpf.ProgramID]programRuns) string {
	var b strings.Builder
	for id, a := range after {
		p := before[id]
		fmt.Fprintf(&b, "program %d (%s*): ran %d times, %d recursion misses; ", id, h.prefix, a.runs-p.runs, a.misses-p.misses)
	}
	if b.Len() == 0 {
		return "no program named " + h.prefix + "* is loaded"
	}
	return b.String()
}
