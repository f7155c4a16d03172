package ktime

import (
	"testing"
	"time"
)

// A MonoClock reads the kernel's CLOCK_MONOTONIC, never later than it.
func TestMonoClock(t *testing.T) {
	m := NewMonoClock()
	for range 1000 {
		before := Now()
		got := m.Now()
		after := Now()
		if got > after {
			t.Fatalf("MonoClock %d is later than CLOCK_MONOTONIC %d read after it", got, after)
		}
		// Earlier by at most the anchor's gap: allow a loaded machine's.
		if got+uint64(50*time.Millisecond) < before {
			t.Fatalf("MonoClock %d is %v behind CLOCK_MONOTONIC %d", got, time.Duration(before-got), before)
		}
	}
}
