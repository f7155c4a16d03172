package redis

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
	"github.com/periscope-apm/periscope/events"
)

// MaxPending bounds the commands of one connection waiting for their
// replies; past it commands are counted (db.Stats.Overflowed), not kept.
const MaxPending = 1024

// Bytes kept of a command's name and of its key.
const (
	keepName = 32
	keepKey  = 128
)

// Protocol is Redis (RESP2 and RESP3).
type Protocol struct {
	db.Spans
	stats *db.Stats
	// exchanges recycles the commands' exchanges: a decoder lets go of
	// one when it ends it at its reply (popped from its queue).
	exchanges db.Pool
}

var _ protocol.Protocol = (*Protocol)(nil)

// New returns the Redis protocol; its decoders count drops into stats.
func New(stats *db.Stats) *Protocol { return &Protocol{Spans: db.NewSpans(), stats: stats} }

// Name implements protocol.Protocol.
func (*Protocol) Name() string { return "redis" }

// Detect implements protocol.Protocol: a client speaks first, with an
// array of bulk strings ("*N\r\n$"). Inline commands are decoded on a
// connection already known as Redis, but never claim one.
func (*Protocol) Detect(first []byte, dir events.Direction) protocol.Detection {
	switch looksLikeCommand(first) {
	case protocol.Yes:
		return db.Claim(dir, true)
	case protocol.Undecided:
		return protocol.Detection{Verdict: protocol.Undecided}
	}
	return protocol.Detection{}
}

// StartsRequest implements protocol.Restarter: first starts a RESP array
// command (clients that pipeline speak RESP arrays).
func (*Protocol) StartsRequest(first []byte) bool { return looksLikeCommand(first) == protocol.Yes }

func looksLikeCommand(p []byte) protocol.Verdict {
	if len(p) == 0 {
		return protocol.Undecided
	}
	if p[0] == '*' {
		i := 1
		for i < len(p) && i < 12 && p[i] >= '0' && p[i] <= '9' {
			i++
		}
		rest := p[i:]
		want := []byte("\r\n$")
		switch {
		case i == 1:
			return protocol.No
		case len(rest) < len(want):
			if bytes.HasPrefix(want, rest) {
				return protocol.Undecided
			}
			return protocol.No
		case bytes.HasPrefix(rest, want):
			return protocol.Yes
		}
		return protocol.No
	}
	// Inline commands ("PING", "HELLO 3") are decoded once a connection
	// is Redis, but never claim one: any line of text starts that way
	// (TestFaultNotHTTP's garbage client sends "HELLO ..."), and every
	// client library speaks RESP arrays.
	return protocol.No
}

// NewDecoder implements protocol.Protocol.
func (p *Protocol) NewDecoder(_ protocol.Role, h protocol.Handler) protocol.Decoder {
	d := &decoder{h: h, stats: p.stats, exchanges: &p.exchanges, pending: db.NewQueue[pending](MaxPending, p.stats)}
	d.resume()
	return d
}

// pending is a command waiting for its reply, kept by value in the queue.
type pending struct {
	x       *db.Exchange
	select_ string // the index a SELECT asks for
}

type decoder struct {
	h         protocol.Handler
	stats     *db.Stats
	exchanges *db.Pool
	req, resp *reader
	pending   *db.Queue[pending]
	texts     texts // query texts are carved from here
	now       time.Time
	reqStart  time.Time
	namespace string
	pubsub    bool // the client subscribed: pushed messages are not replies
	synced    bool // a command was decoded: the connection is Redis
	arrays    bool // a command was a RESP array: inline ones are not expected
	lost      bool // message boundaries were lost; waiting for a command to resume at
	// replied: while lost, the last chunk was a reply (or the loss was
	// in one): the next requests chunk starts a call (see Feed).
	replied bool
	// answered: the loss was inside the reply of the oldest command
	// pending, its start seen: that command had its reply.
	answered bool
	lastResp time.Time
	// lastName and lastCmd are the name of the last command, as sent
	// (keepName bytes at most), and what lookup returned for it: a
	// connection sends the same commands again and again.
	lastName [keepName]byte
	lastLen  int
	lastCmd  *command
}

