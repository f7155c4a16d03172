package http2

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/http1"
	"github.com/periscope-apm/periscope/events"
)

// checkRec checks what every decoder must satisfy: each stream begins once
// and ends at most once, never before it began.
type checkRec struct {
	t     *testing.T
	begun map[protocol.Exchange]bool
	ended map[protocol.Exchange]bool
}

func (c *checkRec) Begin(x protocol.Exchange) {
	if c.begun[x] {
		c.t.Fatalf("exchange began twice")
	}
	c.begun[x] = true
}

func (c *checkRec) End(x protocol.Exchange, end time.Time, reason string) {
	if !c.begun[x] || c.ended[x] {
		c.t.Fatalf("exchange ended without beginning, or twice")
	}
	if end.Before(x.Start()) {
		c.t.Fatalf("exchange ends at %v before it starts at %v", end, x.Start())
	}
	c.ended[x] = true
}

// seedConn is a connection with a few calls, as the two directions' bytes.
func seedConn(t *testing.T) (reqs, resps []byte) {
	w := newWire(t)
	start(w)
	grpcRequest(w, 1, "/pkg.Svc/Get")
	w.data(req, 1, true, grpcMsg(3))
	grpcRequest(w, 3, "/pkg.Svc/Chat")
	w.data(req, 3, false, grpcMsg(40))
	w.flush(req)
	grpcResponse(w, 1, "5", 1)
	grpcResponse(w, 3, "0", 2)
	w.headers(resp, 5, true, ":status", "204")
	w.flush(resp)
	for _, c := range w.chunks {
		if c.side == req {
			reqs = append(reqs, c.b...)
		} else {
			resps = append(resps, c.b...)
		}
	}
	return reqs, resps
}

// FuzzDecoder feeds two directions cut into calls, some captured only in
// part, and detects the protocol from the first call as the correlator
// does. The corpus in testdata/fuzz holds connections from the framer.
func FuzzDecoder(f *testing.F) {
	reqs, resps := seedConn(&testing.T{})
	f.Add(reqs, resps, uint64(1))
	f.Add(reqs[len(Preface):], resps, uint64(2))
	p := testProtocol(f)
	f.Fuzz(func(t *testing.T, reqs, resps []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed>>7))
		p.Detect(reqs, events.Read)
		p.Detect(resps, events.Write)
		c := &checkRec{t: t, begun: map[protocol.Exchange]bool{}, ended: map[protocol.Exchange]bool{}}
		d := p.NewDecoder(protocol.Server, c)
		feedRandom(rng, reqs, resps, func(side protocol.Side, ch protocol.Chunk) bool {
			if err := d.Feed(side, ch); err != nil {
				t.Fatal(err)
			}
			return true
		})
		d.EOF(time.Unix(1, 0))
	})
}

// feedRandom cuts the two directions of a connection into calls of random
// sizes in a random interleaving, some captured only in part (a prefix and
// a tail), and gives them to feed until it returns false.
func feedRandom(rng *rand.Rand, reqs, resps []byte, feed func(protocol.Side, protocol.Chunk) bool) {
	streams := [2][]byte{reqs, resps}
	for ms := 0; len(streams[0])+len(streams[1]) > 0; ms++ {
		i := rng.IntN(2)
		if len(streams[i]) == 0 {
			i = 1 - i
		}
		n := min(len(streams[i]), 1+rng.IntN(300))
		b := streams[i][:n]
		streams[i] = streams[i][n:]
		ch := protocol.Chunk{Bytes: b, Size: n, Time: time.Unix(0, int64(ms))}
		if rng.IntN(4) == 0 && n > 20 {
			ch.Bytes, ch.Tail = b[:n/3], b[n-n/4:]
		}
		if !feed(protocol.Side(i+1), ch) {
			return
		}
	}
}

// FuzzH2CUpgrade: an HTTP/1.1 connection that may upgrade to h2c, decoded
// the way the correlator does (HTTP/1 until the decoder switches, then
// what the switch left over and the rest through the HTTP/2 decoder), cut
// into calls at random: every exchange, the upgrading request's included,
// begins once and ends at most once, never before it began.
func FuzzH2CUpgrade(f *testing.F) {
	const up = "GET /a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
	const ok = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
	reqs, resps := seedConn(&testing.T{})
	f.Add([]byte(up), []byte(ok), reqs, resps, uint64(1))
	f.Add([]byte(up), []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), []byte("GET /b HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 204 No Content\r\n\r\n"), uint64(2))
	p := testProtocol(f)
	h1 := http1.New(p.sem, p)
	f.Fuzz(func(t *testing.T, upReq, upResp, reqs, resps []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed>>7))
		c := &checkRec{t: t, begun: map[protocol.Exchange]bool{}, ended: map[protocol.Exchange]bool{}}
		var d protocol.Decoder = h1.NewDecoder(protocol.Server, c)
		feed := func(side protocol.Side, ch protocol.Chunk) bool {
			if err := d.Feed(side, ch); err != nil {
				return false
			}
			if !d.Left() {
				return true
			}
			sw, ok := d.(protocol.Switcher)
			if !ok {
				return false
			}
			_, next, rest := sw.Switched()
			if next == nil {
				return false
			}
			d = next
			for _, r := range rest {
				if err := d.Feed(r.Side, r.Chunk); err != nil {
					return false
				}
			}
			return true
		}
		feedRandom(rng, append(upReq, reqs...), append(upResp, resps...), feed)
		d.EOF(time.Unix(1, 0))
	})
}
