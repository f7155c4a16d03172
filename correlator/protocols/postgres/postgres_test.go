package postgres

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
	"github.com/periscope-apm/periscope/correlator/protocols/db/dbtest"
	"github.com/periscope-apm/periscope/events"
)

const (
	req  = protocol.Requests
	resp = protocol.Responses
)

// msg encodes a typed message.
func msg(t byte, parts ...string) string {
	body := strings.Join(parts, "")
	b := []byte{t, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
	return string(b) + body
}

func cstr(s string) string { return s + "\x00" }

func startup(params ...string) string {
	body := "\x00\x03\x00\x00" + strings.Join(params, "") + "\x00"
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, uint32(4+len(body)))
	return string(b) + body
}

func code(c uint32) string {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b, 8)
	binary.BigEndian.PutUint32(b[4:], c)
	return string(b)
}

// Server messages.
var (
	ready   = msg('Z', "I")
	authOK  = msg('R', "\x00\x00\x00\x00") + msg('S', cstr("server_version"), cstr("15")) + msg('K', "12345678") + ready
	rowDesc = msg('T', "\x00\x01", cstr("a"), strings.Repeat("\x00", 18))
	row     = msg('D', "\x00\x01\x00\x00\x00\x01x")
)

func complete(tag string) string { return msg('C', cstr(tag)) }

func errorResp(sqlstate string) string {
	return msg('E', "S", cstr("ERROR"), "C", cstr(sqlstate), "M", cstr("planted-message 'secret'"), "\x00")
}

func parse(name, q string) string { return msg('P', cstr(name), cstr(q), "\x00\x00") }
func bind(portal, stmt string, vals ...string) string {
	s := cstr(portal) + cstr(stmt) + "\x00\x00" + string([]byte{0, byte(len(vals))})
	for _, v := range vals {
		l := make([]byte, 4)
		binary.BigEndian.PutUint32(l, uint32(len(v)))
		s += string(l) + v
	}
	return msg('B', s, "\x00\x00")
}
func execute(portal string) string { return msg('E', cstr(portal), "\x00\x00\x00\x00") }

var sync = msg('S')

