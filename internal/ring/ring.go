// Package ring reads a BPF ring buffer in batches and sums the per-CPU
// counters that Periscope's programs keep beside it.
package ring

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/periscope-apm/periscope/internal/ktime"
)

// Read calls handle for every record of the ring buffer m until ctx is done.
// Programs submit most records without waking user space (BPF_RB_NO_WAKEUP),
// so Read also collects what is waiting every interval. When ctx is done,
// the records already in the ring are still handled before Read returns:
// the events of the moments before a shutdown are not lost. The slice
// passed to handle is only valid during the call.
//
// progress, when not nil, learns how far Read has handled the ring (see
// ktime.Progress and watermark): a time taken before Read looked at what
// the ring held, once that has been handled, so that a busy ring as well
// as an idle one holds nobody back for long; when Read returns, it is
// done.
func Read(ctx context.Context, m *ebpf.Map, interval time.Duration, handle func([]byte), progress *ktime.Progress) error {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return fmt.Errorf("open ring buffer %s: %w", m, err)
	}
	// Flush makes a waiting ReadInto return what the ring holds, then
	// ErrFlushed.
	stop := context.AfterFunc(ctx, func() {
		if rd.Flush() != nil {
			rd.Close()
		}
	})
	defer stop()
	defer rd.Close()
	if progress != nil {
		defer progress.Done()
	}

	var rec ringbuf.Record
	var w *watermark
	if progress != nil {
		w = &watermark{p: progress, ring: rd, now: ktime.NewMonoClock().Now}
	}
	for {
		rd.SetDeadline(time.Now().Add(interval))
		// A wait that starts after ctx is done ends with every record
		// queued before.
		stopping := ctx.Err() != nil
		err := rd.ReadInto(&rec)
		switch {
		case err == nil:
			handle(rec.RawSample)
			if w != nil {
				w.read(len(rec.RawSample))
			}
		case errors.Is(err, ringbuf.ErrFlushed):
			if ctx.Err() != nil {
				return nil
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Timer tick: records submitted without a wake-up were drained.
			if stopping {
				return nil
			}
			if w != nil {
				w.idle()
			}
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		default:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read ring buffer %s: %w", m, err)
		}
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
