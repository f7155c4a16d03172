package discovery

import (
	"sync"
	"time"
)

// Decisions records, with a selection, which processes discovery has
// decided on and whether each is selected. A collector that traces a new
// process before the decision (the sockets collector: a program's first
// requests come before discovery reads it) drops what an unselected one
// sent, and the correlator links a span only to a client whose process is
// known to be selected. It is safe for concurrent use.
type Decisions struct {
	mu     sync.Mutex
	procs  map[uint32]decision
	exited []exitedProc // oldest first
}

type decision struct {
	selected bool
	exited   time.Time // zero while it runs
}

type exitedProc struct {
	pid uint32
	at  time.Time
}

// KeepExited is how long the decision on an exited process is kept: the
// records it sent before exiting, and its peers', may still be read.
const KeepExited = 10 * time.Second

// NewDecisions returns an empty record: every process undecided.
func NewDecisions() *Decisions {
	return &Decisions{procs: make(map[uint32]decision)}
}

// Decide records whether process pid is selected.
func (d *Decisions) Decide(pid uint32, selected bool) {
	d.mu.Lock()
	d.procs[pid] = decision{selected: selected}
	d.mu.Unlock()
}

// Forget makes pid undecided: it exec'd another program.
func (d *Decisions) Forget(pid uint32) {
	d.mu.Lock()
	delete(d.procs, pid)
	d.mu.Unlock()
}

// Exited keeps the decision on pid for KeepExited after its exit at
// time at, then forgets it, and forgets the processes that exited
// KeepExited before at.
func (d *Decisions) Exited(pid uint32, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.procs[pid]; ok {
		p.exited = at
		d.procs[pid] = p
		d.exited = append(d.exited, exitedProc{pid, at})
	}
	n := 0
	for n < len(d.exited) && at.Sub(d.exited[n].at) >= KeepExited {
		e := d.exited[n]
		if p, ok := d.procs[e.pid]; ok && p.exited.Equal(e.at) {
			delete(d.procs, e.pid)
		}
		n++
	}
	if n > 0 {
		d.exited = append(d.exited[:0], d.exited[n:]...)
	}
}

// Decided reports whether pid is selected, and whether that is decided.
func (d *Decisions) Decided(pid uint32) (selected, decided bool) {
	d.mu.Lock()
	p, decided := d.procs[pid]
	d.mu.Unlock()
	return p.selected, decided
}
