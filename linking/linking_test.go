package linking

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var (
	clientAddr = netip.MustParseAddr("10.9.0.1")
	serverAddr = netip.MustParseAddr("10.9.0.2")
)

func query(port uint16, seq uint64) Query {
	return Query{Local: netip.AddrPortFrom(clientAddr, port), Remote: netip.AddrPortFrom(serverAddr, 80), Seq: seq}
}

func answerFor(q Query) Answer {
	var a Answer
	a.Found = true
	a.TraceID[0], a.TraceID[15] = byte(q.Seq), byte(q.Local.Port())
	a.SpanID[0], a.SpanID[7] = byte(q.Seq), 1
	return a
}

func TestWireRoundTrip(t *testing.T) {
	req := &lookupRequest{Queries: []Query{query(40000, 1), query(40001, StreamFlag|3),
		{Local: netip.MustParseAddrPort("[2001:db8::1]:5"), Remote: netip.MustParseAddrPort("[2001:db8::2]:6"), Seq: 9, TCPSeq: TCPSeqFlag | 0xfffffff0}}}
	b, err := req.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 + 3*runHeaderSize + (1 + 1) + (10 + 1) + (1 + 9); len(b) != want {
		t.Fatalf("%d bytes, want %d", len(b), want)
	}
	var got lookupRequest
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	for i := range req.Queries {
		if got.Queries[i] != req.Queries[i] {
			t.Errorf("query %d: %+v, want %+v", i, got.Queries[i], req.Queries[i])
		}
	}
	resp := &lookupResponse{Answers: []Answer{answerFor(query(1, 2)), {}}}
	b, _ = resp.MarshalBinary()
	var gotResp lookupResponse
	if err := gotResp.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if gotResp.Answers[0] != resp.Answers[0] || gotResp.Answers[1] != (Answer{}) {
		t.Errorf("answers %+v", gotResp.Answers)
	}
}

// TestWireRuns: the queries of one connection in turn share their
// addresses; a batch that alternates connections round-trips in order.
func TestWireRuns(t *testing.T) {
	var req lookupRequest
	for i := range 100 {
		req.Queries = append(req.Queries, query(40000, uint64(i+1)))
	}
	b, err := req.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 + runHeaderSize + 100*2; len(b) != want {
		t.Errorf("100 ordinals of one connection in %d bytes, want %d", len(b), want)
	}
	// The largest batch (every query its own run, the longest varints)
	// fits a message.
	req.Queries = req.Queries[:0]
	for i := range MaxBatch {
		q := query(uint16(i), StreamFlag|TCPSeqFlag|1)
		q.TCPSeq = ^uint64(0)
		req.Queries = append(req.Queries, q)
	}
	if b, err = req.MarshalBinary(); err != nil || len(b) > maxMessage {
		t.Errorf("the largest batch: %d bytes (%v), max %d", len(b), err, maxMessage)
	}
	req.Queries = req.Queries[:0]
	for i := range 10 {
		q := query(uint16(40000+i%3), uint64(i/3+1))
		q.TCPSeq = TCPSeqFlag | uint64(i)<<20
		req.Queries = append(req.Queries, q, q)
	}
	if b, err = req.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	var got lookupRequest
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if len(got.Queries) != len(req.Queries) {
		t.Fatalf("%d queries, want %d", len(got.Queries), len(req.Queries))
	}
	for i := range req.Queries {
		if got.Queries[i] != req.Queries[i] {
			t.Errorf("query %d: %+v, want %+v", i, got.Queries[i], req.Queries[i])
		}
	}
}

func TestWireRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":          nil,
		"count too big":  {0xff, 0xff},
		"missing record": {0, 1},
		"extra bytes":    append([]byte{0, 0}, 1),
	} {
		if err := new(lookupRequest).UnmarshalBinary(b); err == nil {
			t.Errorf("request %s: no error", name)
		}
		if err := new(lookupResponse).UnmarshalBinary(b); err == nil {
			t.Errorf("response %s: no error", name)
		}
	}
	run := func(total, n uint16, tail ...byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, total)
		b = appendAddrPort(b, netip.MustParseAddrPort("10.0.0.1:1"))
		b = appendAddrPort(b, netip.MustParseAddrPort("10.0.0.2:2"))
		b = binary.BigEndian.AppendUint16(b, n)
		return append(b, tail...)
	}
	for name, b := range map[string][]byte{
		"run of none":                run(1, 0, 1, 0),
		"run past the total":         run(1, 2, 1, 0, 1, 0),
		"run cut short":              run(2, 1, 1, 0),
		"unfinished varint":          run(1, 1, 0x80, 0x80),
		"varint of 11 bytes":         run(1, 1, append(bytes.Repeat([]byte{0xff}, 10), 1, 0)...),
		"bytes after queries":        run(1, 1, 1, 0, 7),
		"fewer bytes than 2 a query": append(binary.BigEndian.AppendUint16(nil, 100), make([]byte, runHeaderSize)...),
	} {
		if err := new(lookupRequest).UnmarshalBinary(b); err == nil {
			t.Errorf("request %s: no error", name)
		}
	}
	if err := new(lookupRequest).UnmarshalBinary(run(1, 1, 1, 0)); err != nil {
		t.Errorf("a well-formed run: %v", err)
	}
	bad := append([]byte{0, 1, 2}, make([]byte, 24)...)
	if err := new(lookupResponse).UnmarshalBinary(bad); err == nil {
		t.Error("found byte 2 accepted")
	}
	zero := append([]byte{0, 1, 1}, make([]byte, 24)...)
	if err := new(lookupResponse).UnmarshalBinary(zero); err == nil {
		t.Error("found answer with zero IDs accepted")
	}
	if _, err := (&lookupRequest{Queries: make([]Query, MaxBatch+1)}).MarshalBinary(); err == nil {
		t.Error("oversized batch encoded")
	}
}