// Feed implements protocol.Decoder. Bytes lost where a header should have
// been (a copy cut short outside a bulk string, records dropped) make the
// decoder wait for a reply, then for a call that starts a command, and
// resume there (resync). Only the first requests chunk after a reply
// starts a call: a later one may be a later record of the call the loss
// was in (a large call comes in records of 4 KiB), whose earlier
// commands, not decoded, are answered first: their replies would pair
// with the commands decoded from there.
func (d *decoder) Feed(side protocol.Side, c protocol.Chunk) error {
	d.now = c.Time
	if d.lost {
		if side == protocol.Responses {
			d.lastResp, d.replied = c.Time, true
			return nil
		}
		starts := d.replied && looksLikeCommand(c.Bytes) == protocol.Yes
		d.replied = false
		if !starts {
			return nil
		}
		d.resume()
	}
	r := d.resp
	if side == protocol.Requests {
		r = d.req
		if !r.started {
			d.reqStart = c.Time
		}
	} else {
		d.lastResp = c.Time
	}
	err := feed(r, c)
	if err == nil {
		return nil
	}
	d.stats.LostSync.Add(1)
	if errors.Is(err, errProtocol) && !d.synced {
		return fmt.Errorf("%w: %w", protocol.ErrNotProtocol, err)
	}
	// A Redis connection whose bytes stopped making sense: some were
	// lost. Nothing more is decoded until a command starts a call after
	// a reply; the loss in a reply is one.
	d.lost, d.replied = true, side == protocol.Responses
	d.answered = d.replied && d.resp.started
	return nil
}

// Reset implements protocol.Resetter: after bytes lost, the commands in
// flight (ended by the correlator) are forgotten; the database selected,
// a subscription and the dialect are kept.
func (d *decoder) Reset() {
	d.pending.Drain()
	d.resume()
}

// resume starts decoding afresh at a call that starts a command, after a
// loss and a reply. A client writes a command once it has the replies it
// waits for (every synchronous client, and pipelines read whole before
// the next): the commands still pending got their replies, in the bytes
// lost or skipped while lost. The oldest one's reply began before a loss
// inside it (answered): it ends at the last reply bytes seen, without
// rows (a large reply cut short). Of the others, which reply was whose is
// not known: they end there as data_lost (counted), never with another
// command's status or rows. Replies of commands lost whole were in bytes
// skipped while lost.
func (d *decoder) resume() {
	for {
		p, ok := d.pending.Pop()
		if !ok {
			if d.pending.Empty() {
				break
			}
			continue // an anonymous (overflowed) command
		}
		end := d.lastResp
		if end.Before(p.x.Begun) {
			end = p.x.Begun
		}
		reason := protocol.ReasonDataLost
		if d.answered {
			reason = ""
		}
		d.answered = false
		d.h.End(p.x, end, reason)
	}
	d.lost, d.replied, d.answered = false, false, false
	d.req = newReader([2]int{keepName, keepKey}, true, d.command)
	d.resp = newReader([2]int{16, 0}, false, d.reply)
}

func feed(r *reader, c protocol.Chunk) error {
	if err := r.write(c.Bytes); err != nil {
		return err
	}
	gap := max(c.Size-len(c.Bytes)-len(c.Tail), 0)
	tail := c.Tail
	if overlap := len(c.Bytes) + len(tail) - max(c.Size, len(c.Bytes)); overlap > 0 {
		tail = tail[min(overlap, len(tail)):]
	}
	if err := r.skip(gap); err != nil {
		return err
	}
	return r.write(tail)
}

// EOF implements protocol.Decoder: commands still waiting are ended by the
// correlator.
func (d *decoder) EOF(time.Time) {}

