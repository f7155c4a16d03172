package correlator

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/linking"
	"github.com/periscope-apm/periscope/span"
)

// syncRecorder is a recorder that spans may reach from the linker's
// goroutines.
// With countOnly (benchmarks) it counts them without keeping them, so that
// the heap it would grow does not weigh on the figures.
type syncRecorder struct {
	mu        sync.Mutex
	spans     []*span.Span
	countOnly bool
	n         int
}

func (r *syncRecorder) Export(s *span.Span) {
	r.mu.Lock()
	r.n++
	if !r.countOnly {
		s.Hold()
		r.spans = append(r.spans, s)
	}
	r.mu.Unlock()
}
func (r *syncRecorder) Shutdown(context.Context) error { return nil }

func (r *syncRecorder) wait(tb testing.TB, n int) []*span.Span {
	tb.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		r.mu.Lock()
		got := r.n
		spans := append([]*span.Span(nil), r.spans...)
		r.mu.Unlock()
		if got >= n {
			return spans
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d spans, want %d", got, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// node is one simulated node: a correlator with a linking server and a
// client of the other nodes.
type node struct {
	addr   netip.Addr
	c      *Correlator
	exp    *syncRecorder
	reg    *prometheus.Registry
	listen string
	srv    *linking.Server
	cl     *linking.Client
}

// newNodes starts one node per address, each a peer of all the others.
func newNodes(tb testing.TB, wait time.Duration, addrs ...string) []*node {
	tb.Helper()
	nodes := make([]*node, len(addrs))
	lns := make([]net.Listener, len(addrs))
	for i, a := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		lns[i] = ln
		nodes[i] = &node{addr: netip.MustParseAddr(a), listen: ln.Addr().String(), exp: &syncRecorder{}, reg: prometheus.NewRegistry()}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, n := range nodes {
		var peers []string
		for j, o := range nodes {
			if j != i {
				peers = append(peers, o.listen)
			}
		}
		own := []netip.Addr{n.addr}
		cl, err := linking.NewClient(linking.ClientConfig{Peers: peers, Token: "tok", Wait: wait, Local: func() []netip.Addr { return own }})
		if err != nil {
			tb.Fatal(err)
		}
		n.cl = cl
		cfg := DefaultConfig()
		cfg.Linker, cfg.LinkWait = cl, wait
		if n.c, err = New(cfg, n.exp, procs{}, nil, n.reg); err != nil {
			tb.Fatal(err)
		}
		if n.srv, err = linking.NewServer(linking.ServerConfig{Token: "tok", Answerer: n.c, Addresses: func() []netip.Addr { return own }}); err != nil {
			tb.Fatal(err)
		}
		wg.Add(3)
		go func() { defer wg.Done(); n.srv.Serve(lns[i]) }()
		go func() { defer wg.Done(); cl.Run(ctx) }()
		go func() { defer wg.Done(); n.c.Run(ctx) }()
	}
	tb.Cleanup(func() {
		cancel()
		for _, n := range nodes {
			n.srv.Stop()
		}
		wg.Wait()
		for _, n := range nodes {
			n.cl.Close()
		}
	})
	for _, n := range nodes {
		for _, o := range nodes {
			for deadline := time.Now().Add(10 * time.Second); o != n && !n.cl.Owned(o.addr); time.Sleep(2 * time.Millisecond) {
				if time.Now().After(deadline) {
					tb.Fatal("peers never announced their addresses")
				}
			}
		}
	}
	return nodes
}

// conn is one end of a connection on a node, fed with real times.
type endpoint struct {
	n   *node
	id  events.ConnID
	tid uint32
}

func (n *node) endpoint(pid uint32, key uint64, local, remote string) endpoint {
	n.c.Bind(events.Bind{Conn: cid(pid, key), FD: 3, Time: time.Now(), Tuple: tuple(local, remote)})
	return endpoint{n: n, id: cid(pid, key), tid: pid * 10}
}

func (e endpoint) data(dir events.Direction, s string) {
	d := events.Data{Conn: e.id, TID: e.tid, Time: time.Now(), Dir: dir, Size: len(s), Bytes: []byte(s)}
	e.n.c.Data(d)
	clobber(d.Bytes) // the ring reuses its records
}

const okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

func TestLinkAcrossNodes(t *testing.T) {
	nodes := newNodes(t, 2*time.Second, "10.1.0.1", "10.1.0.2", "10.1.0.3")
	a, b, c := nodes[0], nodes[1], nodes[2]
	// A calls B on a keep-alive connection; each request B serves calls C.
	cliA := a.endpoint(1, 1, "10.1.0.1:40000", "10.1.0.2:80")
	srvB := b.endpoint(2, 1, "10.1.0.2:80", "10.1.0.1:40000")
	cliB := b.endpoint(2, 2, "10.1.0.2:41000", "10.1.0.3:80")
	srvC := c.endpoint(3, 1, "10.1.0.3:80", "10.1.0.2:41000")
	srvB.tid = cliB.tid // B calls C from the thread serving the request
	const n = 5
	for i := range n {
		a, b := fmt.Sprintf("GET /a%d HTTP/1.1\r\n\r\n", i), fmt.Sprintf("GET /b%d HTTP/1.1\r\n\r\n", i)
		cliA.data(events.Write, a)
		srvB.data(events.Read, a)
		cliB.data(events.Write, b)
		srvC.data(events.Read, b)
		srvC.data(events.Write, okResponse)
		cliB.data(events.Read, okResponse)
		srvB.data(events.Write, okResponse)
		cliA.data(events.Read, okResponse)
	}
	spans := byName(append(append(a.exp.wait(t, n), b.exp.wait(t, 2*n)...), c.exp.wait(t, n)...))
	traces := make(map[trace.TraceID]bool)
	for i := range n {
		get := func(path string, k span.Kind) *span.Span {
			s := spans[fmt.Sprintf("GET %s%d %s", path, i, k)]
			if s == nil {
				t.Fatalf("no %s span of %s%d", k, path, i)
			}
			return s
		}
		ca, sb, cb, sc := get("/a", span.Client), get("/a", span.Server), get("/b", span.Client), get("/b", span.Server)
		if sb.ParentSpanID != ca.SpanID || !sb.RemoteParent || sc.ParentSpanID != cb.SpanID || cb.ParentSpanID != sb.SpanID {
			t.Errorf("request %d: parents wrong: B server %v (want %v), C server %v (want %v)", i, sb.ParentSpanID, ca.SpanID, sc.ParentSpanID, cb.SpanID)
		}
		for _, s := range []*span.Span{sb, cb, sc} {
			if s.TraceID != ca.TraceID {
				t.Errorf("request %d: %s %s in trace %v, want %v", i, s.Kind, s.Name, s.TraceID, ca.TraceID)
			}
		}
		if traces[ca.TraceID] {
			t.Errorf("request %d shares the trace of another", i)
		}
		traces[ca.TraceID] = true
	}
	if got := metricOf(t, b.reg, "periscope_link_lookups_total", "linked"); got != n {
		t.Errorf("B linked %v lookups, want %d", got, n)
	}
	if got := metricOf(t, c.reg, "periscope_link_lookups_total", "linked"); got != n {
		t.Errorf("C linked %v lookups, want %d", got, n)
	}
}

func metricOf(t testing.TB, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	h := &harness{t: t.(*testing.T), reg: reg}
	return h.metric(name, "result", result)
}

// stuckLinker queues every lookup and never answers.
type stuckLinker struct{ asked []linking.Query }

func (l *stuckLinker) Remote(a netip.Addr) bool { return a != netip.MustParseAddr("10.1.0.2") }
func (l *stuckLinker) Lookup(q linking.Query, _ time.Time, _ linking.Waiter) linking.Result {
	l.asked = append(l.asked, q)
	if q.Local.Addr() == netip.MustParseAddr("10.9.9.9") {
		return linking.NoOwner
	}
	return linking.Pending
}

func TestLinkTimeoutHoldsDependents(t *testing.T) {
	l := &stuckLinker{}
	cfg := DefaultConfig()
	cfg.Linker, cfg.LinkWait = l, 300*time.Millisecond
	cfg.Now = func() time.Time { return at(1) } // the request read as it came
	h := newHarness(t, cfg)
	srv, cli := cid(2, 1), cid(2, 2)
	h.bind(srv, 3, 0, "10.1.0.2:80", "10.1.0.1:40000")
	h.bind(cli, 4, 0, "10.1.0.2:41000", "10.1.0.2:81")
	h.read(srv, 20, 1, "GET /a HTTP/1.1\r\n\r\n")
	h.write(cli, 20, 2, "GET /b HTTP/1.1\r\n\r\n")
	h.read(cli, 20, 3, okResponse)
	h.write(srv, 20, 4, okResponse)
	if len(h.exp.spans) != 0 {
		t.Fatalf("%d spans exported while the lookup waits", len(h.exp.spans))
	}
	want := []linking.Query{
		{Local: netip.MustParseAddrPort("10.1.0.1:40000"), Remote: netip.MustParseAddrPort("10.1.0.2:80"), Seq: 1},
	}
	if len(l.asked) != 1 || l.asked[0] != want[0] {
		t.Fatalf("asked %+v, want %+v", l.asked, want)
	}
	h.c.ExpireLinks(at(200))
	if len(h.exp.spans) != 0 {
		t.Fatalf("spans exported before the wait")
	}
	h.c.ExpireLinks(at(400))
	spans := h.wantSpans(2)
	sv, cl := spans[0], spans[1] // the parent is exported first
	if sv.Kind != span.Server || sv.ParentSpanID.IsValid() || cl.ParentSpanID != sv.SpanID || cl.TraceID != sv.TraceID {
		t.Errorf("unlinked server %v parent %v; client parent %v", sv.Kind, sv.ParentSpanID, cl.ParentSpanID)
	}
	if got := h.metric("periscope_link_lookups_total", "result", "timeout"); got != 1 {
		t.Errorf("timeouts counted %v, want 1", got)
	}
	// No owner: exported at once, counted.
	other := cid(2, 3)
	h.bind(other, 5, 500, "10.1.0.2:80", "10.9.9.9:5000")
	h.read(other, 30, 501, "GET /c HTTP/1.1\r\n\r\n")
	h.write(other, 30, 502, okResponse)
	h.wantSpans(3)
	if got := h.metric("periscope_link_lookups_total", "result", "no_owner"); got != 1 {
		t.Errorf("no_owner counted %v, want 1", got)
	}
}

// TestLinkWaitFromRead: an agent that reads its ring late (here 10 s after
// the request) still gives the lookup its whole wait, counted from when it
// read the request, not from the request's own time (which would have
// passed already: the span would leave unlinked at the next expiry).
func TestLinkWaitFromRead(t *testing.T) {
	l := &deadlineLinker{}
	cfg := DefaultConfig()
	read := at(10_000)
	cfg.Linker, cfg.LinkWait = l, 300*time.Millisecond
	cfg.Now = func() time.Time { return read }
	h := newHarness(t, cfg)
	srv := cid(2, 1)
	h.bind(srv, 3, 0, "10.1.0.2:80", "10.1.0.1:40000")
	h.read(srv, 20, 1, "GET /a HTTP/1.1\r\n\r\n")
	h.write(srv, 20, 2, okResponse)
	if want := read.Add(300 * time.Millisecond); len(l.deadlines) != 1 || !l.deadlines[0].Equal(want) {
		t.Errorf("lookup deadlines %v, want [%v]", l.deadlines, want)
	}
	h.c.ExpireLinks(at(10_200))
	if len(h.exp.spans) != 0 {
		t.Fatalf("the span left %v after it was read, before its wait", 200*time.Millisecond)
	}
	h.c.ExpireLinks(at(10_301))
	h.wantSpans(1)
	if got := h.metric("periscope_link_lookups_total", "result", "timeout"); got != 1 {
		t.Errorf("timeouts counted %v, want 1", got)
	}
}

// deadlineLinker queues every lookup, never answers, and keeps their
// deadlines.
type deadlineLinker struct{ deadlines []time.Time }

func (l *deadlineLinker) Remote(a netip.Addr) bool { return a != netip.MustParseAddr("10.1.0.2") }
func (l *deadlineLinker) Lookup(_ linking.Query, d time.Time, _ linking.Waiter) linking.Result {
	l.deadlines = append(l.deadlines, d)
	return linking.Pending
}

// BenchmarkLink measures the agent CPU of a linked request: A's client
// and B's server spans, with and without the lookup (both agents in this
// process, so the figure includes the answering side).
func BenchmarkLink(b *testing.B) {
	for _, linked := range []bool{false, true} {
		name := "unlinked"
		if linked {
			name = "linked"
		}
		b.Run(name, func(b *testing.B) {
			var a, s *node
			if linked {
				nodes := newNodes(b, 2*time.Second, "10.1.0.1", "10.1.0.2")
				a, s = nodes[0], nodes[1]
			} else {
				a, s = plainNode(b, "10.1.0.1"), plainNode(b, "10.1.0.2")
			}
			a.exp.countOnly, s.exp.countOnly = true, true
			cli := a.endpoint(1, 1, "10.1.0.1:40000", "10.1.0.2:80")
			srv := s.endpoint(2, 1, "10.1.0.2:80", "10.1.0.1:40000")
			req := "GET /a HTTP/1.1\r\nHost: b\r\n\r\n"
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				cli.data(events.Write, req)
				srv.data(events.Read, req)
				srv.data(events.Write, okResponse)
				cli.data(events.Read, okResponse)
			}
			s.exp.wait(b, b.N)
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			if linked {
				if got := metricOf2(s.reg, "linked"); got != float64(b.N) {
					b.Fatalf("%v of %d linked (timeout %v, not_found %v, dropped %v)", got, b.N,
						metricOf2(s.reg, "timeout"), metricOf2(s.reg, "not_found"), metricOf2(s.reg, "dropped"))
				}
			}
		})
	}
}

func plainNode(b *testing.B, addr string) *node {
	n := &node{addr: netip.MustParseAddr(addr), exp: &syncRecorder{}, reg: prometheus.NewRegistry()}
	var err error
	if n.c, err = New(DefaultConfig(), n.exp, procs{}, nil, n.reg); err != nil {
		b.Fatal(err)
	}
	return n
}

func metricOf2(reg *prometheus.Registry, result string) float64 {
	return counterOf(reg, "periscope_link_lookups_total", result)
}

// counterOf returns the value of counter name{result}, -1 when it is not
// there.
func counterOf(reg *prometheus.Registry, name, result string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if hasLabel(m, "result", result) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// cpuTime returns the process's user and system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// A ClusterIP Service: the client wrote to the Service's address, the
// server read from the client's own; the client's address and port find it.
func TestLinkThroughDNAT(t *testing.T) {
	nodes := newNodes(t, 2*time.Second, "10.1.0.1", "10.1.0.2")
	a, b := nodes[0], nodes[1]
	cli := a.endpoint(1, 1, "10.1.0.1:40000", "10.96.0.10:80")
	srv := b.endpoint(2, 1, "10.1.0.2:8080", "10.1.0.1:40000")
	for i := range 3 {
		req := fmt.Sprintf("GET /svc%d HTTP/1.1\r\n\r\n", i)
		cli.data(events.Write, req)
		srv.data(events.Read, req)
		srv.data(events.Write, okResponse)
		cli.data(events.Read, okResponse)
	}
	spans := byName(append(a.exp.wait(t, 3), b.exp.wait(t, 3)...))
	for i := range 3 {
		cl, sv := spans[fmt.Sprintf("GET /svc%d %s", i, span.Client)], spans[fmt.Sprintf("GET /svc%d %s", i, span.Server)]
		if cl == nil || sv == nil || sv.ParentSpanID != cl.SpanID || sv.TraceID != cl.TraceID {
			t.Errorf("request %d not linked through DNAT", i)
		}
	}
}

// A plaintext connection open before the agent saw it start (no
// StreamStart on its Bind): its requests have no ordinal both agents would
// agree on, so a server request is not looked up (counted no_key, exported
// at once, unlinked) and a client request is not answered for.
func TestLinkMidStream(t *testing.T) {
	l := &stuckLinker{}
	cfg := DefaultConfig()
	cfg.Linker, cfg.LinkWait = l, 300*time.Millisecond
	h := newHarness(t, cfg)
	bind := func(id events.ConnID, fd int32, start bool, local, remote string) {
		h.c.Bind(events.Bind{Conn: id, FD: fd, Time: at(0), Plaintext: true, StreamStart: start, Tuple: events.Tuple{
			Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote)}})
	}
	mid, fresh := cid(2, 1), cid(2, 2)
	bind(mid, 3, false, "10.1.0.2:80", "10.1.0.1:40000")
	bind(fresh, 4, true, "10.1.0.2:80", "10.1.0.1:40001")
	for i := range 3 {
		h.read(mid, 20, 10*i+1, "GET /mid HTTP/1.1\r\n\r\n")
		h.write(mid, 20, 10*i+2, okResponse)
	}
	h.wantSpans(3)
	for _, s := range h.exp.spans {
		if s.ParentSpanID.IsValid() {
			t.Errorf("mid-stream server span has a parent %v", s.ParentSpanID)
		}
	}
	if len(l.asked) != 0 {
		t.Errorf("mid-stream requests looked up: %+v", l.asked)
	}
	if got := h.metric("periscope_link_lookups_total", "result", "no_key"); got != 3 {
		t.Errorf("no_key counted %v, want 3", got)
	}
	h.read(fresh, 21, 100, "GET /fresh HTTP/1.1\r\n\r\n")
	want := linking.Query{Local: netip.MustParseAddrPort("10.1.0.1:40001"), Remote: netip.MustParseAddrPort("10.1.0.2:80"), Seq: 1}
	if len(l.asked) != 1 || l.asked[0] != want {
		t.Errorf("a connection seen from its start: asked %+v, want %+v", l.asked, want)
	}

	// The answering side: a client connection seen mid-stream is not
	// answered for; one seen from its start is.
	midC, freshC := cid(2, 3), cid(2, 4)
	bind(midC, 5, false, "10.1.0.2:41000", "10.1.0.3:80")
	bind(freshC, 6, true, "10.1.0.2:41001", "10.1.0.3:80")
	for _, id := range []events.ConnID{midC, freshC} {
		h.write(id, 22, 200, "GET /c HTTP/1.1\r\n\r\n")
		h.read(id, 22, 201, okResponse)
	}
	// In runs of one connection, as batches hold them: each run's
	// connection is its own (the fresh connection's second request is
	// still open: only its conn knows it).
	h.write(freshC, 22, 202, "GET /c2 HTTP/1.1\r\n\r\n")
	midQ := linking.Query{Local: netip.MustParseAddrPort("10.1.0.2:41000"), Remote: netip.MustParseAddrPort("10.1.0.3:80"), Seq: 1}
	freshQ := linking.Query{Local: netip.MustParseAddrPort("10.1.0.2:41001"), Remote: netip.MustParseAddrPort("10.1.0.3:80"), Seq: 1}
	freshQ2 := freshQ
	freshQ2.Seq = 2
	qs := []linking.Query{midQ, freshQ2, freshQ, midQ, freshQ2}
	out := make([]linking.Answer, len(qs))
	h.c.answerAt(qs, out, at(300), at(300))
	for i, want := range []bool{false, true, true, false, true} {
		if out[i].Found != want {
			t.Errorf("answer %d (%v): found %v, want %v (mid-stream: not found; from the start: found)", i, qs[i].Local, out[i].Found, want)
		}
	}
}

// The answering side has not read its own record of the request yet (its
// ring lags): the request is not found, and that is not final until the
// ring has been read past the moment the query came. The Answer made
// before the client's record arrives must not be the last word.
func TestLinkAnswerWaitsForRings(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Linker, cfg.LinkWait = &stuckLinker{}, 300*time.Millisecond
	h := newHarness(t, cfg)
	ring := h.c.Ring()
	q := []linking.Query{{Local: netip.MustParseAddrPort("10.1.0.2:41000"), Remote: netip.MustParseAddrPort("10.1.0.3:80"), Seq: 1}}
	out := make([]linking.Answer, 1)
	// Asked at 100 ms; the ring has been read up to 50 ms only.
	h.readTo(ring, 50)
	if final := h.c.answerAt(q, out, at(100), at(100)); out[0].Found || final {
		t.Fatalf("before the client's record: found %v, final %v; want neither", out[0].Found, final)
	}
	cli := cid(2, 1)
	h.bind(cli, 4, 10, "10.1.0.2:41000", "10.1.0.3:80")
	h.write(cli, 22, 90, "GET /c HTTP/1.1\r\n\r\n")
	h.readTo(ring, 120)
	if final := h.c.answerAt(q, out, at(100), at(130)); !out[0].Found || !final {
		t.Fatalf("after the client's record: found %v, final %v; want both", out[0].Found, final)
	}
	// A request this node never saw: final once the ring is past.
	q[0].Seq = 2
	if final := h.c.answerAt(q, out, at(110), at(130)); out[0].Found || !final {
		t.Errorf("unknown request: found %v, final %v; want not found, final", out[0].Found, final)
	}
	q[0].Seq = 3
	if final := h.c.answerAt(q, out, at(125), at(130)); out[0].Found || final {
		t.Errorf("unknown request asked after the ring's mark: found %v, final %v; want neither", out[0].Found, final)
	}
}

// Across two nodes: A's ring reader lags by far more than a batch's
// round trip, and B's server request, asked before A read its client's
// write, is still linked once A catches up (A holds the question until its
// ring has passed it, within B's wait).
func TestLinkAcrossNodesLaggingRing(t *testing.T) {
	nodes := newNodes(t, 2*time.Second, "10.1.0.1", "10.1.0.2")
	a, b := nodes[0], nodes[1]
	ring := a.c.Ring()
	ring.Advance(a.c.clock.Mono(time.Now()))
	cli := a.endpoint(1, 1, "10.1.0.1:40000", "10.1.0.2:80")
	srv := b.endpoint(2, 1, "10.1.0.2:80", "10.1.0.1:40000")
	const n = 3
	for i := range n {
		req := fmt.Sprintf("GET /lag%d HTTP/1.1\r\n\r\n", i)
		// B reads the request and asks; A's reader has not got to the
		// write yet.
		srv.data(events.Read, req)
		srv.data(events.Write, okResponse)
		time.Sleep(150 * time.Millisecond)
		cli.data(events.Write, req)
		cli.data(events.Read, okResponse)
		ring.Advance(a.c.clock.Mono(time.Now()))
	}
	spans := byName(append(a.exp.wait(t, n), b.exp.wait(t, n)...))
	for i := range n {
		cl, sv := spans[fmt.Sprintf("GET /lag%d %s", i, span.Client)], spans[fmt.Sprintf("GET /lag%d %s", i, span.Server)]
		if cl == nil || sv == nil || sv.ParentSpanID != cl.SpanID || sv.TraceID != cl.TraceID {
			t.Errorf("request %d not linked across the lagging ring", i)
		}
	}
	if got := metricOf(t, b.reg, "periscope_link_lookups_total", "linked"); got != n {
		t.Errorf("B linked %v lookups, want %d (not_found %v)", got, n, metricOf(t, b.reg, "periscope_link_lookups_total", "not_found"))
	}
}

// seqData feeds s as one call whose first byte has TCP sequence number seq.
func (e endpoint) seqData(dir events.Direction, seq uint32, s string) {
	d := events.Data{Conn: e.id, TID: e.tid, Time: time.Now(), Dir: dir, Size: len(s), Bytes: []byte(s), Seq: seq, HasSeq: true}
	e.n.c.Data(d)
	clobber(d.Bytes)
}

func (n *node) plainEndpoint(pid uint32, key uint64, start bool, local, remote string) endpoint {
	n.c.Bind(events.Bind{Conn: cid(pid, key), FD: 3, Time: time.Now(), Plaintext: true, StreamStart: start, Tuple: tuple(local, remote)})
	return endpoint{n: n, id: cid(pid, key), tid: pid * 10}
}

// A plaintext keep-alive connection that B's agent saw only mid-stream
// (and A's, in the second case, too): B's requests have no ordinal and are
// looked up by the TCP sequence number of the call they began in. The two
// ends cut the stream into calls differently; a request is linked when
// the write and the read it began in start at the same byte, is not found
// otherwise, and is never linked to another request's client span. B's
// agent seeing the connection from its start asks with both keys: A's
// agent, which saw it mid-stream, answers by the TCP key (the ordinal it
// does not have finds nothing); seen from the start by both, every
// request is linked, by one key or the other.
func TestLinkTCPSeq(t *testing.T) {
	for _, tc := range []struct {
		clientStart, serverStart bool
		linked                   map[int]bool
		counts                   map[string]float64
	}{
		{true, false, map[int]bool{0: true, 1: true, 4: true}, map[string]float64{"linked": 3, "not_found": 2, "no_key": 1}},
		{false, false, map[int]bool{0: true, 1: true, 4: true}, map[string]float64{"linked": 3, "not_found": 2, "no_key": 1}},
		{false, true, map[int]bool{0: true, 1: true, 4: true}, map[string]float64{"linked": 3, "not_found": 3, "no_key": 0}},
		{true, true, map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true, 5: true}, map[string]float64{"linked": 6, "not_found": 0, "no_key": 0}},
	} {
		clientStart, linked := tc.clientStart, tc.linked
		t.Run(fmt.Sprintf("client_from_start=%v/server_from_start=%v", clientStart, tc.serverStart), func(t *testing.T) {
			nodes := newNodes(t, 2*time.Second, "10.1.0.1", "10.1.0.2")
			a, b := nodes[0], nodes[1]
			cli := a.plainEndpoint(1, 1, clientStart, "10.1.0.1:40000", "10.1.0.2:80")
			srv := b.plainEndpoint(2, 1, tc.serverStart, "10.1.0.2:80", "10.1.0.1:40000")
			req := func(i int) string { return fmt.Sprintf("GET /r%d HTTP/1.1\r\nHost: b\r\n\r\n", i) }
			respond := func(n int) {
				for range n {
					srv.data(events.Write, okResponse)
					cli.data(events.Read, okResponse)
				}
			}
			seq := uint32(0xfffffff0) // wraps around
			// r0: one write, one read at the same byte: linked.
			cli.seqData(events.Write, seq, req(0))
			srv.seqData(events.Read, seq, req(0))
			respond(1)
			seq += uint32(len(req(0)))
			// r1 and r2 in one write (pipelined), read one by one: r1
			// linked; r2 began second in its write, so A has no key
			// for it, and B's (its read's) is not found.
			r12 := req(1) + req(2)
			cli.seqData(events.Write, seq, r12)
			srv.seqData(events.Read, seq, req(1))
			srv.seqData(events.Read, seq+uint32(len(req(1))), req(2))
			respond(2)
			seq += uint32(len(r12))
			// r3 read in two parts, its head ending in the second: B's
			// key is the second read's, which no write of A starts at.
			r3 := req(3)
			cli.seqData(events.Write, seq, r3)
			srv.seqData(events.Read, seq, r3[:10])
			srv.seqData(events.Read, seq+10, r3[10:])
			respond(1)
			seq += uint32(len(r3))
			// r4 and r5 written one by one, read in one call: B's r4 is
			// linked, its r5 (second in its read) has no key.
			r45 := req(4) + req(5)
			cli.seqData(events.Write, seq, req(4))
			cli.seqData(events.Write, seq+uint32(len(req(4))), req(5))
			srv.seqData(events.Read, seq, r45)
			respond(2)

			spans := byName(append(a.exp.wait(t, 6), b.exp.wait(t, 6)...))
			for i := range 6 {
				cl, sv := spans[fmt.Sprintf("GET /r%d %s", i, span.Client)], spans[fmt.Sprintf("GET /r%d %s", i, span.Server)]
				if cl == nil || sv == nil {
					t.Fatalf("r%d: spans missing", i)
				}
				switch {
				case linked[i] && (sv.ParentSpanID != cl.SpanID || sv.TraceID != cl.TraceID):
					t.Errorf("r%d: server parent %v, want the client span %v", i, sv.ParentSpanID, cl.SpanID)
				case !linked[i] && sv.ParentSpanID.IsValid():
					t.Errorf("r%d: server span linked to %v, want unlinked", i, sv.ParentSpanID)
				}
			}
			for r, want := range tc.counts {
				if got := metricOf(t, b.reg, "periscope_link_lookups_total", r); got != want {
					t.Errorf("B counted %v lookups %s, want %v", got, r, want)
				}
			}
		})
	}
}

