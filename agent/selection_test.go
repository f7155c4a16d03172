package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/periscope-apm/periscope/discovery"
)

// The correlator's selection: discovery's decision when there is one,
// else the selector on the program a live process runs; a process gone
// before discovery decided on it is not known to be selected.
func TestSelection(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dec := discovery.NewDecisions()
	s := selection{dec: dec, sel: discovery.Selector{Include: []string{filepath.Base(exe)}}, procRoot: "/proc"}
	me := uint32(os.Getpid())
	if sel, decided := s.Decided(me); !sel || !decided {
		t.Errorf("this test, undecided, runs a selected program: selected %v decided %v, want both", sel, decided)
	}
	dec.Decide(me, false)
	if sel, decided := s.Decided(me); sel || !decided {
		t.Errorf("after discovery rejected it: selected %v decided %v, want false, true", sel, decided)
	}
	s.sel = discovery.Selector{Include: []string{"other"}}
	dec.Forget(me)
	if sel, decided := s.Decided(me); sel || !decided {
		t.Errorf("another selection: selected %v decided %v, want false, true", sel, decided)
	}
	if _, decided := s.Decided(1 << 30); decided {
		t.Error("a process that does not exist is decided")
	}
}
