package correlator

import (
	"net/netip"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

func (h *harness) retransmit(ms int, local, remote string, state events.TCPState, segs int) {
	h.c.Retransmit(events.Retransmit{
		Time:     at(ms),
		PID:      10,
		Tuple:    events.Tuple{Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote)},
		State:    state,
		Segments: segs,
	})
}

func retransmitEvents(s *span.Span) []span.Event {
	var out []span.Event
	for _, ev := range s.Events {
		if ev.Name == EventRetransmit {
			out = append(out, ev)
		}
	}
	return out
}

// TestRetransmitsOnSpan: retransmissions between a span's start and end,
// on its connection and from its end, are on the span; others are not.
func TestRetransmitsOnSpan(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(10, 0xa)
	h.bind(id, 5, 0, serverAddr, clientAddr)
	h.retransmit(1, serverAddr, clientAddr, events.TCPEstablished, 1) // before the request
	h.read(id, 11, 2, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	h.retransmit(3, serverAddr, clientAddr, events.TCPEstablished, 1)
	h.retransmit(4, clientAddr, serverAddr, events.TCPEstablished, 1)   // the peer's socket
	h.retransmit(5, serverAddr, "10.9.9.9:1", events.TCPEstablished, 1) // another connection
	h.retransmit(6, serverAddr, clientAddr, events.TCPFinWait1, 3)
	h.write(id, 11, 7, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.retransmit(8, serverAddr, clientAddr, events.TCPEstablished, 1) // after the end

	// A second request on the connection sees only its own.
	h.read(id, 11, 10, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	h.write(id, 11, 11, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

	spans := h.wantSpans(2)
	first, second := spans[0], spans[1]
	if got := attrs(first)[AttrRetransmits]; got != int64(4) {
		t.Errorf("first span %s = %v, want 4 segments", AttrRetransmits, got)
	}
	evs := retransmitEvents(first)
	if len(evs) != 2 {
		t.Fatalf("first span has %d retransmit events, want 2: %+v", len(evs), evs)
	}
	if !evs[0].Time.Equal(at(3)) || !evs[1].Time.Equal(at(6)) {
		t.Errorf("event times %v, %v; want %v, %v", evs[0].Time, evs[1].Time, at(3), at(6))
	}
	state := func(ev span.Event) any {
		for _, kv := range ev.Attributes {
			if kv.Key == "network.connection.state" {
				return kv.Value.AsInterface()
			}
		}
		return nil
	}
	if state(evs[0]) != "established" || state(evs[1]) != "fin_wait_1" {
		t.Errorf("event states %v, %v", state(evs[0]), state(evs[1]))
	}
	if _, ok := attrs(second)[AttrRetransmits]; ok || len(second.Events) != 0 {
		t.Errorf("second span has retransmissions: %v, %d events", attrs(second)[AttrRetransmits], len(second.Events))
	}
}

// TestRetransmitBeforeItsData: the TCP collector's ring may deliver a
// retransmission before the TLS data that starts the span it belongs to.
func TestRetransmitBeforeItsData(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(10, 0xa)
	h.bind(id, 5, 0, serverAddr, clientAddr)
	h.retransmit(3, serverAddr, clientAddr, events.TCPEstablished, 1)
	h.read(id, 11, 2, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	h.write(id, 11, 4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	if got := attrs(h.wantSpans(1)[0])[AttrRetransmits]; got != int64(1) {
		t.Errorf("%s = %v, want 1", AttrRetransmits, got)
	}
}

// TestRetransmitEventCap: events are capped, the count is not.
func TestRetransmitEventCap(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(10, 0xa)
	h.bind(id, 5, 0, serverAddr, clientAddr)
	h.read(id, 11, 1, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	for i := 0; i < 300; i++ {
		h.c.Retransmit(events.Retransmit{
			Time:     at(2).Add(time.Duration(i) * time.Microsecond),
			Tuple:    events.Tuple{Local: netip.MustParseAddrPort(serverAddr), Remote: netip.MustParseAddrPort(clientAddr)},
			State:    events.TCPEstablished,
			Segments: 1,
		})
	}
	h.write(id, 11, 3, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	s := h.wantSpans(1)[0]
	if got := attrs(s)[AttrRetransmits]; got != int64(300) {
		t.Errorf("%s = %v, want 300", AttrRetransmits, got)
	}
	if n := len(retransmitEvents(s)); n != maxRetransmitEvents {
		t.Errorf("%d events, want %d", n, maxRetransmitEvents)
	}
}

// TestRetransmitLogBounded: a connection without requests in flight keeps
// only recent retransmissions, and never more than maxRetransmitLog.
func TestRetransmitLogBounded(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	id := cid(10, 0xa)
	h.bind(id, 5, 0, serverAddr, clientAddr)
	for i := 0; i < 2*maxRetransmitLog; i++ {
		h.retransmit(i, serverAddr, clientAddr, events.TCPEstablished, 1)
	}
	cn := h.c.lookup(id)
	if n := len(cn.retrans); n > maxRetransmitLog || n == 0 {
		t.Fatalf("%d retransmissions remembered", n)
	}
	if oldest := cn.retrans[0].at; oldest.Before(at(2*maxRetransmitLog - 1).Add(-retransmitKeep)) {
		t.Errorf("oldest remembered %v, older than the keep window", oldest)
	}
	for i := 1; i < len(cn.retrans); i++ {
		if cn.retrans[i].at.Before(cn.retrans[i-1].at) {
			t.Fatalf("log not sorted at %d", i)
		}
	}
}
