package correlator

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/linking"
)

// BenchmarkLinkSides measures each agent's CPU per linked span, the two
// agents in two processes talking real gRPC over loopback, so that each
// side's CPU is its own process's (getrusage), not a share of a profile.
//
// This process is node B (server spans: it asks); a copy of the test
// binary (linkPeerEnv) is node A (client spans: it remembers them and
// answers). b.N requests, in chunks of at most linkChunk on one keep-alive
// connection each, alternate between two configurations in ABBA order:
// unlinked (neither agent links) and linked. In each chunk A first builds
// the client spans (remembered for lookups when linked), then B reads the
// same requests at linkRate, so that lookups go in batches of the size the
// agents sent under load (~160 in results-linking.md: 22,000 requests/s,
// a batch every ~6 ms). Reported, per linked span:
//
//	A-ns/span  A's extra CPU: remembering the client span, plus answering
//	A-remember-ns/span  of which remembering (paid for every client span
//	           to another node, asked about or not)
//	B-ns/span  B's extra CPU: looking up, holding and settling the span
//	batch      queries per lookup call
//
// With PERISCOPE_LINK_BENCH_PEER_CONNS=N (N > 1), a chunk's requests go in
// turn over N keep-alive connections, as wrk's in MODE=linking, and A
// builds them at linkRate while B reads them, 10 ms behind: a lookup
// comes ~20 requests after its request on its connection, as in the
// agents under wrk's load, where by default it comes thousands of
// requests later (B reads a chunk after A built all of it). A-ns/span is
// then A's CPU over the whole chunk (building and answering), and
// A-remember-ns/span is not reported.
//
// Run it alone (GOMAXPROCS=2, both processes share the machine's CPUs):
//
//	go test -run '^$' -bench BenchmarkLinkSides -benchtime 200000x ./correlator
func BenchmarkLinkSides(b *testing.B) {
	peer := startLinkPeer(b)
	conns := 1
	if v := os.Getenv(linkPeerEnv + "_CONNS"); v != "" {
		if _, err := fmt.Sscan(v, &conns); err != nil || conns < 1 {
			b.Fatalf("%s_CONNS=%q", linkPeerEnv, v)
		}
	}
	// With PERISCOPE_LINK_BENCH_PHASES set, each serving phase's wall
	// times go to stderr (to split a system profile, perf record -k
	// realtime, between the linked and unlinked phases).
	phases := os.Getenv(linkPeerEnv+"_PHASES") != ""
	var cost [2]struct{ a, b, fed time.Duration }
	var batches, queries float64
	remaining, port := b.N, uint16(20000)
	for chunk := 0; remaining > 0; chunk++ {
		n := min(remaining, linkChunk)
		remaining -= n
		order := []bool{false, true}
		if chunk%2 == 1 {
			order = []bool{true, false}
		}
		for _, linked := range order {
			port += uint16(conns)
			var fedA time.Duration
			a0, nb := peer.cpu(b), peer.served(b)
			if conns == 1 {
				fedA = peer.feed(b, n, linked, port)
				a0 = peer.cpu(b)
			} else {
				peer.startFeed(b, n, linked, port, conns)
				time.Sleep(10 * time.Millisecond)
			}
			b0 := cpuTime()
			t0 := time.Now()
			peer.node(linked).serve(b, n, port, conns)
			b1 := cpuTime()
			if conns > 1 {
				peer.fed(b)
			}
			a1 := peer.cpu(b)
			if phases {
				fmt.Fprintf(os.Stderr, "phase %v %d %d\n", linked, t0.UnixNano(), time.Now().UnixNano())
			}
			i := 0
			if linked {
				i = 1
				batches += peer.served(b) - nb
				queries += float64(n)
			}
			cost[i].a += fedA + time.Duration(a1-a0)
			cost[i].fed += fedA
			cost[i].b += time.Duration(b1 - b0)
		}
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
	b.ReportMetric(per(cost[1].a)-per(cost[0].a), "A-ns/span")
	b.ReportMetric(per(cost[1].b)-per(cost[0].b), "B-ns/span")
	if conns == 1 {
		b.ReportMetric(per(cost[1].fed)-per(cost[0].fed), "A-remember-ns/span")
	}
	b.ReportMetric(per(cost[0].a), "A-unlinked-ns/span")
	b.ReportMetric(per(cost[0].b), "B-unlinked-ns/span")
	if batches > 0 {
		b.ReportMetric(queries/batches, "batch")
	}
}

const (
	linkPeerEnv = "PERISCOPE_LINK_BENCH_PEER"
	// linkChunk keeps a chunk's client spans within A's table of
	// recent client requests (32,768: a chunk much larger would wrap
	// it before B asks).
	linkChunk = 10000
	// linkRate is the requests per millisecond B reads.
	linkRate = 25
)

// linkPeer is node A, in another process (TestLinkBenchPeer).
type linkPeer struct {
	in  io.Writer
	out *bufio.Scanner
	b   [2]*linkServerNode // unlinked, linked
}

func (p *linkPeer) node(linked bool) *linkServerNode {
	if linked {
		return p.b[1]
	}
	return p.b[0]
}

func (p *linkPeer) ask(tb testing.TB, cmd string) []string {
	tb.Helper()
	if _, err := fmt.Fprintln(p.in, cmd); err != nil {
		tb.Fatal(err)
	}
	if !p.out.Scan() {
		tb.Fatalf("link peer: no answer to %q: %v", cmd, p.out.Err())
	}
	return strings.Fields(p.out.Text())
}

func (p *linkPeer) num(tb testing.TB, cmd string) float64 {
	tb.Helper()
	f := p.ask(tb, cmd)
	var v float64
	if len(f) != 2 {
		tb.Fatalf("link peer: %q answered %q", cmd, f)
	}
	if _, err := fmt.Sscan(f[1], &v); err != nil {
		tb.Fatal(err)
	}
	return v
}

// feed has A build n client spans on a connection from port, remembered
// for lookups when linked, and returns the CPU that took.
func (p *linkPeer) feed(tb testing.TB, n int, linked bool, port uint16) time.Duration {
	return time.Duration(p.num(tb, fmt.Sprintf("feed %d %v %d", n, linked, port)))
}

// startFeed has A build n client spans over conns connections from port
// on, in turn, linkRate a millisecond; fed waits for the end.
func (p *linkPeer) startFeed(tb testing.TB, n int, linked bool, port uint16, conns int) {
	tb.Helper()
	if _, err := fmt.Fprintf(p.in, "feed %d %v %d %d\n", n, linked, port, conns); err != nil {
		tb.Fatal(err)
	}
}

func (p *linkPeer) fed(tb testing.TB) {
	tb.Helper()
	if !p.out.Scan() {
		tb.Fatalf("link peer: no end of feed: %v", p.out.Err())
	}
}

func (p *linkPeer) cpu(tb testing.TB) int64 { return int64(p.num(tb, "cpu")) }

func (p *linkPeer) served(tb testing.TB) float64 { return p.num(tb, "served") }

func startLinkPeer(b *testing.B) *linkPeer {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLinkBenchPeer$", "-test.count=1")
	cmd.Env = append(os.Environ(), linkPeerEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); cmd.Wait() })
	p := &linkPeer{in: in, out: bufio.NewScanner(out)}
	var addr string
	for p.out.Scan() {
		if a, ok := strings.CutPrefix(p.out.Text(), "addr "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		b.Fatal("link peer did not start")
	}
	p.b[0] = newLinkServerNode(b, "")
	p.b[1] = newLinkServerNode(b, addr)
	return p
}

