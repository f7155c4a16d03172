package linking

import (
	"testing"
	"time"
	"unsafe"
)

// A Sent's header and each entry are one cache line.
func TestSentSize(t *testing.T) {
	if n := unsafe.Sizeof(Sent{}); n != 64*(1+sentSlots) {
		t.Errorf("Sent is %d bytes, want %d", n, 64*(1+sentSlots))
	}
	if off := unsafe.Offsetof(Sent{}.e); off != 64 {
		t.Errorf("entries at %d, want 64 (one header line)", off)
	}
}

func both(port uint16, seq uint64, tcp uint32) Query {
	q := query(port, seq)
	q.TCPSeq = uint64(tcp) | TCPSeqFlag
	return q
}

// A connection's requests are found in its Sent or, once they left it,
// in the table: by either key, whichever the asker has, the TCP key
// first. A request asked and found does not enter the table.
func TestSent(t *testing.T) {
	now := time.Now()
	const n = 100 // more than a Sent holds
	req := func(i int) Query { return both(1, uint64(i+1), uint32(90*i+7)) }
	for _, tc := range []struct {
		name string
		add  func(q Query) Query // as the answering agent saw the request
		ask  func(q Query) Query // as the asking agent did
	}{
		{"both keys", func(q Query) Query { return q }, func(q Query) Query { return q }},
		{"asker mid-stream", func(q Query) Query { return q }, func(q Query) Query { q.Seq = 0; return q }},
		{"answerer mid-stream", func(q Query) Query { q.Seq = 0; return q }, func(q Query) Query { return q }},
		{"ordinals only", func(q Query) Query { q.TCPSeq = 0; return q }, func(q Query) Query { q.TCPSeq = 0; return q }},
		{"TCP keys only", func(q Query) Query { q.Seq = 0; return q }, func(q Query) Query { q.Seq = 0; return q }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Asked as they end: found, and none enters the table.
			r := NewRecent(1024, time.Minute)
			s := r.NewSent()
			for i := range n {
				s = r.AddTo(s, tc.add(req(i)), answerFor(req(i)), now)
				if a, ok := r.GetFrom(s, tc.ask(req(i)), now); !ok || a != answerFor(req(i)) {
					t.Fatalf("request %d asked at once: %+v %v, want %+v", i, a, ok, answerFor(req(i)))
				}
			}
			r.Close(s)
			if l := r.Len(now); l != 0 {
				t.Errorf("%d requests in the table, want none (all asked and found)", l)
			}
			// Asked late (the first half) or after the connection
			// closed (the rest): found in the Sent or the table.
			r = NewRecent(1024, time.Minute)
			s = r.NewSent()
			for i := range n {
				s = r.AddTo(s, tc.add(req(i)), answerFor(req(i)), now)
			}
			for i := range n / 2 {
				if a, ok := r.GetFrom(s, tc.ask(req(i)), now); !ok || a != answerFor(req(i)) {
					t.Errorf("request %d asked late: %+v %v", i, a, ok)
				}
			}
			r.Close(s)
			for i := n / 2; i < n; i++ {
				if a, ok := r.Get(tc.ask(req(i)), now); !ok || a != answerFor(req(i)) {
					t.Errorf("request %d after the close: %+v %v", i, a, ok)
				}
			}
		})
	}
}

// A request whose span waits for its trace is remembered unsettled, then
// replaced: asked in between it is not found (and not final), and it is
// not taken for asked.
func TestSentUnsettled(t *testing.T) {
	now := time.Now()
	r := NewRecent(1024, time.Minute)
	s := r.NewSent()
	for _, q := range []Query{both(1, 1, 100), both(1, 0, 200)} {
		s = r.AddTo(s, q, Answer{}, now)
		if a, ok := r.GetFrom(s, q, now); !ok || a.Found {
			t.Fatalf("%+v unsettled: %+v %v, want known, not found", q, a, ok)
		}
		s = r.AddTo(s, q, answerFor(q), now)
		if a, ok := r.GetFrom(s, q, now); !ok || a != answerFor(q) {
			t.Errorf("%+v settled: %+v %v", q, a, ok)
		}
	}
	if s.n != 1 {
		t.Errorf("%d slots taken in turn, want 1 (the TCP-only request replaced in place)", s.n)
	}
}

// The TCP key wins over the ordinal, wherever each is: a request that
// left the Sent (in the table) by its TCP key before another in the Sent
// by its ordinal (the two agents counted the connection's requests
// differently). A request of another connection is never an answer.
func TestSentTCPKeyFirst(t *testing.T) {
	now := time.Now()
	r := NewRecent(1024, time.Minute)
	s := r.NewSent()
	old, evicter, same := both(1, 3, 1000), both(1, 3+sentSlots, 2000), both(1, 5, 3000)
	for _, q := range []Query{old, evicter, same} {
		s = r.AddTo(s, q, answerFor(q), now)
	}
	if a, _ := r.GetFrom(s, both(1, 5, 1000), now); a != answerFor(old) {
		t.Errorf("ordinal 5, TCP key of ordinal 3: %+v, want ordinal 3's", a)
	}
	if a, _ := r.GetFrom(s, both(1, 5, 4000), now); a != answerFor(same) {
		t.Errorf("ordinal 5, unknown TCP key: %+v, want ordinal 5's", a)
	}
	if a, ok := r.GetFrom(s, both(2, 5, 3000), now); ok {
		t.Errorf("another connection's request: %+v", a)
	}
	if a, ok := r.GetFrom(s, both(1, 5, 3000), now.Add(2*time.Minute)); ok {
		t.Errorf("after the TTL: %+v", a)
	}
}

// Open Sents are bounded; a closed one is reused.
func TestSentBounded(t *testing.T) {
	r := NewRecent(1024, time.Minute)
	var open []*Sent
	for range maxSents {
		open = append(open, r.NewSent())
	}
	if s := r.NewSent(); s != nil {
		t.Fatal("a Sent past maxSents")
	}
	r.Close(open[0])
	if s := r.NewSent(); s != open[0] {
		t.Error("the closed Sent not reused")
	}
}

// A connection whose requests leave its Sent unasked (never asked: to a
// node without an agent; or asked too late: faster than its slots) goes
// to the table directly once sentWindow of them did; one asked in time
// never does. Either way every request is found.
func TestSentBypass(t *testing.T) {
	now := time.Now()
	const n = 500
	req := func(i int) Query { return both(1, uint64(i+1), uint32(90*i+7)) }
	for _, lag := range []int{0, sentSlots - 1, 2 * sentSlots, n} {
		r := NewRecent(1024, time.Minute)
		s := r.NewSent()
		bypassed := -1
		for i := range n + lag {
			if i < n {
				s = r.AddTo(s, req(i), answerFor(req(i)), now)
			}
			if s == &r.bypass && bypassed < 0 {
				bypassed = i
			}
			if j := i - lag; j >= 0 && j < n {
				if a, ok := r.GetFrom(s, req(j), now); !ok || a != answerFor(req(j)) {
					t.Errorf("lag %d: request %d: %+v %v", lag, j, a, ok)
				}
			}
		}
		want := lag > sentSlots
		if (bypassed >= 0) != want {
			t.Errorf("lag %d: bypassed at request %d, want bypassed %v", lag, bypassed, want)
		}
		if want && bypassed > sentSlots+sentWindow {
			t.Errorf("lag %d: bypassed only at request %d", lag, bypassed)
		}
	}
}
