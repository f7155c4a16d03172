package discovery

import (
	"testing"
	"time"
)

// A decision is kept KeepExited after its process exits (its last records
// and its peers' may still be read), then forgotten; a PID decided again
// meanwhile (exec'd anew) keeps its new decision.
func TestDecisionsKeepExited(t *testing.T) {
	d := NewDecisions()
	t0 := time.Unix(1000, 0)
	if _, decided := d.Decided(1); decided {
		t.Fatal("a new process is decided")
	}
	d.Decide(1, true)
	d.Decide(2, false)
	d.Decide(3, true)
	d.Exited(1, t0)
	d.Exited(2, t0.Add(time.Second))
	if sel, decided := d.Decided(1); !sel || !decided {
		t.Errorf("pid 1 right after its exit: selected %v decided %v, want both", sel, decided)
	}
	d.Decide(2, true) // the PID reused by a selected program
	d.Exited(4, t0.Add(KeepExited+time.Second))
	if _, decided := d.Decided(1); decided {
		t.Error("pid 1 still decided KeepExited after its exit")
	}
	if sel, decided := d.Decided(2); !sel || !decided {
		t.Errorf("pid 2, decided again: selected %v decided %v, want both", sel, decided)
	}
	if sel, decided := d.Decided(3); !sel || !decided {
		t.Errorf("pid 3, running: selected %v decided %v, want both", sel, decided)
	}
	d.Forget(3)
	if _, decided := d.Decided(3); decided {
		t.Error("pid 3 decided after Forget (exec)")
	}
}
