package correlator

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/net/http2"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

// seqStream feeds one plaintext connection's records with their TCP
// sequence numbers, as the sockets collector reports them; lostNext drops
// the next record as a full ring buffer does (its bytes still advance the
// sequence).
type seqStream struct {
	h        *harness
	id       events.ConnID
	ms       int
	rd, wr   uint32
	lostNext bool
}

func (s *seqStream) rec(dir events.Direction, b string) {
	seq := &s.rd
	if dir == events.Write {
		seq = &s.wr
	}
	s.ms++
	d := events.Data{Conn: s.id, TID: 7, Time: at(s.ms), Dir: dir, Size: len(b), Bytes: []byte(b), Seq: *seq, HasSeq: true}
	*seq += uint32(len(b))
	if s.lostNext {
		s.lostNext = false
		return
	}
	s.h.data(d)
}

// TestLostReplyRestarts: a reply record lost on a connection that pairs by
// order (a Redis pipeline of 16, HTTP/1 keep-alive) would pair every later
// reply with an earlier command. The write after the gap ends the commands
// in flight as data_lost, and decoding restarts at the next command: every
// other span describes its own command and its own reply.
func TestLostReplyRestarts(t *testing.T) {
	const rounds, lostRound = 10, 3
	cases := []struct {
		name    string
		perRnd  int
		request func(i int) string
		reply   func(i int) string
		check   func(t *testing.T, s *span.Span, i int)
		// ident returns the command index a span describes.
		ident func(s *span.Span) int
	}{{
		name:   "redis pipeline",
		perRnd: 16,
		request: func(i int) string {
			key := fmt.Sprintf("k%d", i)
			if i%3 == 0 {
				return fmt.Sprintf("*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n", len(key), key)
			}
			return fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n", len(key), key)
		},
		reply: func(i int) string {
			if i%3 == 0 {
				return "-ERR value is not an integer or out of range\r\n"
			}
			return "+OK\r\n"
		},
		ident: func(s *span.Span) int {
			var i int
			q, _ := attrs(s)["db.query.text"].(string)
			if _, err := fmt.Sscanf(q[strings.IndexByte(q, ' ')+1:], "k%d", &i); err != nil {
				return -1
			}
			return i
		},
		check: func(t *testing.T, s *span.Span, i int) {
			op, code := "SET", any(nil)
			if i%3 == 0 {
				op, code = "INCR", "ERR"
			}
			checkAttrs(t, s, map[string]any{"db.operation.name": op, "db.response.status_code": code, "error.type": code})
			if (s.Status == span.Error) != (i%3 == 0) {
				t.Errorf("command %d (%s): status %v", i, op, s.Status)
			}
		},
	}, {
		name:   "http1 keep-alive",
		perRnd: 1,
		request: func(i int) string {
			return fmt.Sprintf("GET /item/%d HTTP/1.1\r\nHost: shop\r\n\r\n", i)
		},
		reply: func(i int) string {
			if i%2 == 1 {
				return "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno\n"
			}
			return "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nyes\n"
		},
		ident: func(s *span.Span) int {
			var i int
			p, _ := attrs(s)["url.path"].(string)
			if _, err := fmt.Sscanf(p, "/item/%d", &i); err != nil {
				return -1
			}
			return i
		},
		check: func(t *testing.T, s *span.Span, i int) {
			code := int64(200)
			if i%2 == 1 {
				code = 404
			}
			checkAttrs(t, s, map[string]any{"http.response.status_code": code, "error.type": nil})
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, DefaultConfig())
			st := &seqStream{h: h, id: cid(40, 1), rd: 1000, wr: 0xffffff00} // writes wrap around
			h.bindPlain(st.id, 5, 0, "10.0.0.9:6379", "10.0.0.2:41001")
			for r := range rounds {
				var req, rep strings.Builder
				for i := r * tc.perRnd; i < (r+1)*tc.perRnd; i++ {
					req.WriteString(tc.request(i))
					rep.WriteString(tc.reply(i))
				}
				st.rec(events.Read, req.String())
				st.lostNext = r == lostRound
				st.rec(events.Write, rep.String())
			}
			h.c.Flush()
			// The replies of the lost round's commands were lost; the next
			// round's, written after the gap, are dropped with them.
			lost := 2 * tc.perRnd
			spans := h.exp.spans
			if len(spans) != rounds*tc.perRnd {
				t.Errorf("%d spans, want %d", len(spans), rounds*tc.perRnd)
			}
			seen := map[int]bool{}
			nlost := 0
			for _, s := range spans {
				i := tc.ident(s)
				if i < 0 || seen[i] {
					t.Fatalf("span %s %v: no command or a command twice (%d)", s.Name, s.Attributes, i)
				}
				seen[i] = true
				if r := i / tc.perRnd; r == lostRound || r == lostRound+1 {
					nlost++
					checkAttrs(t, s, map[string]any{"error.type": "data_lost"})
					continue
				}
				tc.check(t, s, i)
			}
			if nlost != lost {
				t.Errorf("%d spans of the lost rounds, want %d", nlost, lost)
			}
			if got := h.metric("periscope_requests_incomplete_total", "reason", "data_lost"); got != float64(lost) {
				t.Errorf("data_lost requests %v, want %d", got, lost)
			}
			if got := h.metric("periscope_data_gaps_total"); got != 1 {
				t.Errorf("gaps %v, want 1", got)
			}
		})
	}
}

