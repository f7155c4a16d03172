package mysql

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
	"github.com/periscope-apm/periscope/correlator/protocols/db/dbtest"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

const (
	req  = protocol.Requests
	resp = protocol.Responses
)

func pkt(seq byte, body string) string {
	return string([]byte{byte(len(body)), byte(len(body) >> 8), byte(len(body) >> 16), seq}) + body
}

func u16(v uint16) string { return string(binary.LittleEndian.AppendUint16(nil, v)) }
func u32(v uint32) string { return string(binary.LittleEndian.AppendUint32(nil, v)) }

const baseCaps = capProtocol41 | capSecureConn | capPluginAuth | capLenencAuth | capConnectWithDB | 1<<16

func greeting(version string, caps uint32) string {
	return pkt(0, "\x0a"+version+"\x00"+u32(7)+"12345678\x00"+u16(uint16(caps))+"\x21"+u16(2)+u16(uint16(caps>>16))+
		"\x15"+strings.Repeat("\x00", 10)+"123456789012\x00mysql_native_password\x00")
}

func login(version string, caps uint32, database string) []dbtest.Step {
	return []dbtest.Step{
		{Side: resp, Bytes: greeting(version, caps)},
		{Side: req, Bytes: pkt(1, u32(caps)+u32(1<<24)+"\x21"+strings.Repeat("\x00", 23)+"planted-user\x00"+
			"\x14"+"planted-auth-response"[:20]+database+"\x00mysql_native_password\x00")},
		{Side: resp, Bytes: pkt(2, okBody(0, 2))},
	}
}

func okBody(affected byte, status uint16) string {
	return "\x00" + string([]byte{affected}) + "\x00" + u16(status) + u16(0)
}
func eofBody(status uint16) string   { return "\xfe" + u16(0) + u16(status) }
func okEOFBody(status uint16) string { return "\xfe\x00\x00" + u16(status) + u16(0) }
func errBody(code uint16) string     { return "\xff" + u16(code) + "#42S02planted-message" }

func query(q string) string { return pkt(0, "\x03"+q) }

// resultSet encodes a result of one column and rows, from sequence seq.
func resultSet(seq byte, rows []string, deprecate bool, status uint16) string {
	s := pkt(seq, "\x01") + pkt(seq+1, "\x03def\x00\x01t\x01t\x01a\x01a\x0c\x21\x00\x0a\x00\x00\x00\xfd\x00\x00\x00\x00\x00")
	seq += 2
	if !deprecate {
		s += pkt(seq, eofBody(0))
		seq++
	}
	for _, r := range rows {
		s += pkt(seq, r)
		seq++
	}
	if deprecate {
		return s + pkt(seq, okEOFBody(status))
	}
	return s + pkt(seq, eofBody(status))
}