func TestPostgres(t *testing.T) {
	login := []dbtest.Step{
		{Side: req, Bytes: startup(cstr("user"), cstr("planted-user"), cstr("database"), cstr("shop"))},
		{Side: resp, Bytes: msg('R', "\x00\x00\x00\x03")},
		{Side: req, Bytes: msg('p', cstr("planted-password"))},
		{Side: resp, Bytes: authOK},
	}
	cases := []struct {
		name  string
		steps []dbtest.Step
		want  []string
	}{
		{"simple query with notice and empty query", []dbtest.Step{
			{Side: req, Bytes: msg('Q', cstr("SELECT a FROM t WHERE b = 'planted-x'"))},
			{Side: resp, Bytes: msg('N', "S", cstr("NOTICE"), "C", cstr("00000"), "\x00") + rowDesc + row + row + complete("SELECT 2") + ready},
			{Side: req, Bytes: msg('Q', cstr(" -- nothing\n"))},
			{Side: resp, Bytes: msg('I') + ready},
		}, []string{"SELECT t | SELECT | SELECT a FROM t WHERE b = ? | shop | rows 2"}},
		{"multi-statement query stops at its error", []dbtest.Step{
			{Side: req, Bytes: msg('Q', cstr("BEGIN; INSERT INTO t VALUES (1); SELECT 1/0; SELECT 2"))},
			{Side: resp, Bytes: complete("BEGIN") + complete("INSERT 0 1") + rowDesc + errorResp("22012") + msg('Z', "E")},
		}, []string{"BEGIN | BEGIN | BEGIN | shop", "INSERT t | INSERT | INSERT INTO t VALUES (?) | shop",
			"SELECT | SELECT | SELECT ?/? | shop | error 22012 22012"}},
		{"named statement executed twice, then closed", []dbtest.Step{
			{Side: req, Bytes: parse("s1", "SELECT a FROM t WHERE id = $1") + msg('D', "S", cstr("s1")) + sync},
			{Side: resp, Bytes: msg('1') + msg('t', "\x00\x01\x00\x00\x00\x17") + rowDesc + ready},
			{Side: req, Bytes: bind("", "s1", "planted-bound-1") + execute("") + sync},
			{Side: resp, Bytes: msg('2') + row + complete("SELECT 1") + ready},
			{Side: req, Bytes: bind("p", "s1", "planted-bound-2") + execute("p") + sync},
			{Side: resp, Bytes: msg('2') + row + complete("SELECT 1") + ready},
			{Side: req, Bytes: msg('C', "S", cstr("s1")) + sync},
			{Side: resp, Bytes: msg('3') + ready},
			{Side: req, Bytes: bind("", "s1") + execute("") + sync},
			{Side: resp, Bytes: errorResp("26000") + ready},
		}, []string{"SELECT t | SELECT | SELECT a FROM t WHERE id = $1 | shop | rows 1",
			"SELECT t | SELECT | SELECT a FROM t WHERE id = $1 | shop | rows 1",
			" |  |  | shop | error 26000 26000"}},
		{"pipeline with an error skips the rest of its batch", []dbtest.Step{
			{Side: req, Bytes: parse("", "INSERT INTO t VALUES ($1)") + bind("", "", "1") + execute("") +
				bind("", "", "2") + execute("") + bind("", "", "3") + execute("") + sync +
				parse("", "SELECT 1") + bind("", "") + execute("") + sync},
			{Side: resp, Bytes: msg('1') + msg('2') + complete("INSERT 0 1") + msg('2') + errorResp("23505") + ready +
				msg('1') + msg('2') + row + complete("SELECT 1") + ready},
		}, []string{"INSERT t | INSERT | INSERT INTO t VALUES ($1) | shop",
			"INSERT t | INSERT | INSERT INTO t VALUES ($1) | shop | error 23505 23505",
			"INSERT t | INSERT | INSERT INTO t VALUES ($1) | shop | ended request_failed",
			"SELECT | SELECT | SELECT ? | shop | rows 1"}},
		{"prepare that fails names the failing parse", []dbtest.Step{
			{Side: req, Bytes: parse("a", "SELECT 1") + msg('D', "S", cstr("a")) + parse("b", "SELEC oops") + msg('D', "S", cstr("b")) + sync},
			{Side: resp, Bytes: msg('1') + msg('t', "\x00\x00") + rowDesc + errorResp("42601") + ready},
		}, []string{" |  | SELEC oops | shop | error 42601 42601"}},
		{"portal suspended and copy", []dbtest.Step{
			{Side: req, Bytes: parse("", "SELECT a FROM t") + bind("c", "") + msg('E', cstr("c"), "\x00\x00\x00\x01") + msg('H')},
			{Side: resp, Bytes: msg('1') + msg('2') + row + msg('s')},
			{Side: req, Bytes: msg('E', cstr("c"), "\x00\x00\x00\x01") + sync},
			{Side: resp, Bytes: row + complete("SELECT 1") + ready},
			{Side: req, Bytes: msg('Q', cstr("COPY t FROM STDIN"))},
			{Side: resp, Bytes: msg('G', "\x00\x00\x00")},
			{Side: req, Bytes: msg('d', "planted-copy-data\n") + msg('c')},
			{Side: resp, Bytes: complete("COPY 1") + ready},
		}, []string{"SELECT t | SELECT | SELECT a FROM t | shop | rows 1", "SELECT t | SELECT | SELECT a FROM t | shop | rows 1",
			"COPY t | COPY | COPY t FROM STDIN | shop"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			steps := append(append([]dbtest.Step{}, login...), c.steps...)
			for seed := range uint64(8) {
				got := play(t, steps, seed)
				dbtest.Compare(t, c.name, got, c.want)
			}
		})
	}
}

func play(t *testing.T, steps []dbtest.Step, seed uint64) []string {
	t.Helper()
	rec := &dbtest.Recorder{T: t}
	d := New(&db.Stats{}).NewDecoder(protocol.Client, rec)
	if err := dbtest.Play(d, steps, dbtest.Rand(seed)); err != nil {
		t.Fatal(err)
	}
	if rec.Open() != 0 {
		t.Fatalf("%d exchanges open", rec.Open())
	}
	var lines []string
	for i, x := range rec.Ended {
		lines = append(lines, dbtest.Line(x, rec.Reason[i]))
		if strings.Contains(strings.ToLower(lines[i]), "planted") {
			t.Fatalf("planted value exported: %s", lines[i])
		}
	}
	return lines
}

