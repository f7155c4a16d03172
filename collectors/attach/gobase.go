package attach

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/collectors"
	"github.com/periscope-apm/periscope/collectors/loader"
	"github.com/periscope-apm/periscope/discovery"
	"github.com/periscope-apm/periscope/symbols"
)

// GoPlan is what a Go-uprobe collector's plan of one executable has in
// common with the others': embed it.
type GoPlan struct {
	ID    symbols.Identity // the file analysed (zero: it could not be read)
	Err   error            // why it is not probed (not Go, ...)
	Index uint32           // its slot in the programs' per-executable tables
}

// Base implements Plan.
func (p *GoPlan) Base() *GoPlan { return p }

// Plan is a collector's plan of one executable.
type Plan interface{ Base() *GoPlan }

// GoCollector is the skeleton of the collectors that put uprobes on Go
// executables (gohttp, gotls): each executable file is planned once (its
// Analyse, through the symbol cache), gets a slot in the kernel's
// per-executable tables, and its probes are attached once per file (or
// per selected process) and dropped with the last process using it. A
// collector embeds it (NewGoCollector) and gets Close, Wait,
// Attachments, ProcessExited and the attach loop of ProcessUpdated.
type GoCollector[P Plan] struct {
	Log        *slog.Logger
	PerProcess bool
	Set        *Set
	Progs      loader.Programs
	Failed     prometheus.Counter // executables or attaches that failed
	// Slots is the size of the per-executable tables.
	Slots uint32
	GoHooks[P]

	mu    sync.Mutex
	plans map[symbols.FileID]P
	next  uint32
}

// NewGoCollector returns the base of a Go-uprobe collector that logs to
// log, attaches per selected process if perProcess (else once per file),
// keeps a file's probes linger after its last process, counts its probes
// and failures in m, has slots executables' room in its tables, and plans
// and attaches with hooks.
func NewGoCollector[P Plan](log *slog.Logger, perProcess bool, linger time.Duration, m *collectors.Metrics, slots uint32, hooks GoHooks[P]) *GoCollector[P] {
	return &GoCollector[P]{Log: log, PerProcess: perProcess, Set: NewSet(linger, m.Probes), Failed: m.Failed, Slots: slots, GoHooks: hooks}
}

// GoHooks are what a collector supplies to GoCollector.
type GoHooks[P Plan] struct {
	// Analyse plans the executable at path (a host path), from the
	// symbol cache or by inspecting it: see Analyse.
	Analyse func(path string) P
	// Load readies a new plan: its tables at its slot (an error: the
	// executable is not probed).
	Load func(pl P) error
	// Expected tells the reasons not to probe that are no failure (not
	// a Go executable, no net/http, ...): those are not logged.
	Expected func(err error) bool
	// Attach attaches pl's probes to the file at hostPath, for process
	// pid only or (0) for every process.
	Attach func(hostPath string, pid uint32, pl P) ([]link.Link, error)
	// Watched, if set, is called for each process once its probes are in
	// place and before it is listed as attached (preopen: the
	// connections it has open then were maybe used before).
	Watched func(pid uint32)
}

// Close detaches every probe and closes the programs.
func (g *GoCollector[P]) Close() error { return errors.Join(g.Set.Close(), g.Progs.Close()) }

// Wait waits until the ring's reader has stopped.
func (g *GoCollector[P]) Wait() { g.Progs.Wait() }

// Attachments implements collectors.Attacher.
func (g *GoCollector[P]) Attachments() []collectors.Attachment { return g.Set.Attachments() }

// ProcessExited implements discovery.Observer.
func (g *GoCollector[P]) ProcessExited(pid uint32, _ time.Time) { g.Set.Exited(pid) }

// Attached describes one process given probes by Update.
type Attached[P Plan] struct {
	Process discovery.Process
	Mapping discovery.Mapping
	Plan    P
	Key     Key
	// Created tells whether the probes were attached now (else they
	// were there for another process of the file).
	Created bool
	// Analysis and Attach are the time planning and attaching took.
	Analysis, Attach time.Duration
}