func TestMySQL(t *testing.T) {
	const mariadb = "5.5.5-10.11.6-MariaDB-0+deb12u1"
	longRow := "\xfe" + u32(9) + u32(0) + "ninebytes" // a row that starts with 0xfe
	cases := []struct {
		name  string
		steps []dbtest.Step
		want  []string
	}{
		{"EOF packets (no CLIENT_DEPRECATE_EOF)", append(login("8.0.36", baseCaps, "shop"),
			dbtest.Step{Side: req, Bytes: query("SELECT a FROM t WHERE b = 'planted-literal'")},
			dbtest.Step{Side: resp, Bytes: resultSet(1, []string{"\x01x", longRow, "\x01y"}, false, 2)},
			dbtest.Step{Side: req, Bytes: query("DELETE FROM nope")},
			dbtest.Step{Side: resp, Bytes: pkt(1, errBody(1146))},
		), []string{"SELECT t | SELECT | SELECT a FROM t WHERE b = ? | shop | rows 3", "DELETE nope | DELETE | DELETE FROM nope | shop | error 1146 1146"}},
		{"CLIENT_DEPRECATE_EOF, multi-statement and CALL", append(login(mariadb, baseCaps|capDeprecateEOF, "shop"),
			dbtest.Step{Side: req, Bytes: query("SELECT 1; UPDATE t SET a = 2; SELECT 3")},
			dbtest.Step{Side: resp, Bytes: resultSet(1, []string{"\x011"}, true, serverMoreResults) + pkt(4, okBody(1, serverMoreResults)) +
				resultSet(5, []string{"\x013"}, true, 0)},
			dbtest.Step{Side: req, Bytes: query("CALL p()")},
			dbtest.Step{Side: resp, Bytes: resultSet(1, []string{"\x011", "\x012"}, true, serverMoreResults) +
				resultSet(5, []string{"\x013"}, true, serverMoreResults) + pkt(9, okBody(0, 0))},
			dbtest.Step{Side: req, Bytes: query("SELECT 1; SELECT * FROM nope; SELECT 3")},
			dbtest.Step{Side: resp, Bytes: resultSet(1, []string{"\x011"}, true, serverMoreResults) + pkt(4, errBody(1146))},
		), []string{"SELECT | SELECT | SELECT ? | shop | rows 1", "UPDATE t | UPDATE | UPDATE t SET a = ? | shop", "SELECT | SELECT | SELECT ? | shop | rows 1",
			"CALL p | CALL | CALL p() | shop | rows 3",
			"SELECT | SELECT | SELECT ? | shop | rows 1", "SELECT nope | SELECT | SELECT * FROM nope | shop | error 1146 1146"}},
		{"prepared statements, INIT_DB, PING, LOCAL INFILE", append(login(mariadb, baseCaps|capDeprecateEOF, ""),
			dbtest.Step{Side: req, Bytes: pkt(0, "\x16INSERT INTO t VALUES (?, 'planted-inline')")},
			dbtest.Step{Side: resp, Bytes: pkt(1, "\x00"+u32(5)+u16(0)+u16(1)+"\x00"+u16(0)) + pkt(2, "\x03def...param")},
			dbtest.Step{Side: req, Bytes: pkt(0, "\x17"+u32(5)+"\x00"+u32(1)+"\x00\x01\xfe\x00\x0eplanted-bound!")},
			dbtest.Step{Side: resp, Bytes: pkt(1, okBody(1, 2))},
			dbtest.Step{Side: req, Bytes: pkt(0, "\x19"+u32(5))},
			dbtest.Step{Side: req, Bytes: pkt(0, "\x17"+u32(5)+"\x00"+u32(1))},
			dbtest.Step{Side: resp, Bytes: pkt(1, "\xff"+u16(1243)+"#HY000Unknown prepared statement handler")},
			dbtest.Step{Side: req, Bytes: pkt(0, "\x02archive")},
			dbtest.Step{Side: resp, Bytes: pkt(1, okBody(0, 2))},
			dbtest.Step{Side: req, Bytes: pkt(0, "\x0e")},
			dbtest.Step{Side: resp, Bytes: pkt(1, okBody(0, 2))},
			dbtest.Step{Side: req, Bytes: query("LOAD DATA LOCAL INFILE '/tmp/x' INTO TABLE t")},
			dbtest.Step{Side: resp, Bytes: pkt(1, "\xfb/tmp/x")},
			dbtest.Step{Side: req, Bytes: pkt(2, "planted-file-row\n") + pkt(3, "")},
			dbtest.Step{Side: resp, Bytes: pkt(4, okBody(1, 2))},
		), []string{"INSERT t | INSERT | INSERT INTO t VALUES (?, ?) | ", " |  |  |  | error 1243 1243",
			" | COM_INIT_DB |  | ", " | COM_PING |  | archive", "LOAD t | LOAD | LOAD DATA LOCAL INFILE ? INTO TABLE t | archive"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for seed := range uint64(8) {
				rec := &dbtest.Recorder{T: t}
				d := New(&db.Stats{}).NewDecoder(protocol.Client, rec)
				if err := dbtest.Play(d, c.steps, dbtest.Rand(seed)); err != nil {
					t.Fatal(err)
				}
				var got []string
				for i, x := range rec.Ended {
					got = append(got, dbtest.Line(x, rec.Reason[i]))
					if strings.Contains(got[i], "planted") {
						t.Fatalf("planted value exported: %s", got[i])
					}
				}
				dbtest.Compare(t, c.name, got, c.want)
			}
		})
	}
}

// TestHugePackets sends a query and a row of more than 16 MiB: both are
// split into a 0xffffff packet and its continuation, which must not be
// read as commands or terminators.
func TestHugePackets(t *testing.T) {
	big := strings.Repeat("x", maxPacket+10)
	q := "\x03SELECT '" + big + "'"
	row := "\xfe" + string(binary.LittleEndian.AppendUint64(nil, uint64(len(big)))) + big
	steps := append(login("8.0.36", baseCaps|capDeprecateEOF, "shop"),
		dbtest.Step{Side: req, Bytes: pkt(0, q[:maxPacket]) + pkt(1, q[maxPacket:])},
		dbtest.Step{Side: resp, Bytes: pkt(1, "\x01") + pkt(2, "coldef") + pkt(3, row[:maxPacket]) + pkt(4, row[maxPacket:]) + pkt(5, okEOFBody(0))},
	)
	rec := &dbtest.Recorder{T: t}
	d := New(&db.Stats{}).NewDecoder(protocol.Client, rec)
	if err := dbtest.Play(d, steps, nil); err != nil {
		t.Fatal(err)
	}
	if len(rec.Ended) != 1 || rec.Ended[0].Rows != 1 || rec.Ended[0].Query != "SELECT ?" {
		t.Fatalf("got %d exchanges: %+v", len(rec.Ended), rec.Ended)
	}
}

