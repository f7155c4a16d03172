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
	// poke, if set (OnPoke), advances the progress at once when the
	// reader's ring is empty and the reader idle.
	poke atomic.Pointer[func()]
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

// OnPoke sets f, or nil, to be called by Poke: the reader's side of it.
// f advances the progress, without the reader's goroutine, to a time
// taken before it found the ring empty, and only when the reader had
// handled everything it had taken from the ring by then: it does nothing
// while the reader is busy with a batch (a record consumed, so no longer
// in the ring, may not be handled yet) or when a batch began in the
// meantime. f must be cheap (no system call) and safe to call from any
// goroutine at any time, during the reader's batches and after it
// stopped. The reader sets it when it starts and may reset it.
func (p *Progress) OnPoke(f func()) {
	if f == nil {
		p.poke.Store(nil)
		return
	}
	p.poke.Store(&f)
}

// Poke advances the progress of an idle reader whose ring is empty at
// once (OnPoke), instead of at the reader's next look: a consumer that
// waits for every ring calls it for the rings that have nothing to read,
// which otherwise move on only at their readers' timer. Limit still caps
// what Load reports. Without OnPoke it does nothing.
func (p *Progress) Poke() {
	if f := p.poke.Load(); f != nil {
		(*f)()
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
