package ring

import (
	"sync"
	"sync/atomic"

	"github.com/periscope-apm/periscope/internal/ktime"
)

// watermark advances a ring reader's ktime.Progress: the time before which
// every record of the ring has been handled.
//
// It rests on one rule of the programs (bpf/common.bpf.h): a record is
// stamped once it has its room in the ring, never before. So a record
// reserved after the reader has looked at the ring's producer position is
// stamped after any time the reader took before looking. A mark is such a
// time and the bytes the ring held when it was taken; once the reader has
// read them, everything stamped before the mark has been handled. An empty
// ring holds the mark at once.
//
// Records' own times do not advance it: records of several CPUs reach the
// ring nearly, not strictly, in time order (a record may be reserved and
// stamped while another CPU's, stamped earlier, still waits to be
// submitted), so a record's time says nothing of the records still to
// come.
//
// Another goroutine may look for the reader too (poke, ktime.Progress's
// Poke): an empty ring holds the mark, provided the reader has handled
// what it took from the ring. A record the reader has consumed is no
// longer in the ring, but may not be handled yet; so the reader counts
// its batches (seq: odd from before it consumes the first record until
// it has handled the last), and a poke holds only when no batch was under
// way when it took its time, nor began before it found the ring empty.
type watermark struct {
	p    *ktime.Progress
	ring interface{ AvailableBytes() int }
	now  func() uint64 // CLOCK_MONOTONIC ns, as the records' stamps; safe for concurrent use
	// The pending mark: its time, and the ring's bytes still to read
	// before it holds (0: no mark pending). The reader's only.
	at, left uint64
	// seq counts the reader's batches, twice each (begin, end): odd
	// while one is read and handled.
	seq atomic.Uint64
	// mu keeps a poke and the reader's stop apart: once stopped, the
	// ring is unmapped.
	mu      sync.Mutex
	stopped bool
}

// begin records that the reader starts a batch: it may consume records
// from now on that it has not handled yet.
func (w *watermark) begin() { w.seq.Add(1) }

// end records that the reader has handled everything it consumed.
func (w *watermark) end() { w.seq.Add(1) }

// poke advances the progress to a time taken before the ring was found
// empty, if the reader handled all it had consumed by then: no batch
// under way when the time was taken (seq even), and none begun by the
// time the ring was found empty (seq unchanged). It does nothing while a
// batch is under way, nor while another goroutine pokes or the reader
// stops; it may be called from any goroutine (ktime.Progress.OnPoke).
func (w *watermark) poke() {
	if !w.mu.TryLock() {
		return
	}
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	s := w.seq.Load()
	if s&1 != 0 {
		return
	}
	at := w.now()
	if w.ring.AvailableBytes() != 0 || w.seq.Load() != s {
		return
	}
	w.p.Advance(at)
}

// stop ends the pokes: the reader is done with the ring.
func (w *watermark) stop() {
	w.p.OnPoke(nil)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
}

// read records that a record of size bytes has been handled.
func (w *watermark) read(size int) {
	if w.left > 0 {
		used := ringHeaderBytes + (uint64(size)+7)&^7
		if used < w.left {
			w.left -= used
			return
		}
		w.left = 0
		w.p.Advance(w.at)
	}
	w.look()
}

// idle records that the reader has waited for records and none came. A
// pending mark holds once the ring is empty: its bytes are read, or were
// discarded by their program (skipped unseen, so not counted by read).
func (w *watermark) idle() {
	if w.left > 0 {
		if w.ring.AvailableBytes() > 0 {
			return // a record reserved, not yet submitted, waits
		}
		w.left = 0
		w.p.Advance(w.at)
	}
	w.look()
}

// look takes a new mark unless one is pending: the time first, then what
// the ring holds.
func (w *watermark) look() {
	if w.left > 0 {
		return
	}
	at := w.now()
	n := w.ring.AvailableBytes()
	if n <= 0 {
		w.p.Advance(at)
		return
	}
	w.at, w.left = at, uint64(n)
}
