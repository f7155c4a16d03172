package correlator

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/periscope-apm/periscope/events"
)

// An event loop serves several requests on one thread: a client request
// made while exactly one is in flight is its child; with two in flight it
// has no parent rather than a guessed one.
func TestEventLoopParent(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	a, b, out := cid(1, 1), cid(1, 2), cid(1, 3)
	ok := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	h.read(a, 7, 1, "GET /a HTTP/1.1\r\n\r\n")
	h.write(out, 7, 2, "GET /one HTTP/1.1\r\n\r\n") // only /a in flight: child
	h.read(out, 7, 3, ok)
	h.read(b, 7, 4, "GET /b HTTP/1.1\r\n\r\n")
	h.write(out, 7, 5, "GET /two HTTP/1.1\r\n\r\n") // /a and /b in flight: unlinked
	h.read(out, 7, 6, ok)
	h.write(a, 7, 7, ok)
	h.write(out, 7, 8, "GET /three HTTP/1.1\r\n\r\n") // only /b again: child of /b
	h.read(out, 7, 9, ok)
	h.write(b, 7, 10, ok)

	spans := h.wantSpans(5)
	byName := map[string]int{}
	for i, s := range spans {
		byName[s.Name] = i
	}
	sa, sb := spans[byName["GET /a"]], spans[byName["GET /b"]]
	one, two, three := spans[byName["GET /one"]], spans[byName["GET /two"]], spans[byName["GET /three"]]
	if one.ParentSpanID != sa.SpanID || one.TraceID != sa.TraceID {
		t.Errorf("/one: parent %v, want /a %v", one.ParentSpanID, sa.SpanID)
	}
	if two.ParentSpanID.IsValid() {
		t.Errorf("/two made with two requests in flight has parent %v", two.ParentSpanID)
	}
	if three.ParentSpanID != sb.SpanID {
		t.Errorf("/three: parent %v, want /b %v", three.ParentSpanID, sb.SpanID)
	}
}

func (h *harness) bindPlain(id events.ConnID, fd int32, ms int, local, remote string) {
	h.c.Bind(events.Bind{Conn: id, FD: fd, Time: at(ms), Plaintext: true, Tuple: events.Tuple{
		Local:  netip.MustParseAddrPort(local),
		Remote: netip.MustParseAddrPort(remote),
	}})
}

// A plaintext connection is http; when a TLS library's collector reports
// the same connection of the same process, its report wins and the
// socket's bytes make no span, whichever was bound first.
func TestPlaintextAuthority(t *testing.T) {
	for _, plainFirst := range []bool{true, false} {
		h := newHarness(t, DefaultConfig())
		tls, sock, plain := cid(1, 0x7f00), cid(1, 1<<61|0x10), cid(1, 1<<61|0x20)
		bindBoth := func() {
			if plainFirst {
				h.bindPlain(sock, 5, 1, "10.0.0.1:443", "10.0.0.2:5000")
				h.bind(tls, 5, 2, "10.0.0.1:443", "10.0.0.2:5000")
			} else {
				h.bind(tls, 5, 1, "10.0.0.1:443", "10.0.0.2:5000")
				h.bindPlain(sock, 5, 2, "10.0.0.1:443", "10.0.0.2:5000")
			}
		}
		bindBoth()
		h.read(sock, 9, 3, "GET /twice HTTP/1.1\r\n\r\n")
		h.read(tls, 9, 3, "GET /twice HTTP/1.1\r\n\r\n")
		h.write(sock, 9, 4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		h.write(tls, 9, 4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		// Another, plaintext only, connection.
		h.bindPlain(plain, 6, 5, "10.0.0.1:80", "10.0.0.2:5001")
		h.read(plain, 9, 6, "GET /plain HTTP/1.1\r\n\r\n")
		h.write(plain, 9, 7, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

		spans := h.wantSpans(2)
		if a := attrs(spans[0]); spans[0].Name != "GET /twice" || a["url.scheme"] != "https" {
			t.Errorf("plain first %v: %s %v", plainFirst, spans[0].Name, a["url.scheme"])
		}
		if a := attrs(spans[1]); spans[1].Name != "GET /plain" || a["url.scheme"] != "http" {
			t.Errorf("plain first %v: %s %v", plainFirst, spans[1].Name, a["url.scheme"])
		}
		if got := h.metric("periscope_connections_superseded_total"); got != 1 {
			t.Errorf("superseded = %v, want 1", got)
		}
	}
}

// A collector that leaves a connection to gohttp (net/http's h2c seen by
// the sockets collector, a connection gotls met before gohttp) says so in
// order with its bytes: the request it saw the start of makes no span,
// where a close would end it as an error; a real close of another
// connection still does.
func TestCloseSuperseded(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	left, other := cid(1, 1<<61|0x10), cid(1, 1<<61|0x20)
	h.bindPlain(left, 5, 1, "10.0.0.1:80", "10.0.0.2:5000")
	h.read(left, 9, 2, "GET /seen-whole-elsewhere HTTP/1.1\r\n\r\n")
	h.c.Close(events.Close{Conn: left, Time: at(3), Superseded: true})
	h.c.Close(events.Close{Conn: left, Time: at(4)}) // nothing left to end
	h.bindPlain(other, 6, 5, "10.0.0.1:80", "10.0.0.2:5001")
	h.read(other, 9, 6, "GET /cut HTTP/1.1\r\n\r\n")
	h.c.Close(events.Close{Conn: other, Time: at(7)})
	spans := h.wantSpans(1)
	if spans[0].Name != "GET /cut" {
		t.Errorf("span %q, want GET /cut", spans[0].Name)
	}
	if got := h.metric("periscope_connections_superseded_total"); got != 1 {
		t.Errorf("superseded = %v, want 1", got)
	}
}

// TestSupersededKeepsFinished: a Go server's plaintext connection, traced
// from its exec by the sockets collector until gohttp attaches and learns
// the connection at its next request: the requests that ended before,
// still held while another ring lags (their client may come through it),
// keep their spans; the request in flight is gohttp's and makes none.
func TestSupersededKeepsFinished(t *testing.T) {
	h := newHarness(t, graceConfig())
	srvRing, cliRing := h.c.Ring(), h.c.Ring()
	sv := cid(2, 1<<61|0x10)
	h.bindPlain(sv, 5, 1, "127.0.0.1:8080", "127.0.0.1:40001")
	for i := range 3 {
		h.read(sv, 9, 10*i+2, fmt.Sprintf("GET /early/%d HTTP/1.1\r\nHost: svc\r\n\r\n", i))
		h.write(sv, 9, 10*i+3, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	}
	h.read(sv, 9, 40, "GET /gohttps HTTP/1.1\r\nHost: svc\r\n\r\n")
	h.readTo(srvRing, 41)
	h.c.ReleaseHeld(at(41))
	h.wantSpans(0) // held: the client's ring is behind
	h.c.Close(events.Close{Conn: sv, Time: at(41), Superseded: true})
	h.readTo(cliRing, 100)
	h.c.ReleaseHeld(at(100))
	spans := h.wantSpans(3)
	for i, s := range spans {
		if want := fmt.Sprintf("/early/%d", i); attrs(s)["url.path"] != want {
			t.Errorf("span %d: %v, want %s", i, attrs(s)["url.path"], want)
		}
	}
}
