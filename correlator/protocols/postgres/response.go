package postgres

import (
	"encoding/binary"
	"fmt"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
)

// responseCodec reads the backend's messages.
type responseCodec struct{ d *decoder }

// HeaderLen implements db.Codec: the answer to SSLRequest and GSSENCRequest
// is one byte.
func (c responseCodec) HeaderLen() int {
	if c.d.answer != 0 {
		return 1
	}
	return 5
}

// BodyLen implements db.Codec.
func (c responseCodec) BodyLen(h []byte) (int, error) {
	if len(h) == 1 {
		return 0, nil
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n < 4 || n > maxMessage {
		return 0, fmt.Errorf("message length %d", n)
	}
	return int(n) - 4, nil
}

// Keep implements db.Codec: error fields and command tags; rows and COPY
// data are only counted.
func (c responseCodec) Keep(h []byte) int {
	if len(h) == 1 {
		return 0
	}
	switch h[0] {
	case 'E':
		return 1024
	case 'C':
		return 64
	}
	return 0
}

// Message implements db.Codec.
func (c responseCodec) Message(m *db.Message) error {
	d := c.d
	if len(m.Header) == 1 {
		d.answered(m.Header[0])
		return nil
	}
	switch m.Header[0] {
	case 'C', 'I', 's':
		d.result("", "")
	case 'E':
		if d.respStart {
			return nil // authentication failed: not an operation
		}
		code := errorCode(m.Body)
		d.result(code, code)
	case 'Z':
		d.ready()
	case '1':
		if e, ok := d.queue.Peek(); ok && e.kind == kPrepare && len(e.parses) > 0 {
			e.parses = e.parses[1:] // ParseComplete
		}
	case 'D', 'd':
		if e, ok := d.queue.Peek(); ok && e.x != nil {
			e.x.Rows++
		}
	}
	return nil
}

// answered handles the one-byte answer to SSLRequest or GSSENCRequest.
func (d *decoder) answered(b byte) {
	d.answer = 0
	if b == 'S' || b == 'G' {
		d.left = true // TLS or GSS from now on
		d.stats.Encrypted.Add(1)
	}
	// 'N': the client goes on in plaintext with a startup message.
}

// result ends the exchange at the head of the queue: a CommandComplete,
// EmptyQueryResponse or PortalSuspended (code ""), or an ErrorResponse.
func (d *decoder) result(status, errType string) {
	e, ok := d.queue.Peek()
	if !ok {
		return // nothing waiting, or an overflowed request's result
	}
	switch e.kind {
	case kQuery:
		d.endQuery(e, status, errType)
	case kExecute:
		d.queue.Pop()
		d.end(e.x, status, errType)
		d.release(e)
		if status != "" {
			d.skipBatch()
		}
	case kPrepare:
		if status != "" && len(e.parses) > 0 {
			x := d.exchange(e.parses[0], e.start)
			e.parses = nil
			d.h.Begin(x)
			d.end(x, status, errType)
		}
	}
}

// endQuery ends the statement in flight of a simple Query and begins the
// next one; after an error the rest of the Query does not run.
func (d *decoder) endQuery(e *entry, status, errType string) {
	if e.x == nil {
		return // more results than statements seen (a cut-off text)
	}
	d.end(e.x, status, errType)
	if status != "" {
		e.stmts = nil
	}
	d.next(e, d.now)
}

// skipBatch drops the Executes the server skips after an error, up to the
// batch's Sync: they never ran.
func (d *decoder) skipBatch() {
	for {
		e, ok := d.queue.Peek()
		if !ok || e.kind != kExecute {
			return
		}
		d.queue.Pop()
		d.h.End(e.x, d.now, protocol.ReasonRequestErr)
		d.release(e)
	}
}

func (d *decoder) end(x *db.Exchange, status, errType string) {
	x.StatusCode, x.ErrorType = status, errType
	d.h.End(x, d.now, "")
}

// ready handles ReadyForQuery: the end of the startup phase, of a Query or
// of a batch.
func (d *decoder) ready() {
	if d.respStart {
		d.respStart = false
		return
	}
	for !d.queue.Empty() {
		e, ok := d.queue.Pop()
		if !ok {
			return // an overflowed Query or Sync
		}
		if e.x != nil { // a Query's statement or an Execute with no result seen
			d.h.End(e.x, d.now, protocol.ReasonParseError)
		}
		k := e.kind
		d.release(e)
		if k == kQuery || k == kSync {
			return
		}
	}
}

// errorCode returns the SQLSTATE field of an ErrorResponse.
func errorCode(b []byte) string {
	for len(b) > 0 && b[0] != 0 {
		t := b[0]
		v, rest, _ := cstring(b[1:])
		if t == 'C' && len(v) == 5 {
			return v
		}
		b = rest
	}
	return "_OTHER"
}
