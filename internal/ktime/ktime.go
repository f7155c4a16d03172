// Package ktime converts the kernel's monotonic timestamps (bpf_ktime_get_ns)
// into wall-clock times.
package ktime

import (
	"math"
	"time"

	"golang.org/x/sys/unix"
)

// Clock converts CLOCK_MONOTONIC nanoseconds into wall-clock time using an
// offset measured when it was made.
type Clock struct {
	offset int64 // wall ns - monotonic ns
}

// NewClock measures the offset between the wall clock and CLOCK_MONOTONIC.
func NewClock() Clock {
	var ts unix.Timespec
	best := int64(-1)
	var offset int64
	// Take the tightest of a few samples.
	for i := 0; i < 5; i++ {
		before := time.Now()
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		after := time.Now()
		span := after.Sub(before).Nanoseconds()
		if best < 0 || span < best {
			best = span
			mid := before.UnixNano() + span/2
			offset = mid - ts.Nano()
		}
	}
	return Clock{offset: offset}
}

// Time returns the wall-clock time of a monotonic timestamp.
func (c Clock) Time(mono uint64) time.Time {
	return time.Unix(0, int64(mono)+c.offset)
}

// Now returns the current CLOCK_MONOTONIC time in nanoseconds: the clock
// of the kernel's event timestamps, which wall-clock adjustments do not
// move.
func Now() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// MonoClock reads CLOCK_MONOTONIC without a system call: Go's own
// monotonic clock is CLOCK_MONOTONIC read through the vDSO, while
// unix.ClockGettime (Now) is a system call, too costly for a reader that
// takes the time once per ring record.
type MonoClock struct {
	base uint64    // CLOCK_MONOTONIC ns read just before t0
	t0   time.Time // with its monotonic reading
}

// NewMonoClock anchors a MonoClock. The anchor is read before t0, so its
// times are never later than the kernel's (by at most the moments between
// the two reads): a time taken before looking at a ring stays before.
// The tightest of a few samples is kept.
func NewMonoClock() MonoClock {
	var m MonoClock
	best := uint64(math.MaxUint64)
	for range 5 {
		before := Now()
		t0 := time.Now()
		if gap := Now() - before; gap < best {
			best, m = gap, MonoClock{base: before, t0: t0}
		}
	}
	return m
}

// Now returns the current CLOCK_MONOTONIC time in nanoseconds.
func (m MonoClock) Now() uint64 { return m.base + uint64(time.Since(m.t0)) }

// Mono is the CLOCK_MONOTONIC time in nanoseconds of wall-clock time t (the
// inverse of Time).
func (c Clock) Mono(t time.Time) uint64 {
	return uint64(t.UnixNano() - c.offset)
}
