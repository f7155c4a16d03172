package db

import (
	"fmt"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

// Spans gives a database protocol its protocol.Protocol Describe, with
// the strings spans of one server share (its address, the names of its
// operations) made once.
type Spans struct{ cache *nameCache }

// NewSpans returns a Spans with its cache.
func NewSpans() Spans { return Spans{cache: newNameCache()} }

// Describe implements protocol.Protocol for exchanges of type *Exchange.
func (sp Spans) Describe(x protocol.Exchange, c protocol.Conn, reason string, s *span.Span) {
	describe(x.(*Exchange), c, reason, s, sp.cache)
}

// Claim returns the detection of a protocol whose first bytes were seen
// moving in direction dir: the traced process is the client when it wrote
// them and the client speaks first, or read them and the server does.
func Claim(dir events.Direction, clientFirst bool) protocol.Detection {
	role := protocol.Server
	if (dir == events.Write) == clientFirst {
		role = protocol.Client
	}
	return protocol.Detection{Verdict: protocol.Yes, Role: role}
}

// FeedSide feeds chunk c to the framer of its side; a loss of message
// boundaries that the framer cannot recover from is counted in stats and
// returned, wrapping ErrLostSync.
func FeedSide(req, resp *Framer, side protocol.Side, c protocol.Chunk, stats *Stats, system string) error {
	f := req
	if side == protocol.Responses {
		f = resp
	}
	if err := Feed(f, c.Bytes, c.Size, c.Tail); err != nil {
		stats.LostSync.Add(1)
		return fmt.Errorf("%s: %w", system, err)
	}
	return nil
}