// Left implements protocol.Decoder.
func (d *decoder) Left() bool { return false }

// command handles one complete command.
func (d *decoder) command(v *Value) error {
	start := d.reqStart
	d.reqStart = d.now // the next command of a pipeline starts in this chunk
	args := v.Head
	n := v.Count
	if v.Type == 0 {
		if d.arrays {
			// Clients that speak RESP arrays never send inline commands:
			// this is the end of a command whose start was lost.
			return fmt.Errorf("%w: inline command after RESP arrays", errProtocol)
		}
		fields := bytes.Fields(v.Inline)
		n = len(fields)
		args = [2][]byte{}
		for i := 0; i < min(2, n); i++ {
			args[i] = fields[i][:min(len(fields[i]), []int{keepName, keepKey}[i])]
		}
	} else if v.Type != '*' {
		return fmt.Errorf("%w: command of type %q", errProtocol, v.Type)
	} else {
		d.arrays = true
	}
	if n == 0 {
		return nil
	}
	d.synced = true
	c := d.lookup(args[0])
	if c.subscribe {
		d.pubsub = true
		return nil // a subscription is not a request
	}
	x := d.exchanges.Get()
	x.Begun, x.System, x.Namespace, x.Operation = start, db.Redis, d.namespace, c.name
	x.Query, x.Procedure = queryText(&d.texts, c, args[1], n)
	p := pending{x: x}
	if c.name == "SELECT" && n == 2 && isDigits(args[1]) {
		p.select_ = string(args[1])
	}
	if d.pending.Push(p) {
		d.h.Begin(x)
	}
	return nil
}

// lookup is lookup(name), the last answer kept.
func (d *decoder) lookup(name []byte) *command {
	name = name[:min(len(name), keepName)]
	if d.lastCmd != nil && string(name) == string(d.lastName[:d.lastLen]) {
		return d.lastCmd
	}
	d.lastCmd = lookup(name)
	d.lastLen = copy(d.lastName[:], name)
	return d.lastCmd
}

// reply handles one complete reply.
func (d *decoder) reply(v *Value) error {
	if v.Type == '>' {
		return nil // out of band (RESP3 push)
	}
	if d.pubsub && v.Type == '*' && isPush(v.Head[0]) {
		return nil // RESP2 pub/sub message or (un)subscribe confirmation
	}
	p, ok := d.pending.Pop()
	if !ok {
		return nil // an anonymous (overflowed) command, or none waiting
	}
	x := p.x
	switch v.Type {
	case '-', '!':
		code := errorPrefix(v.Head[0])
		x.StatusCode, x.ErrorType = code, code
	case '*', '%', '~':
		x.Rows = int64(v.Count)
	}
	x.Bytes = v.Bytes
	if p.select_ != "" && !x.Failed() {
		d.namespace = p.select_
	}
	d.h.End(x, d.now, "")
	return nil
}

// errorPrefix returns the first word of an error reply, the error code
// Redis prefixes its messages with ("ERR", "WRONGTYPE").
func errorPrefix(msg []byte) string {
	if i := bytes.IndexByte(msg, ' '); i >= 0 {
		msg = msg[:i]
	}
	for _, c := range msg {
		if !(c >= 'A' && c <= 'Z' || c == '_' || c >= '0' && c <= '9') {
			return "ERR"
		}
	}
	if len(msg) == 0 || len(msg) > 32 {
		return "ERR"
	}
	return string(msg)
}

func isDigits(b []byte) bool {
	if len(b) == 0 || len(b) > 4 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isPush reports whether the first element of an array a subscribed
// client reads names a RESP2 pub/sub push (any case).
func isPush(kind []byte) bool {
	var buf [16]byte
	if len(kind) > len(buf) {
		return false
	}
	for i, c := range kind {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return pushKinds[string(buf[:len(kind)])]
}