// A TLS connection (OpenSSL) whose handshake the agent did not see: its
// Bind tells (StartKnown without StreamStart), and it comes after the
// first request, which a TLS library's write reports at its entry, before
// the syscall that binds it. That request loses the ordinal it was given:
// a client connection seen mid-stream is never answered for by ordinal,
// and a server request on one is not looked up (no_key). One whose
// handshake was seen keeps its ordinals.
func TestLinkTLSMidStream(t *testing.T) {
	l := &stuckLinker{}
	cfg := DefaultConfig()
	cfg.Linker, cfg.LinkWait = l, 300*time.Millisecond
	h := newHarness(t, cfg)
	bind := func(id events.ConnID, fd int32, start bool, local, remote string) {
		h.c.Bind(events.Bind{Conn: id, FD: fd, Time: at(0), StartKnown: true, StreamStart: start, Tuple: events.Tuple{
			Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote)}})
	}
	midC, freshC := cid(2, 3), cid(2, 4)
	for i, id := range []events.ConnID{midC, freshC} {
		h.write(id, 22, 200, "GET /c HTTP/1.1\r\n\r\n")
		bind(id, int32(5+i), id == freshC, fmt.Sprintf("10.1.0.2:%d", 41000+i), "10.1.0.3:443")
		h.read(id, 22, 201, okResponse)
	}
	qs := []linking.Query{
		{Local: netip.MustParseAddrPort("10.1.0.2:41000"), Remote: netip.MustParseAddrPort("10.1.0.3:443"), Seq: 1},
		{Local: netip.MustParseAddrPort("10.1.0.2:41001"), Remote: netip.MustParseAddrPort("10.1.0.3:443"), Seq: 1},
	}
	out := make([]linking.Answer, len(qs))
	h.c.answerAt(qs, out, at(300), at(300))
	if out[0].Found || !out[1].Found {
		t.Errorf("answers: mid-stream %v (want not found), from the handshake %v (want found)", out[0].Found, out[1].Found)
	}

	mid := cid(2, 1)
	bind(mid, 3, false, "10.1.0.2:443", "10.1.0.1:40000")
	h.read(mid, 20, 301, "GET /mid HTTP/1.1\r\n\r\n")
	h.write(mid, 20, 302, okResponse)
	if len(l.asked) != 0 {
		t.Errorf("mid-stream TLS request looked up: %+v", l.asked)
	}
	if got := h.metric("periscope_link_lookups_total", "result", "no_key"); got != 1 {
		t.Errorf("no_key counted %v, want 1", got)
	}
}