func TestEncryption(t *testing.T) {
	for _, c := range []struct {
		code   uint32
		answer string
		left   bool
	}{{codeSSL, "S", true}, {codeSSL, "N", false}, {codeGSSENC, "G", true}, {codeGSSENC, "N", false}} {
		stats := &db.Stats{}
		rec := &dbtest.Recorder{T: t}
		d := New(stats).NewDecoder(protocol.Client, rec)
		steps := []dbtest.Step{{Side: req, Bytes: code(c.code)}, {Side: resp, Bytes: c.answer}}
		if !c.left {
			steps = append(steps, dbtest.Step{Side: req, Bytes: startup(cstr("database"), cstr("d"))},
				dbtest.Step{Side: resp, Bytes: authOK},
				dbtest.Step{Side: req, Bytes: msg('Q', cstr("SELECT 1"))},
				dbtest.Step{Side: resp, Bytes: row + complete("SELECT 1") + ready})
		} else {
			steps = append(steps, dbtest.Step{Side: req, Bytes: "\x16\x03\x01 random TLS bytes"})
		}
		if err := dbtest.Play(d, steps, nil); err != nil {
			t.Fatal(err)
		}
		if d.Left() != c.left || (stats.Encrypted.Load() == 1) != c.left || len(rec.Ended) != map[bool]int{true: 0, false: 1}[c.left] {
			t.Errorf("code %d answer %s: left %v encrypted %d exchanges %d", c.code, c.answer, d.Left(), stats.Encrypted.Load(), len(rec.Ended))
		}
	}
}

// TestLargeResultIsCounted streams 1 GiB of rows, in reads whose middle is
// not captured, and checks that the decoder keeps no more than its fixed
// buffers and still ends the exchange with every row counted.
func TestLargeResultIsCounted(t *testing.T) {
	stats := &db.Stats{}
	rec := &dbtest.Recorder{T: t}
	d := New(stats).NewDecoder(protocol.Client, rec).(*decoder)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(dbtest.Play(d, []dbtest.Step{{Side: req, Bytes: startup(cstr("database"), cstr("d"))}, {Side: resp, Bytes: authOK},
		{Side: req, Bytes: msg('Q', cstr("SELECT big FROM t"))}}, nil))
	later := dbtest.Base.Add(time.Second)
	bigRow := msg('D', "\x00\x01", "\x00\x10\x00\x00", strings.Repeat("r", 1<<20)) // 1 MiB value
	const rows = 1024
	for range rows {
		// a read of one row, captured: 256 bytes, the last 16, nothing between
		must(d.Feed(resp, protocol.Chunk{Bytes: []byte(bigRow[:256]), Size: len(bigRow), Tail: []byte(bigRow[len(bigRow)-16:]), Time: later}))
	}
	end := complete("SELECT 1024") + ready
	must(d.Feed(resp, protocol.Chunk{Bytes: []byte(end), Size: len(end), Time: later}))
	if len(rec.Ended) != 1 || rec.Ended[0].Rows != rows {
		t.Fatalf("got %d exchanges, rows %d", len(rec.Ended), rec.Ended[0].Rows)
	}
}

func TestPipelineOverflow(t *testing.T) {
	stats := &db.Stats{}
	rec := &dbtest.Recorder{T: t}
	d := New(stats).NewDecoder(protocol.Client, rec).(*decoder)
	n := 100_000
	var q, r strings.Builder
	q.WriteString(parse("", "SELECT $1"))
	r.WriteString(msg('1'))
	for range n {
		q.WriteString(bind("", "", "planted") + execute(""))
		r.WriteString(msg('2') + row + complete("SELECT 1"))
	}
	q.WriteString(sync)
	r.WriteString(ready)
	steps := []dbtest.Step{{Side: req, Bytes: startup()}, {Side: resp, Bytes: authOK}, {Side: req, Bytes: q.String()},
		{Side: resp, Bytes: r.String()}, {Side: req, Bytes: msg('Q', cstr("SELECT 2"))}, {Side: resp, Bytes: row + complete("SELECT 1") + ready}}
	if err := dbtest.Play(d, steps, nil); err != nil {
		t.Fatal(err)
	}
	if got := len(rec.Ended); got != MaxPending+1 || rec.Ended[MaxPending].Query != "SELECT ?" {
		t.Fatalf("%d exchanges, want %d then SELECT ?", got, MaxPending+1)
	}
	if stats.Overflowed.Load() != int64(n-MaxPending+1) || !d.queue.Empty() || rec.Open() != 0 {
		t.Fatalf("overflowed %d, queue empty %v, open %d", stats.Overflowed.Load(), d.queue.Empty(), rec.Open())
	}
}