func FuzzLookupRequest(f *testing.F) {
	b, _ := (&lookupRequest{Queries: []Query{query(1, 1)}}).MarshalBinary()
	f.Add(b)
	b, _ = (&lookupRequest{Queries: []Query{query(1, 1), query(1, 2), query(2, StreamFlag|3),
		{Local: netip.MustParseAddrPort("[2001:db8::1]:5"), Remote: netip.MustParseAddrPort("[2001:db8::2]:6"), TCPSeq: TCPSeqFlag | 7}}}).MarshalBinary()
	f.Add(b)
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m lookupRequest
		if m.UnmarshalBinary(b) != nil {
			return
		}
		again, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		// Decoded again into a message reused (the server's and the
		// senders' scratch): nothing of what it held before shows.
		junk := make([]Query, MaxBatch)
		for i := range junk {
			junk[i] = query(9, 99)
		}
		m2 := lookupRequest{Queries: junk[:1]}
		if err := m2.UnmarshalBinary(again); err != nil || len(m2.Queries) != len(m.Queries) {
			t.Fatalf("re-decode: %v", err)
		}
		for i := range m.Queries {
			if m2.Queries[i] != m.Queries[i] {
				t.Fatalf("query %d re-decoded as %+v, was %+v", i, m2.Queries[i], m.Queries[i])
			}
		}
	})
}

func FuzzLookupResponse(f *testing.F) {
	b, _ := (&lookupResponse{Answers: []Answer{answerFor(query(1, 1)), {}}}).MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m lookupResponse
		if m.UnmarshalBinary(b) != nil {
			return
		}
		// Decoded again into a message reused (a sender's scratch),
		// whose earlier answers were all found: the same answers.
		junk := make([]Answer, MaxBatch)
		for i := range junk {
			junk[i] = answerFor(query(9, 99))
		}
		reused := lookupResponse{Answers: junk[:2]}
		if err := reused.UnmarshalBinary(b); err != nil || !slices.Equal(reused.Answers, m.Answers) {
			t.Fatalf("decoded into a reused message: %v, %d answers, want %d", err, len(reused.Answers), len(m.Answers))
		}
		again, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded differently")
		}
	})
}

func TestRecent(t *testing.T) {
	now := time.Now()
	r := NewRecent(recentWays, time.Second) // one set
	if r.Cap() != recentWays {
		t.Fatalf("cap %d, want %d", r.Cap(), recentWays)
	}
	for i := range recentWays + 1 {
		r.Add(query(1, uint64(i+1)), answerFor(query(1, uint64(i+1))), now.Add(time.Duration(i)))
	}
	if n := r.Len(now); n != recentWays {
		t.Fatalf("len %d, want %d", n, recentWays)
	}
	if _, ok := r.Get(query(1, 1), now); ok {
		t.Error("oldest entry kept past the cap")
	}
	for i := 2; i <= recentWays+1; i++ {
		if a, ok := r.Get(query(1, uint64(i)), now); !ok || a != answerFor(query(1, uint64(i))) {
			t.Errorf("entry %d: %+v %v", i, a, ok)
		}
	}
	// The same key again replaces its entry, nothing else.
	r.Add(query(1, 3), answerFor(query(1, 30)), now)
	if a, _ := r.Get(query(1, 3), now); a != answerFor(query(1, 30)) || r.Len(now) != recentWays {
		t.Errorf("re-added entry: %+v, len %d", a, r.Len(now))
	}
	if _, ok := r.Get(query(1, 4), now.Add(2*time.Second)); ok {
		t.Error("expired entry returned")
	}
	r.Add(query(2, 1), answerFor(query(2, 1)), now.Add(2*time.Second))
	if n := r.Len(now.Add(2 * time.Second)); n != 1 {
		t.Errorf("len %d after expiry, want 1", n)
	}
	if _, ok := r.Get(query(2, 2), now.Add(2*time.Second)); ok {
		t.Error("a key never added found")
	}
}

