package linking

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
)

// tableAnswerer answers from a table and the Sents of 50 connections, as
// the correlator does (without its connections' other state).
type tableAnswerer struct {
	r     *Recent
	sents map[uint16]*Sent
	now   time.Time
}

func (a *tableAnswerer) Answer(qs []Query, out []Answer, _ time.Time) bool {
	for i, q := range qs {
		out[i], _ = a.r.GetFrom(a.sents[q.Local.Port()], q, a.now)
	}
	return true
}

// fixedAnswerer finds every query, looking nothing up.
type fixedAnswerer struct{}

func (fixedAnswerer) Answer(qs []Query, out []Answer, _ time.Time) bool {
	for i, q := range qs {
		out[i] = answerFor(q)
	}
	return true
}

// BenchmarkServerLookup is the answering agent's side of one lookup call
// per linked span, the call's gRPC transport left out: a batch of 1,024
// queries (50 keep-alive connections' requests in turn, each with its
// ordinal and TCP key) decoded with the agents' codec, answered, and its
// answers encoded, through Server.lookup. handler/ answers without
// looking anything up (the codec and the handler alone); table/ also
// remembers each request as it ends (AddTo, on its connection's Sent)
// and answers from the Sents and the table, as the correlator does.
func BenchmarkServerLookup(b *testing.B) {
	for _, name := range []string{"handler", "table"} {
		b.Run(name, func(b *testing.B) { benchServerLookup(b, name == "table") })
	}
}

func benchServerLookup(b *testing.B, table bool) {
	const conns = 50
	now := time.Now()
	ta := &tableAnswerer{r: NewRecent(32768, time.Minute), sents: map[uint16]*Sent{}, now: now}
	var ans Answerer = fixedAnswerer{}
	if table {
		ans = ta
	}
	s, err := NewServer(ServerConfig{Token: "tok", Answerer: ans, Addresses: func() []netip.Addr { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(tokenHeader, "Bearer tok"))
	req := func(i int) Query {
		n := uint32(i / conns)
		return both(uint16(40000+i%conns), uint64(n+1), uint32(i%conns)*2654435761+n*90)
	}
	batch := lookupRequest{Queries: make([]Query, 0, MaxBatch)}
	found := 0
	b.ResetTimer()
	for i := range b.N {
		q := req(i)
		if table {
			port := q.Local.Port()
			if ta.sents[port] == nil {
				ta.sents[port] = ta.r.NewSent()
			}
			ta.sents[port] = ta.r.AddTo(ta.sents[port], q, answerFor(q), now)
		}
		if batch.Queries = append(batch.Queries, q); len(batch.Queries) < MaxBatch {
			continue
		}
		b.StopTimer() // the asking agent's work
		msg, err := batch.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		batch.Queries = batch.Queries[:0]
		b.StartTimer()
		out, err := s.lookup(ctx, func(v any) error { return codec{}.Unmarshal(msg, v) })
		if err != nil {
			b.Fatal(err)
		}
		enc, err := codec{}.Marshal(out)
		if err != nil {
			b.Fatal(err)
		}
		var resp lookupResponse
		b.StopTimer() // the asking agent's work
		if err := resp.UnmarshalBinary(enc); err != nil {
			b.Fatal(err)
		}
		for _, a := range resp.Answers {
			if a.Found {
				found++
			}
		}
		b.StartTimer()
	}
	b.StopTimer()
	if asked := b.N / MaxBatch * MaxBatch; found != asked {
		b.Fatalf("%d of %d found", found, asked)
	}
}

// countWaiter counts its answers, linked or not (a pointer, as the
// correlator's waiters are: no allocation a lookup).
type countWaiter struct {
	linked, other *atomic.Int64
	wg            *sync.WaitGroup
}

func (w *countWaiter) LinkDone(_ Answer, r Result) {
	if r == Linked {
		w.linked.Add(1)
	} else {
		w.other.Add(1)
	}
	w.wg.Done()
}

// BenchmarkLookupCall is both agents' linking layer per lookup, in one
// process over real gRPC on loopback: full batches of 1,024 lookups of 50
// keep-alive connections' requests in turn (the order the asking agent
// reads them), each with its ordinal and TCP key, asked through a Client
// and answered by a Server that looks nothing up (fixedAnswerer): the
// batching, the codec both ways, the transport and the hand-over of the
// answers, without the correlators. cpu-ns/lookup is the process's CPU
// time (getrusage) per lookup.
func BenchmarkLookupCall(b *testing.B) {
	c := startLookupPair(b)
	const conns = 50
	var linked, other atomic.Int64
	var wg sync.WaitGroup
	w := &countWaiter{linked: &linked, other: &other, wg: &wg}
	b.ResetTimer()
	cpu0 := cpuNow(b)
	for i := 0; i < b.N; {
		n := min(b.N-i, MaxBatch)
		wg.Add(n)
		for j := i; j < i+n; j++ {
			k := uint32(j / conns)
			if r := c.Lookup(both(uint16(40000+j%conns), uint64(k+1), uint32(j%conns)*2654435761+k*90), time.Time{}, w); r != Pending {
				b.Fatalf("lookup %d: %v", j, r)
			}
		}
		wg.Wait()
		i += n
	}
	cpu := cpuNow(b) - cpu0
	b.StopTimer()
	if linked.Load() != int64(b.N) {
		b.Fatalf("%d of %d linked (%d not)", linked.Load(), b.N, other.Load())
	}
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/lookup")
}

// cpuNow is the process's CPU time so far, in ns.
func cpuNow(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkLookupStream is BenchmarkLookupCall at a steady rate, as an
// agent under load asks: 250 lookups every 10 ms (25,000 requests/s, 50
// keep-alive connections in turn) rather than waves of one full batch,
// so that a batch fills while the previous ones are in flight and the
// queue runs past MaxBatch before the batch filler takes it. cpu-ns/lookup
// is the process's CPU time per lookup (both agents, the pacing ticker's
// wake-ups included).
func BenchmarkLookupStream(b *testing.B) {
	c := startLookupPair(b)
	const conns, perTick = 50, 250
	var linked, other atomic.Int64
	var wg sync.WaitGroup
	w := &countWaiter{linked: &linked, other: &other, wg: &wg}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	wg.Add(b.N)
	b.ResetTimer()
	cpu0 := cpuNow(b)
	for j := 0; j < b.N; j++ {
		if j%perTick == 0 {
			<-tick.C
		}
		k := uint32(j / conns)
		if r := c.Lookup(both(uint16(40000+j%conns), uint64(k+1), uint32(j%conns)*2654435761+k*90), time.Time{}, w); r != Pending {
			b.Fatalf("lookup %d: %v", j, r)
		}
	}
	wg.Wait()
	cpu := cpuNow(b) - cpu0
	b.StopTimer()
	if linked.Load() != int64(b.N) {
		b.Fatalf("%d of %d linked (%d not)", linked.Load(), b.N, other.Load())
	}
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/lookup")
}

// startLookupPair starts a Server (fixedAnswerer) and a Client of it on
// loopback, and waits until the client knows the server's address.
func startLookupPair(b *testing.B) *Client {
	c := newPair(b, fixedAnswerer{}, "tok", "tok", 10*time.Second).client
	waitOwned(b, c)
	return c
}
