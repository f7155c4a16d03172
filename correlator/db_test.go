package correlator

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

func pgMsg(t byte, body string) string {
	b := []byte{t, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
	return string(b) + body
}

func pgStartup(db string) string {
	body := "\x00\x03\x00\x00user\x00planted-user\x00database\x00" + db + "\x00\x00"
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, uint32(4+len(body)))
	return string(b) + body
}

// TestDatabaseSpans runs a PostgreSQL client connection and a Redis one
// through the correlator: each statement result and each command is a
// CLIENT span named and attributed per the database conventions, and no
// literal, password or value reaches a span.
func TestDatabaseSpans(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	pg := cid(30, 0x1)
	h.bind(pg, 5, 0, "10.0.0.2:41000", "10.0.0.9:5432")
	h.write(pg, 31, 1, pgStartup("shop"))
	h.read(pg, 31, 2, pgMsg('R', "\x00\x00\x00\x03"))
	h.write(pg, 31, 3, pgMsg('p', "planted-password\x00"))
	ready := pgMsg('Z', "I")
	h.read(pg, 31, 4, pgMsg('R', "\x00\x00\x00\x00")+ready)
	h.write(pg, 31, 5, pgMsg('Q', "SELECT * FROM users WHERE email = 'planted@example.com'; DELETE FROM nope\x00"))
	h.read(pg, 31, 7, pgMsg('D', "\x00\x01\x00\x00\x00\x01x")+pgMsg('C', "SELECT 1\x00"))
	h.read(pg, 31, 9, pgMsg('E', "SERROR\x00C42P01\x00Mrelation planted does not exist\x00\x00")+ready)

	rd := cid(30, 0x2)
	h.bind(rd, 6, 10, "10.0.0.2:41001", "10.0.0.9:6379")
	var pipeline, replies strings.Builder
	for i := range 3 {
		fmt.Fprintf(&pipeline, "*3\r\n$3\r\nSET\r\n$2\r\nk%d\r\n$14\r\nplanted-value!\r\n", i)
		replies.WriteString("+OK\r\n")
	}
	h.write(rd, 31, 11, "*2\r\n$4\r\nAUTH\r\n$16\r\nplanted-password\r\n")
	h.read(rd, 31, 12, "+OK\r\n")
	h.write(rd, 31, 13, pipeline.String())
	h.read(rd, 31, 14, replies.String())
	h.write(rd, 31, 15, "*2\r\n$5\r\nLPUSH\r\n$2\r\nk0\r\n")
	h.read(rd, 31, 16, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n")

	spans := h.wantSpans(7)
	names := make([]string, len(spans))
	for i, s := range spans {
		names[i] = s.Name
		if s.Kind != span.Client {
			t.Errorf("%s: kind %v", s.Name, s.Kind)
		}
		if strings.Contains(fmt.Sprint(s.Attributes, s.StatusMsg, s.Name), "planted") {
			t.Errorf("a planted value reached span %s: %v", s.Name, s.Attributes)
		}
	}
	want := []string{"SELECT users", "DELETE nope", "AUTH 10.0.0.9:6379", "SET 10.0.0.9:6379", "SET 10.0.0.9:6379", "SET 10.0.0.9:6379", "LPUSH 10.0.0.9:6379"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Fatalf("names %q, want %q", names, want)
	}
	checkAttrs(t, spans[0], map[string]any{
		"db.system.name": "postgresql", "db.namespace": "shop", "db.query.summary": "SELECT users",
		"db.query.text": "SELECT * FROM users WHERE email = ?", "server.address": "10.0.0.9", "server.port": int64(5432),
		"error.type": nil, "db.response.status_code": nil,
	})
	checkAttrs(t, spans[1], map[string]any{"db.response.status_code": "42P01", "error.type": "42P01"})
	if spans[1].Status != span.Error || spans[0].Status == span.Error {
		t.Errorf("statuses %v %v", spans[0].Status, spans[1].Status)
	}
	checkAttrs(t, spans[3], map[string]any{"db.system.name": "redis", "db.operation.name": "SET", "db.query.text": "SET k0 ?"})
	checkAttrs(t, spans[6], map[string]any{"db.response.status_code": "WRONGTYPE", "error.type": "WRONGTYPE"})
}

// TestPostgresRecycled: PostgreSQL exchanges and requests are reused once
// their spans are exported, and statement texts are read once and shared:
// a simple Query of two statements (the second failing) and a batch of two
// Executes (the second failing) four times over, on two connections to two
// databases: every span keeps its own statement, status and database.
func TestPostgresRecycled(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	ready := pgMsg('Z', "I")
	conns := []events.ConnID{cid(30, 0x1), cid(30, 0x3)}
	for i, pg := range conns {
		h.bind(pg, int32(5+i), 0, fmt.Sprintf("10.0.0.2:%d", 41000+i), "10.0.0.9:5432")
		h.write(pg, 31, 1, pgStartup(fmt.Sprintf("shop%d", i)))
		h.read(pg, 31, 2, pgMsg('R', "\x00\x00\x00\x00")+ready)
	}
	ms := 3
	for round := range 4 {
		for i, pg := range conns {
			h.write(pg, 31, ms, pgMsg('Q', fmt.Sprintf("SELECT * FROM users WHERE id = %d; DELETE FROM nope\x00", round)))
			h.read(pg, 31, ms+1, pgMsg('D', "\x00\x01\x00\x00\x00\x01x")+pgMsg('C', "SELECT 1\x00")+
				pgMsg('E', "SERROR\x00C42P01\x00Mno\x00\x00")+ready)
			h.write(pg, 31, ms+2, pgMsg('P', fmt.Sprintf("s%d\x00SELECT * FROM items WHERE id = $1\x00\x00\x00", i))+
				pgMsg('B', fmt.Sprintf("\x00s%d\x00\x00\x00\x00\x00\x00\x00", i))+pgMsg('E', "\x00\x00\x00\x00\x00")+
				pgMsg('P', "\x00UPDATE carts SET n = $1\x00\x00\x00")+pgMsg('B', "\x00\x00\x00\x00\x00\x00\x00\x00")+
				pgMsg('E', "\x00\x00\x00\x00\x00")+pgMsg('S', ""))
			h.read(pg, 31, ms+3, pgMsg('1', "")+pgMsg('2', "")+pgMsg('C', "SELECT 0\x00")+pgMsg('1', "")+pgMsg('2', "")+
				pgMsg('E', "SERROR\x00C23505\x00Mdup\x00\x00")+ready)
			ms += 4
		}
	}
	spans := h.wantSpans(4 * 2 * 4)
	want := []struct {
		name, text, op, collection, status any
	}{
		{"SELECT users", "SELECT * FROM users WHERE id = ?", "SELECT", "users", nil},
		{"DELETE nope", "DELETE FROM nope", "DELETE", "nope", "42P01"},
		{"SELECT items", "SELECT * FROM items WHERE id = $1", "SELECT", "items", nil},
		{"UPDATE carts", "UPDATE carts SET n = $1", "UPDATE", "carts", "23505"},
	}
	for i, s := range spans {
		w := want[i%4]
		if s.Name != w.name {
			t.Errorf("span %d: %q, want %q", i, s.Name, w.name)
		}
		checkAttrs(t, s, map[string]any{"db.query.text": w.text, "db.operation.name": w.op, "db.collection.name": w.collection,
			"db.response.status_code": w.status, "error.type": w.status, "db.namespace": fmt.Sprintf("shop%d", i/4%2)})
		if (s.Status == span.Error) != (w.status != nil) {
			t.Errorf("span %d (%s): status %v", i, s.Name, s.Status)
		}
	}
}

// TestRedisRecycled: the exchanges of Redis commands go back to their
// pool once their spans are exported, and are reused by the next commands:
// nothing of a recycled command (its error, its keys, its database) shows
// on a later one's span.
func TestRedisRecycled(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	rd := cid(30, 0x2)
	h.bind(rd, 6, 10, "10.0.0.2:41001", "10.0.0.9:6379")
	seq := 11
	for i := range 8 {
		h.write(rd, 31, seq, fmt.Sprintf("*2\r\n$5\r\nLPUSH\r\n$3\r\nk%02d\r\n", i))
		h.read(rd, 31, seq+1, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n")
		h.write(rd, 31, seq+2, "*1\r\n$4\r\nPING\r\n")
		h.read(rd, 31, seq+3, "+PONG\r\n")
		seq += 4
	}
	for i, s := range h.wantSpans(16) {
		if i%2 == 0 {
			checkAttrs(t, s, map[string]any{"db.operation.name": "LPUSH", "db.query.text": fmt.Sprintf("LPUSH k%02d", i/2),
				"db.response.status_code": "WRONGTYPE", "error.type": "WRONGTYPE"})
			continue
		}
		checkAttrs(t, s, map[string]any{"db.system.name": "redis", "db.operation.name": "PING", "db.query.text": "PING",
			"db.response.status_code": nil, "error.type": nil, "db.namespace": nil})
		if s.Status == span.Error {
			t.Errorf("span %d (PING): status %v %q", i, s.Status, s.StatusMsg)
		}
	}
}

// TestGoHandlerQuery: a Go handler's query is the child of the request its
// goroutine serves, though the request's start (gohttp's ring) is read
// after the query began (the sockets collector's ring); the database
// backend's SERVER span waits for the query to end so that all four are one
// trace. A query from another goroutine, and one made after the request
// ended on the same goroutine, get no parent.
func TestGoHandlerQuery(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	const goPID, pgPID, g, other = 40, 41, 0xc0001234, 0xc0005678
	gdata := func(id events.ConnID, ms int, dir events.Direction, goroutine uint32, s string) {
		h.data(events.Data{Conn: id, TID: 7, Time: at(ms), Dir: dir, Size: len(s), Bytes: []byte(s), Goroutine: goroutine})
	}
	ready := pgMsg('Z', "I")
	query := func(ms int, goroutine uint32, table string) (events.ConnID, events.ConnID) {
		cl, srv := cid(goPID, 1<<61|uint64(ms)), cid(pgPID, 1<<61|uint64(ms))
		local, remote := fmt.Sprintf("127.0.0.1:%d", 40000+ms), "127.0.0.1:5432"
		h.bindPlain(cl, 5, ms, local, remote)
		h.bindPlain(srv, 6, ms, remote, local)
		gdata(cl, ms, events.Write, goroutine, pgStartup("shop"))
		h.read(srv, 9, ms, pgStartup("shop"))
		h.write(srv, 9, ms, pgMsg('R', "\x00\x00\x00\x00")+ready)
		gdata(cl, ms, events.Read, goroutine, pgMsg('R', "\x00\x00\x00\x00")+ready)
		q := pgMsg('Q', "SELECT * FROM "+table+"\x00")
		gdata(cl, ms+1, events.Write, goroutine, q)
		h.read(srv, 9, ms+1, q)
		resp := pgMsg('C', "SELECT 0\x00") + ready
		h.write(srv, 9, ms+2, resp)
		return cl, srv
	}
	// The query's bytes come first, then the request's start.
	cl, _ := query(10, g, "items")
	h.c.RequestStart(events.RequestStart{PID: goPID, ID: 100, Kind: events.RequestServer, Time: at(9), FD: 3,
		Tuple: tuple("127.0.0.1:8080", "127.0.0.1:50000"), Goroutine: g})
	gdata(cl, 12, events.Read, g, pgMsg('C', "SELECT 0\x00")+ready)
	cl2, _ := query(20, other, "others") // another goroutine
	gdata(cl2, 22, events.Read, other, pgMsg('C', "SELECT 0\x00")+ready)
	h.end(goPID, 100, events.RequestServer, 30, "GET", "/items", 200)
	cl3, _ := query(40, g, "later") // the same goroutine, after the request
	gdata(cl3, 42, events.Read, g, pgMsg('C', "SELECT 0\x00")+ready)

	spans := h.wantSpans(7)
	by := map[string]*span.Span{}
	for _, s := range spans {
		by[fmt.Sprint(s.Name, " ", s.Kind)] = s
	}
	req, q, backend := by["GET /items server"], by["SELECT items client"], by["SELECT items server"]
	if req == nil || q == nil || backend == nil {
		t.Fatalf("spans %v", by)
	}
	if q.ParentSpanID != req.SpanID || q.TraceID != req.TraceID || backend.ParentSpanID != q.SpanID || backend.TraceID != req.TraceID {
		t.Errorf("request %v/%v, query %v/%v parent %v, backend %v parent %v", req.TraceID, req.SpanID, q.TraceID, q.SpanID,
			q.ParentSpanID, backend.TraceID, backend.ParentSpanID)
	}
	for _, name := range []string{"SELECT others client", "SELECT later client"} {
		if s := by[name]; s == nil || s.ParentSpanID.IsValid() {
			t.Errorf("%s: %v, want a root span", name, s)
		}
	}
}
