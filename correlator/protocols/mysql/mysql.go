// Package mysql is the MySQL and MariaDB client/server protocol behind the
// protocol.Protocol interface.
//
// The server's greeting names the system (a version containing "MariaDB"
// is mariadb, anything else mysql) and its capabilities; the client's
// HandshakeResponse gives db.namespace when it carries
// CLIENT_CONNECT_WITH_DB (the user name and the auth response are never
// kept). An SSL request makes the connection leave the protocol: its
// plaintext comes from a TLS collector, if any.
//
// Commands start with sequence id 0. COM_QUERY yields one exchange per
// statement result (a multi-statement query answers with
// SERVER_MORE_RESULTS_EXISTS between its results); COM_STMT_PREPARE
// remembers the statement's text by the id the server gives it and makes
// an exchange only when it fails; each COM_STMT_EXECUTE is one exchange
// named by that text; COM_STMT_CLOSE forgets it. Result sets are read
// packet by packet — column definitions, rows, EOF or OK terminators with
// CLIENT_DEPRECATE_EOF — counting rows without keeping them. ERR packets
// give db.response.status_code and error.type (the error number). Packets
// of 16 MiB and more continue in the next packet and are skipped whole.
package mysql

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
	// MaxPending bounds the commands waiting for their responses.
	MaxPending = 256
	// MaxStatements bounds the prepared statements remembered.
	MaxStatements = 256
	maxText       = 8192
	maxStored     = 2048
	maxPacket     = 0xffffff
	// maxHandshake bounds a HandshakeResponse (user name, auth data,
	// database, plugin name and connection attributes).
	maxHandshake = 8192
)

// Capability flags.
const (
	capMySQL         = 1 << 0 // CLIENT_LONG_PASSWORD; MariaDB: CLIENT_MYSQL, which its servers do not offer
	capConnectWithDB = 1 << 3
	capProtocol41    = 1 << 9
	capSSL           = 1 << 11
	capSecureConn    = 1 << 15
	capPluginAuth    = 1 << 19
	capLenencAuth    = 1 << 21
	capDeprecateEOF  = 1 << 24
)

// serverMoreResults is the status flag of a result followed by another.
const serverMoreResults = 0x0008

// Commands.
const (
	comQuit        = 0x01
	comInitDB      = 0x02
	comQuery       = 0x03
	comFieldList   = 0x04
	comStatistics  = 0x09
	comPing        = 0x0e
	comChangeUser  = 0x11
	comBinlogDump  = 0x12
	comStmtPrepare = 0x16
	comStmtExecute = 0x17
	comStmtLong    = 0x18
	comStmtClose   = 0x19
	comStmtReset   = 0x1a
	comSetOption   = 0x1b
	comStmtFetch   = 0x1c
	comResetConn   = 0x1f
)

// commandNames are the operation names of commands that carry no SQL.
var commandNames = map[byte]string{
	comInitDB: "COM_INIT_DB", comFieldList: "COM_FIELD_LIST", comStatistics: "COM_STATISTICS",
	comPing: "COM_PING", comChangeUser: "COM_CHANGE_USER", comStmtReset: "COM_STMT_RESET",
	comSetOption: "COM_SET_OPTION", comStmtFetch: "COM_STMT_FETCH", comResetConn: "COM_RESET_CONNECTION",
}

// Protocol is MySQL and MariaDB.
type Protocol struct {
	db.Spans
	stats     *db.Stats
	greetings *greetings
	texts     *sqltext.Cache // what each statement text's spans export, read once
}

var _ protocol.Protocol = (*Protocol)(nil)

// New returns the MySQL protocol; its decoders count drops into stats.
func New(stats *db.Stats) *Protocol {
	return &Protocol{Spans: db.NewSpans(), stats: stats, greetings: newGreetings(), texts: sqltext.NewCache(sqltext.MySQL)}
}

// Name implements protocol.Protocol.
func (*Protocol) Name() string { return "mysql" }

// Detect implements protocol.Protocol: the server speaks first, with a
// protocol 10 greeting in packet 0; on a TLS library's plaintext the
// client does, with the HandshakeResponse that follows its SSL request
// (the greeting and the SSL request went over the socket in the clear).
func (*Protocol) Detect(first []byte, dir events.Direction) protocol.Detection {
	if tlsHandshakeResponse(first) || dir == events.Read && len(first) == 4 && handshakeHeader(first) {
		return db.Claim(dir, true)
	}
	// A server writes its greeting whole: a shorter first read is not one
	// (and must not hold up the detection of other protocols).
	if len(first) < 6 || first[2] != 0 || first[3] != 0 || first[4] != 0x0a || first[5] < '0' || first[5] > '9' {
		return protocol.Detection{}
	}
	return db.Claim(dir, false) // the greeting is read by the client
}

// tlsHandshakeResponse reports whether b starts with the packet a client
// sends first inside TLS: a HandshakeResponse41 in sequence 2 (greeting 0,
// SSL request 1) whose capabilities ask for TLS, with its filler of zeros
// (MariaDB's clients put capabilities of their own in its last 4 bytes).
// It is written whole, with the user name after the 32 fixed bytes.
func tlsHandshakeResponse(b []byte) bool {
	if len(b) <= 4+32 || !handshakeHeader(b) {
		return false
	}
	caps := binary.LittleEndian.Uint32(b[4:])
	if caps&(capProtocol41|capSSL) != capProtocol41|capSSL {
		return false
	}
	for _, c := range b[4+9 : 4+28] {
		if c != 0 {
			return false
		}
	}
	return true
}

