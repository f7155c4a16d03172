package correlator

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

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
