package postgres

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/periscope-apm/periscope/correlator/protocols/db"
	"github.com/periscope-apm/periscope/correlator/protocols/sqltext"
)

// requestCodec reads the frontend's messages.
type requestCodec struct{ d *decoder }

// HeaderLen implements db.Codec: startup-phase messages have no type byte.
func (c requestCodec) HeaderLen() int {
	if c.d.startup {
		return 4
	}
	return 5
}

// BodyLen implements db.Codec.
func (c requestCodec) BodyLen(h []byte) (int, error) {
	n := binary.BigEndian.Uint32(h[len(h)-4:])
	if n < 4 || n > maxMessage {
		return 0, fmt.Errorf("message length %d", n)
	}
	return int(n) - 4, nil
}

// Keep implements db.Codec: query texts and names; never password
// messages, bound values or COPY data.
func (c requestCodec) Keep(h []byte) int {
	if len(h) == 4 {
		return 4096 // startup parameters
	}
	switch h[0] {
	case 'Q', 'P':
		return maxText
	case 'B', 'E', 'C':
		return 256 // names first; what follows is not read
	}
	return 0
}

// Message implements db.Codec.
func (c requestCodec) Message(m *db.Message) error {
	d := c.d
	if len(m.Header) == 4 {
		d.startupMessage(m.Body)
		return nil
	}
	switch m.Header[0] {
	case 'Q':
		d.query(m.Body)
	case 'P':
		d.parse(m.Body)
	case 'B':
		d.bind(m.Body)
	case 'E':
		d.execute(m.Body)
	case 'S':
		d.sync()
	case 'C':
		d.close(m.Body)
	case 'F':
		d.push(d.newEntry(kQuery)) // FunctionCall: answered, then ReadyForQuery
	}
	return nil
}

func (d *decoder) startupMessage(b []byte) {
	if len(b) < 4 {
		return
	}
	switch code := binary.BigEndian.Uint32(b); {
	case code == codeSSL:
		d.answer = 1
	case code == codeGSSENC:
		d.answer = 2
	case code == codeCancel:
	case code>>16 == 3:
		d.startup = false
		params := b[4:]
		for len(params) > 0 && params[0] != 0 {
			k, rest, _ := cstring(params)
			v, rest, _ := cstring(rest)
			if k == "database" {
				d.namespace = v
			}
			params = rest
		}
	}
}

func (d *decoder) query(b []byte) {
	text, _, _ := cstring(b)
	e := d.newEntry(kQuery)
	e.stmts = d.texts.Statements(e.one[:0], text, maxStored)
	if d.push(e) {
		d.next(e, d.now)
	}
}

// next begins the next statement of a Query, if any.
func (d *decoder) next(e *entry, start time.Time) {
	e.x = nil
	if len(e.stmts) == 0 {
		return
	}
	e.x = d.exchange(e.stmts[0], start)
	e.stmts = e.stmts[1:]
	d.h.Begin(e.x)
}

func (d *decoder) parse(b []byte) {
	name, rest, _ := cstring(b)
	text, _, _ := cstring(rest)
	s := d.texts.Joined(text, maxStored) // the server refuses more than one statement
	d.remember(d.statements, name, s)
	if len(d.batchParse) < maxBatchParses {
		d.batchParse = append(d.batchParse, s)
	}
}

func (d *decoder) bind(b []byte) {
	portal, rest, _ := cstring(b)
	stmt, _, ok := cstring(rest)
	var text *sqltext.Info
	if ok {
		text = d.statements[stmt]
	}
	d.remember(d.portals, portal, text)
}

func (d *decoder) execute(b []byte) {
	portal, _, _ := cstring(b)
	d.batchExec = true
	if d.queue.Full() {
		d.stats.Overflowed.Add(1) // its result is skipped while a Sync or Query is at the head
		return
	}
	e := d.newEntry(kExecute)
	e.x = d.exchange(d.portals[portal], d.now)
	d.push(e)
	d.h.Begin(e.x)
}

func (d *decoder) sync() {
	if !d.batchExec && len(d.batchParse) > 0 {
		e := d.newEntry(kPrepare)
		e.parses = d.batchParse
		d.push(e)
	}
	d.batchExec, d.batchParse = false, nil
	d.push(d.newEntry(kSync))
}

func (d *decoder) close(b []byte) {
	if len(b) < 1 {
		return
	}
	name, _, _ := cstring(b[1:])
	switch b[0] {
	case 'S':
		delete(d.statements, name)
	case 'P':
		delete(d.portals, name)
	}
}

// push queues a request; a request that finds the queue full is counted
// and, if it ends with ReadyForQuery, kept as an anonymous place.
func (d *decoder) push(e *entry) bool {
	if e.kind == kPrepare && d.queue.Full() {
		return false
	}
	return d.queue.Push(e)
}