// TestFollow: what is a gap (bytes lost) and what is not.
func TestFollow(t *testing.T) {
	type rec struct {
		dir       events.Direction
		seq       uint32
		size, cap int // cap: bytes captured (a cut copy, sendfile: 0)
	}
	cases := []struct {
		name   string
		recs   []rec
		repeat bool   // of the last record
		gap    uint32 // before the last record
	}{
		{"first record", []rec{{events.Write, 500, 10, 10}}, false, 0},
		{"contiguous", []rec{{events.Write, 500, 10, 10}, {events.Write, 510, 5, 5}}, false, 0},
		{"cut copy advances by its size", []rec{{events.Read, 0, 70000, 4096}, {events.Read, 70000, 5, 5}}, false, 0},
		{"sendfile, no bytes", []rec{{events.Write, 0, 10, 10}, {events.Write, 10, 1 << 20, 0}, {events.Write, 10 + 1<<20, 10, 10}}, false, 0},
		{"peek", []rec{{events.Read, 0, 10, 10}, {events.Read, 9, 1, 1}}, true, 0},
		{"rest of a partial write", []rec{{events.Write, 0, 100, 100}, {events.Write, 40, 60, 60}}, false, 0},
		{"after a partial write", []rec{{events.Write, 0, 100, 100}, {events.Write, 40, 60, 60}, {events.Write, 100, 3, 3}}, false, 0},
		{"lost read", []rec{{events.Read, 0, 10, 10}, {events.Read, 30, 5, 5}}, false, 20},
		{"lost write", []rec{{events.Write, 0, 10, 10}, {events.Write, 30, 5, 5}}, false, 20},
		{"directions apart", []rec{{events.Read, 0, 10, 10}, {events.Write, 7000, 10, 10}, {events.Read, 10, 5, 5}}, false, 0},
		{"wrap-around", []rec{{events.Write, 0xfffffff0, 0x10, 0x10}, {events.Write, 0, 5, 5}}, false, 0},
		{"gap across wrap-around", []rec{{events.Write, 0xfffffff0, 0x10, 0x10}, {events.Write, 8, 5, 5}}, false, 8},
	}
	for _, tc := range cases {
		cn := &conn{}
		var repeat bool
		var gap uint32
		for _, r := range tc.recs {
			repeat, gap = cn.follow(events.Data{Dir: r.dir, Seq: r.seq, Size: r.size, Bytes: make([]byte, r.cap), HasSeq: true})
		}
		if repeat != tc.repeat || gap != tc.gap {
			t.Errorf("%s: repeat %v gap %d, want %v %d", tc.name, repeat, gap, tc.repeat, tc.gap)
		}
	}
}

