package mysql

import (
	"bytes"
	"encoding/binary"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
	"github.com/periscope-apm/periscope/correlator/protocols/sqltext"
)

// request handles one packet from the client.
func (d *decoder) request(p packet) {
	switch {
	case d.phase == phHandshake && p.seq == 1 && d.clientCaps == 0:
		d.handshakeResponse(p.body)
	case d.phase == phGreeting && p.seq == 2 && len(p.body) > 32:
		d.afterTLS(p.body)
	case d.phase == phCommand && p.seq == 0:
		d.command(p)
	}
	// Anything else continues an exchange: auth data, LOCAL INFILE data.
}

// afterTLS starts a connection whose bytes begin inside TLS, at the
// HandshakeResponse after the SSL request: the greeting (the server's
// version and capabilities) went over the socket and is not known here.
// The client asks only for capabilities the server offered, so they stand
// for both; a client that leaves CLIENT_MYSQL out saw a MariaDB server
// (MariaDB's own clients do; other clients keep it): a guess that the
// greeting, remembered by the connection's ends, corrects when the span
// is described.
func (d *decoder) afterTLS(b []byte) {
	d.phase = phHandshake
	d.serverCaps, d.unsure = ^uint32(0), true
	if caps := binary.LittleEndian.Uint32(b); caps&capMySQL == 0 {
		d.system = db.MariaDB
	}
	d.handshakeResponse(b)
}

// handshakeResponse reads the client's capabilities and database; an SSL
// request (the capabilities alone) switches the connection to TLS.
func (d *decoder) handshakeResponse(b []byte) {
	if len(b) < 4 {
		return
	}
	d.clientCaps = binary.LittleEndian.Uint32(b)
	if d.clientCaps&capProtocol41 == 0 {
		return // pre-4.1 clients: no database field worth the trouble
	}
	if d.clientCaps&capSSL != 0 && len(b) == 32 {
		d.left = true
		d.stats.Encrypted.Add(1)
		if ci, ok := d.h.(protocol.ConnInfo); ok {
			d.greets.put(ci.Info(), d.system) // for the decoder of its TLS plaintext
		}
		return
	}
	if d.clientCaps&capConnectWithDB == 0 || len(b) < 32 {
		return
	}
	rest := b[32:]
	if i := bytes.IndexByte(rest, 0); i >= 0 {
		rest = rest[i+1:] // the user name, never kept
	} else {
		return
	}
	switch {
	case d.clientCaps&capLenencAuth != 0:
		n, used, ok := lenenc(rest)
		if !ok || uint64(len(rest)-used) < n {
			return
		}
		rest = rest[used+int(n):]
	case d.clientCaps&capSecureConn != 0:
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return
		}
		rest = rest[1+int(rest[0]):]
	default:
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return
		}
		rest = rest[i+1:]
	}
	if i := bytes.IndexByte(rest, 0); i >= 0 {
		d.handshake = string(rest[:i])
	}
}

// command starts a command (sequence id 0).
func (d *decoder) command(p packet) {
	cmd := p.first()
	body := []byte(nil)
	if len(p.body) > 0 {
		body = p.body[1:]
	}
	switch cmd {
	case comQuit, comStmtLong:
		return // no response
	case comStmtClose:
		if len(body) >= 4 {
			delete(d.stmts, binary.LittleEndian.Uint32(body))
		}
		return
	case comBinlogDump, 0x1e: // COM_BINLOG_DUMP(_GTID): a replication stream
		d.left = true
		return
	case comQuery:
		d.query(body)
	case comStmtPrepare:
		d.push(&entry{kind: kPrepare, text: d.texts.Joined(string(body), maxStored), start: d.now}, false)
	case comStmtExecute:
		var text *sqltext.Info
		if len(body) >= 4 {
			text = d.stmts[binary.LittleEndian.Uint32(body)]
		}
		d.push(&entry{kind: kResult, x: d.exchange(text, d.now), start: d.now}, true)
	default:
		d.other(cmd, body)
	}
}

// other starts a command that carries no SQL.
func (d *decoder) other(cmd byte, body []byte) {
	name, ok := commandNames[cmd]
	if !ok {
		name = "COM_UNKNOWN"
	}
	x := &db.Exchange{Begun: d.now, System: d.system, SystemUnsure: d.unsure, Namespace: d.namespace, Operation: name}
	e := &entry{kind: kSimple, x: x, start: d.now}
	switch cmd {
	case comInitDB:
		e.db = string(body[:min(len(body), 256)])
	case comFieldList:
		e.kind = kFields
	case comStmtFetch:
		e.kind = kResult
	case comChangeUser:
		d.phase = phHandshake // authentication again; ends with OK or ERR
	}
	d.push(e, true)
}

func (d *decoder) query(body []byte) {
	stmts := d.texts.Statements(nil, string(body), maxStored)
	var text *sqltext.Info
	if len(stmts) > 0 {
		text, stmts = stmts[0], stmts[1:]
	}
	d.push(&entry{kind: kResult, x: d.exchange(text, d.now), stmts: stmts, start: d.now}, true)
}

// push queues a command and begins its exchange.
func (d *decoder) push(e *entry, begin bool) {
	if !d.queue.Push(e) {
		return
	}
	if begin && e.x != nil {
		d.h.Begin(e.x)
	}
}

// lenenc reads a length-encoded integer: its value and its size.
func lenenc(b []byte) (uint64, int, bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch b[0] {
	case 0xfc:
		if len(b) >= 3 {
			return uint64(binary.LittleEndian.Uint16(b[1:])), 3, true
		}
	case 0xfd:
		if len(b) >= 4 {
			return uint64(b[1]) | uint64(b[2])<<8 | uint64(b[3])<<16, 4, true
		}
	case 0xfe:
		if len(b) >= 9 {
			return binary.LittleEndian.Uint64(b[1:]), 9, true
		}
	case 0xfb, 0xff:
	default:
		return uint64(b[0]), 1, true
	}
	return 0, 0, false
}
