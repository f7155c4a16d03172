package linking

import (
	"context"
	"net/netip"
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
