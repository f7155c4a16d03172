package ring

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/periscope-apm/periscope/internal/beat"
)

// readiness waits for a ring buffer's wake-ups in Go's network poller: a
// non-blocking duplicate of the map's descriptor, registered there like a
// socket (edge-triggered). The goroutine parks, no thread sleeps in a system
// call for it, and the wait's timer is a runtime timer.
type readiness struct {
	f  *os.File
	rc syscall.RawConn
}

func newReadiness(m *ebpf.Map) (*readiness, error) {
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate ring buffer %s: %w", m, err)
	}
	// O_NONBLOCK is a flag of the open file that the duplicate shares with
	// the map's descriptor; no BPF command looks at it.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ring buffer %s non-blocking: %w", m, err)
	}
	f := os.NewFile(uintptr(fd), m.String())
	// Deadlines are only supported by descriptors in the poller.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("poll ring buffer %s: %w", m, err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("poll ring buffer %s: %w", m, err)
	}
	return &readiness{f: f, rc: rc}, nil
}

// wait returns when the ring wakes its reader, at the next multiple of d
// on the clock (beat.Next: the readers of several rings with one interval
// wake together, once for all), or once interrupt was called. pending says whether what the ring holds already is worth a
// wake-up: the poller forgets a wake-up that came before the wait began
// (edge-triggered, and reset when a wait starts), so that one must not be
// slept through.
func (r *readiness) wait(d time.Duration, pending func() bool) error {
	if err := r.f.SetReadDeadline(beat.Next(time.Now(), d)); err != nil {
		return err
	}
	first := true
	err := r.rc.Read(func(uintptr) bool {
		if first {
			first = false
			return pending()
		}
		return true
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}

// interrupt ends the current wait, or the next one, at once.
func (r *readiness) interrupt() { _ = r.f.SetReadDeadline(time.Unix(0, 1)) }

func (r *readiness) close() { _ = r.f.Close() }