// linkServerNode is node B: server spans, asking A when linked.
type linkServerNode struct {
	linked bool
	c      *Correlator
	exp    *syncRecorder
	reg    *prometheus.Registry
}

func newLinkServerNode(b *testing.B, peer string) *linkServerNode {
	n := &linkServerNode{linked: peer != "", exp: &syncRecorder{countOnly: true}, reg: prometheus.NewRegistry()}
	cfg := DefaultConfig()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })
	if peer != "" {
		own := []netip.Addr{netip.MustParseAddr("10.1.0.2")}
		cl, err := linking.NewClient(linking.ClientConfig{Peers: []string{peer}, Token: "tok", Wait: 2 * time.Second,
			Local: func() []netip.Addr { return own }})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(cl.Close)
		wg.Add(1)
		go func() { defer wg.Done(); cl.Run(ctx) }()
		for deadline := time.Now().Add(10 * time.Second); !cl.Owned(netip.MustParseAddr("10.1.0.1")); time.Sleep(2 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatal("the link peer never announced its address")
			}
		}
		cfg.Linker, cfg.LinkWait = cl, 2*time.Second
	}
	var err error
	if n.c, err = New(cfg, n.exp, procs{}, nil, n.reg); err != nil {
		b.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); n.c.Run(ctx) }()
	return n
}

