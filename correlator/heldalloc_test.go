//go:build !race

package correlator

import (
	"context"
	"testing"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

// Allocation counts do not hold under the race detector: its sync.Pool
// drops some of what is put back.
// countingExporter counts the spans exported to it.
type countingExporter struct{ n int }

func (e *countingExporter) Export(*span.Span)              { e.n++ }
func (e *countingExporter) Shutdown(context.Context) error { return nil }

// A Go server on loopback holds every span until the rings are read past
// its end (awaitsPeer): its held exchanges leave, all at once or the
// oldest first, without an allocation per round of holds once warm.
func TestHeldRequestAllocations(t *testing.T) {
	for _, tc := range []struct {
		name string
		// read is how far the ring is read before the release, given
		// the time of the round's last request: all of it, or its first
		// two requests of four (the others leave in the next round).
		read func(last int) int
	}{
		{"whole", func(last int) int { return last + 1 }},
		{"oldest first", func(last int) int { return last - 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.BindGrace = DefaultBindGrace
			exp := &countingExporter{}
			c, err := New(cfg, exp, oneProc{procs{}.Process(1)}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			ring := c.Ring()
			id, ms, held := uint64(0), 0, 0
			round := func() {
				for range 4 { // keep-alive requests of one connection
					id++
					ms++
					c.RequestStart(events.RequestStart{PID: 1, ID: id, Kind: events.RequestServer, Time: at(ms), FD: 3,
						Tuple: tuple("127.0.0.1:8443", "127.0.0.1:50000"), Goroutine: 0xc0001000})
					c.RequestEnd(events.RequestEnd{PID: 1, ID: id, Kind: events.RequestServer, Time: at(ms), Method: "GET",
						Path: "/api", Host: "127.0.0.1:8443", Status: 200, RequestBodySize: -1, ResponseBodySize: 2})
				}
				held = c.nheld
				ring.Advance(c.clock.Mono(at(tc.read(ms))))
				c.ReleaseHeld(at(ms))
			}
			round()
			if held != 4 || exp.n == 0 {
				t.Fatalf("%d held, %d exported: want the round's 4 held, some exported", held, exp.n)
			}
			if n := testing.AllocsPerRun(100, round); n != 0 {
				t.Errorf("%v allocations per round of holds, want 0", n)
			}
		})
	}
}
