package correlator

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/linking"
	"github.com/periscope-apm/periscope/span"
)

// An exported exchange is reused for later requests (reuse), but not while
// another exchange may still read it: a server request whose span left
// before its child client call ended is that child's parent until the
// child's span is built, however many requests come and go meanwhile.
func TestReusedExchangeKeepsParent(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	in, out, other := cid(1, 1), cid(1, 2), cid(1, 3)
	ok := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	h.read(in, 11, 1, "GET /front HTTP/1.1\r\n\r\n")
	h.write(out, 11, 2, "GET /backend HTTP/1.1\r\n\r\n") // child of /front
	h.write(in, 11, 3, ok)                               // /front ends first
	for i := range 50 {                                  // exchanges come and go
		h.read(other, 12, 4+2*i, fmt.Sprintf("GET /churn/%d HTTP/1.1\r\n\r\n", i))
		h.write(other, 12, 5+2*i, ok)
	}
	h.read(out, 11, 200, ok)

	spans := h.wantSpans(52)
	front, child := spans[0], spans[51]
	frontAndChild(t, front, child)
	seen := map[string]bool{}
	for _, s := range spans {
		if id := s.SpanID.String(); seen[id] {
			t.Errorf("span ID %s twice", id)
		} else {
			seen[id] = true
		}
		if s != front && s != child && s.TraceID == front.TraceID {
			t.Errorf("%s in /front's trace", s.Name)
		}
	}
}

// The two ends of a request on one node (a client and a server process)
// pair, whichever is exported first, while other requests reuse
// exchanges: a paired exchange is never reused.
func TestReusedExchangeKeepsPeer(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	cl, sv, other := cid(1, 1), cid(2, 1), cid(2, 2)
	h.bind(cl, 3, 0, "10.0.0.1:40000", "10.0.0.1:8080")
	h.bind(sv, 4, 0, "10.0.0.1:8080", "10.0.0.1:40000")
	ok := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	for r := range 20 {
		ms := 1000 * r
		h.write(cl, 7, ms+1, fmt.Sprintf("GET /r%c HTTP/1.1\r\n\r\n", 'a'+r))
		h.read(sv, 8, ms+2, fmt.Sprintf("GET /r%c HTTP/1.1\r\n\r\n", 'a'+r))
		h.write(sv, 8, ms+3, ok)
		for i := range 5 {
			h.read(other, 9, ms+4+2*i, "GET /churn HTTP/1.1\r\n\r\n")
			h.write(other, 9, ms+5+2*i, ok)
		}
		h.read(cl, 7, ms+100, ok)
	}
	spans := h.wantSpans(20 * 7)
	byName := map[string][]int{}
	for i, s := range spans {
		byName[s.Name] = append(byName[s.Name], i)
	}
	for r := range 20 {
		ends := byName[fmt.Sprintf("GET /r%c", 'a'+r)]
		if len(ends) != 2 {
			t.Fatalf("/r/%d: %d spans", r, len(ends))
		}
		srv, cli := spans[ends[0]], spans[ends[1]]
		if srv.Process.PID != 2 {
			srv, cli = cli, srv
		}
		if srv.ParentSpanID != cli.SpanID || srv.TraceID != cli.TraceID {
			t.Errorf("/r/%d: server trace %v parent %v, client %v %v", r, srv.TraceID, srv.ParentSpanID, cli.TraceID, cli.SpanID)
		}
	}
}

