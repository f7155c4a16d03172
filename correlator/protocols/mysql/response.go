package mysql

import (
	"bytes"
	"encoding/binary"
	"strconv"

	"github.com/periscope-apm/periscope/correlator/protocols/db"
)

// response handles one packet from the server.
func (d *decoder) response(p packet) {
	switch d.phase {
	case phGreeting:
		d.greeting(p.body)
	case phHandshake:
		switch p.first() {
		case 0x00:
			d.phase = phCommand
			if d.handshake != "" {
				d.namespace = d.handshake
			}
			d.endSimple("", p) // a COM_CHANGE_USER in flight
		case 0xff:
			d.phase = phCommand
			d.endSimple(errCode(p.body), p)
		}
		// 0x01 (more data), 0xfe (auth switch): authentication goes on.
	case phCommand:
		d.result(p)
	}
}

// greeting reads the server's version and capabilities.
func (d *decoder) greeting(b []byte) {
	d.phase = phHandshake
	if len(b) < 2 || b[0] != 0x0a {
		return // an ERR instead of a greeting: the connection ends
	}
	i := bytes.IndexByte(b[1:], 0)
	if i < 0 {
		return
	}
	if bytes.Contains(b[1:1+i], []byte("MariaDB")) {
		d.system = db.MariaDB
	}
	rest := b[1+i+1:]
	// connection id (4), auth data (8), filler (1), capabilities low (2),
	// charset (1), status (2), capabilities high (2)
	if len(rest) >= 15 {
		d.serverCaps = uint32(binary.LittleEndian.Uint16(rest[13:]))
	}
	if len(rest) >= 20 {
		d.serverCaps |= uint32(binary.LittleEndian.Uint16(rest[18:])) << 16
	}
}

// endSimple ends a COM_CHANGE_USER waiting at the head, if any.
func (d *decoder) endSimple(code string, p packet) {
	if e, ok := d.queue.Peek(); ok && e.kind == kSimple && e.x.Operation == "COM_CHANGE_USER" {
		d.queue.Pop()
		d.end(e, code)
	}
}

// result handles a packet of the response to the head command.
func (d *decoder) result(p packet) {
	e, stored := d.queue.Peek()
	if !stored && d.queue.Empty() {
		return // nothing asked: a stray packet
	}
	kind := kResult // an overflowed command: read its response as a result
	if stored {
		kind = e.kind
	}
	switch d.rs {
	case rsFirst:
		d.first(e, kind, p)
	case rsColumns:
		d.columns--
		if d.columns <= 0 {
			d.rs = rsRows
			if !d.deprecateEOF() {
				d.rs = rsColEOF
			}
		}
	case rsColEOF:
		d.rs = rsRows
	case rsRows:
		d.row(e, p)
	case rsDefs:
		d.defs--
		if d.defs <= 0 {
			d.rs = rsFirst
			d.finish(e, "", 0)
		}
	}
}

// first handles the first packet of a response.
func (d *decoder) first(e *entry, kind kind, p packet) {
	switch {
	case p.first() == 0xff:
		d.finish(e, errCode(p.body), 0)
	case kind == kSimple:
		d.finish(e, "", 0) // OK, EOF, or a string (COM_STATISTICS)
	case kind == kFields:
		if isEOF(p, d.deprecateEOF()) {
			d.finish(e, "", 0)
		}
	case kind == kPrepare && p.first() == 0x00:
		d.prepareOK(e, p.body)
	case p.first() == 0x00 && p.size >= 7:
		d.finish(e, "", okStatus(p))
	case p.first() == 0xfb:
		// LOCAL INFILE: the client sends the file, then the server answers
		// with OK or ERR.
	default:
		n, used, ok := lenenc(p.body)
		if !ok || n == 0 {
			d.finish(e, "", 0)
			return
		}
		d.rs, d.columns = rsColumns, int(min(n, 1<<16))
		if len(p.body) == used+1 && p.body[used] == 0 {
			// MariaDB's cached metadata: a "metadata follows" byte of 0
			// means no column definitions (and no EOF after them).
			d.rs = rsRows
		}
	}
}

