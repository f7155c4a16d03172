package beat

import (
	"testing"
	"time"
)

func TestNext(t *testing.T) {
	base := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		now  time.Duration // after base
		d    time.Duration
		want time.Duration
	}{
		{0, 20 * time.Millisecond, 20 * time.Millisecond}, // on a beat: the next one
		{1, 20 * time.Millisecond, 20 * time.Millisecond},
		{19*time.Millisecond + 999999, 20 * time.Millisecond, 20 * time.Millisecond},
		{20 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond},
		{7 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond},
		{3 * time.Second, 5 * time.Second, 5 * time.Second},
	} {
		if got := Next(base.Add(tc.now), tc.d); !got.Equal(base.Add(tc.want)) {
			t.Errorf("Next(base+%v, %v) = base+%v, want base+%v", tc.now, tc.d, got.Sub(base), tc.want)
		}
	}
}

// A ticker fires on the grid, never before: its first beat is the first
// multiple of the period after it was made, each next one the first after
// the Rearm. (Timers of one period made at different moments then share
// their beats, which lets several readers share one wake-up.)
func TestTickerOnGrid(t *testing.T) {
	const d = 20 * time.Millisecond
	made := time.Now()
	tk := NewTicker(d)
	defer tk.Stop()
	want := Next(made, d)
	for range 3 {
		at := <-tk.C
		if at.Before(want) {
			t.Fatalf("beat at %v, before the grid point %v", at, want)
		}
		rearmed := time.Now()
		tk.Rearm()
		want = Next(rearmed, d)
	}
}