// Go connections (gohttp's whole requests, gotls's plaintext) report
// nothing of how they began: Config.FromStart (internal/preopen) says
// whether each was seen from its start. One that was not has no ordinals:
// a server request on it is not looked up (no_key), a client request on
// it is not answered for; one that was keeps them.
func TestLinkGoMidStream(t *testing.T) {
	l := &stuckLinker{}
	cfg := DefaultConfig()
	cfg.Linker, cfg.LinkWait = l, 300*time.Millisecond
	old := map[events.Tuple]bool{
		tuple("10.1.0.2:80", "10.1.0.1:40000"):  true,
		tuple("10.1.0.2:41000", "10.1.0.3:80"):  true,
		tuple("10.1.0.2:443", "10.1.0.1:40002"): true,
		tuple("10.1.0.2:42000", "10.1.0.3:443"): true,
	}
	var asked []uint32
	cfg.FromStart = func(pid uint32, tu events.Tuple, _ time.Time) bool {
		asked = append(asked, pid)
		return !old[tu]
	}
	h := newHarness(t, cfg)

	// gohttp: server requests on an old and a fresh connection.
	h.start(7, 1, 0, events.RequestServer, 1, 5, tuple("10.1.0.2:80", "10.1.0.1:40000"))
	h.start(7, 2, 0, events.RequestServer, 2, 6, tuple("10.1.0.2:80", "10.1.0.1:40001"))
	if got := h.metric("periscope_link_lookups_total", "result", "no_key"); got != 1 {
		t.Errorf("gohttp: no_key counted %v, want 1", got)
	}
	want := linking.Query{Local: netip.MustParseAddrPort("10.1.0.1:40001"), Remote: netip.MustParseAddrPort("10.1.0.2:80"), Seq: 1}
	if len(l.asked) != 1 || l.asked[0] != want {
		t.Errorf("gohttp: asked %+v, want only %+v", l.asked, want)
	}
	// gohttp: client requests, answered only on the fresh connection.
	h.start(7, 3, 0, events.RequestClient, 3, 7, tuple("10.1.0.2:41000", "10.1.0.3:80"))
	h.start(7, 4, 0, events.RequestClient, 3, 8, tuple("10.1.0.2:41001", "10.1.0.3:80"))
	h.end(7, 3, events.RequestClient, 4, "GET", "/c", 200)
	h.end(7, 4, events.RequestClient, 4, "GET", "/c", 200)
	qs := []linking.Query{
		{Local: netip.MustParseAddrPort("10.1.0.2:41000"), Remote: netip.MustParseAddrPort("10.1.0.3:80"), Seq: 1},
		{Local: netip.MustParseAddrPort("10.1.0.2:41001"), Remote: netip.MustParseAddrPort("10.1.0.3:80"), Seq: 1},
	}
	out := make([]linking.Answer, len(qs))
	h.c.answerAt(qs, out, at(300), at(300))
	if out[0].Found || !out[1].Found {
		t.Errorf("gohttp answers: open before %v (want not found), fresh %v (want found)", out[0].Found, out[1].Found)
	}

	// gotls: binds without a word of the connection's start.
	bind := func(id events.ConnID, fd int32, local, remote string) {
		h.c.Bind(events.Bind{Conn: id, FD: fd, Time: at(400), Tuple: tuple(local, remote)})
	}
	bind(cid(9, 1), 3, "10.1.0.2:443", "10.1.0.1:40002")
	bind(cid(9, 2), 4, "10.1.0.2:443", "10.1.0.1:40003")
	h.read(cid(9, 1), 20, 401, "GET /old HTTP/1.1\r\n\r\n")
	h.read(cid(9, 2), 21, 402, "GET /new HTTP/1.1\r\n\r\n")
	if got := h.metric("periscope_link_lookups_total", "result", "no_key"); got != 2 {
		t.Errorf("gotls: no_key counted %v in all, want 2", got)
	}
	want = linking.Query{Local: netip.MustParseAddrPort("10.1.0.1:40003"), Remote: netip.MustParseAddrPort("10.1.0.2:443"), Seq: 1}
	if len(l.asked) != 2 || l.asked[1] != want {
		t.Errorf("gotls: asked %+v, want %+v last", l.asked, want)
	}
	for id, local := range map[events.ConnID]string{cid(9, 3): "10.1.0.2:42000", cid(9, 4): "10.1.0.2:42001"} {
		h.write(id, 22, 500, "GET /c HTTP/1.1\r\n\r\n")
		bind(id, int32(id.Key+4), local, "10.1.0.3:443")
		h.read(id, 22, 501, okResponse)
	}
	qs = []linking.Query{
		{Local: netip.MustParseAddrPort("10.1.0.2:42000"), Remote: netip.MustParseAddrPort("10.1.0.3:443"), Seq: 1},
		{Local: netip.MustParseAddrPort("10.1.0.2:42001"), Remote: netip.MustParseAddrPort("10.1.0.3:443"), Seq: 1},
	}
	h.c.answerAt(qs, out, at(600), at(600))
	if out[0].Found || !out[1].Found {
		t.Errorf("gotls answers: open before %v (want not found), fresh %v (want found)", out[0].Found, out[1].Found)
	}
	if len(asked) != 8 || asked[0] != 7 || asked[4] != 9 {
		t.Errorf("FromStart asked for processes %v, want 7 four times, then 9 four times", asked)
	}
}