// A request is one entry under both its keys: a table of n entries holds
// n requests, each found by its TCP key or its ordinal; the TCP key is
// tried first (exact whichever requests each agent saw); a request added
// again (its span settled) replaces its entry; a new connection from the
// same port (ordinals again from 1) wins over the old one's.
func TestRecentBothKeys(t *testing.T) {
	now := time.Now()
	r := NewRecent(8, time.Minute)
	both := func(port uint16, seq uint64, tcp uint32) Query {
		q := query(port, seq)
		q.TCPSeq = uint64(tcp) | TCPSeqFlag
		return q
	}
	for i := range 8 {
		q := both(1, uint64(i+1), uint32(1000*i))
		r.Add(q, answerFor(q), now)
	}
	for i := range 8 {
		want := answerFor(query(1, uint64(i+1)))
		byTCP := query(1, 0)
		byTCP.TCPSeq = uint64(1000*i) | TCPSeqFlag
		if a, ok := r.Get(byTCP, now); !ok || a != want {
			t.Errorf("request %d by its TCP key: %+v %v", i+1, a, ok)
		}
		if a, ok := r.Get(query(1, uint64(i+1)), now); !ok || a != want {
			t.Errorf("request %d by its ordinal: %+v %v", i+1, a, ok)
		}
	}
	// The TCP key names request 3; the ordinal (miscounted by one agent)
	// request 5: the TCP key wins. A TCP key nobody has falls back to the
	// ordinal.
	if a, _ := r.Get(both(1, 5, 2000), now); a != answerFor(query(1, 3)) {
		t.Errorf("TCP key and ordinal disagree: got %+v, want request 3's", a)
	}
	if a, _ := r.Get(both(1, 5, 7), now); a != answerFor(query(1, 5)) {
		t.Errorf("unknown TCP key: got %+v, want request 5's by its ordinal", a)
	}
	// Held, then settled: the same entry.
	q := both(1, 4, 3000)
	r.Add(q, answerFor(both(1, 40, 0)), now)
	if a, _ := r.Get(query(1, 4), now); a != answerFor(both(1, 40, 0)) || r.Len(now) != 8 {
		t.Errorf("re-added request: %+v, len %d", a, r.Len(now))
	}
	if _, ok := r.Get(query(1, 1), now); !ok {
		t.Error("re-adding a request evicted another")
	}
	// Port 1 again, a new connection: its request 2 wins.
	q = both(1, 2, 99)
	r.Add(q, answerFor(both(1, 20, 0)), now.Add(time.Second))
	if a, _ := r.Get(query(1, 2), now.Add(time.Second)); a != answerFor(both(1, 20, 0)) {
		t.Errorf("the port's new connection: got %+v", a)
	}
}

// TestRecentKeepsRecent fills a large table at a steady rate: what was
// added within the last sixteenth of its capacity is still there, but
// for the rare set that nine of those keys fell in (the hash is seeded at
// random: about one run in a few hundred loses one entry of ~200,000; a
// table that evicted other than its oldest would lose thousands).
func TestRecentKeepsRecent(t *testing.T) {
	r := NewRecent(65536, time.Minute)
	now := time.Now()
	const n, lag = 200_000, 4096
	lost := 0
	for i := range n {
		q := query(uint16(i%7), uint64(i))
		r.Add(q, answerFor(q), now)
		if i >= lag {
			old := query(uint16((i-lag)%7), uint64(i-lag))
			if a, ok := r.Get(old, now); !ok {
				lost++
			} else if a != answerFor(old) {
				t.Fatalf("entry %d answered wrongly", i-lag)
			}
		}
	}
	if lost > maxRecentLost {
		t.Errorf("%d of %d entries lost within %d adds of theirs", lost, n-lag, lag)
	}
}

// TestRecentKeepsRecentConnections is TestRecentKeepsRecent with keys as the
// answering agent adds them: requests of 50 keep-alive connections in
// turn, each under its ordinal and its TCP key.
func TestRecentKeepsRecentConnections(t *testing.T) {
	r := NewRecent(65536, time.Minute)
	now := time.Now()
	const n, lag, conns = 100_000, 2048, 50
	keys := func(i int) [2]Query {
		ord := query(uint16(40000+i%conns), uint64(i/conns+1))
		tcp := ord
		tcp.Seq = uint64(uint32(i*2654435761)) | TCPSeqFlag
		return [2]Query{ord, tcp}
	}
	lost := 0
	for i := range n {
		for _, q := range keys(i) {
			r.Add(q, answerFor(q), now)
		}
		if i < lag {
			continue
		}
		for _, old := range keys(i - lag) {
			if a, ok := r.Get(old, now); !ok {
				lost++
			} else if a != answerFor(old) {
				t.Fatalf("request %d (seq %#x) answered wrongly", i-lag, old.Seq)
			}
		}
	}
	if lost > maxRecentLost {
		t.Errorf("%d of %d keys lost within %d adds of theirs", lost, 2*(n-lag), 2*lag)
	}
}

// TestRecentKeepsStreams adds requests as the correlator does, one Add
// under both keys, on 50 keep-alive connections whose TCP keys grow by
// the requests' bytes: at the agent's size, each is found by its TCP key
// alone (an asker that saw the connection mid-stream) and by its ordinal
// alone, 4,096 requests later, whatever the requests' size. (TCP keys
// placed along their connection's stream, for the caches, lost 0.2-0.5%
// of 16-byte requests here: they are hashed whole.)
func TestRecentKeepsStreams(t *testing.T) {
	for _, size := range []uint32{8, 16, 90, 1500} {
		r := NewRecent(32768, time.Minute)
		now := time.Now()
		const n, lag, conns = 60_000, 4096, 50
		req := func(i int) Query {
			q, k := query(uint16(40000+i%conns), uint64(i/conns+1)), uint32(i/conns)
			q.TCPSeq = uint64(uint32(i%conns)*2654435761+k*size) | TCPSeqFlag
			return q
		}
		lost := 0
		for i := range n {
			q := req(i)
			r.Add(q, answerFor(q), now)
			if i < lag {
				continue
			}
			old := req(i - lag)
			byTCP, byOrd := old, old
			byTCP.Seq, byOrd.TCPSeq = 0, 0
			for _, q := range []Query{byTCP, byOrd} {
				if a, ok := r.Get(q, now); !ok {
					lost++
				} else if a != answerFor(old) {
					t.Fatalf("%d-byte requests: request %d answered wrongly", size, i-lag)
				}
			}
		}
		if lost > maxRecentLost {
			t.Errorf("%d-byte requests: %d of %d keys lost within %d requests", size, lost, 2*(n-lag), lag)
		}
	}
}

// maxRecentLost is the most entries TestRecentKeepsRecent* tolerate losing
// to a full set: one such set costs its oldest entry or two.
const maxRecentLost = 4

