package symbols

import (
	"debug/elf"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Every file on the node is read as root, hostile ones included: analysing
// one must cost bounded memory and time and never crash the agent. Memory
// is bounded where files are read (symbol tables are streamed through a
// window, whole sections are read only below maxSectionBytes, DWARF only
// below maxDWARFBytes); the Analyzer bounds the rest: one analysis at a
// time, a deadline, and a panic is an error.

// Bounds on what one analysis may read into memory at once.
const (
	maxSectionBytes = 256 << 20 // .gopclntab, relocations, data sections
	maxDWARFBytes   = 96 << 20  // the debug sections, uncompressed: within the chart's 256 MiB limit
)

// ErrTooLarge is returned (wrapped) when a file asks for more memory than an
// analysis may take.
var ErrTooLarge = errors.New("beyond the analysis memory budget")

// ErrGaveUp is returned (wrapped) when an analysis took longer than its
// deadline; it goes on in the background, and no other starts until it
// ends or a second deadline passes.
var ErrGaveUp = errors.New("analysis took too long")

// Analyzer runs the analyses of files one at a time, each within a
// deadline, turning panics into errors and counting the files given up,
// by reason, in periscope_symbol_analysis_failures_total. The Cache keeps
// results by file identity.
type Analyzer struct {
	Cache    *Cache
	timeout  time.Duration
	sem      chan struct{}
	failures *prometheus.CounterVec
}

// DefaultAnalysisTimeout is the deadline of one analysis: real binaries
// take milliseconds (DWARF of a 100 MB binary: ~1 s on a busy VM).
const DefaultAnalysisTimeout = 10 * time.Second

// NewAnalyzer returns an Analyzer whose counter is registered with reg.
func NewAnalyzer(cache *Cache, timeout time.Duration, reg prometheus.Registerer) *Analyzer {
	if timeout <= 0 {
		timeout = DefaultAnalysisTimeout
	}
	a := &Analyzer{
		Cache:   cache,
		timeout: timeout,
		sem:     make(chan struct{}, 1),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_symbol_analysis_failures_total",
			Help: "Files whose analysis was given up, by reason (malformed: contradictory ELF structures, " +
				"too_large: beyond the memory budget, timeout, panic).",
		}, []string{"reason"}),
	}
	for _, r := range []string{"malformed", "too_large", "timeout", "panic"} {
		a.failures.WithLabelValues(r)
	}
	reg.MustRegister(a.failures)
	return a
}

// Run runs fn, the analysis of path, after the analyses before it, and
// returns its error. An error that says the file is malformed or too large
// is counted; so is a panic and a deadline passed (fn then goes on in the
// background, holding the turn of the next analysis at most one more
// deadline).
func (a *Analyzer) Run(path string, fn func() error) error {
	if a == nil {
		return fn()
	}
	timer := time.NewTimer(a.timeout)
	defer timer.Stop()
	select {
	case a.sem <- struct{}{}:
	case <-timer.C:
		a.failures.WithLabelValues("timeout").Inc()
		return fmt.Errorf("analyse %s: waited %s for an earlier analysis: %w", path, a.timeout, ErrGaveUp)
	}
	timer.Reset(a.timeout)
	done := make(chan error, 1)
	go func() {
		defer func() { <-a.sem }()
		done <- a.guard(path, fn)
	}()
	select {
	case err := <-done:
		a.count(err)
		return err
	case <-timer.C:
		a.failures.WithLabelValues("timeout").Inc()
		return fmt.Errorf("analyse %s: %w after %s", path, ErrGaveUp, a.timeout)
	}
}

// guard runs fn and turns a panic, or a fault reading a mapped file, into
// an error.
func (a *Analyzer) guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("analyse %s: %w: %v", path, errPanic, r)
		}
	}()
	return fn()
}

var errPanic = errors.New("analysis panicked")

func (a *Analyzer) count(err error) {
	switch {
	case err == nil:
	case errors.Is(err, errPanic):
		a.failures.WithLabelValues("panic").Inc()
	case errors.Is(err, ErrTooLarge):
		a.failures.WithLabelValues("too_large").Inc()
	case errors.Is(err, ErrMalformed) || errors.As(err, new(*elf.FormatError)):
		a.failures.WithLabelValues("malformed").Inc()
	}
}

// Lookup fills v with the cached result of kind for the file id (see
// Cache.Get); false without a cache.
func (a *Analyzer) Lookup(kind string, id Identity, v any) bool {
	return a != nil && a.Cache.Get(kind, id, v)
}

// Store caches v as the result of kind for the file id (see Cache.Put).
func (a *Analyzer) Store(kind string, id Identity, v any) error {
	if a == nil {
		return nil
	}
	return a.Cache.Put(kind, id, v)
}
