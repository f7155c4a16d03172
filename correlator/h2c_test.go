package correlator

import (
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

// upgradeRequest is curl --http2's request on an http:// URL: HTTP/1.1
// asking to switch to h2c, with the client's SETTINGS in HTTP2-Settings.
func upgradeRequest(path string) string {
	settings := base64.RawURLEncoding.EncodeToString([]byte{0, 3, 0, 0, 0, 100, 0, 4, 0, 0x10, 0, 0})
	return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.14.1\r\nAccept: */*\r\n" +
		"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: " + settings + "\r\n\r\n"
}

const switching = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"

// TestH2CUpgrade: an HTTP/1.1 request with "Upgrade: h2c" that the server
// accepts (101) is stream 1 of the HTTP/2 connection that follows (RFC
// 7540 §3.2): one span for it, ended by its HTTP/2 response, then a span
// per later stream; the server and client ends of each are linked. The
// calls are cut as the two ends make them: the server writes the 101
// alone, the client may read it with the frames that follow.
func TestH2CUpgrade(t *testing.T) {
	for _, tc := range []struct {
		name string
		// together: the client reads the 101 and the server's first
		// frames in one call.
		together bool
		// clientLate: the client's records are read after all the
		// server's (a new process's records held until discovery knows
		// it): the server switched, and saw stream 3, before the client
		// began the upgrading request.
		clientLate bool
	}{{"101 alone", false, false}, {"101 with frames", true, false}, {"client read late", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tc.clientLate {
				cfg = graceConfig()
			}
			h := newHarness(t, cfg)
			cl, sv := cid(1, 0x10), cid(2, 0x20)
			h.bindPlain(cl, 5, 0, "127.0.0.1:40000", "127.0.0.1:8080")
			h.bindPlain(sv, 6, 0, "127.0.0.1:8080", "127.0.0.1:40000")
			var client, server []func()
			cw := func(ms int, b string) { client = append(client, func() { h.write(cl, 11, ms, b) }) }
			cr := func(ms int, b string) { client = append(client, func() { h.read(cl, 11, ms, b) }) }
			sw := func(ms int, b string) { server = append(server, func() { h.write(sv, 21, ms, b) }) }
			sr := func(ms int, b string) { server = append(server, func() { h.read(sv, 21, ms, b) }) }

			req := upgradeRequest("/first")
			cw(1, req)
			sr(2, req)
			s := newH2Wire(t)
			if err := s.fr.WriteSettings(); err != nil {
				t.Fatal(err)
			}
			settings := s.take()
			s.headers(1, false, ":status", "200", "content-type", "text/plain")
			if err := s.fr.WriteData(1, true, []byte("hello")); err != nil {
				t.Fatal(err)
			}
			resp1 := s.take()
			sw(3, switching)
			sw(4, settings)
			sw(5, resp1)
			if tc.together {
				cr(6, switching+settings+resp1)
			} else {
				cr(6, switching)
				cr(7, settings+resp1)
			}
			c := newH2Wire(t)
			c.out.WriteString(http2.ClientPreface)
			if err := c.fr.WriteSettings(); err != nil {
				t.Fatal(err)
			}
			c.headers(3, true, ":method", "GET", ":scheme", "http", ":path", "/second", ":authority", "127.0.0.1:8080")
			reqs := c.take()
			cw(8, reqs)
			sr(9, reqs)
			s.headers(3, true, ":status", "404")
			resp3 := s.take()
			sw(10, resp3)
			cr(11, resp3)

			order := []func(){client[0], server[0], server[1], server[2], server[3]}
			order = append(order, client[1:len(client)-2]...)
			order = append(order, client[len(client)-2], server[4], server[5], client[len(client)-1])
			if tc.clientLate {
				// Two rings, the server's read first and past every
				// record, the client's not yet.
				srvRing, _ := h.c.Ring(), h.c.Ring()
				order = append(append(server, func() {
					h.readTo(srvRing, 1000)
					h.c.ReleaseHeld(at(1000))
					h.wantSpans(0)
				}), client...)
			}
			for _, f := range order {
				f()
			}

			spans := h.wantSpans(4)
			got := map[string]*span.Span{}
			var keys []string
			for _, sp := range spans {
				k := fmt.Sprintf("%s %s %v %v", sp.Kind, attrs(sp)["url.path"], attrs(sp)["http.response.status_code"], attrs(sp)["network.protocol.version"])
				got[k] = sp
				keys = append(keys, k)
			}
			sort.Strings(keys)
			want := []string{"client /first 200 2", "client /second 404 2", "server /first 200 2", "server /second 404 2"}
			if strings.Join(keys, "|") != strings.Join(want, "|") {
				t.Fatalf("spans %q, want %q", keys, want)
			}
			for _, k := range []string{"/first 200 2", "/second 404 2"} {
				cs, ss := got["client "+k], got["server "+k]
				if ss.ParentSpanID != cs.SpanID || ss.TraceID != cs.TraceID {
					t.Errorf("%s: server span parent %s, want its client span %s", k, ss.ParentSpanID, cs.SpanID)
				}
			}
			checkAttrs(t, got["server /first 200 2"], map[string]any{"http.request.method": "GET", "user_agent.original": "curl/8.14.1"})
			if first := got["client /first 200 2"]; first.End.Sub(first.Start) < 4*time.Millisecond {
				t.Errorf("the upgraded request's span ends %v after it starts: before its HTTP/2 response", first.End.Sub(first.Start))
			}
		})
	}
}

// TestH2CUpgradeDeclined: a server that ignores "Upgrade: h2c" (nginx
// over plain HTTP, curl --http2 on an http:// URL) answers in HTTP/1.1 and
// the connection stays HTTP/1.1; an upgrade to another protocol (a
// WebSocket) still leaves HTTP after one span.
func TestH2CUpgradeDeclined(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	sv := cid(2, 0x20)
	h.bindPlain(sv, 6, 0, "127.0.0.1:8080", "127.0.0.1:40000")
	h.read(sv, 21, 1, upgradeRequest("/a"))
	h.write(sv, 21, 2, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	h.read(sv, 21, 3, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	h.write(sv, 21, 4, "HTTP/1.1 204 No Content\r\n\r\n")
	h.read(sv, 21, 5, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	h.write(sv, 21, 6, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello")
	h.read(sv, 21, 7, http2.ClientPreface)
	var got []string
	for _, sp := range h.wantSpans(3) {
		got = append(got, fmt.Sprintf("%s %v %v", attrs(sp)["url.path"], attrs(sp)["http.response.status_code"], attrs(sp)["network.protocol.version"]))
	}
	sort.Strings(got)
	if want := []string{"/a 200 1.1", "/b 204 1.1", "/ws 101 1.1"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("spans %q, want %q", got, want)
	}
}

// TestPeekedRead: curl peeks one byte (recv with MSG_PEEK) to see whether
// an idle HTTP/2 connection is still alive before it reuses it. The
// sockets collector reports the peek as a read whose sequence ends where
// the last read ended (the socket's read position did not move); it is not
// decoded, so the frame that it peeked into is decoded once, whole.
func TestPeekedRead(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	cl := cid(1, 0x10)
	h.bindPlain(cl, 5, 0, "127.0.0.1:40000", "127.0.0.1:8080")
	read := func(ms int, seq uint32, b string) {
		h.data(events.Data{Conn: cl, TID: 11, Time: at(ms), Dir: events.Read, Size: len(b), Bytes: []byte(b), Seq: seq, HasSeq: true})
	}
	c := newH2Wire(t)
	c.out.WriteString(http2.ClientPreface)
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	c.headers(1, true, ":method", "GET", ":scheme", "http", ":path", "/one", ":authority", "a")
	h.write(cl, 11, 1, c.take())
	s := newH2Wire(t)
	if err := s.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	s.headers(1, true, ":status", "200")
	first := s.take()
	read(2, 1000, first)
	if err := s.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	ack := s.take()
	seq := 1000 + uint32(len(first))
	read(3, seq-1, ack[:1]) // the peek: a byte before the read position
	read(4, seq, ack)
	c.headers(3, true, ":method", "GET", ":scheme", "http", ":path", "/two", ":authority", "a")
	h.write(cl, 11, 5, c.take())
	s.headers(3, true, ":status", "404")
	read(6, seq+uint32(len(ack)), s.take())
	var got []string
	for _, sp := range h.wantSpans(2) {
		got = append(got, fmt.Sprintf("%v %v", attrs(sp)["url.path"], attrs(sp)["http.response.status_code"]))
	}
	sort.Strings(got)
	if want := []string{"/one 200", "/two 404"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("spans %q, want %q", got, want)
	}
	if n := h.metric("periscope_reads_peeked_total"); n != 1 {
		t.Errorf("%v peeked reads counted, want 1", n)
	}
}
