// Package beat times the agent's periodic work on one grid: a timer of
// period d fires at the multiples of d on the clock, not d after whatever
// moment it was set. The readers of the collectors' rings and the
// correlator's tick, each on the same 20 ms period, then come due
// together and wake the agent once per period, instead of once each at
// scattered moments: every wake-up of an idle agent costs a pass of the Go
// scheduler (its network poller, its timers) and a context switch, which
// on a loaded node cost more than the records read.
package beat

import "time"

// Next returns the first multiple of d (counted from the zero time) after
// now. d must be positive.
func Next(now time.Time, d time.Duration) time.Time {
	return now.Truncate(d).Add(d)
}

// Ticker is a timer on the grid: its channel C receives the time at the
// next multiple of its period, and Rearm, called after each receive, sets
// the one after. (Not a time.Ticker: a goroutine that delivers beats on its
// own would be one more wake-up per beat.)
type Ticker struct {
	C <-chan time.Time
	t *time.Timer
	d time.Duration
}

// NewTicker returns a Ticker of period d (positive), armed.
func NewTicker(d time.Duration) *Ticker {
	t := time.NewTimer(time.Until(Next(time.Now(), d)))
	return &Ticker{C: t.C, t: t, d: d}
}

// Rearm sets the next beat: the first multiple of the period after now (a
// receiver that fell behind skips the beats it missed).
func (t *Ticker) Rearm() { t.t.Reset(time.Until(Next(time.Now(), t.d))) }

// Stop stops the ticker.
func (t *Ticker) Stop() { t.t.Stop() }
