package postgres

import (
	"encoding/binary"
	"strings"
)

// frames reports whether b is a whole number of typed messages.
func frames(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 5 || !isType(b[0]) {
			return false
		}
		n := binary.BigEndian.Uint32(b[1:])
		if n < 4 || uint64(n)+1 > uint64(len(b)) {
			return false
		}
		b = b[n+1:]
	}
	return true
}

func isType(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '1' && c <= '3'
}

// endsWith reports whether b ends with the message of type t and body body.
func endsWith(b []byte, t byte, body string) bool {
	n := 5 + len(body)
	if len(b) < n || b[len(b)-n] != t {
		return false
	}
	m := b[len(b)-n:]
	return binary.BigEndian.Uint32(m[1:]) == uint32(4+len(body)) && string(m[5:]) == body
}

// Lost implements db.Resyncer.
func (c requestCodec) Lost() { c.d.stats.LostSync.Add(1) }

// Frames implements db.Resyncer.
func (c requestCodec) Frames(b []byte) bool { return !c.d.startup && frames(b) }

// Resync implements db.Resyncer: a read that ends with Sync, Flush or
// CopyDone ends at a message boundary. The Executes lost before a Sync
// make no exchange; their results are skipped as unmatched.
func (c requestCodec) Resync(end []byte) bool {
	switch {
	case endsWith(end, 'S', ""):
		c.d.sync()
	case endsWith(end, 'H', ""), endsWith(end, 'c', ""):
	default:
		return false
	}
	return true
}

// Lost implements db.Resyncer.
func (c responseCodec) Lost() { c.d.stats.LostSync.Add(1) }

// Frames implements db.Resyncer.
func (c responseCodec) Frames(b []byte) bool { return c.d.answer == 0 && frames(b) }

// Resync implements db.Resyncer: a read that ends with ReadyForQuery ends
// the request at the head of the queue; its exchanges end there, with the
// rows counted before the loss.
func (c responseCodec) Resync(end []byte) bool {
	if !endsWith(end, 'Z', "I") && !endsWith(end, 'Z', "T") && !endsWith(end, 'Z', "E") {
		return false
	}
	d := c.d
	if d.respStart {
		d.respStart = false
		return true
	}
	for !d.queue.Empty() {
		e, ok := d.queue.Pop()
		if !ok {
			return true
		}
		switch e.kind {
		case kQuery:
			if e.x != nil {
				d.h.End(e.x, d.now, "")
			}
			return true
		case kSync:
			return true
		case kExecute:
			d.h.End(e.x, d.now, "")
		}
	}
	return true
}

// requestTypes are the frontend messages a client's call may start with
// once the connection is up (not COPY data: the middle of a COPY).
const requestTypes = "QPBEDSCHF"

// StartsRequest implements protocol.Restarter: after records lost, a
// connection is decoded again from a call that is whole frontend messages,
// the first one a request (Query, Parse, Bind, ...).
func (*Protocol) StartsRequest(first []byte) bool {
	return len(first) > 0 && strings.IndexByte(requestTypes, first[0]) >= 0 && frames(first)
}

// Reset implements protocol.Resetter: after records lost, the requests in
// flight (ended by the correlator) and the messages in progress are
// forgotten; the database and the named prepared statements and portals
// are kept (a statement closed and prepared again under the same name in
// the bytes lost keeps its old text), the unnamed ones, replaced by almost
// every call that uses them, are forgotten.
func (d *decoder) Reset() {
	d.queue.Drain()
	d.req.Reset()
	d.resp.Reset()
	d.startup, d.respStart, d.answer = false, false, 0
	d.batchExec, d.batchParse = false, nil
	delete(d.statements, "")
	delete(d.portals, "")
}