func TestSSLRequest(t *testing.T) {
	stats := &db.Stats{}
	rec := &dbtest.Recorder{T: t}
	d := New(stats).NewDecoder(protocol.Client, rec)
	steps := []dbtest.Step{{Side: resp, Bytes: greeting("8.0.36", baseCaps|capSSL)},
		{Side: req, Bytes: pkt(1, u32(baseCaps|capSSL)+u32(1<<24)+"\x21"+strings.Repeat("\x00", 23))},
		{Side: req, Bytes: "\x16\x03\x01\x02\x00 TLS hello"}}
	if err := dbtest.Play(d, steps, nil); err != nil {
		t.Fatal(err)
	}
	if !d.Left() || stats.Encrypted.Load() != 1 {
		t.Fatalf("left %v encrypted %d", d.Left(), stats.Encrypted.Load())
	}
}

func TestDetect(t *testing.T) {
	p := New(&db.Stats{})
	g := greeting("8.0.36", baseCaps)
	for _, c := range []struct {
		in   string
		dir  events.Direction
		want protocol.Verdict
		role protocol.Role
	}{
		{g, events.Read, protocol.Yes, protocol.Client},
		{g, events.Write, protocol.Yes, protocol.Server},
		{g[:4], events.Read, protocol.No, 0},
		{"GE", events.Read, protocol.No, 0},
		{"GET / HTTP/1.1\r\n", events.Read, protocol.No, 0},
		{"\x00\x00\x00\x08\x00\x03\x00\x00", events.Write, protocol.No, 0},
	} {
		got := p.Detect([]byte(c.in), c.dir)
		if got.Verdict != c.want || got.Verdict == protocol.Yes && got.Role != c.role {
			t.Errorf("Detect(%q) = %+v, want %v", c.in[:min(len(c.in), 12)], got, c.want)
		}
	}
}

// TestLargeResultResyncs streams a 1 GiB result set in 70 KiB reads of which only
// 4096 + 128 bytes are captured: boundaries are lost, found again at the
// terminator that ends the last read, and the next command decodes.
func TestLargeResultResyncs(t *testing.T) {
	stats := &db.Stats{}
	rec := &dbtest.Recorder{T: t}
	d := New(stats).NewDecoder(protocol.Client, rec).(*decoder)
	steps := append(login("8.0.36", baseCaps|capDeprecateEOF, "shop"), dbtest.Step{Side: req, Bytes: query("SELECT * FROM big")})
	if err := dbtest.Play(d, steps, nil); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(pkt(1, "\x01") + pkt(2, "coldef"))
	for i := range 2000 {
		b.WriteString(pkt(byte(i+3), "\x20"+strings.Repeat("v", 32)))
	}
	read := []byte(b.String())
	capped := func(b []byte) protocol.Chunk {
		return protocol.Chunk{Bytes: b[:4096], Size: len(b), Tail: b[len(b)-128:], Time: dbtest.Base.Add(time.Second)}
	}
	for range (1 << 30) / len(read) { // 1 GiB
		if err := d.Feed(resp, capped(read)); err != nil {
			t.Fatal(err)
		}
	}
	last := append(append([]byte{}, read...), pkt(9, okEOFBody(2))...)
	if err := d.Feed(resp, capped(last)); err != nil {
		t.Fatal(err)
	}
	if err := dbtest.Play(d, []dbtest.Step{{Side: req, Bytes: pkt(0, "\x0e")}, {Side: resp, Bytes: pkt(1, okBody(0, 2))}}, nil); err != nil {
		t.Fatal(err)
	}
	if len(rec.Ended) != 2 || rec.Ended[1].Operation != "COM_PING" || stats.LostSync.Load() != 1 {
		t.Fatalf("exchanges %d lost %d", len(rec.Ended), stats.LostSync.Load())
	}
}