// row handles a packet after the column definitions: a row or the
// terminator of the result set.
func (d *decoder) row(e *entry, p packet) {
	switch {
	case p.first() == 0xff:
		d.rs = rsFirst
		d.finish(e, errCode(p.body), 0)
	case isEOF(p, d.deprecateEOF()):
		d.rs = rsFirst
		d.finish(e, "", okStatus(p))
	default:
		if e != nil && e.x != nil {
			e.x.Rows++
		}
	}
}

// prepareOK remembers a prepared statement and skips its definitions.
func (d *decoder) prepareOK(e *entry, b []byte) {
	if len(b) < 9 {
		d.finish(e, "", 0)
		return
	}
	id := binary.LittleEndian.Uint32(b[1:])
	cols := int(binary.LittleEndian.Uint16(b[5:]))
	params := int(binary.LittleEndian.Uint16(b[7:]))
	if e != nil {
		if _, ok := d.stmts[id]; !ok && len(d.stmts) >= MaxStatements {
			for k := range d.stmts {
				delete(d.stmts, k)
				d.stats.Forgotten.Add(1)
				break
			}
		}
		d.stmts[id] = e.text
	}
	defs := cols + params
	if !d.deprecateEOF() {
		defs += min(cols, 1) + min(params, 1)
	}
	if defs == 0 {
		d.finish(e, "", 0)
		return
	}
	d.rs, d.defs = rsDefs, defs
}

// finish ends one result of the head command: with an error code, or with
// the status flags of its OK or EOF. Another result may follow
// (SERVER_MORE_RESULTS_EXISTS).
func (d *decoder) finish(e *entry, code string, status uint16) {
	d.rs = rsFirst
	more := code == "" && status&serverMoreResults != 0
	if e == nil {
		if !more {
			d.queue.Pop() // an overflowed command
		}
		return
	}
	if more && len(e.stmts) == 0 {
		return // more results of one statement (CALL): the exchange goes on
	}
	if !more {
		d.queue.Pop()
	}
	d.end(e, code)
	if more {
		e.x = d.exchange(e.stmts[0], d.now)
		e.stmts = e.stmts[1:]
		d.h.Begin(e.x)
	}
}

// end ends the exchange of e (a prepare makes one only when it failed).
func (d *decoder) end(e *entry, code string) {
	x := e.x
	if e.kind == kPrepare {
		if code == "" {
			return
		}
		x = d.exchange(e.text, e.start)
		d.h.Begin(x)
	}
	if x == nil {
		return
	}
	if code != "" {
		x.StatusCode, x.ErrorType = code, code
	} else if e.db != "" {
		d.namespace = e.db
	}
	d.h.End(x, d.now, "")
}

// isEOF reports whether p ends a result set: an EOF packet, or with
// CLIENT_DEPRECATE_EOF an OK packet with the 0xfe header. A row that
// starts with 0xfe is at least 9 bytes long, and with CLIENT_DEPRECATE_EOF
// a packet of 16 MiB.
func isEOF(p packet, deprecate bool) bool {
	if p.first() != 0xfe {
		return false
	}
	if deprecate {
		return p.size < maxPacket
	}
	return p.size < 9
}

// okStatus returns the status flags of an OK or EOF packet.
func okStatus(p packet) uint16 {
	b := p.body
	if len(b) == 0 {
		return 0
	}
	if b[0] == 0xfe && p.size < 9 {
		if len(b) >= 5 {
			return binary.LittleEndian.Uint16(b[3:]) // warnings, then status
		}
		return 0
	}
	b = b[1:]
	for range 2 { // affected rows, last insert id
		_, n, ok := lenenc(b)
		if !ok {
			return 0
		}
		b = b[n:]
	}
	if len(b) < 2 {
		return 0
	}
	return binary.LittleEndian.Uint16(b)
}

// errCode returns the error number of an ERR packet.
func errCode(b []byte) string {
	if len(b) < 3 {
		return "_OTHER"
	}
	return strconv.Itoa(int(binary.LittleEndian.Uint16(b[1:])))
}
