package correlator

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// redisPipeline returns what a pipelining client sends and a server
// replies: depth SET and GET commands and their replies.
func redisPipeline(depth int) (req, resp string) {
	var rq, rs strings.Builder
	for i := range depth {
		if i%2 == 0 {
			rq.WriteString("*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nxxx\r\n")
			rs.WriteString("+OK\r\n")
		} else {
			rq.WriteString("*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n")
			rs.WriteString("$3\r\nxxx\r\n")
		}
	}
	return rq.String(), rs.String()
}

// TestHeldBounded: a loopback server's spans wait for their client end
// until every ring is read past them (awaitsPeer). With the rings far
// behind (an agent short of CPU) a busy server's connections each stay
// under maxHeldPerConn, yet together they held every span finished in the
// lag: maxHeld bounds them all, the excess leaving counted, and the held
// ones leave when the rings catch up.
func TestHeldBounded(t *testing.T) {
	h := newHarness(t, graceConfig())
	ring := h.c.Ring()
	const conns, rounds, depth = 8, 160, 16
	const total = conns * rounds * depth
	if total/conns >= maxHeldPerConn || total <= maxHeld {
		t.Fatalf("%d exchanges on %d connections do not test maxHeld", total, conns)
	}
	req, resp := redisPipeline(depth)
	for i := range conns {
		h.bind(cid(1, uint64(i)), int32(10+i), 0, "127.0.0.1:6379", fmt.Sprintf("127.0.0.1:%d", 40000+i))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ms := 1
	for r := range rounds {
		for i := range conns {
			h.read(cid(1, uint64(i)), 1, ms, req)
			h.write(cid(1, uint64(i)), 1, ms+1, resp)
			ms += 2
		}
		if r == rounds/2-1 {
			// Half way, under the bound: the held exchanges' memory.
			runtime.GC()
			runtime.ReadMemStats(&after)
			n := h.c.nheld
			t.Logf("%d exchanges held: %d bytes of heap each (%d spans exported so far)",
				n, (int64(after.HeapAlloc)-int64(before.HeapAlloc))/int64(max(n, 1)), len(h.exp.spans))
		}
	}
	if h.c.nheld != maxHeld {
		t.Errorf("%d exchanges held, want maxHeld %d", h.c.nheld, maxHeld)
	}
	if got, want := len(h.exp.spans), total-maxHeld; got != want {
		t.Errorf("%d spans exported before the rings caught up, want %d", got, want)
	}
	if got := testutil.ToFloat64(h.c.m.waitsCut); got != float64(total-maxHeld) {
		t.Errorf("periscope_span_waits_cut_total = %v, want %d", got, total-maxHeld)
	}
	h.readTo(ring, ms+1000)
	h.c.ReleaseHeld(at(ms + 1000))
	h.wantSpans(total)
	if h.c.nheld != 0 {
		t.Errorf("%d exchanges held after the rings caught up, want 0", h.c.nheld)
	}
}