// answerer answers every query with answerFor, after delay; queries with
// Seq 0 are not found.
type answerer struct {
	delay time.Duration
	asked atomic.Int64
}

func (a *answerer) Answer(qs []Query, out []Answer, _ time.Time) bool {
	a.asked.Add(int64(len(qs)))
	time.Sleep(a.delay)
	for i, q := range qs {
		if q.Seq != 0 {
			out[i] = answerFor(q)
		}
	}
	return true
}

type pair struct {
	client *Client
	srv    *Server
	reg    *prometheus.Registry
}

// newPair starts a server announcing clientAddr and a client of it.
func newPair(t testing.TB, ans Answerer, serverToken, clientToken string, wait time.Duration) *pair {
	t.Helper()
	return newTLSPair(t, ans, serverToken, clientToken, wait, nil, nil)
}

func newTLSPair(t testing.TB, ans Answerer, serverToken, clientToken string, wait time.Duration, serverTLS, clientTLS *tls.Config) *pair {
	t.Helper()
	reg := prometheus.NewRegistry()
	srv, err := NewServer(ServerConfig{Token: serverToken, TLS: serverTLS, Answerer: ans, Addresses: func() []netip.Addr { return []netip.Addr{clientAddr} }, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return &pair{client: startClient(t, ln.Addr().String(), clientToken, wait, clientTLS), srv: srv, reg: reg}
}

func startClient(t testing.TB, peer, token string, wait time.Duration, tlsConfig *tls.Config) *Client {
	t.Helper()
	c, err := NewClient(ClientConfig{Peers: []string{peer}, Token: token, Wait: wait, TLS: tlsConfig,
		Local: func() []netip.Addr { return []netip.Addr{serverAddr} }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; c.Close() })
	return c
}

func waitOwned(t testing.TB, c *Client) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !c.Owned(clientAddr); {
		if time.Now().After(deadline) {
			t.Fatal("the peer's addresses never arrived")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type outcome struct {
	a Answer
	r Result
}

// lookupAll looks up n queries and returns their outcomes by Seq.
func lookupAll(t *testing.T, c *Client, n int) map[uint64]outcome {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	got := make(map[uint64]outcome)
	for i := range n {
		q := query(40000, uint64(i))
		wg.Add(1)
		r := c.Lookup(q, time.Time{}, waiterFunc(func(a Answer, r Result) {
			mu.Lock()
			got[q.Seq] = outcome{a, r}
			mu.Unlock()
			wg.Done()
		}))
		if r != Pending {
			wg.Done()
			mu.Lock()
			got[q.Seq] = outcome{r: r}
			mu.Unlock()
		}
	}
	wg.Wait()
	return got
}

func TestLookupLinksAndBatches(t *testing.T) {
	ans := &answerer{}
	p := newPair(t, ans, "s3cret", "s3cret", time.Second)
	waitOwned(t, p.client)
	if p.client.Remote(serverAddr) || !p.client.Remote(clientAddr) || p.client.Remote(netip.MustParseAddr("127.0.0.1")) {
		t.Error("Remote: wrong idea of this node's addresses")
	}
	start := time.Now()
	got := lookupAll(t, p.client, 500)
	for seq, o := range got {
		switch {
		case seq == 0 && o.r != NotFound:
			t.Errorf("seq 0: %v, want not_found", o.r)
		case seq != 0 && (o.r != Linked || o.a != answerFor(query(40000, seq))):
			t.Errorf("seq %d: %v %+v", seq, o.r, o.a)
		}
	}
	if n := testutil.ToFloat64(p.srv.served.WithLabelValues("answered")); n > 100 {
		t.Errorf("%v requests for 500 lookups: not batched", n)
	}
	t.Logf("500 lookups in %v", time.Since(start))
	if r := p.client.Lookup(Query{Local: netip.MustParseAddrPort("10.99.0.1:1"), Seq: 1}, time.Time{}, nil); r != NoOwner {
		t.Errorf("unknown address: %v, want no_owner", r)
	}
}

func TestLookupWrongToken(t *testing.T) {
	p := newPair(t, &answerer{}, "right", "wrong", time.Second)
	// The addresses are refused too: announce them by hand.
	p.client.setOwner(onlyPeer(p.client), []netip.Addr{clientAddr})
	got := lookupAll(t, p.client, 3)
	for seq, o := range got {
		if o.r != Refused {
			t.Errorf("seq %d: %v, want refused", seq, o.r)
		}
	}
	if n := testutil.ToFloat64(p.srv.served.WithLabelValues("refused")); n < 1 {
		t.Errorf("refused requests counted %v", n)
	}
}

func TestLookupSlowPeer(t *testing.T) {
	p := newPair(t, &answerer{delay: 2 * time.Second}, "t", "t", 100*time.Millisecond)
	waitOwned(t, p.client)
	start := time.Now()
	got := lookupAll(t, p.client, 20)
	if d := time.Since(start); d > time.Second {
		t.Errorf("lookups of a slow peer took %v", d)
	}
	for seq, o := range got {
		if o.r != Timeout {
			t.Errorf("seq %d: %v, want timeout", seq, o.r)
		}
	}
}

// TestLookupGarbagePeer: a peer that answers garbage fails the lookups
// (error, or timeout while the connection is being made), over plaintext
// and over mutual TLS, whose handshake the garbage fails: that is not a
// refusal.
func TestLookupGarbagePeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				junk := bytes.Repeat([]byte("\x00\x00\x12\x04garbage!"), 64)
				for i := 0; i < 100; i++ {
					if _, err := c.Write(junk); err != nil {
						return
					}
				}
			}()
		}
	}()
	_, mutualTLS, err := LoadTLS(writeCA(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tls  *tls.Config
	}{{"plaintext", nil}, {"mutual TLS", mutualTLS}} {
		c := startClient(t, ln.Addr().String(), "t", 200*time.Millisecond, tc.tls)
		c.setOwner(onlyPeer(c), []netip.Addr{clientAddr})
		for round := range 3 { // the first connection, then those after it failed
			for seq, o := range lookupAll(t, c, 20) {
				if o.r != Error && o.r != Timeout {
					t.Errorf("%s, round %d, seq %d: %v, want error or timeout", tc.name, round, seq, o.r)
				}
			}
		}
	}
}

func TestLookupQueueBounded(t *testing.T) {
	// The senders stay busy for the wait: long enough for the lookups
	// below to be queued on a loaded machine (under -race, beside other
	// packages' tests, 1 s was not).
	p := newPair(t, &answerer{delay: 4500 * time.Millisecond}, "t", "t", 3*time.Second)
	waitOwned(t, p.client)
	var dropped, pending int
	var wg sync.WaitGroup
	for i := range queuePerPeer * 2 {
		wg.Add(1)
		switch p.client.Lookup(query(1, uint64(i+1)), time.Time{}, waiterFunc(func(Answer, Result) { wg.Done() })) {
		case Pending:
			pending++
		case Dropped:
			dropped++
			wg.Done()
		}
	}
	wg.Wait()
	// The queue, the batches in the callers and the one filling.
	if dropped == 0 || pending > queuePerPeer+(sendersPerPeer+1)*MaxBatch {
		t.Errorf("%d pending, %d dropped: the queue is not bounded", pending, dropped)
	}
}

func onlyPeer(c *Client) *peer {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, p := range c.peers {
		return p
	}
	return nil
}

func TestSetPeers(t *testing.T) {
	p := newPair(t, &answerer{}, "t", "t", time.Second)
	waitOwned(t, p.client)
	if err := p.client.SetPeers(nil); err != nil {
		t.Fatal(err)
	}
	if p.client.Owned(clientAddr) || p.client.Peers() != 0 {
		t.Error("a removed peer still owns its addresses")
	}
	if r := p.client.Lookup(query(1, 1), time.Time{}, nil); r != NoOwner {
		t.Errorf("lookup after removal: %v", r)
	}
}

type waiterFunc func(Answer, Result)

func (f waiterFunc) LinkDone(a Answer, r Result) { f(a, r) }

// writeCA writes a CA and a certificate it signs (server and client use)
// into dir and returns the files.
func writeCA(t *testing.T, dir string) (cert, key, ca string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agents CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "periscope-linking"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, DNSNames: []string{"periscope-linking"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(k)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("tls.crt", "CERTIFICATE", der), write("tls.key", "PRIVATE KEY", keyDER), write("ca.crt", "CERTIFICATE", caDER)
}

func TestLookupMutualTLS(t *testing.T) {
	srvTLS, cliTLS, err := LoadTLS(writeCA(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	p := newTLSPair(t, &answerer{}, "t", "t", time.Second, srvTLS, cliTLS)
	waitOwned(t, p.client)
	for seq, o := range lookupAll(t, p.client, 5) {
		if seq != 0 && o.r != Linked {
			t.Errorf("seq %d over mutual TLS: %v", seq, o.r)
		}
	}
	// An agent with a certificate of another CA, or none, is refused.
	_, otherTLS, err := LoadTLS(writeCA(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tls  *tls.Config
		want Result
	}{{"other CA", otherTLS, Refused}, {"plaintext", nil, Error}} {
		q := newTLSPair(t, &answerer{}, "t", "t", time.Second, srvTLS, tc.tls)
		q.client.setOwner(onlyPeer(q.client), []netip.Addr{clientAddr})
		for seq, o := range lookupAll(t, q.client, 3) {
			if o.r != tc.want {
				t.Errorf("%s, seq %d: %v, want %v", tc.name, seq, o.r, tc.want)
			}
		}
	}
	if _, _, err := LoadTLS("/nonexistent", "/nonexistent", "/nonexistent"); err == nil {
		t.Error("LoadTLS of missing files: no error")
	}
}

func TestAmbiguousOwner(t *testing.T) {
	c, err := NewClient(ClientConfig{Peers: []string{"10.0.0.1:7071", "10.0.0.2:7071"}, Token: "t",
		Local: func() []netip.Addr { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.mu.RLock()
	p1, p2 := c.peers["10.0.0.1:7071"], c.peers["10.0.0.2:7071"]
	c.mu.RUnlock()
	shared, own := netip.MustParseAddr("172.17.0.1"), netip.MustParseAddr("10.0.0.2")
	c.setOwner(p1, []netip.Addr{shared, netip.MustParseAddr("10.0.0.1")})
	c.setOwner(p2, []netip.Addr{shared, own})
	if c.Owned(shared) || !c.Owned(own) {
		t.Errorf("an address two peers announce must have no owner; owned: shared %v, own %v", c.Owned(shared), c.Owned(own))
	}
	if r := c.Lookup(Query{Local: netip.AddrPortFrom(shared, 1), Seq: 1}, time.Time{}, nil); r != NoOwner {
		t.Errorf("lookup of a shared address: %v, want no_owner", r)
	}
	// p1 stops announcing it: p2 owns it.
	c.setOwner(p1, []netip.Addr{netip.MustParseAddr("10.0.0.1")})
	if !c.Owned(shared) {
		t.Error("the remaining announcer does not own the address")
	}
}

// BenchmarkRecentAdd is what the answering agent pays per client span to
// another node: one Add (and a Get for one in 64, as lookups arrive).
func BenchmarkRecentAdd(b *testing.B) {
	r := NewRecent(65536, 30*time.Second)
	now := time.Now()
	qs := make([]Query, 4096)
	for i := range qs {
		qs[i] = query(uint16(40000+i%50), uint64(i))
	}
	b.ResetTimer()
	for i := range b.N {
		q := qs[i%len(qs)]
		q.Seq = uint64(i)
		r.Add(q, Answer{Found: true}, now)
		if i%64 == 0 {
			r.Get(q, now)
		}
	}
}

// lateAnswerer knows nothing until known is set, and says whether what it
// does not know is final.
type lateAnswerer struct {
	known, final atomic.Bool
	calls        atomic.Int64
}

func (a *lateAnswerer) Answer(qs []Query, out []Answer, _ time.Time) bool {
	a.calls.Add(1)
	for i, q := range qs {
		if a.known.Load() {
			out[i] = answerFor(q)
		}
	}
	return a.final.Load()
}

// A query not found yet is asked again until the answering agent says its
// absence is final (its rings have been read past the question) or the
// asker's deadline is near; one that is final is answered at once.
func TestAnswerWaitsUntilFinal(t *testing.T) {
	late := &lateAnswerer{}
	p := newPair(t, late, "t", "t", 2*time.Second)
	waitOwned(t, p.client)
	done := make(chan outcome, 1)
	if r := p.client.Lookup(query(40000, 1), time.Time{}, waiterFunc(func(a Answer, r Result) { done <- outcome{a, r} })); r != Pending {
		t.Fatalf("lookup: %v", r)
	}
	// Far past the fixed 50 ms the answer used to wait for.
	time.Sleep(300 * time.Millisecond)
	select {
	case o := <-done:
		t.Fatalf("answered %v before the request was known or final", o.r)
	default:
	}
	late.known.Store(true)
	if o := <-done; o.r != Linked || o.a != answerFor(query(40000, 1)) {
		t.Errorf("after the request was read: %v %+v, want linked", o.r, o.a)
	}

	never := &lateAnswerer{}
	never.final.Store(true)
	p = newPair(t, never, "t", "t", 2*time.Second)
	waitOwned(t, p.client)
	if r := p.client.Lookup(query(40000, 2), time.Time{}, waiterFunc(func(a Answer, r Result) { done <- outcome{a, r} })); r != Pending {
		t.Fatalf("lookup: %v", r)
	}
	if o := <-done; o.r != NotFound {
		t.Errorf("a final absence: %v, want not_found", o.r)
	}
	if n := never.calls.Load(); n != 1 {
		t.Errorf("a final absence was asked %d times, want once", n)
	}
}

// countingSettler records the batches it is handed.
type countingSettler struct{ calls [][]Done }

func (s *countingSettler) LinkDoneAll(ds []Done) {
	s.calls = append(s.calls, append([]Done(nil), ds...))
}

type batchWaiter struct {
	s    *countingSettler
	done *int
}

func (w batchWaiter) LinkDone(Answer, Result) { *w.done++ }
func (w batchWaiter) LinkSettler() Settler    { return w.s }

// settle hands each run of waiters sharing a Settler to it in one call and
// the others their own answer.
func TestSettleBatches(t *testing.T) {
	s1, s2 := &countingSettler{}, &countingSettler{}
	var single int
	plain := waiterFunc(func(Answer, Result) { single++ })
	ds := []Done{
		{W: batchWaiter{s1, &single}, R: Linked}, {W: batchWaiter{s1, &single}, R: NotFound},
		{W: plain, R: Timeout},
		{W: batchWaiter{s2, &single}, R: Linked},
		{W: batchWaiter{s1, &single}, R: Linked},
	}
	settle(ds)
	if single != 1 {
		t.Errorf("%d answers one by one, want 1 (the plain waiter)", single)
	}
	if len(s1.calls) != 2 || len(s1.calls[0]) != 2 || s1.calls[0][1].R != NotFound || len(s1.calls[1]) != 1 {
		t.Errorf("settler 1 got %+v, want a run of 2 then 1", s1.calls)
	}
	if len(s2.calls) != 1 || len(s2.calls[0]) != 1 {
		t.Errorf("settler 2 got %+v, want one run of 1", s2.calls)
	}
}

// BenchmarkRecentAnswering is the answering agent's side of a linked span
// under load: requests of 50 keep-alive connections in turn, each added
// under its ordinal and TCP key (one Add, as the correlator does), and
// asked for 2,048 requests later by a TCP key the asker did not see (the
// lookup falls back to the ordinal: both keys tried).
func BenchmarkRecentAnswering(b *testing.B) {
	r := NewRecent(65536, 30*time.Second)
	now := time.Now()
	const lag, conns = 2048, 50
	req := func(i int) Query {
		q := query(uint16(40000+i%conns), uint64(i/conns+1))
		q.TCPSeq = uint64(uint32(i*2654435761)) | TCPSeqFlag
		return q
	}
	for i := range lag {
		r.Add(req(i), Answer{Found: true}, now)
	}
	b.ResetTimer()
	for i := lag; i < lag+b.N; i++ {
		r.Add(req(i), Answer{Found: true}, now)
		old := req(i - lag)
		old.TCPSeq ^= 1
		r.Get(old, now)
	}
}

// A lookup whose deadline is near (its request read late, under load) no
// longer takes its batch with it: the call lasts until the batch's latest
// deadline, so when the answering agent is slow to answer (80 ms here, a
// starved machine), the others are linked rather than the whole batch
// timed out with the near one.
func TestLookupNearDeadlineKeepsItsBatch(t *testing.T) {
	p := newPair(t, &answerer{delay: 80 * time.Millisecond}, "t", "t", 2*time.Second)
	waitOwned(t, p.client)
	const far = 50
	done := make(chan outcome, far+1)
	w := waiterFunc(func(a Answer, r Result) { done <- outcome{a, r} })
	for i := range far {
		if r := p.client.Lookup(query(40000, uint64(i+1)), time.Time{}, w); r != Pending {
			t.Fatalf("lookup: %v", r)
		}
	}
	if r := p.client.Lookup(query(40001, 1), time.Now().Add(70*time.Millisecond), waiterFunc(func(Answer, Result) {})); r != Pending {
		t.Fatalf("lookup: %v", r)
	}
	pe := onlyPeer(p.client)
	pe.mu.Lock()
	n := len(pe.queue)
	pe.mu.Unlock()
	if n != far+1 {
		t.Fatalf("%d lookups queued, want %d in one batch", n, far+1)
	}
	got := map[Result]int{}
	for range far {
		got[(<-done).r]++
	}
	if got[Linked] != far {
		t.Errorf("lookups with time to spare: %v, want all %d linked", got, far)
	}
}

// A lookup whose deadline comes before its batch would go (batchDelay
// after the batch opened) is sent at once, not timed out unasked.
func TestLookupSentBeforeItsDeadline(t *testing.T) {
	p := newPair(t, &answerer{}, "t", "t", 2*time.Second)
	waitOwned(t, p.client)
	got := map[Result]int{}
	for i := range 5 {
		done := make(chan Result, 1)
		if r := p.client.Lookup(query(40000, uint64(i+1)), time.Now().Add(batchDelay-time.Millisecond),
			waiterFunc(func(_ Answer, r Result) { done <- r })); r != Pending {
			t.Fatalf("lookup: %v", r)
		}
		got[<-done]++
	}
	// Each has 19 ms for its round trip: on a busy machine one may time
	// out; sent after batchDelay, every one would.
	if got[Linked] == 0 {
		t.Errorf("lookups due before their batch: %v, want linked", got)
	}
}

// The answering agent holds a batch's unanswered queries until the
// earliest deadline among them (holdHeader), not the call's (the latest):
// the near lookup's answer comes back in time.
func TestLookupHeldUntilEarliestDeadline(t *testing.T) {
	p := newPair(t, &lateAnswerer{}, "t", "t", 2*time.Second)
	waitOwned(t, p.client)
	done := make(chan time.Time, 2)
	w := waiterFunc(func(Answer, Result) { done <- time.Now() })
	start := time.Now()
	p.client.Lookup(query(40000, 1), time.Time{}, w)
	p.client.Lookup(query(40000, 2), start.Add(150*time.Millisecond), w)
	for range 2 {
		if d := (<-done).Sub(start); d > 600*time.Millisecond {
			t.Errorf("answered after %v: held past the earliest deadline (150 ms)", d)
		}
	}
}

// The lookups that come while a full batch is taken open the next batch:
// they wait for more, rather than going at once as a call of a few (a call
// of one query after each full batch, measured in BenchmarkLinkSides).
func TestFullBatchRestWaits(t *testing.T) {
	p := newPair(t, &answerer{}, "t", "t", 2*time.Second)
	waitOwned(t, p.client)
	var wg sync.WaitGroup
	var mu sync.Mutex
	results := map[Result]int{}
	w := waiterFunc(func(_ Answer, r Result) {
		mu.Lock()
		results[r]++
		mu.Unlock()
		wg.Done()
	})
	ask := func(seq int) {
		wg.Add(1)
		if r := p.client.Lookup(query(40000, uint64(seq)), time.Time{}, w); r != Pending {
			t.Fatalf("lookup: %v", r)
		}
	}
	const burst, trickle = MaxBatch + 50, 10
	for i := range burst {
		ask(i + 1)
	}
	for i := range trickle {
		time.Sleep(time.Millisecond)
		ask(burst + i + 1)
	}
	wg.Wait()
	if results[Linked] != burst+trickle {
		t.Errorf("results %v, want %d linked", results, burst+trickle)
	}
	if n := testutil.ToFloat64(p.srv.served.WithLabelValues("answered")); n != 2 {
		t.Errorf("%v calls, want 2: the full batch, then the rest together", n)
	}
}

// recordingAnswerer answers as answerer and keeps the queries of each call.
type recordingAnswerer struct {
	mu    sync.Mutex
	calls [][]Query
}

func (a *recordingAnswerer) Answer(qs []Query, out []Answer, _ time.Time) bool {
	a.mu.Lock()
	a.calls = append(a.calls, slices.Clone(qs))
	a.mu.Unlock()
	for i, q := range qs {
		out[i] = answerFor(q)
	}
	return true
}

// TestLookupGroupsConnections: lookups of keep-alive connections' requests
// in turn (as a server reads them) reach the answering agent with each
// connection's queries together, in the order asked (one run of the wire
// format, one look-up of the connection a call), and each waiter gets the
// answer of its own query, in the order asked.
func TestLookupGroupsConnections(t *testing.T) {
	ans := &recordingAnswerer{}
	p := newPair(t, ans, "tok", "tok", 5*time.Second)
	waitOwned(t, p.client)
	const conns, each = 5, 60
	var mu sync.Mutex
	var wg sync.WaitGroup
	wrong, order := 0, []int{}
	for i := range conns * each {
		q := query(uint16(40000+i%conns), uint64(1+i/conns))
		wg.Add(1)
		r := p.client.Lookup(q, time.Time{}, waiterFunc(func(a Answer, r Result) {
			mu.Lock()
			if r != Linked || a != answerFor(q) {
				wrong++
			}
			order = append(order, i)
			mu.Unlock()
			wg.Done()
		}))
		if r != Pending {
			t.Fatalf("lookup %d: %v", i, r)
		}
	}
	wg.Wait()
	if wrong > 0 {
		t.Errorf("%d of %d lookups not answered with their own query's answer", wrong, conns*each)
	}
	ans.mu.Lock()
	defer ans.mu.Unlock()
	// One call (the lookups came within its batch's delay): its answers
	// are handed over in the order asked.
	if len(ans.calls) == 1 && !slices.IsSorted(order) {
		t.Errorf("answers handed over in the order %v, not the order asked", order)
	}
	for c, qs := range ans.calls {
		runs, conn := 0, map[netip.AddrPort]bool{}
		for i, q := range qs {
			if i == 0 || q.Local != qs[i-1].Local {
				runs++
				conn[q.Local] = true
			} else if q.Seq <= qs[i-1].Seq {
				t.Errorf("call %d: %v after %v: not in the order asked", c, q, qs[i-1])
			}
		}
		if runs != len(conn) {
			t.Errorf("call %d: %d runs of %d connections: not grouped", c, runs, len(conn))
		}
	}
}

// TestTakeSwapsQueue: a queue that fits in a batch becomes the batch (its
// lookups are not copied), and the batch's memory the queue; a queue
// longer than a batch gives its oldest MaxBatch (not copied either) and
// keeps the rest, in the batch's memory.
func TestTakeSwapsQueue(t *testing.T) {
	p := &peer{kick: make(chan struct{}, 1)}
	for i := range 3 {
		if r := p.enqueue(lookup{q: query(40000, uint64(i+1)), deadline: time.Now().Add(time.Second)}); r != Pending {
			t.Fatalf("enqueue: %v", r)
		}
	}
	first := &p.queue[0]
	buf := make([]lookup, 0, MaxBatch)
	batch, open := p.take(buf)
	if !open || len(batch) != 3 || &batch[0] != first || batch[2].q.Seq != 3 {
		t.Fatalf("took %d lookups (window open %v), copied %v", len(batch), open, &batch[0] != first)
	}
	if len(p.queue) != 0 || cap(p.queue) != MaxBatch {
		t.Errorf("queue %d of %d, want the batch's empty memory", len(p.queue), cap(p.queue))
	}
	for i := range MaxBatch + 2 {
		p.enqueue(lookup{q: query(40000, uint64(i+1)), deadline: time.Now().Add(time.Second)})
	}
	first = &p.queue[0]
	batch, open = p.take(make([]lookup, 0, batchCap))
	if !open || len(batch) != MaxBatch || len(p.queue) != 2 || p.queue[0].q.Seq != MaxBatch+1 {
		t.Errorf("took %d (window open %v), left %d", len(batch), open, len(p.queue))
	}
	if &batch[0] != first {
		t.Error("a queue longer than a batch: its first MaxBatch lookups were copied")
	}
	if cap(p.queue) != batchCap {
		t.Errorf("the rest is in memory of %d, want the batch's (%d)", cap(p.queue), batchCap)
	}
}

// TestEnqueueJoinsOpenWindow: while lookups keep coming, a batch's window
// opens when the previous batch is taken, and a lookup into the empty
// queue joins it without waking the batch filler (one wake-up a batch,
// at its window's end); a lookup wakes it when it opens a window (the
// filler idle: the last window ended empty) or its deadline is near.
func TestEnqueueJoinsOpenWindow(t *testing.T) {
	p := &peer{idle: true, kick: make(chan struct{}, 1)}
	kicked := func() bool {
		select {
		case <-p.kick:
			return true
		default:
			return false
		}
	}
	later := time.Now().Add(time.Second)
	p.enqueue(lookup{q: query(40000, 1), deadline: later})
	if !kicked() {
		t.Fatal("a lookup opening a window (filler idle) did not wake the filler")
	}
	if batch, open := p.take(make([]lookup, 0, MaxBatch)); len(batch) != 1 || !open {
		t.Fatalf("took %d, window open %v", len(batch), open)
	}
	if due := p.due(); due.IsZero() || time.Until(due) > batchDelay {
		t.Fatalf("the next window is due in %v, want within %v", time.Until(due), batchDelay)
	}
	p.enqueue(lookup{q: query(40000, 2), deadline: later})
	if kicked() {
		t.Error("a lookup into the open window woke the filler")
	}
	p.enqueue(lookup{q: query(40000, 3), deadline: time.Now().Add(sendAhead / 2)})
	if !kicked() {
		t.Error("a lookup whose deadline is near did not wake the filler")
	}
	if batch, open := p.take(make([]lookup, 0, MaxBatch)); len(batch) != 2 || !open {
		t.Fatalf("took %d, window open %v", len(batch), open)
	}
	if batch, open := p.take(make([]lookup, 0, MaxBatch)); len(batch) != 0 || open {
		t.Fatalf("an empty window: took %d, window open %v", len(batch), open)
	}
	p.enqueue(lookup{q: query(40000, 4), deadline: later})
	if !kicked() {
		t.Error("a lookup after an empty window did not wake the filler")
	}
}
