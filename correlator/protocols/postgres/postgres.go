// Package postgres is the PostgreSQL frontend/backend protocol (version 3)
// behind the protocol.Protocol interface.
//
// The startup message gives db.namespace (the database name; the user name
// and every password message are never kept). An SSLRequest or
// GSSENCRequest that the server accepts makes the connection leave the
// protocol: its plaintext, if a TLS library is traced, arrives on another
// connection of the agent and starts with a startup message again.
//
// Each statement result is one exchange: a simple Query with several
// statements yields one exchange per CommandComplete, paired with its
// statement; in the extended protocol every Execute is one exchange named
// by the text of the Parse its portal was bound to (named prepared
// statements are remembered per connection), however many are pipelined
// before one Sync. An ErrorResponse ends the exchange in flight with its
// SQLSTATE; the Executes the server then skips until Sync never ran: they
// end as failed (request_failed).
// NoticeResponse is not an error. Rows (DataRow, CopyData) are counted,
// never buffered.
package postgres

import (
	"encoding/binary"
	"time"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
	"github.com/periscope-apm/periscope/correlator/protocols/sqltext"
	"github.com/periscope-apm/periscope/events"
)

// Limits of one connection's state.
const (
	// MaxPending bounds the requests waiting for their results.
	MaxPending = 1024
	// MaxStatements bounds the prepared statements and portals remembered.
	MaxStatements = 256
	// maxText is how much of a query text is read; maxStored how much of
	// its sanitised form is kept.
	maxText   = 8192
	maxStored = 2048
	// maxBatchParses bounds the Parse texts remembered for one batch.
	maxBatchParses = 64
	// maxMessage is the largest message length accepted as valid.
	maxMessage = 1 << 30
)

// Startup request codes.
const (
	codeSSL    = 80877103
	codeGSSENC = 80877104
	codeCancel = 80877102
)

// Protocol is PostgreSQL.
type Protocol struct {
	db.Spans
	stats *db.Stats
	// texts holds what the spans of each statement export, read once per
	// statement text, not per span; exchanges are recycled after export.
	texts     *sqltext.Cache
	exchanges db.Pool
}

var _ protocol.Protocol = (*Protocol)(nil)

// New returns the PostgreSQL protocol; its decoders count drops into stats.
func New(stats *db.Stats) *Protocol {
	return &Protocol{Spans: db.NewSpans(), stats: stats, texts: sqltext.NewCache(sqltext.Postgres)}
}

// Name implements protocol.Protocol.
func (*Protocol) Name() string { return "postgresql" }

// Detect implements protocol.Protocol: the client speaks first, with a
// startup message, an SSLRequest, a GSSENCRequest or a CancelRequest.
func (*Protocol) Detect(first []byte, dir events.Direction) protocol.Detection {
	if len(first) >= 1 && first[0] != 0 || len(first) >= 2 && first[1] != 0 {
		return protocol.Detection{}
	}
	if len(first) < 8 {
		return protocol.Detection{Verdict: protocol.Undecided}
	}
	n := binary.BigEndian.Uint32(first)
	code := binary.BigEndian.Uint32(first[4:])
	ok := code>>16 == 3 && n >= 8 && n <= 10000 ||
		(code == codeSSL || code == codeGSSENC) && n == 8 || code == codeCancel && n == 16
	if !ok {
		return protocol.Detection{}
	}
	return db.Claim(dir, true)
}

// NewDecoder implements protocol.Protocol.
func (p *Protocol) NewDecoder(_ protocol.Role, h protocol.Handler) protocol.Decoder {
	d := &decoder{
		h:          h,
		stats:      p.stats,
		texts:      p.texts,
		exchanges:  &p.exchanges,
		queue:      db.NewQueue[*entry](MaxPending, p.stats),
		statements: map[string]*sqltext.Info{},
		portals:    map[string]*sqltext.Info{},
		startup:    true,
		respStart:  true,
	}
	d.req = db.NewFramer(requestCodec{d})
	d.resp = db.NewFramer(responseCodec{d})
	return d
}

// kind is what a queued request waits for.
type kind uint8

const (
	kQuery   kind = iota + 1 // a simple Query: results, then ReadyForQuery
	kExecute                 // an Execute: one result
	kPrepare                 // a batch with Parse and no Execute: only an error makes an exchange
	kSync                    // a Sync: ReadyForQuery
)

// entry is a request waiting for its response.
type entry struct {
	kind   kind
	x      *db.Exchange    // the exchange in flight (begun)
	stmts  []*sqltext.Info // statements of a Query not begun yet
	parses []*sqltext.Info // kPrepare: the texts of its Parse messages not yet complete
	start  time.Time
	one    [1]*sqltext.Info // stmts of a one-statement Query
}

// maxSpare bounds the entries a decoder keeps for its next requests.
const maxSpare = 4

type decoder struct {
	h          protocol.Handler
	stats      *db.Stats
	texts      *sqltext.Cache
	exchanges  *db.Pool
	req, resp  *db.Framer
	queue      *db.Queue[*entry]
	spare      []*entry                 // entries popped, to be used again
	statements map[string]*sqltext.Info // prepared statement name -> sanitised text
	portals    map[string]*sqltext.Info // portal name -> sanitised text
	namespace  string
	now        time.Time
	startup    bool // the next request is a startup-phase message
	respStart  bool // the server has not sent ReadyForQuery yet
	answer     int  // a one-byte answer to SSLRequest (1) or GSSENCRequest (2) is due
	left       bool
	// the current extended-protocol batch (until Sync)
	batchExec  bool
	batchParse []*sqltext.Info
}

// Feed implements protocol.Decoder.
func (d *decoder) Feed(side protocol.Side, c protocol.Chunk) error {
	if d.left {
		return nil
	}
	d.now = c.Time
	return db.FeedSide(d.req, d.resp, side, c, d.stats, db.PostgreSQL)
}

// EOF implements protocol.Decoder.
func (d *decoder) EOF(time.Time) {}

// Left implements protocol.Decoder: true once the connection switched to
// TLS or GSS encryption.
func (d *decoder) Left() bool { return d.left }

// exchange returns a new exchange for a statement (nil: its text is not
// known), from the pool: the decoder lets go of every exchange it ends.
func (d *decoder) exchange(in *sqltext.Info, start time.Time) *db.Exchange {
	x := d.exchanges.Get()
	x.Begun, x.System, x.Namespace = start, db.PostgreSQL, d.namespace
	if in != nil {
		x.Operation, x.Collection, x.Query, x.Summary = in.Operation, in.Collection, in.Text, in.Summary
	}
	return x
}

// newEntry returns an empty entry of kind k.
func (d *decoder) newEntry(k kind) *entry {
	var e *entry
	if n := len(d.spare); n > 0 {
		e, d.spare = d.spare[n-1], d.spare[:n-1]
	} else {
		e = new(entry)
	}
	e.kind, e.start = k, d.now
	return e
}

// release keeps e, popped from the queue and no longer read, for a next
// request.
func (d *decoder) release(e *entry) {
	if len(d.spare) < maxSpare {
		*e = entry{}
		d.spare = append(d.spare, e)
	}
}

// remember stores a name -> text mapping, evicting one entry when full.
func (d *decoder) remember(m map[string]*sqltext.Info, name string, text *sqltext.Info) {
	if _, ok := m[name]; !ok && len(m) >= MaxStatements {
		for k := range m {
			delete(m, k)
			d.stats.Forgotten.Add(1)
			break
		}
	}
	m[name] = text
}

// cstring returns the NUL-terminated string at the start of b and the rest.
func cstring(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return string(b), nil, false
}