// handshakeHeader reports whether b starts with the header of such a
// HandshakeResponse. A server reads a packet's header alone, then its body
// (MariaDB through SSL_read: 4 bytes, then the rest): its first read inside
// TLS is this header, claimed as such.
func handshakeHeader(b []byte) bool {
	n := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
	return b[3] == 2 && n > 32 && n <= maxHandshake
}

// NewDecoder implements protocol.Protocol.
func (p *Protocol) NewDecoder(_ protocol.Role, h protocol.Handler) protocol.Decoder {
	d := &decoder{
		h:      h,
		stats:  p.stats,
		greets: p.greetings,
		texts:  p.texts,
		queue:  db.NewQueue[*entry](MaxPending, p.stats),
		stmts:  map[uint32]*sqltext.Info{},
		system: db.MySQL,
	}
	d.req = db.NewFramer(&codec{d: d, requests: true})
	d.resp = db.NewFramer(&codec{d: d})
	return d
}

// phase is where a connection is in its life.
type phase uint8

const (
	phGreeting  phase = iota // waiting for the server's greeting
	phHandshake              // authentication
	phCommand                // commands and their responses
)

// kind is what a queued command waits for.
type kind uint8

const (
	kResult  kind = iota + 1 // OK, ERR or result sets (COM_QUERY, COM_STMT_EXECUTE)
	kPrepare                 // a prepare OK and its definitions
	kSimple                  // one packet: OK, ERR, EOF or a string
	kFields                  // column definitions until EOF (COM_FIELD_LIST)
)

// entry is a command waiting for its response.
type entry struct {
	kind  kind
	x     *db.Exchange    // the exchange in flight
	stmts []*sqltext.Info // statements of a multi-statement query not begun yet
	text  *sqltext.Info   // kPrepare: the statement text
	db    string          // COM_INIT_DB: the database asked for
	start time.Time
}

// rstate is where the response to the head command is.
type rstate uint8

const (
	rsFirst   rstate = iota // the first packet of a result
	rsColumns               // column definitions
	rsColEOF                // the EOF after column definitions
	rsRows                  // rows until a terminator
	rsDefs                  // the definitions after a prepare OK
)

type decoder struct {
	h          protocol.Handler
	stats      *db.Stats
	req, resp  *db.Framer
	queue      *db.Queue[*entry]
	texts      *sqltext.Cache
	stmts      map[uint32]*sqltext.Info
	system     string
	unsure     bool // system is a guess: the greeting was not seen (afterTLS)
	greets     *greetings
	namespace  string
	handshake  string // the database the HandshakeResponse asked for
	now        time.Time
	phase      phase
	serverCaps uint32
	clientCaps uint32
	left       bool
	// response state of the head command
	rs       rstate
	columns  int // column definitions still to come
	defs     int // rsDefs: definition packets still to come (EOFs included)
	prepared uint32
}

// Feed implements protocol.Decoder.
func (d *decoder) Feed(side protocol.Side, c protocol.Chunk) error {
	if d.left {
		return nil
	}
	d.now = c.Time
	return db.FeedSide(d.req, d.resp, side, c, d.stats, db.MySQL)
}

// EOF implements protocol.Decoder.
func (d *decoder) EOF(time.Time) {}

// Left implements protocol.Decoder: true once the connection switched to
// TLS or to a replication stream.
func (d *decoder) Left() bool { return d.left }

func (d *decoder) deprecateEOF() bool {
	return d.serverCaps&d.clientCaps&capDeprecateEOF != 0
}

// exchange returns a new exchange for a statement (nil: its text is not
// known).
func (d *decoder) exchange(in *sqltext.Info, start time.Time) *db.Exchange {
	x := &db.Exchange{Begun: start, System: d.system, SystemUnsure: d.unsure, Namespace: d.namespace}
	if in != nil {
		x.Operation, x.Collection, x.Query, x.Summary = in.Operation, in.Collection, in.Text, in.Summary
	}
	return x
}

// codec reads packets: 3-byte little-endian length and a sequence id.
type codec struct {
	d        *decoder
	requests bool
	cont     bool // the previous packet was 0xffffff long: this one continues it
	lastCont bool
}

// HeaderLen implements db.Codec.
func (*codec) HeaderLen() int { return 4 }

// BodyLen implements db.Codec.
func (c *codec) BodyLen(h []byte) (int, error) {
	n := int(h[0]) | int(h[1])<<8 | int(h[2])<<16
	c.lastCont, c.cont = c.cont, n == maxPacket
	return n, nil
}

// Keep implements db.Codec: query texts from the client; from the server,
// the first bytes of a packet (enough for OK, ERR and EOF), never rows.
func (c *codec) Keep(h []byte) int {
	switch {
	case c.lastCont:
		return 0
	case c.requests && h[3] == 0:
		return maxText + 1
	case c.requests && (c.d.phase == phHandshake || c.d.phase == phGreeting && h[3] == 2):
		return 1024
	case !c.requests && c.d.phase == phGreeting:
		return 256
	case !c.requests:
		return 32
	}
	return 0
}

// Message implements db.Codec.
func (c *codec) Message(m *db.Message) error {
	if c.lastCont {
		return nil // the rest of a packet of 16 MiB or more
	}
	p := packet{seq: m.Header[3], body: m.Body, size: m.Size}
	if c.requests {
		c.d.request(p)
	} else {
		c.d.response(p)
	}
	return nil
}

// packet is one logical packet as far as it was kept.
type packet struct {
	seq  byte
	body []byte
	size int // the length on the wire (maxPacket: continued)
}

func (p packet) first() byte {
	if len(p.body) == 0 {
		return 0
	}
	return p.body[0]
}
