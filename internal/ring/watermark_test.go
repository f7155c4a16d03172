package ring

import (
	"testing"

	"github.com/periscope-apm/periscope/internal/ktime"
)

// fakeRing is a ring buffer's fill level, as the reader sees it.
type fakeRing struct{ avail int }

func (r *fakeRing) AvailableBytes() int { return r.avail }

// newTestWatermark returns a watermark over r whose clock reads 100, 200,
// 300, ... one step per look.
func newTestWatermark(r *fakeRing) (*watermark, *ktime.Progress) {
	p := new(ktime.Progress)
	var t uint64
	return &watermark{p: p, ring: r, now: func() uint64 { t += 100; return t }}, p
}

// An empty ring holds everything up to when the reader looked.
func TestWatermarkIdleEmpty(t *testing.T) {
	r := &fakeRing{}
	w, p := newTestWatermark(r)
	w.idle()
	if got := p.Load(); got != 100 {
		t.Fatalf("progress %d after an empty look at 100, want 100", got)
	}
}

// A busy ring holds a mark only once the bytes it held then are read; the
// records' own sizes count with the kernel's 8-byte header and alignment.
func TestWatermarkBusyRing(t *testing.T) {
	r := &fakeRing{avail: 2 * (8 + 24)} // two records of 20 bytes waiting
	w, p := newTestWatermark(r)
	w.idle() // mark at 100: 64 bytes to read
	if got := p.Load(); got != 0 {
		t.Fatalf("progress %d with the marked records unread, want 0", got)
	}
	r.avail = 2*(8+24) + 40 // more arrives: not the mark's business
	w.read(20)
	if got := p.Load(); got != 0 {
		t.Fatalf("progress %d with one marked record unread, want 0", got)
	}
	r.avail = 40
	w.read(20) // the mark's bytes are read: it holds; a new mark at 200 over the 40 bytes left
	if got := p.Load(); got != 100 {
		t.Fatalf("progress %d once the marked records are read, want 100", got)
	}
	r.avail = 2 * (8 + 24)
	w.read(32) // the second mark's 40 bytes read: it holds; a third at 300
	if got := p.Load(); got != 200 || w.at != 300 || w.left != 64 {
		t.Fatalf("progress %d, mark %d with %d bytes; want 200, 300 with 64", got, w.at, w.left)
	}
}

// A pending mark is kept while the ring is not empty (a record reserved
// but not submitted waits in it), and an empty ring settles it at once.
func TestWatermarkIdleKeepsPendingMark(t *testing.T) {
	r := &fakeRing{avail: 48}
	w, p := newTestWatermark(r)
	w.idle() // 100: the mark's time, 48 bytes
	w.idle() // ring not empty: the mark at 100 stays
	if got := p.Load(); got != 0 || w.at != 100 || w.left != 48 {
		t.Fatalf("progress %d, mark %d with %d bytes; want 0, 100 with 48", got, w.at, w.left)
	}
	r.avail = 0 // its bytes went unseen (discarded by their program)
	w.idle()    // the mark holds, and a look at 200 finds the ring empty
	if got := p.Load(); got != 200 || w.left != 0 {
		t.Fatalf("progress %d, %d bytes pending after an empty look at 200; want 200, 0", got, w.left)
	}
}

// A record's own time never moves the watermark: a record stamped later
// than a record of another CPU still to come must not pass it over.
func TestWatermarkIgnoresRecordTimes(t *testing.T) {
	r := &fakeRing{avail: 16}
	w, p := newTestWatermark(r)
	w.idle() // mark at 100 over one 8-byte record
	r.avail = 16
	w.read(8) // the mark holds; a new one at 200 over the 16 bytes now waiting
	if got := p.Load(); got != 100 {
		t.Fatalf("progress %d, want 100", got)
	}
	if w.at != 200 || w.left != 16 {
		t.Fatalf("mark %d with %d bytes, want 200 with 16", w.at, w.left)
	}
}