// serve reads n requests from A's conns connections (ports from port on,
// in turn) and answers them, linkRate a millisecond, and waits for their
// spans.
func (n *linkServerNode) serve(b *testing.B, count int, port uint16, conns int) {
	before := n.exp.count()
	linked0 := metricOf2(n.reg, "linked")
	srv := make([]endpoint, conns)
	seq := make([]uint32, conns)
	for k := range srv {
		id := cid(2, uint64(port)+uint64(k))
		n.c.Bind(events.Bind{Conn: id, FD: 3 + int32(k), Time: time.Now(), Plaintext: true, StreamStart: true,
			Tuple: tuple("10.1.0.2:80", fmt.Sprintf("10.1.0.1:%d", int(port)+k))})
		srv[k] = endpoint{n: &node{c: n.c}, id: id, tid: 20}
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := range count {
		if i%linkRate == 0 && i > 0 {
			<-tick.C
		}
		k := i % conns
		seq[k] = srv[k].dataSeq(events.Read, linkRequest(i/conns), seq[k])
		srv[k].data(events.Write, okResponse)
	}
	n.exp.wait(b, before+count)
	if n.linked {
		// A few may be answered not found (A's table of recent client
		// requests is set-associative): never more than 1%.
		if got := metricOf2(n.reg, "linked") - linked0; got < 0.99*float64(count) {
			b.Fatalf("%v of %d linked (timeout %v, not_found %v, dropped %v)", got, count,
				metricOf2(n.reg, "timeout"), metricOf2(n.reg, "not_found"), metricOf2(n.reg, "dropped"))
		}
	}
}

func (r *syncRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// dataSeq is data with the TCP sequence number of its first byte, as the
// sockets collector reports the requests' direction (both ends count the
// same bytes: each request has its TCP key as well as its ordinal, as in
// the agent); it returns the sequence number after it.
func (e endpoint) dataSeq(dir events.Direction, s string, seq uint32) uint32 {
	d := events.Data{Conn: e.id, TID: e.tid, Time: time.Now(), Dir: dir, Size: len(s), Bytes: []byte(s), Seq: seq, HasSeq: true}
	e.n.c.Data(d)
	clobber(d.Bytes)
	return seq + uint32(len(s))
}

func linkRequest(i int) string {
	return fmt.Sprintf("GET /r/%d HTTP/1.1\r\nHost: b\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n", i%1000)
}

// remoteLinker says that every address but A's is another node's, so that
// A's client spans to B are remembered; it looks nothing up.
type remoteLinker struct{}

func (remoteLinker) Remote(a netip.Addr) bool { return a != netip.MustParseAddr("10.1.0.1") }
func (remoteLinker) Lookup(linking.Query, time.Time, linking.Waiter) linking.Result {
	return linking.NoOwner
}

// TestLinkBenchPeer is node A of BenchmarkLinkSides when run by it (in
// another process); otherwise it returns at once. Commands on stdin, one
// answer line each on stdout: "feed N LINKED PORT" builds N client spans
// and answers with the CPU it took, "cpu" with the process's CPU so far,
// "served" with the lookup calls it answered.
func TestLinkBenchPeer(t *testing.T) {
	if os.Getenv(linkPeerEnv) == "" {
		return
	}
	if path := os.Getenv(linkPeerEnv + "_PROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var nodes [2]*node
	// With B reading while A writes (_CONNS), A's writes are a ring's
	// reads, as in the agent: a lookup of a request A has not read yet
	// waits for it, rather than being answered at once that A knows no
	// such request.
	var rings [2]*ktime.Progress
	concurrent := os.Getenv(linkPeerEnv+"_CONNS") != "" && os.Getenv(linkPeerEnv+"_CONNS") != "1"
	for i, linker := range []Linker{nil, remoteLinker{}} {
		n := &node{exp: &syncRecorder{countOnly: true}, reg: prometheus.NewRegistry()}
		cfg := DefaultConfig()
		cfg.Linker = linker
		var err error
		if n.c, err = New(cfg, n.exp, procs{}, nil, n.reg); err != nil {
			t.Fatal(err)
		}
		if concurrent {
			rings[i] = n.c.Ring()
		}
		go n.c.Run(ctx)
		nodes[i] = n
	}
	reg := prometheus.NewRegistry()
	own := []netip.Addr{netip.MustParseAddr("10.1.0.1")}
	srv, err := linking.NewServer(linking.ServerConfig{Token: "tok", Answerer: nodes[1].c, Registerer: reg,
		Addresses: func() []netip.Addr { return own }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()
	fmt.Println("addr", ln.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case (len(f) == 4 || len(f) == 5) && f[0] == "feed":
			var count int
			var linked bool
			var port uint16
			conns := 1
			fmt.Sscan(f[1], &count)
			fmt.Sscan(f[2], &linked)
			fmt.Sscan(f[3], &port)
			if len(f) == 5 {
				fmt.Sscan(f[4], &conns)
			}
			i := 0
			if linked {
				i = 1
			}
			fmt.Println("fed", feedClient(t, nodes[i], rings[i], count, port, conns))
		case len(f) == 1 && f[0] == "cpu":
			fmt.Println("cpu", cpuTime())
		case len(f) == 1 && f[0] == "served":
			fmt.Println("served", counterOf(reg, "periscope_link_requests_served_total", "answered"))
		default:
			t.Fatalf("link peer: bad command %q", in.Text())
		}
	}
}

// feedClient builds count client spans on a connection from port (or on
// conns connections from port on, in turn, linkRate a millisecond) and
// returns the CPU that took. ring, if not nil, is advanced past each
// request.
func feedClient(t *testing.T, n *node, ring *ktime.Progress, count int, port uint16, conns int) int64 {
	before := n.exp.count()
	cpu0 := cpuTime()
	cli := make([]endpoint, conns)
	seq := make([]uint32, conns)
	for k := range cli {
		id := cid(1, uint64(port)+uint64(k))
		n.c.Bind(events.Bind{Conn: id, FD: 3 + int32(k), Time: time.Now(), Plaintext: true, StreamStart: true,
			Tuple: tuple(fmt.Sprintf("10.1.0.1:%d", int(port)+k), "10.1.0.2:80")})
		cli[k] = endpoint{n: n, id: id, tid: 10}
	}
	// By the clock, catching up when late: B reads 10 ms behind.
	start := time.Now()
	for i := range count {
		if conns > 1 && i%linkRate == 0 {
			time.Sleep(time.Until(start.Add(time.Duration(i/linkRate) * time.Millisecond)))
		}
		k := i % conns
		seq[k] = cli[k].dataSeq(events.Write, linkRequest(i/conns), seq[k])
		cli[k].data(events.Read, okResponse)
		if ring != nil {
			ring.Advance(n.c.clock.Mono(time.Now()))
		}
	}
	n.exp.wait(t, before+count)
	return cpuTime() - cpu0
}

// BenchmarkLinkRemember is what the answering agent pays per client span
// to another node for the table of recent client requests (remembering
// each span, paid whether or not a lookup comes) and per query (finding
// it), as the correlator calls them: requests of 90 bytes on 50
// keep-alive connections in turn, each with its ordinal and TCP key,
// asked for by both 2,048 requests later (41 on each connection: more
// than a connection's linking.Sent holds, so its requests go to the
// table, and the lookups find them there: answer is given no connection).
// In the agent the table is cold: between two
// spans the agent's other work (rings, parsing, export) and the node's
// other processes evict it from the caches and the TLB. cold/ touches
// 16 KiB of a 64 MiB buffer between spans, and reports the table's part
// alone (table-cpu-ns/span: the loop's CPU time less the same
// pollution's without the table, in the same run); hot/ none
// (cpu-ns/span). CPU time (getrusage), not wall time: on a shared
// machine the wall time holds other processes' turns.
func BenchmarkLinkRemember(b *testing.B) { hotAndCold(b, benchRemember) }

// polluter returns a function that touches the next pollute bytes of a
// 64 MiB buffer, a cache line at a time: what the agent's other work does
// to the caches between two spans.
func polluter(pollute int) func() {
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = 1
	}
	off := 0
	return func() {
		for j := 0; j < pollute; j += 64 {
			buf[(off+j)&(len(buf)-1)]++
		}
		off += pollute
	}
}

// reportSpanCPU reports total, the CPU of b.N spans: as cpu-ns/span
// without pollution, else as table-cpu-ns/span, less the CPU of the
// touches the spans made (touches a span).
func reportSpanCPU(b *testing.B, total int64, pollute, touches int, touch func()) {
	if pollute == 0 {
		b.ReportMetric(float64(total)/float64(b.N), "cpu-ns/span")
		return
	}
	cpu1 := cpuTime()
	for range b.N * touches {
		touch()
	}
	b.ReportMetric(float64(total-(cpuTime()-cpu1))/float64(b.N), "table-cpu-ns/span")
}

// hotAndCold runs bench as hot/ (no cache pollution between spans) and
// cold/ (16 KiB touched between spans).
func hotAndCold(b *testing.B, bench func(b *testing.B, pollute int)) {
	for _, pollute := range []int{0, 16 << 10} {
		name := "hot"
		if pollute > 0 {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) { bench(b, pollute) })
	}
}

func benchRemember(b *testing.B, pollute int) {
	cfg := DefaultConfig()
	cfg.Linker = remoteLinker{}
	c, err := New(cfg, &syncRecorder{countOnly: true}, procs{}, nil, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	const conns, lag = 50, 2048
	xs := make([]*exchange, conns) // one a connection, its keys set per request
	for i := range xs {
		cn := &conn{c: c, role: roleClient, tuple: tuple(fmt.Sprintf("10.1.0.1:%d", 40000+i), "10.1.0.2:80")}
		c.byTuple[cn.tuple] = cn
		c.indexLocal(cn) // as Bind does
		xs[i] = &exchange{conn: cn}
	}
	// A connection's TCP keys: its initial sequence number (at random),
	// then 90 bytes a request.
	x := func(i int) *exchange {
		x, n := xs[i%conns], uint32(i/conns)
		x.seq, x.tcpSeq = uint64(n+1), uint64(uint32(i%conns)*2654435761+n*90)|linking.TCPSeqFlag
		return x
	}
	ans := linking.Answer{Found: true, TraceID: [16]byte{1}, SpanID: [8]byte{1}}
	touch := polluter(pollute)
	now := time.Now()
	for i := range lag {
		c.rememberClient(x(i), ans, now)
	}
	found := 0
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := lag; i < lag+b.N; i++ {
		c.rememberClient(x(i), ans, now)
		touch()
		old := x(i - lag)
		q := linking.Query{Local: old.conn.tuple.Local, Remote: old.conn.tuple.Remote, Seq: old.seq, TCPSeq: old.tcpSeq}
		if a, _ := c.answer(q, nil, now); a.Found {
			found++
		}
		touch()
	}
	total := cpuTime() - cpu0
	b.StopTimer()
	if found < b.N*99/100 {
		b.Fatalf("%d of %d found", found, b.N)
	}
	reportSpanCPU(b, total, pollute, 2, touch)
}

// BenchmarkLinkAnswering is the answering agent's whole path for a linked
// client span, as the correlator runs it: the span remembered when it
// ends (rememberClient), on one of 50 open keep-alive connections to
// another node (indexed as Bind indexes them), and every 1,024 spans one
// batch of lookups of the 1,024 requests before them (Answer), in the
// order the asking agent sends them (as it read them), each with its
// ordinal and TCP key. cold/ and hot/ as in BenchmarkLinkRemember:
// table-cpu-ns/span is the path's CPU less the cache pollution's alone,
// cpu-ns/span the path's CPU without pollution.
func BenchmarkLinkAnswering(b *testing.B) { hotAndCold(b, benchAnswering) }

func benchAnswering(b *testing.B, pollute int) {
	cfg := DefaultConfig()
	cfg.Linker = remoteLinker{}
	c, err := New(cfg, &syncRecorder{countOnly: true}, procs{}, nil, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	const conns = 50
	xs := make([]*exchange, conns) // one a connection, its keys set per request
	for i := range xs {
		cn := &conn{c: c, role: roleClient, tuple: tuple(fmt.Sprintf("10.1.0.1:%d", 40000+i), "10.1.0.2:80")}
		c.byTuple[cn.tuple] = cn
		c.indexLocal(cn)
		xs[i] = &exchange{conn: cn}
	}
	key := func(i int) (uint64, uint64) {
		n := uint32(i / conns)
		return uint64(n + 1), uint64(uint32(i%conns)*2654435761+n*90) | linking.TCPSeqFlag
	}
	ans := linking.Answer{Found: true, TraceID: [16]byte{1}, SpanID: [8]byte{1}}
	touch := polluter(pollute)
	qs := make([]linking.Query, 0, linking.MaxBatch)
	out := make([]linking.Answer, linking.MaxBatch)
	found := 0
	ask := func(from, to int, now time.Time) {
		qs = qs[:0]
		for i := from; i < to; i++ {
			x := xs[i%conns]
			seq, tcp := key(i)
			qs = append(qs, linking.Query{Local: x.conn.tuple.Local, Remote: x.conn.tuple.Remote, Seq: seq, TCPSeq: tcp})
		}
		c.answerAt(qs, out[:len(qs)], now, now)
		for _, a := range out[:len(qs)] {
			if a.Found {
				found++
			}
		}
	}
	now := time.Now()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range b.N {
		x := xs[i%conns]
		x.seq, x.tcpSeq = key(i)
		c.rememberClient(x, ans, now)
		touch()
		if (i+1)%linking.MaxBatch == 0 {
			ask(i+1-linking.MaxBatch, i+1, now)
		}
	}
	total := cpuTime() - cpu0
	b.StopTimer()
	if asked := b.N / linking.MaxBatch * linking.MaxBatch; found < asked*99/100 {
		b.Fatalf("%d of %d found", found, asked)
	}
	reportSpanCPU(b, total, pollute, 1, touch)
}