// A keep-alive connection's requests allocate nothing in the correlator
// once warm: their exchanges are reused.
func TestRequestAllocations(t *testing.T) {
	serve := boundServer(t, oneProc{procs{}.Process(1)})
	req := []byte("GET /api HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
	if n := testing.AllocsPerRun(100, func() { serve(req, resp) }); n != 0 {
		t.Errorf("%v allocations per request, want 0", n)
	}
}

// A connection keeps the mirror of its tuple (the other end's connection,
// traced on this node) while no tuple changes (Correlator.mirror): when
// one end closes and a new connection takes the same ports, the end that
// stayed pairs with the new one.
func TestMirrorReplaced(t *testing.T) {
	for _, replace := range []string{"client", "server"} {
		t.Run(replace, func(t *testing.T) {
			h := newHarness(t, DefaultConfig())
			cl, sv := cid(1, 1), cid(2, 1)
			const cli, srv = "127.0.0.1:40000", "127.0.0.1:8443"
			h.bind(cl, 3, 0, cli, srv)
			h.bind(sv, 4, 0, srv, cli)
			ok := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
			round := func(ms int, path string) {
				h.write(cl, 1, ms+1, "GET "+path+" HTTP/1.1\r\n\r\n")
				h.read(sv, 2, ms+2, "GET "+path+" HTTP/1.1\r\n\r\n")
				h.write(sv, 2, ms+3, ok)
				h.read(cl, 1, ms+4, ok)
			}
			round(0, "/one")
			if replace == "client" {
				h.c.Close(events.Close{Conn: cl, Time: at(10)})
				cl = cid(1, 2)
				h.bind(cl, 5, 11, cli, srv)
			} else {
				h.c.Close(events.Close{Conn: sv, Time: at(10)})
				sv = cid(2, 2)
				h.bind(sv, 6, 11, srv, cli)
			}
			round(20, "/two")
			round(30, "/three")
			spans := h.wantSpans(6)
			for i := 0; i < 6; i += 2 {
				s, c := spans[i], spans[i+1]
				if s.Process.PID != 2 {
					s, c = c, s
				}
				if s.Name != c.Name || s.ParentSpanID != c.SpanID || s.TraceID != c.TraceID {
					t.Errorf("%s / %s: server trace %v parent %v, client %v %v", s.Name, c.Name, s.TraceID, s.ParentSpanID, c.TraceID, c.SpanID)
				}
			}
		})
	}
}

// A server whose requests come on ever new threads (a thread per request)
// keeps few idle threads' states, and a thread's client call is still the
// child of the request that thread serves.
func TestManyThreads(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	in, out := cid(1, 1), cid(1, 2)
	ok := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	const n = 3 * maxIdleThreads
	for i := range n {
		tid, ms := uint32(100+i), 10*i
		h.read(in, tid, ms+1, fmt.Sprintf("GET /front%d HTTP/1.1\r\n\r\n", i%2))
		if i%7 == 0 {
			h.read(in, tid+1, ms+2, "GET /other HTTP/1.1\r\n\r\n") // another thread's: pipelined
		}
		h.write(out, tid, ms+3, "GET /backend HTTP/1.1\r\n\r\n")
		h.read(out, tid, ms+4, ok)
		h.write(in, tid, ms+5, ok)
		if i%7 == 0 {
			h.write(in, tid+1, ms+6, ok)
		}
	}
	if got := len(h.c.pids[1].threads); got > maxIdleThreads {
		t.Errorf("%d threads kept", got)
	}
	spans := h.exp.spans
	bySpan := map[string]int{}
	for i, s := range spans {
		bySpan[s.SpanID.String()] = i
	}
	children := 0
	for _, s := range spans {
		if s.Name != "GET /backend" {
			continue
		}
		children++
		i, ok := bySpan[s.ParentSpanID.String()]
		if !ok || !strings.HasPrefix(spans[i].Name, "GET /front") || spans[i].TraceID != s.TraceID {
			t.Fatalf("backend call: parent %v (found %v)", s.ParentSpanID, ok)
		}
	}
	if children != n {
		t.Errorf("%d backend calls, want %d", children, n)
	}
}

// heldLinker keeps every lookup pending until the test answers it.
type heldLinker struct {
	qs []linking.Query
	ws []linking.Waiter
}

func (l *heldLinker) Remote(a netip.Addr) bool { return a == netip.MustParseAddr("10.1.0.1") }
func (l *heldLinker) Lookup(q linking.Query, _ time.Time, w linking.Waiter) linking.Result {
	l.qs, l.ws = append(l.qs, q), append(l.ws, w)
	return linking.Pending
}

// answer hands back every pending lookup: request k's client span is
// span ID k+1 in trace k+1.
func (l *heldLinker) answer(c *Correlator) {
	ds := make([]linking.Done, len(l.ws))
	for i, w := range l.ws {
		var a linking.Answer
		a.Found = true
		binary.BigEndian.PutUint64(a.TraceID[8:], l.qs[i].Seq+1)
		binary.BigEndian.PutUint64(a.SpanID[:], l.qs[i].Seq+1)
		ds[i] = linking.Done{W: w, A: a, R: linking.Linked}
	}
	l.qs, l.ws = l.qs[:0], l.ws[:0]
	c.LinkDoneAll(ds)
}

// A server request looked up on another node is reused once the linker
// has handed it back and the queue of lookups has let go of it (it was
// allocated for every request while linking was on), and each request's
// span still gets its own answer: the answers of a batch come after
// later requests have begun, on the exchanges the earlier ones let go of.
func TestLinkedRequestReused(t *testing.T) {
	l := &heldLinker{}
	cfg := DefaultConfig()
	cfg.Linker, cfg.LinkWait = l, time.Hour
	cfg.Now = func() time.Time { return t0 }
	h := newHarness(t, cfg)
	id := cid(2, 1)
	h.bind(id, 3, 0, "10.1.0.2:80", "10.1.0.1:40000")
	const rounds, batch = 40, 5
	for r := range rounds {
		for i := range batch {
			ms := 10 * (r*batch + i)
			h.read(id, 7, ms+1, fmt.Sprintf("GET /r%d HTTP/1.1\r\n\r\n", r*batch+i))
			h.write(id, 7, ms+2, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
		l.answer(h.c)
	}
	spans := h.wantSpans(rounds * batch)
	for _, s := range spans {
		var k uint64
		if _, err := fmt.Sscanf(s.Name, "GET /r%d", &k); err != nil {
			t.Fatalf("span %q: %v", s.Name, err)
		}
		k++ // requests are counted from 1 on the connection
		if got := binary.BigEndian.Uint64(s.ParentSpanID[:]); got != k+1 || !s.RemoteParent {
			t.Errorf("%s: parent %v (remote %v), want span %d", s.Name, s.ParentSpanID, s.RemoteParent, k+1)
		}
		if got := binary.BigEndian.Uint64(s.TraceID[8:]); got != k+1 {
			t.Errorf("%s: trace %v, want %d", s.Name, s.TraceID, k+1)
		}
	}
	// The first batch's exchanges, handed back, serve the later ones.
	if n := len(h.c.freeX); n == 0 || n > batch {
		t.Errorf("%d exchanges free after %d answered batches of %d, want 1..%d", n, rounds, batch, batch)
	}
}

// A request whose lookup timed out is not reused while the linker may
// still hand it back: a late answer must not become the parent of a later
// request that took its exchange.
func TestLateAnswerNotOnReused(t *testing.T) {
	l := &heldLinker{}
	now := t0
	cfg := DefaultConfig()
	cfg.Linker, cfg.LinkWait = l, 50*time.Millisecond
	cfg.Now = func() time.Time { return now }
	h := newHarness(t, cfg)
	id := cid(2, 1)
	h.bind(id, 3, 0, "10.1.0.2:80", "10.1.0.1:40000")
	ok := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	h.read(id, 7, 1, "GET /late HTTP/1.1\r\n\r\n")
	h.write(id, 7, 2, ok)
	now = at(1000)
	h.c.ExpireLinks(now) // /late goes out unlinked
	late := &heldLinker{qs: l.qs, ws: l.ws}
	l.qs, l.ws = nil, nil
	h.read(id, 7, 1001, "GET /next HTTP/1.1\r\n\r\n")
	h.write(id, 7, 1002, ok)
	late.answer(h.c) // /late's answer, after its wait
	l.answer(h.c)
	spans := h.wantSpans(2)
	if s := spans[0]; s.Name != "GET /late" || s.ParentSpanID.IsValid() {
		t.Errorf("%s: parent %v, want none (timed out)", s.Name, s.ParentSpanID)
	}
	if s := spans[1]; s.Name != "GET /next" || binary.BigEndian.Uint64(s.ParentSpanID[:]) != 3 {
		t.Errorf("%s: parent %v, want span 3 (its own answer)", s.Name, s.ParentSpanID)
	}
}

// A Go server request seen whole stays its goroutine's request after its
// span is exported, for a call the goroutine made while it was in flight
// and that is read late (another collector's ring): it is reused only
// once its goroutine serves another request, however many requests on
// other goroutines come and go meanwhile.
func TestReusedWholeKeepsGoroutine(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	const pid, g = 40, 0xc0001234
	serve := func(id uint64, goroutine uint32, fd int32, ms int, path string) {
		h.c.RequestStart(events.RequestStart{PID: pid, ID: id, Kind: events.RequestServer, Time: at(ms), FD: fd,
			Tuple: tuple("127.0.0.1:8080", fmt.Sprintf("127.0.0.1:%d", 50000+fd)), Goroutine: goroutine})
		h.end(pid, id, events.RequestServer, ms+20, "GET", path, 200)
	}
	serve(100, g, 3, 1, "/front")
	for i := range 50 { // other goroutines' requests come and go
		serve(uint64(200+i), g+uint32(1+i%3), int32(4+i%3), 30+30*i, fmt.Sprintf("/churn/%d", i))
	}
	// The call /front's goroutine made at 10 ms, read now.
	out := cid(pid, 1<<61)
	h.bindPlain(out, 9, 10, "127.0.0.1:40000", "10.0.0.9:80")
	call := func(ms int, dir events.Direction, s string) {
		h.data(events.Data{Conn: out, TID: 7, Time: at(ms), Dir: dir, Goroutine: g, Size: len(s), Bytes: []byte(s)})
	}
	call(10, events.Write, "GET /backend HTTP/1.1\r\n\r\n")
	call(12, events.Read, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

	spans := h.wantSpans(52)
	front, child := spans[0], spans[51]
	frontAndChild(t, front, child)
	for _, s := range spans[1:51] {
		if s.TraceID == front.TraceID {
			t.Errorf("%s in /front's trace", s.Name)
		}
	}
}

// A Go server's keep-alive requests seen whole allocate nothing in the
// correlator once warm: each reuses the exchange of the request its
// goroutine served before.
func TestWholeRequestAllocations(t *testing.T) {
	c, err := New(DefaultConfig(), discardExporter{}, oneProc{procs{}.Process(1)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := uint64(0)
	serve := func() {
		id++
		c.RequestStart(events.RequestStart{PID: 1, ID: id, Kind: events.RequestServer, Time: t0, FD: 3,
			Tuple: tuple(serverAddr, clientAddr), Goroutine: 0xc0001234})
		c.RequestEnd(events.RequestEnd{PID: 1, ID: id, Kind: events.RequestServer, Time: t0, Method: "GET", Path: "/api",
			Host: "api.example.com", Status: 200, RequestBodySize: -1, ResponseBodySize: 2})
	}
	if n := testing.AllocsPerRun(100, serve); n != 0 {
		t.Errorf("%v allocations per request, want 0", n)
	}
}

// frontAndChild checks that front is the request /front and child the call
// /backend it made (same trace, front its parent).
func frontAndChild(t *testing.T, front, child *span.Span) {
	t.Helper()
	if front.Name != "GET /front" || child.Name != "GET /backend" {
		t.Fatalf("order: %q %q", front.Name, child.Name)
	}
	if child.ParentSpanID != front.SpanID || child.TraceID != front.TraceID {
		t.Errorf("child: trace %v parent %v, want /front's %v %v", child.TraceID, child.ParentSpanID, front.TraceID, front.SpanID)
	}
}