func TestDetect(t *testing.T) {
	p := New(&db.Stats{})
	for _, c := range []struct {
		in   string
		want protocol.Verdict
	}{
		{startup(cstr("user"), cstr("u")), protocol.Yes}, {code(codeSSL), protocol.Yes}, {code(codeGSSENC), protocol.Yes},
		{"\x00\x00\x00", protocol.Undecided}, {"GET / HTTP/1.1\r\n", protocol.No}, {"*1\r\n$4\r\nPING\r\n", protocol.No},
		{"\x00\x00\x00\x08\x00\x02\x00\x00", protocol.No},
	} {
		if got := p.Detect([]byte(c.in), events.Write); got.Verdict != c.want || got.Verdict == protocol.Yes && got.Role != protocol.Client {
			t.Errorf("Detect(%q) = %+v, want %v", c.in, got, c.want)
		}
	}
}

// TestLargeResultResyncs streams 1 GiB of small rows in 64 KiB reads of
// which only the collector's 4096 + 128 bytes are captured: boundaries are
// lost in the first read, found again at the ReadyForQuery that ends the
// last one, and the next query decodes normally.
func TestLargeResultResyncs(t *testing.T) {
	stats := &db.Stats{}
	rec := &dbtest.Recorder{T: t}
	d := New(stats).NewDecoder(protocol.Client, rec).(*decoder)
	later := dbtest.Base.Add(time.Second)
	if err := dbtest.Play(d, []dbtest.Step{{Side: req, Bytes: startup()}, {Side: resp, Bytes: authOK},
		{Side: req, Bytes: msg('Q', cstr("SELECT * FROM big"))}}, nil); err != nil {
		t.Fatal(err)
	}
	read := []byte(strings.Repeat(msg('D', "\x00\x01\x00\x00\x00\x20", strings.Repeat("v", 32)), 1600)) // ~64 KiB
	capped := func(b []byte) protocol.Chunk {
		return protocol.Chunk{Bytes: b[:min(len(b), 4096)], Size: len(b), Tail: b[max(4096, len(b)-128):], Time: later}
	}
	for range (1 << 30) / len(read) {
		if err := d.Feed(resp, capped(read)); err != nil {
			t.Fatal(err)
		}
	}
	last := append(append([]byte{}, read...), complete("SELECT 1000000")+ready...)
	if err := d.Feed(resp, capped(last)); err != nil {
		t.Fatal(err)
	}
	if err := dbtest.Play(d, []dbtest.Step{{Side: req, Bytes: msg('Q', cstr("SELECT 1"))},
		{Side: resp, Bytes: row + complete("SELECT 1") + ready}}, nil); err != nil {
		t.Fatal(err)
	}
	if len(rec.Ended) != 2 || rec.Ended[0].Rows < 1 || rec.Ended[1].Rows != 1 || stats.LostSync.Load() != 1 || d.resp.Lost() {
		t.Fatalf("exchanges %d lost %d", len(rec.Ended), stats.LostSync.Load())
	}
}

// TestResultRetainsNothing streams a 256 MiB result, every byte copied (the
// worst case: the kernel copies at most 4 KiB of a read), through the
// decoder: it keeps nothing of the rows, so a result of any size costs the
// agent the same.
func TestResultRetainsNothing(t *testing.T) {
	rec := &dbtest.Recorder{T: t}
	d := New(&db.Stats{}).NewDecoder(protocol.Client, rec)
	if err := dbtest.Play(d, []dbtest.Step{{Side: req, Bytes: startup(cstr("database"), cstr("d"))}, {Side: resp, Bytes: authOK},
		{Side: req, Bytes: msg('Q', cstr("SELECT big FROM t"))}, {Side: resp, Bytes: rowDesc}}, nil); err != nil {
		t.Fatal(err)
	}
	bigRow := msg('D', "\x00\x01", "\x00\x00\x03\xf5", strings.Repeat("r", 1013)) // 1024 bytes
	chunk := []byte(strings.Repeat(bigRow, 64))                                   // 64 KiB
	const n = 4096                                                                // 256 MiB
	later := dbtest.Base.Add(time.Second)
	kept := dbtest.Retained(func() { dbtest.Stream(t, d, resp, chunk, n, later) })
	if kept > 256<<10 {
		t.Errorf("%d bytes retained after a 256 MiB result", kept)
	}
	end := complete("SELECT 262144") + ready
	if err := d.Feed(resp, protocol.Chunk{Bytes: []byte(end), Size: len(end), Time: later}); err != nil {
		t.Fatal(err)
	}
	if len(rec.Ended) != 1 || rec.Ended[0].Rows != 64*n {
		t.Fatalf("got %d exchanges, rows %d", len(rec.Ended), rec.Ended[0].Rows)
	}
}
