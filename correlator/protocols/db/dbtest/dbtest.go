// Package dbtest has what the tests of the database decoders share: a
// handler that records exchanges and checks their order, and chunking.
package dbtest

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
)

// Recorder is a protocol.Handler that keeps the exchanges it is given and
// fails the test when an exchange ends twice or ends without beginning.
type Recorder struct {
	T      testing.TB
	Begun  int
	Ended  []*db.Exchange
	open   map[*db.Exchange]bool
	Reason []string
}

// Begin implements protocol.Handler.
func (r *Recorder) Begin(x protocol.Exchange) {
	if r.open == nil {
		r.open = map[*db.Exchange]bool{}
	}
	e := x.(*db.Exchange)
	if r.open[e] {
		r.T.Fatalf("exchange begun twice: %+v", e)
	}
	r.open[e] = true
	r.Begun++
}

// End implements protocol.Handler.
func (r *Recorder) End(x protocol.Exchange, end time.Time, reason string) {
	e := x.(*db.Exchange)
	if !r.open[e] {
		r.T.Fatalf("exchange ended but not open: %+v", e)
	}
	if end.Before(e.Begun) {
		r.T.Fatalf("exchange ends before it begins: %v < %v %+v", end, e.Begun, e)
	}
	delete(r.open, e)
	r.Ended = append(r.Ended, e)
	r.Reason = append(r.Reason, reason)
}

// Open returns how many exchanges began and did not end.
func (r *Recorder) Open() int { return len(r.open) }

// Step is one chunk of a conversation.
type Step struct {
	Side  protocol.Side
	Bytes string
}

// Base is the time of the first step; step i happens at Base + i ms.
var Base = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// Play feeds steps to d, each step cut into pieces by rng when rng is not
// nil (all pieces of a step at the step's time).
func Play(d protocol.Decoder, steps []Step, rng *rand.Rand) error {
	for i, s := range steps {
		at := Base.Add(time.Duration(i) * time.Millisecond)
		b := []byte(s.Bytes)
		for len(b) > 0 {
			n := len(b)
			if rng != nil {
				n = 1 + rng.IntN(len(b))
			}
			if err := d.Feed(s.Side, protocol.Chunk{Bytes: b[:n], Size: n, Time: at}); err != nil {
				return err
			}
			b = b[n:]
		}
	}
	return nil
}
