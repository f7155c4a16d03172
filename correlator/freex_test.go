package correlator

import (
	"fmt"
	"testing"
)

// TestHeldExchangesReused: a loopback server's spans are held until the
// rings are read past them and then leave together, more of them than a
// small free list keeps. Every exchange that leaves is kept for the next
// requests, which then allocate none.
func TestHeldExchangesReused(t *testing.T) {
	h := newHarness(t, graceConfig())
	ring := h.c.Ring()
	const conns, rounds, depth = 8, 24, 16
	const total = conns * rounds * depth
	if total <= 1024 || total > maxHeld {
		t.Fatalf("%d exchanges do not test a free list of more than 1024 under maxHeld %d", total, maxHeld)
	}
	req, resp := redisPipeline(depth)
	for i := range conns {
		h.bind(cid(1, uint64(i)), int32(10+i), 0, "127.0.0.1:6379", fmt.Sprintf("127.0.0.1:%d", 40000+i))
	}
	ms := 1
	for range rounds {
		for i := range conns {
			h.read(cid(1, uint64(i)), 1, ms, req)
			h.write(cid(1, uint64(i)), 1, ms+1, resp)
			ms += 2
		}
	}
	if h.c.nheld != total {
		t.Fatalf("%d exchanges held, want %d", h.c.nheld, total)
	}
	free := len(h.c.freeX)
	h.readTo(ring, ms+1000)
	h.c.ReleaseHeld(at(ms + 1000))
	h.wantSpans(total)
	if got := len(h.c.freeX) - free; got != total {
		t.Errorf("%d of the %d exchanges that left kept for reuse, want all", got, total)
	}
}