// A client connection's ended requests are remembered on the connection
// while it is open (conn.sent): those not asked yet are still answered
// after it closes, and after another connection takes its local address
// (a query whose server address a DNAT rewrote finds its connection by
// that address alone).
func TestLinkAnswerAfterClose(t *testing.T) {
	for _, tc := range []struct {
		name string
		gone func(h *harness, cli events.ConnID)
	}{
		{"closed", func(h *harness, cli events.ConnID) { h.c.Close(events.Close{Conn: cli, Time: at(200)}) }},
		{"displaced", func(h *harness, _ events.ConnID) { h.bind(cid(2, 2), 5, 200, "10.1.0.2:41000", "10.1.0.4:80") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Linker = &stuckLinker{}
			h := newHarness(t, cfg)
			cli := cid(2, 1)
			h.bind(cli, 4, 10, "10.1.0.2:41000", "10.1.0.3:80")
			const n, early = 40, 5 // more than a connection's Sent holds
			for i := range n {
				h.write(cli, 22, 20+2*i, fmt.Sprintf("GET /c/%d HTTP/1.1\r\n\r\n", i))
				h.read(cli, 22, 21+2*i, okResponse)
			}
			spans := h.wantSpans(n)
			// As the asking agent sees the connection: its server
			// address rewritten (a ClusterIP's DNAT).
			q := func(i int) linking.Query {
				return linking.Query{Local: netip.MustParseAddrPort("10.1.0.2:41000"), Remote: netip.MustParseAddrPort("10.9.8.7:80"), Seq: uint64(i + 1)}
			}
			qs := make([]linking.Query, 0, n)
			for i := range early {
				qs = append(qs, q(i))
			}
			out := make([]linking.Answer, n)
			h.c.answerAt(qs, out, at(150), at(150))
			tc.gone(h, cli)
			qs = qs[:0]
			for i := early; i < n; i++ {
				qs = append(qs, q(i))
			}
			h.c.answerAt(qs, out[early:], at(300), at(300))
			for i, a := range out {
				if !a.Found || a.SpanID != spans[i].SpanID || a.TraceID != spans[i].TraceID {
					t.Errorf("request %d: answered %+v, want its span %v", i+1, a, spans[i].SpanID)
				}
			}
		})
	}
}