// TestResultRetainsNothing streams a 256 MiB result set, every byte copied,
// through the decoder: it keeps nothing of the rows.
func TestResultRetainsNothing(t *testing.T) {
	rec := &dbtest.Recorder{T: t}
	d := New(&db.Stats{}).NewDecoder(protocol.Client, rec)
	steps := append(login("8.0.36", baseCaps|capDeprecateEOF, "shop"),
		dbtest.Step{Side: req, Bytes: query("SELECT big FROM t")})
	if err := dbtest.Play(d, steps, nil); err != nil {
		t.Fatal(err)
	}
	head := resultSet(1, nil, true, 0)
	head = head[:len(head)-len(pkt(3, okEOFBody(0)))] // column count and definition only
	later := dbtest.Base.Add(time.Second)
	if err := d.Feed(resp, protocol.Chunk{Bytes: []byte(head), Size: len(head), Time: later}); err != nil {
		t.Fatal(err)
	}
	// 64 rows of 1024 bytes per 64 KiB read; sequence ids wrap at 256.
	var chunk strings.Builder
	for i := range 64 {
		chunk.WriteString(pkt(byte(3+i), "\xfc\xfb\x03"+strings.Repeat("r", 1017)))
	}
	const n = 4096 // 256 MiB
	b := []byte(chunk.String())
	kept := dbtest.Retained(func() {
		for i := range n {
			// keep the sequence ids consecutive across chunks
			for j := 0; j < len(b); j += 1024 {
				b[j+3] = byte(3 + i*64 + j/1024)
			}
			if err := d.Feed(resp, protocol.Chunk{Bytes: b, Size: len(b), Time: later}); err != nil {
				t.Fatal(err)
			}
		}
	})
	if kept > 256<<10 {
		t.Errorf("%d bytes retained after a 256 MiB result", kept)
	}
	end := pkt(byte((3+n*64)%256), okEOFBody(0))
	if err := d.Feed(resp, protocol.Chunk{Bytes: []byte(end), Size: len(end), Time: later}); err != nil {
		t.Fatal(err)
	}
	if len(rec.Ended) != 1 || rec.Ended[0].Rows != 64*n {
		t.Fatalf("got %d exchanges: %+v", len(rec.Ended), rec.Ended)
	}
}

// connRecorder is a Recorder that says which connection it decodes.
type connRecorder struct {
	dbtest.Recorder
	conn protocol.Conn
}

func (r *connRecorder) Info() protocol.Conn { return r.conn }

// handshakeAfterTLS is the HandshakeResponse a client sends first inside
// TLS, in sequence 2.
func handshakeAfterTLS(caps uint32, database string) string {
	return pkt(2, u32(caps)+u32(1<<24)+"\x21"+strings.Repeat("\x00", 23)+"planted-user\x00"+
		"\x14"+"planted-auth-response"[:20]+database+"\x00mysql_native_password\x00")
}