// Update gives a selected process's executable, if in added, its probes,
// and calls attached (if not nil) once they are in place.
func (g *GoCollector[P]) Update(p discovery.Process, added []discovery.Mapping, attached func(Attached[P])) {
	if !p.Selected {
		return
	}
	for _, m := range added {
		if m.Path != p.Exe {
			continue
		}
		began := time.Now()
		pl := g.planFor(p, m)
		if pl.Base().Err != nil {
			continue
		}
		planned := time.Now()
		key := Key{File: m.File}
		if g.PerProcess {
			key.PID = p.PID
		}
		if g.Watched != nil && g.Set.Has(key) {
			g.Watched(p.PID) // the file's probes are in place already
		}
		created, err := g.Set.Use(key, m.Path, p.PID, func() ([]link.Link, error) {
			links, err := g.Attach(p.HostPath(m.Path), key.PID, pl)
			if err == nil && g.Watched != nil {
				g.Watched(p.PID)
			}
			return links, err
		})
		if Gone(err, key, p) {
			g.Log.Debug("process exited before attach", "exe", m.Path, "pid", p.PID)
			continue
		}
		if err != nil {
			g.Failed.Inc()
			g.Log.Warn("cannot attach", "exe", m.Path, "pid", p.PID, "err", err)
			continue
		}
		if attached != nil {
			attached(Attached[P]{Process: p, Mapping: m, Plan: pl, Key: key, Created: created,
				Analysis: planned.Sub(began), Attach: time.Since(planned)})
		}
	}
}

// planFor plans an executable once: a file that cannot be probed is
// logged once, naming the reason.
func (g *GoCollector[P]) planFor(p discovery.Process, m discovery.Mapping) P {
	g.mu.Lock()
	defer g.mu.Unlock()
	if pl, ok := g.plans[m.File]; ok && (pl.Base().ID == symbols.Identity{} || pl.Base().ID.Same(p.HostPath(m.Path))) {
		return pl
	}
	pl := g.Analyse(p.HostPath(m.Path))
	b := pl.Base()
	if errors.Is(b.Err, os.ErrNotExist) {
		// The process is gone before it could be read: nothing to say
		// about the file, which the next process may show again.
		g.Log.Debug("process exited before inspection", "exe", m.Path, "pid", p.PID)
		return pl
	}
	if b.Err == nil {
		if g.next >= g.Slots {
			b.Err = fmt.Errorf("more than %d Go executables", g.Slots)
		} else {
			b.Index = g.next
			g.next++
			b.Err = g.Load(pl)
		}
	}
	if b.Err != nil && !errors.Is(b.Err, symbols.ErrNotGo) && (g.Expected == nil || !g.Expected(b.Err)) {
		g.Failed.Inc()
		g.Log.Warn("cannot trace Go executable", "exe", m.Path, "pid", p.PID, "err", b.Err)
	}
	if g.plans == nil {
		g.plans = make(map[symbols.FileID]P)
	}
	g.plans[m.File] = pl
	return pl
}

// Analysis is how a collector keeps its plans in the symbol cache.
type Analysis[P Plan, A any] struct {
	Analyzer *symbols.Analyzer
	Kind     string // the schema's name in the cache: change it when the analysis changes
	Log      *slog.Logger
	// Inspect plans the executable at path.
	Inspect func(path string) P
	// Failed is the plan of a file that could not be analysed.
	Failed func(err error) P
	// Plan makes the plan of a cached analysis; Cacheable the analysis
	// of a plan, if the cache keeps it (not a failure that may pass).
	Plan      func(A) P
	Cacheable func(P) (A, bool)
}

// Analyse returns the plan of the executable at path: from the symbol
// cache when a file of the same identity was analysed before (by this
// agent or an earlier run of it), else by inspecting it under the
// Analyzer's bounds.
func (a Analysis[P, A]) Analyse(path string) P {
	id, err := symbols.Identify(path)
	if err != nil {
		return a.Failed(err)
	}
	var cached A
	if a.Analyzer.Lookup(a.Kind, id, &cached) {
		pl := a.Plan(cached)
		pl.Base().ID = id
		return pl
	}
	var pl P
	var done bool
	err = a.Analyzer.Run(path, func() error {
		pl, done = a.Inspect(path), true
		return pl.Base().Err
	})
	if errors.Is(err, symbols.ErrGaveUp) || !done {
		pl = a.Failed(err)
		pl.Base().ID = id
		return pl
	}
	pl.Base().ID = id
	if c, ok := a.Cacheable(pl); ok {
		if err := a.Analyzer.Store(a.Kind, id, c); err != nil {
			a.Log.Debug("cannot cache the analysis", "exe", path, "err", err)
		}
	}
	return pl
}
