package ktime

import (
	"math"
	"testing"
	"time"
)

// TestProgress: progress never goes back, a stopped reader is past every
// time, and the least of several is the slowest reader's.
func TestProgress(t *testing.T) {
	var a, b Progress
	a.Advance(100)
	a.Advance(50)
	if got := a.Load(); got != 100 {
		t.Errorf("after 100 then 50: %d, want 100", got)
	}
	if _, ok := Least(nil); ok {
		t.Error("Least of no progress reports one")
	}
	b.Advance(70)
	if got, ok := Least([]*Progress{&a, &b}); !ok || got != 70 {
		t.Errorf("Least = %d, %v; want 70, true", got, ok)
	}
	b.Done()
	if got, _ := Least([]*Progress{&a, &b}); got != 100 {
		t.Errorf("Least with a stopped reader = %d, want 100", got)
	}
	if got := b.Load(); got != math.MaxUint64 {
		t.Errorf("stopped reader's progress %d, want the end of time", got)
	}
}

// TestProgressLimit: a limit caps the progress reported until it is
// lifted; a limit past the progress changes nothing.
func TestProgressLimit(t *testing.T) {
	for _, tc := range []struct {
		name         string
		read, limit  uint64
		want, lifted uint64
	}{
		{"held before read", 100, 40, 40, 100},
		{"held past read", 100, 150, 100, 100},
		{"no limit", 100, 0, 100, 100},
	} {
		var p Progress
		p.Advance(tc.read)
		p.Limit(tc.limit)
		if got := p.Load(); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
		p.Limit(0)
		if got := p.Load(); got != tc.lifted {
			t.Errorf("%s: lifted %d, want %d", tc.name, got, tc.lifted)
		}
	}
	var p Progress
	p.Limit(10)
	p.Done()
	if got := p.Load(); got != math.MaxUint64 {
		t.Errorf("stopped reader with a limit: %d, want the end of time", got)
	}
}

// TestClockMono: Mono inverts Time.
func TestClockMono(t *testing.T) {
	c := NewClock()
	now := Now()
	if got := c.Mono(c.Time(now)); got != now {
		t.Errorf("Mono(Time(%d)) = %d", now, got)
	}
	if d := time.Since(c.Time(now)); d < 0 || d > time.Second {
		t.Errorf("Time(Now()) is %v from now", d)
	}
}

// BenchmarkAdvance: what a ring reader pays per record it hands on.
func BenchmarkAdvance(b *testing.B) {
	var p Progress
	for i := range b.N {
		p.Advance(uint64(i))
	}
}

// TestProgressCaught: Caught calls what OnCaught set, and nothing without it.
func TestProgressCaught(t *testing.T) {
	var p Progress
	p.Caught()
	n := 0
	p.OnCaught(func() { n++ })
	p.Caught()
	p.Caught()
	if n != 2 {
		t.Errorf("%d calls, want 2", n)
	}
}
