// Package ring reads a BPF ring buffer in batches and sums the per-CPU
// counters that Periscope's programs keep beside it.
package ring

import (
	"context"
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/periscope-apm/periscope/internal/ktime"
)

// Read calls handle for every record of the ring buffer m until ctx is done.
// Programs submit most records without waking user space (BPF_RB_NO_WAKEUP)
// until wakeupBytes wait (bpf/common.bpf.h), so Read also collects what is
// waiting every interval. When ctx is done, the records already in the ring
// are still handled before Read returns: the events of the moments before a
// shutdown are not lost. The slice passed to handle is only valid during the
// call.
//
// Read waits in Go's network poller (see readiness), never in a blocking
// system call: a thread parked in epoll_wait per ring kept the runtime's
// monitor retaking its processor and waking every 20 µs, which cost the agent
// more CPU than decoding the records did (test/bench/results-e2e-cpu.md).
//
// progress, when not nil, learns how far Read has handled the ring (see
// ktime.Progress and watermark): a time taken before Read looked at what
// the ring held, once that has been handled, so that a busy ring as well
// as an idle one holds nobody back for long; when Read returns, it is
// done. After each batch it calls progress.Caught.
//
// drained, when not nil, is called after each batch of records handed to
// handle (and before progress learns of the batch's end): a reader that
// merges what several records ask for does the work once per batch.
func Read(ctx context.Context, m *ebpf.Map, interval time.Duration, wakeupBytes uint64, handle func([]byte), drained func(), progress *ktime.Progress) error {
	c, err := newConsumer(m)
	if err != nil {
		return err
	}
	defer c.close()
	ready, err := newReadiness(m)
	if err != nil {
		return err
	}
	defer ready.close()
	stop := context.AfterFunc(ctx, ready.interrupt)
	defer stop()
	if progress != nil {
		defer progress.Done()
	}
	d := newDrainer(c, handle, progress)
	d.drained = drained
	wake := max(wakeupBytes, 1)
	// A stop that came before the wait began must not wait for the timer.
	pending := func() bool { return ctx.Err() != nil || uint64(c.AvailableBytes()) >= wake }
	for {
		stopping := ctx.Err() != nil
		d.drain()
		if stopping {
			return nil
		}
		if err := ready.wait(interval, pending); err != nil {
			return fmt.Errorf("wait for ring buffer %s: %w", m, err)
		}
	}
}

// drainer hands every record the ring holds to handle, and tells the
// watermark, if any, what it read.
type drainer struct {
	c        *consumer
	handle   func([]byte)
	w        *watermark
	onRecord func([]byte) // handle, or handle and the watermark
	drained  func()       // after each drain, if set
}

func newDrainer(c *consumer, handle func([]byte), progress *ktime.Progress) *drainer {
	d := &drainer{c: c, handle: handle, onRecord: handle}
	if progress != nil {
		d.w = &watermark{p: progress, ring: c, now: ktime.NewMonoClock().Now}
		d.onRecord = d.marked
	}
	return d
}

func (d *drainer) marked(rec []byte) {
	d.handle(rec)
	d.w.read(len(rec))
}

// drain handles what the ring holds, without waiting.
func (d *drainer) drain() {
	d.c.drain(d.onRecord)
	if d.drained != nil {
		d.drained()
	}
	if d.w != nil {
		d.w.idle()
		d.w.p.Caught()
	}
}

// Counter sums entry idx of a per-CPU array of uint64 counters.
func Counter(m *ebpf.Map, idx uint32) (uint64, error) {
	var values []uint64
	if err := m.Lookup(idx, &values); err != nil {
		return 0, fmt.Errorf("read counter %d of %s: %w", idx, m, err)
	}
	var sum uint64
	for _, v := range values {
		sum += v
	}
	return sum, nil
}
