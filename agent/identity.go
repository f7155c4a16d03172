package agent

import (
	"time"

	"github.com/periscope-apm/periscope/discovery"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/metadata"
)

// processNames records each process's identity as soon as it is seen, so
// that spans finishing after a short-lived process exits still name it, and
// forgets it a while after the exit (events of a process may be read after
// discovery has seen it exit).
type processNames struct{ procs *metadata.Processes }

// forgetAfter is how long a process's identity outlives it.
const forgetAfter = time.Minute

func (p processNames) ProcessUpdated(proc discovery.Process, added []discovery.Mapping) {
	if !proc.Selected {
		return
	}
	// Observe replaces the identity the exec event gave (Exec), or a
	// reused PID's; when the process is gone already, that one stays.
	_, _ = p.procs.Observe(proc.PID)
}

// execDecided reads the identity of a selected process again once
// discovery has handled its exec, unless it was read after the exec
// (metadata.Processes.ReadAfterExec: ProcessUpdated does not come for a
// process whose executable discovery had already seen, when it read it
// during the exec or when a program exec's its own executable), then hands
// the exec on to next, if any.
func (p processNames) execDecided(next func(discovery.Exec)) func(discovery.Exec) {
	return func(e discovery.Exec) {
		if e.Selected {
			p.procs.ReadAfterExec(e.PID, e.KTime)
		}
		if next != nil {
			next(e)
		}
	}
}

func (p processNames) ProcessExited(pid uint32, _ time.Time) {
	time.AfterFunc(forgetAfter, func() { p.procs.Forget(pid) })
}

// execSink hands a collector's events to the correlator and tells the
// process resolver of each exec at its place among them (the collectors'
// rings carry exec markers), so that spans after an exec never take the
// old program's name, however late discovery reads its own exec event.
type execSink struct {
	events.Sink
	procs *metadata.Processes
}

func (s execSink) Exec(e events.Exec) {
	s.Sink.Exec(e) // first: the old program's requests end under its name
	s.procs.Executed(e.PID, e.KTime)
}