// TestAfterTLS: a connection's TLS plaintext starts at the client's
// HandshakeResponse (the greeting and the SSL request went over the
// socket, decoded by another decoder that left): it is detected, its
// database read, its commands decoded; the system is the greeting's when
// the socket's decoder saw it (by the connection's ends), else guessed
// from the client's capabilities.
func TestAfterTLS(t *testing.T) {
	const mariadb = "5.5.5-10.11.6-MariaDB-0+deb12u1"
	client := protocol.Conn{Role: protocol.Client, Bound: true,
		Local: netip.MustParseAddrPort("127.0.0.1:40000"), Remote: netip.MustParseAddrPort("127.0.0.1:3306")}
	server := protocol.Conn{Role: protocol.Server, Bound: true, Local: client.Remote, Remote: client.Local}
	other := client
	other.Local = netip.MustParseAddrPort("127.0.0.1:40001")
	otherServer := client
	otherServer.Remote = netip.MustParseAddrPort("127.0.0.1:3307")
	for _, tc := range []struct {
		name    string
		greeted bool // the socket's decoder saw a MariaDB greeting
		caps    uint32
		on      protocol.Conn
		guess   string
		want    string
	}{
		{"pymysql-like client, greeting seen", true, baseCaps | capSSL | capMySQL, client, db.MySQL, db.MariaDB},
		{"the server's end, greeting seen", true, baseCaps | capSSL | capMySQL, server, db.MySQL, db.MariaDB},
		{"greeting of another connection to the server", true, baseCaps | capSSL | capMySQL, other, db.MySQL, db.MariaDB},
		{"greeting of a connection to another server", true, baseCaps | capSSL | capMySQL, otherServer, db.MySQL, db.MariaDB}, // the node's last greeting
		{"pymysql-like client, no greeting", false, baseCaps | capSSL | capMySQL, client, db.MySQL, db.MySQL},
		{"MariaDB's client, no greeting", false, baseCaps | capSSL, client, db.MariaDB, db.MariaDB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(&db.Stats{})
			if tc.greeted {
				sock := &connRecorder{Recorder: dbtest.Recorder{T: t}, conn: client}
				d := p.NewDecoder(protocol.Client, sock)
				steps := []dbtest.Step{{Side: resp, Bytes: greeting(mariadb, baseCaps|capSSL)},
					{Side: req, Bytes: pkt(1, u32(baseCaps|capSSL)+u32(1<<24)+"\x21"+strings.Repeat("\x00", 23))}}
				if err := dbtest.Play(d, steps, nil); err != nil || !d.Left() {
					t.Fatalf("socket decoder: left %v, %v", d.Left(), err)
				}
			}
			hs := handshakeAfterTLS(tc.caps, "shop")
			dir := events.Write
			if tc.on.Role == protocol.Server {
				dir = events.Read
			}
			if det := p.Detect([]byte(hs), dir); det.Verdict != protocol.Yes || det.Role != tc.on.Role {
				t.Fatalf("Detect = %+v, want %v", det, tc.on.Role)
			}
			rec := &connRecorder{Recorder: dbtest.Recorder{T: t}, conn: tc.on}
			d := p.NewDecoder(tc.on.Role, rec)
			steps := []dbtest.Step{{Side: req, Bytes: hs}, {Side: resp, Bytes: pkt(3, okBody(0, 2))},
				{Side: req, Bytes: query("SELECT a FROM t WHERE b = 'planted-literal'")},
				{Side: resp, Bytes: resultSet(1, []string{"\x01x", "\x01y"}, false, 2)},
				{Side: req, Bytes: pkt(0, "\x0e")}, {Side: resp, Bytes: pkt(1, okBody(0, 2))}}
			// in pieces: a server reads a packet's header, then its body
			if err := dbtest.Play(d, steps, rand.New(rand.NewPCG(uint64(len(tc.name)), 1))); err != nil {
				t.Fatal(err)
			}
			if len(rec.Ended) != 2 || rec.Open() != 0 {
				t.Fatalf("%d exchanges (%d open), want 2", len(rec.Ended), rec.Open())
			}
			x := rec.Ended[0]
			if x.Query != "SELECT a FROM t WHERE b = ?" || x.Rows != 2 || x.Namespace != "shop" || x.System != tc.guess ||
				!x.SystemUnsure || rec.Ended[1].Operation != "COM_PING" {
				t.Fatalf("got %+v, %+v", *x, *rec.Ended[1])
			}
			var s span.Span
			p.Describe(x, tc.on, "", &s)
			got := ""
			for _, kv := range s.Attributes {
				if kv.Key == "db.system.name" {
					got = kv.Value.AsString()
				}
			}
			if got != tc.want {
				t.Errorf("db.system.name %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDetectAfterTLS(t *testing.T) {
	p := New(&db.Stats{})
	hs := handshakeAfterTLS(baseCaps|capSSL, "shop")
	for _, c := range []struct {
		name string
		in   string
		want protocol.Verdict
	}{
		{"handshake response", hs, protocol.Yes},
		{"its header alone, written", hs[:4], protocol.No},
		{"no TLS asked", handshakeAfterTLS(baseCaps, "shop"), protocol.No},
		{"sequence 1", "\x50\x00\x00\x01" + hs[4:], protocol.No},
		{"filler not zero", hs[:4+9] + "x" + hs[4+10:], protocol.No},
		{"MariaDB capabilities in the filler's end", hs[:4+28] + "\x0f\x00\x00\x00" + hs[4+32:], protocol.Yes},
		{"the SSL request itself", pkt(2, u32(baseCaps|capSSL)+u32(1<<24)+"\x21"+strings.Repeat("\x00", 23)), protocol.No},
	} {
		if got := p.Detect([]byte(c.in), events.Write); got.Verdict != c.want {
			t.Errorf("%s: Detect = %+v, want %v", c.name, got, c.want)
		}
	}
	// A server reads the header alone, then the body.
	for _, c := range []struct {
		name string
		in   string
		want protocol.Verdict
	}{
		{"the header, read", hs[:4], protocol.Yes},
		{"a header of sequence 0", "\x50\x00\x00\x00", protocol.No},
		{"a header too short for a HandshakeResponse", "\x20\x00\x00\x02", protocol.No},
		{"a header too long for one", "\x00\x00\x01\x02", protocol.No},
		{"three bytes", hs[:3], protocol.No},
	} {
		got := p.Detect([]byte(c.in), events.Read)
		if got.Verdict != c.want || got.Verdict == protocol.Yes && got.Role != protocol.Server {
			t.Errorf("%s: Detect = %+v, want %v", c.name, got, c.want)
		}
	}
}
