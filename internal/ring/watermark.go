package ring

import "github.com/periscope-apm/periscope/internal/ktime"

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
type watermark struct {
	p    *ktime.Progress
	ring interface{ AvailableBytes() int }
	now  func() uint64 // CLOCK_MONOTONIC ns, as the records' stamps
	// The pending mark: its time, and the ring's bytes still to read
	// before it holds (0: no mark pending).
	at, left uint64
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
