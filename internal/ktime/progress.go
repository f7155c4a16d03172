package ktime

import (
	"math"
	"sync/atomic"
)

// Progress is how far the reader of a ring of kernel events has read: the
// CLOCK_MONOTONIC time (ns) before which it has handled every event it will
// ever get. Another reader's events of the same moment may wait in another
// ring; a consumer that pairs the two waits until both have read past it.
// The reader advances it to a time it took before looking at what its
// ring held, once it has handled that (internal/ring's watermark). The
// zero value has read nothing. It is safe for concurrent use.
type Progress struct {
	ns    atomic.Uint64
	limit atomic.Uint64 // 0: none
	// caught, if set (OnCaught), is called by the reader after each
	// batch it handled, once the progress has learnt of it.
	caught func()
}

// OnCaught sets f to be called after each batch of records the reader has
// handled, once Advance has its time (Caught): a consumer that waits for
// every ring to be read past a moment can act at once, while what it waits
// with is still in the CPU's caches, instead of at its own next tick. Set
// it before the reader starts; f must not block.
func (p *Progress) OnCaught(f func()) { p.caught = f }

// Caught is what the reader calls after each batch (OnCaught).
func (p *Progress) Caught() {
	if p.caught != nil {
		p.caught()
	}
}

// Advance records that everything before ns has been handled; Progress
// never goes back.
func (p *Progress) Advance(ns uint64) {
	for {
		old := p.ns.Load()
		if ns <= old || p.ns.CompareAndSwap(old, ns) {
			return
		}
	}
}

// Done records that the reader has stopped: it will deliver nothing more,
// so nothing waits for it.
func (p *Progress) Done() {
	p.limit.Store(0)
	p.ns.Store(math.MaxUint64)
}

// Limit caps the progress Load reports at ns, 0 for no cap: a reader that
// has read events but holds them back (the sockets collector, until
// discovery decides on their process) has not handled them, whatever
// Advance says.
func (p *Progress) Limit(ns uint64) { p.limit.Store(ns) }

// Load returns the time before which everything has been handled.
func (p *Progress) Load() uint64 {
	ns := p.ns.Load()
	if l := p.limit.Load(); l != 0 && l < ns {
		return l
	}
	return ns
}

// Least returns the least progress of ps, and false when ps is empty.
func Least(ps []*Progress) (uint64, bool) {
	if len(ps) == 0 {
		return 0, false
	}
	least := uint64(math.MaxUint64)
	for _, p := range ps {
		least = min(least, p.Load())
	}
	return least, true
}