// TestRestartWaitsForRequest: after lost bytes, a record that continues a
// request (a body) starts no decoder, nor does a reply; the next request
// does. A record without a sequence (a TLS library's) forgets where the
// stream was: no gap is claimed after it.
func TestRestartWaitsForRequest(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	st := &seqStream{h: h, id: cid(41, 1)}
	h.bindPlain(st.id, 5, 0, "10.0.0.9:80", "10.0.0.2:41001")
	st.rec(events.Read, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	st.rec(events.Write, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	st.lostNext = true
	post := "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n0123456789"
	rest, reply := "GET /not/a/request ", "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
	st.rec(events.Read, post)
	st.rec(events.Read, rest)   // the body's rest
	st.rec(events.Write, reply) // its reply
	st.rec(events.Read, "GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
	st.rec(events.Write, "HTTP/1.1 204 No Content\r\n\r\n")
	h.c.Flush()
	spans := h.wantSpans(2)
	checkAttrs(t, spans[0], map[string]any{"url.path": "/a", "http.response.status_code": int64(200)})
	checkAttrs(t, spans[1], map[string]any{"url.path": "/c", "http.response.status_code": int64(204)})
	if got := h.metric("periscope_data_gaps_total"); got != 1 {
		t.Errorf("gaps %v, want 1", got)
	}
	if got := h.metric("periscope_http_parse_errors_total"); got != 0 {
		t.Errorf("parse errors %v", got)
	}
	// The bytes lost and those dropped until the restart: no span tells
	// of them.
	if got, want := h.metric("periscope_data_lost_bytes_total"), len(post+rest+reply); got != float64(want) {
		t.Errorf("lost bytes %v, want %d", got, want)
	}
}

// TestLostReplyRestartsPostgres: after a lost reply, the PostgreSQL
// queries in flight end as data_lost and the connection is decoded again
// from the next call that starts a request, after a reply: its database
// and its named prepared statements kept, the unnamed statement forgotten
// (an Execute of it, its Parse lost, is named without text). Before, the
// connection made no span again.
func TestLostReplyRestartsPostgres(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	st := &seqStream{h: h, id: cid(42, 1)}
	h.bindPlain(st.id, 5, 0, "10.0.0.2:41000", "10.0.0.9:5432")
	ready := pgMsg('Z', "I")
	st.rec(events.Write, pgStartup("shop"))
	st.rec(events.Read, pgMsg('R', "\x00\x00\x00\x00")+ready)
	execute := func(stmt string) string {
		return pgMsg('B', "\x00"+stmt+"\x00\x00\x00\x00\x00\x00\x00") + pgMsg('E', "\x00\x00\x00\x00\x00") + pgMsg('S', "")
	}
	st.rec(events.Write, pgMsg('P', "named\x00SELECT e FROM t5 WHERE id = $1\x00\x00\x00")+pgMsg('P', "\x00SELECT f FROM t6\x00\x00\x00")+pgMsg('S', ""))
	st.rec(events.Read, pgMsg('1', "")+pgMsg('1', "")+ready)
	reply := pgMsg('C', "SELECT 0\x00") + ready
	for i, q := range []string{"SELECT a FROM t1", "SELECT b FROM t2", "SELECT c FROM t3", "SELECT d FROM t4"} {
		st.rec(events.Write, pgMsg('Q', q+"\x00"))
		st.lostNext = i == 1
		st.rec(events.Read, reply)
	}
	st.rec(events.Write, execute("named"))
	st.rec(events.Read, pgMsg('2', "")+reply)
	st.rec(events.Write, execute(""))
	st.rec(events.Read, pgMsg('2', "")+reply)
	h.c.Flush()
	spans := h.wantSpans(6)
	for i, want := range []string{"SELECT t1", "SELECT t2", "SELECT t3", "SELECT t4", "SELECT t5", "shop"} {
		if spans[i].Name != want {
			t.Errorf("span %d %q, want %q", i, spans[i].Name, want)
		}
		lost := any(nil)
		if i == 1 || i == 2 {
			lost = "data_lost"
		}
		checkAttrs(t, spans[i], map[string]any{"error.type": lost, "db.namespace": "shop"})
	}
	checkAttrs(t, spans[3], map[string]any{"db.query.text": "SELECT d FROM t4", "db.collection.name": "t4"})
	checkAttrs(t, spans[4], map[string]any{"db.query.text": "SELECT e FROM t5 WHERE id = $1"})
	checkAttrs(t, spans[5], map[string]any{"db.query.text": nil})
	if got := h.metric("periscope_data_gaps_total"); got != 1 {
		t.Errorf("gaps %v, want 1", got)
	}
}

// TestLostFramesHTTP2: HTTP/2 pairs by stream: a lost record costs only
// the frames it held (the decoder is told of the bytes lost and finds
// frames again, though the next record starts inside one); the other
// streams keep their own responses.
func TestLostFramesHTTP2(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	st := &seqStream{h: h, id: cid(43, 1), rd: 77, wr: 0xfffffff0}
	h.bindPlain(st.id, 5, 0, "127.0.0.1:40000", "127.0.0.1:8080")
	c := newH2Wire(t)
	c.out.WriteString(http2.ClientPreface)
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for i, p := range []string{"/one", "/two", "/three", "/four"} {
		c.headers(uint32(2*i+1), true, ":method", "GET", ":scheme", "http", ":path", p, ":authority", "a")
		st.rec(events.Write, c.take())
	}
	s := newH2Wire(t)
	if err := s.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	st.rec(events.Read, s.headers(1, true, ":status", "200").take())
	// The record lost ends inside a frame: the next starts mid-frame.
	lost := s.headers(3, true, ":status", "404").headers(5, true, ":status", "500").take()
	st.lostNext = true
	st.rec(events.Read, lost[:len(lost)-3])
	st.rec(events.Read, lost[len(lost)-3:]+s.headers(7, true, ":status", "204").take())
	h.c.Flush()
	got := map[string]any{}
	for _, sp := range h.exp.spans {
		a := attrs(sp)
		got[fmt.Sprint(a["url.path"])] = a["http.response.status_code"]
		if a["error.type"] == "data_lost" {
			t.Errorf("%s ended data_lost: HTTP/2 pairs by stream", a["url.path"])
		}
	}
	if got["/one"] != int64(200) || got["/four"] != int64(204) || got["/three"] != nil && got["/three"] != int64(500) {
		t.Errorf("statuses %v, want /one 200, /four 204, /three none or 500", got)
	}
	if n := h.metric("periscope_data_gaps_total"); n != 1 {
		t.Errorf("gaps %v, want 1", n)
	}
}

// TestRedisRestartKeepsDatabase: the Redis decoder that goes on after lost
// bytes keeps the database the connection selected.
func TestRedisRestartKeepsDatabase(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	st := &seqStream{h: h, id: cid(44, 1)}
	h.bindPlain(st.id, 5, 0, "10.0.0.2:41000", "10.0.0.9:6379")
	st.rec(events.Write, "*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n")
	st.rec(events.Read, "+OK\r\n")
	st.rec(events.Write, "*2\r\n$3\r\nGET\r\n$1\r\na\r\n")
	st.lostNext = true
	st.rec(events.Read, "$1\r\nx\r\n")
	st.rec(events.Write, "*2\r\n$3\r\nGET\r\n$1\r\nb\r\n")
	st.rec(events.Read, "$-1\r\n")
	st.rec(events.Write, "*2\r\n$3\r\nGET\r\n$1\r\nc\r\n")
	st.rec(events.Read, "$1\r\nz\r\n")
	h.c.Flush()
	spans := h.wantSpans(4)
	checkAttrs(t, spans[1], map[string]any{"db.query.text": "GET a", "error.type": "data_lost", "db.namespace": "3"})
	checkAttrs(t, spans[2], map[string]any{"db.query.text": "GET b", "error.type": "data_lost"})
	checkAttrs(t, spans[3], map[string]any{"db.query.text": "GET c", "error.type": nil, "db.namespace": "3"})
}

// FuzzLostRecords runs a Redis pipeline through the correlator, batches
// of commands read and their replies written in records split at message
// boundaries, and drops records at random as a full ring does. Every span
// describes its own command: a complete one starts with its command's
// record and ends with its own reply's; one caught in a loss ends as
// data_lost; none is exported twice. With nothing lost, every command is
// a complete span. The first records of each direction are never lost:
// the loss of those is not noticed.
func FuzzLostRecords(f *testing.F) {
	f.Add(uint64(1), uint8(16), uint8(4))
	f.Add(uint64(2), uint8(1), uint8(2))
	f.Add(uint64(3), uint8(5), uint8(0))
	f.Fuzz(func(t *testing.T, seed uint64, batch, loseOneIn uint8) {
		rng := rand.New(rand.NewPCG(seed, 0))
		h := newHarness(t, DefaultConfig())
		st := &seqStream{h: h, id: cid(45, 1), rd: uint32(rng.Uint64()), wr: uint32(rng.Uint64())}
		h.bindPlain(st.id, 5, 0, "10.0.0.9:6379", "10.0.0.2:41001")
		cmdAt, replyAt := map[int]int{}, map[int]int{}
		n := 0
		// send writes the messages of commands from..to-1 in records
		// split at random message boundaries.
		send := func(dir events.Direction, from, to int, msg func(int) string, at map[int]int) {
			for i := from; i < to; {
				j := i + 1 + rng.IntN(to-i)
				var b strings.Builder
				for k := i; k < j; k++ {
					b.WriteString(msg(k))
					at[k] = st.ms + 1
				}
				// The first record of a direction is where its
				// sequence is first known: a loss before it is not
				// noticed (known limit).
				st.lostNext = loseOneIn > 0 && i > 0 && rng.IntN(int(loseOneIn)) == 0
				st.rec(dir, b.String())
				i = j
			}
		}
		for range 30 {
			k := 1 + rng.IntN(int(max(batch, 1)))
			send(events.Read, n, n+k, func(i int) string { return fmt.Sprintf("*2\r\n$3\r\nGET\r\n$6\r\nk%05d\r\n", i) }, cmdAt)
			send(events.Write, n, n+k, func(i int) string { return fmt.Sprintf("$6\r\nv%05d\r\n", i) }, replyAt)
			n += k
		}
		h.c.Flush()
		seen := map[int]bool{}
		for _, s := range h.exp.spans {
			var i int
			q, _ := attrs(s)["db.query.text"].(string)
			if _, err := fmt.Sscanf(q, "GET k%d", &i); err != nil || seen[i] {
				t.Fatalf("span %q: no command or one twice", q)
			}
			seen[i] = true
			if !s.Start.Equal(at(cmdAt[i])) {
				t.Errorf("%s starts at %v, its command at %v", q, s.Start, at(cmdAt[i]))
			}
			switch attrs(s)["error.type"] {
			case nil:
				if !s.End.Equal(at(replyAt[i])) {
					t.Errorf("%s ends at %v, its reply at %v", q, s.End, at(replyAt[i]))
				}
			case "data_lost", "evicted": // more than a connection keeps in flight
			default:
				t.Errorf("%s: error.type %v", q, attrs(s)["error.type"])
			}
		}
		if loseOneIn == 0 && len(seen) != n {
			t.Errorf("nothing lost: %d spans of %d commands", len(seen), n)
		}
	})
}
