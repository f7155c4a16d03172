package redis

import (
	"fmt"
	"math/rand/v2"
	"slices"
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

// cmd encodes a command as clients send it.
func cmd(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// want is what a test expects of one exchange.
type want struct {
	op, query, status string
	rows              int64
	ns                string
}

func run(t *testing.T, steps []dbtest.Step, rng *rand.Rand) (*dbtest.Recorder, *db.Stats) {
	t.Helper()
	stats := &db.Stats{}
	rec := &dbtest.Recorder{T: t}
	d := New(stats).NewDecoder(protocol.Client, rec)
	if err := dbtest.Play(d, steps, rng); err != nil {
		t.Fatalf("feed: %v", err)
	}
	return rec, stats
}

func check(t *testing.T, rec *dbtest.Recorder, ws []want) {
	t.Helper()
	if len(rec.Ended) != len(ws) || rec.Open() != 0 {
		for _, x := range rec.Ended {
			t.Logf("got %+v", *x)
		}
		t.Fatalf("got %d exchanges (%d open), want %d", len(rec.Ended), rec.Open(), len(ws))
	}
	for i, w := range ws {
		x := rec.Ended[i]
		if x.System != db.Redis || x.Operation != w.op || x.Query != w.query || x.StatusCode != w.status ||
			x.ErrorType != w.status || x.Rows != w.rows || x.Namespace != w.ns {
			t.Errorf("exchange %d: got %+v, want %+v", i, *x, w)
		}
	}
}

func TestRedis(t *testing.T) {
	cases := []struct {
		name  string
		steps []dbtest.Step
		want  []want
	}{
		{"set get", []dbtest.Step{
			{Side: req, Bytes: cmd("SET", "user:1", "s3cr3t-value")}, {Side: resp, Bytes: "+OK\r\n"},
			{Side: req, Bytes: cmd("get", "user:1")}, {Side: resp, Bytes: "$12\r\ns3cr3t-value\r\n"},
			{Side: req, Bytes: cmd("GET", "nope")}, {Side: resp, Bytes: "$-1\r\n"},
		}, []want{{op: "SET", query: "SET user:1 ?"}, {op: "GET", query: "GET user:1"}, {op: "GET", query: "GET nope"}}},
		{"errors", []dbtest.Step{
			{Side: req, Bytes: cmd("LPUSH", "k", "v")}, {Side: resp, Bytes: "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
			{Side: req, Bytes: cmd("NOSUCH")}, {Side: resp, Bytes: "-ERR unknown command 'NOSUCH'\r\n"},
			{Side: req, Bytes: cmd("EVAL", "return redis.call('x')", "0")}, {Side: resp, Bytes: "-user_script:1: bad\r\n"},
		}, []want{{op: "LPUSH", query: "LPUSH k ?", status: "WRONGTYPE"}, {op: "NOSUCH", query: "NOSUCH", status: "ERR"},
			{op: "EVAL", query: "EVAL ? ?", status: "ERR"}}},
		{"auth and hello never keep arguments", []dbtest.Step{
			{Side: req, Bytes: cmd("AUTH", "hunter2")}, {Side: resp, Bytes: "+OK\r\n"},
			{Side: req, Bytes: cmd("AUTH", "alice", "hunter2")}, {Side: resp, Bytes: "+OK\r\n"},
			{Side: req, Bytes: cmd("HELLO", "3", "AUTH", "alice", "hunter2", "SETNAME", "app")},
			{Side: resp, Bytes: "%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n"},
			{Side: req, Bytes: cmd("CONFIG", "SET", "requirepass", "hunter2")}, {Side: resp, Bytes: "+OK\r\n"},
			{Side: req, Bytes: cmd("MIGRATE", "host", "6379", "k", "0", "5000", "AUTH", "hunter2")}, {Side: resp, Bytes: "+NOKEY\r\n"},
		}, []want{{op: "AUTH", query: "AUTH ?"}, {op: "AUTH", query: "AUTH ? ?"},
			{op: "HELLO", query: "HELLO ? ? ? ? ? ?", rows: 4}, {op: "CONFIG", query: "CONFIG SET ? ?"},
			{op: "MIGRATE", query: "MIGRATE ? ? ? ? ? ? ?"}}},
		{"pipeline", []dbtest.Step{
			{Side: req, Bytes: cmd("INCR", "a") + cmd("INCR", "b") + cmd("MGET", "a", "b")},
			{Side: resp, Bytes: ":1\r\n:1\r\n*2\r\n$1\r\n1\r\n$1\r\n1\r\n"},
		}, []want{{op: "INCR", query: "INCR a"}, {op: "INCR", query: "INCR b"}, {op: "MGET", query: "MGET a ?", rows: 2}}},
		{"multi exec", []dbtest.Step{
			{Side: req, Bytes: cmd("MULTI")}, {Side: resp, Bytes: "+OK\r\n"},
			{Side: req, Bytes: cmd("SET", "a", "1")}, {Side: resp, Bytes: "+QUEUED\r\n"},
			{Side: req, Bytes: cmd("INCR", "a")}, {Side: resp, Bytes: "+QUEUED\r\n"},
			{Side: req, Bytes: cmd("EXEC")}, {Side: resp, Bytes: "*2\r\n+OK\r\n:2\r\n"},
		}, []want{{op: "MULTI", query: "MULTI"}, {op: "SET", query: "SET a ?"}, {op: "INCR", query: "INCR a"},
			{op: "EXEC", query: "EXEC", rows: 2}}},
		{"pub/sub RESP2", []dbtest.Step{
			{Side: req, Bytes: cmd("SUBSCRIBE", "news", "sport")},
			{Side: resp, Bytes: "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n"},
			{Side: resp, Bytes: "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"},
			{Side: req, Bytes: cmd("PING")}, {Side: resp, Bytes: "*2\r\n$4\r\npong\r\n$0\r\n\r\n"},
			{Side: resp, Bytes: "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"},
			{Side: req, Bytes: cmd("UNSUBSCRIBE")}, {Side: resp, Bytes: "*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n"},
		}, []want{{op: "PING", query: "PING", rows: 2}}},
		{"RESP3 types, push, attributes", []dbtest.Step{
			{Side: req, Bytes: cmd("CLIENT", "TRACKING", "on")}, {Side: resp, Bytes: "+OK\r\n"},
			{Side: req, Bytes: cmd("GET", "k")},
			{Side: resp, Bytes: ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"},
			{Side: resp, Bytes: "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.19\r\n$1\r\nb\r\n,0.5\r\n=15\r\ntxt:Some string\r\n"},
			{Side: req, Bytes: cmd("DEBUG", "PROTOCOL", "bignum")}, {Side: resp, Bytes: "(3492890328409238509324850943850943825024385\r\n"},
			{Side: req, Bytes: cmd("SMEMBERS", "s")}, {Side: resp, Bytes: "~3\r\n+a\r\n#t\r\n_\r\n"},
			{Side: req, Bytes: cmd("X", "k")}, {Side: resp, Bytes: "$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;0\r\n"},
			{Side: req, Bytes: cmd("Y", "k")}, {Side: resp, Bytes: "*?\r\n:1\r\n*?\r\n:2\r\n.\r\n%?\r\n+a\r\n:1\r\n.\r\n.\r\n"},
			{Side: req, Bytes: cmd("Z", "k")}, {Side: resp, Bytes: "!21\r\nSYNTAX invalid syntax\r\n"},
		}, []want{{op: "CLIENT", query: "CLIENT TRACKING ?"}, {op: "GET", query: "GET k"},
			{op: "DEBUG", query: "DEBUG PROTOCOL ?"}, {op: "SMEMBERS", query: "SMEMBERS s", rows: 3},
			{op: "X", query: "X ?"}, {op: "Y", query: "Y ?", rows: 3}, {op: "Z", query: "Z ?", status: "SYNTAX"}}},
		{"inline and select", []dbtest.Step{
			{Side: req, Bytes: "PING\r\n"}, {Side: resp, Bytes: "+PONG\r\n"},
			{Side: req, Bytes: "\r\n"},
			{Side: req, Bytes: "set k secretvalue\r\n"}, {Side: resp, Bytes: "+OK\r\n"},
			{Side: req, Bytes: cmd("SELECT", "3")}, {Side: resp, Bytes: "+OK\r\n"},
			{Side: req, Bytes: cmd("EVALSHA", "abc123", "1", "k")}, {Side: resp, Bytes: ":1\r\n"},
			{Side: req, Bytes: cmd("SELECT", "99")}, {Side: resp, Bytes: "-ERR DB index is out of range\r\n"},
			{Side: req, Bytes: cmd("DEL", "k")}, {Side: resp, Bytes: ":1\r\n"},
		}, []want{{op: "PING", query: "PING"}, {op: "SET", query: "SET k ?"}, {op: "SELECT", query: "SELECT ?"},
			{op: "EVALSHA", query: "EVALSHA abc123 ? ?", ns: "3"}, {op: "SELECT", query: "SELECT ?", status: "ERR", ns: "3"},
			{op: "DEL", query: "DEL k", ns: "3"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec, _ := run(t, c.steps, nil)
			check(t, rec, c.want)
			for seed := range uint64(20) {
				rec, _ := run(t, c.steps, rand.New(rand.NewPCG(seed, 1)))
				check(t, rec, c.want)
			}
		})
	}
}

func TestSecretsNeverKept(t *testing.T) {
	const secret = "hunter2-planted"
	steps := []dbtest.Step{
		{Side: req, Bytes: "SET k " + secret + "\r\n"}, {Side: resp, Bytes: "+OK\r\n"}, // inline: before any array
		{Side: req, Bytes: cmd("AUTH", "default", secret)}, {Side: resp, Bytes: "+OK\r\n"},
		{Side: req, Bytes: cmd("HELLO", "3", "AUTH", "default", secret)}, {Side: resp, Bytes: "%0\r\n"},
		{Side: req, Bytes: cmd("SET", "k", secret)}, {Side: resp, Bytes: "+OK\r\n"},
		{Side: req, Bytes: cmd("GET", "k")}, {Side: resp, Bytes: "$15\r\n" + secret + "\r\n"},
		{Side: req, Bytes: cmd("ACL", "SETUSER", "bob", "on", ">"+secret)}, {Side: resp, Bytes: "+OK\r\n"},
		{Side: req, Bytes: cmd("EVAL", "return '"+secret+"'", "0")}, {Side: resp, Bytes: "$15\r\n" + secret + "\r\n"},
		{Side: req, Bytes: cmd("XADD", "s", "*", "f", secret)}, {Side: resp, Bytes: "$3\r\n1-0\r\n"},
	}
	rec, _ := run(t, steps, nil)
	if len(rec.Ended) != 8 {
		t.Fatalf("got %d exchanges", len(rec.Ended))
	}
	for _, x := range rec.Ended {
		if s := fmt.Sprintf("%+v", *x); strings.Contains(s, "hunter2") {
			t.Fatalf("secret kept: %s", s)
		}
	}
}

func TestLongPipelineIsBounded(t *testing.T) {
	const n = 100_000
	var reqs, resps strings.Builder
	for i := range n {
		reqs.WriteString(cmd("SET", fmt.Sprintf("k%d", i), "v"))
		resps.WriteString("+OK\r\n")
	}
	stats := &db.Stats{}
	rec := &dbtest.Recorder{T: t}
	d := New(stats).NewDecoder(protocol.Client, rec).(*decoder)
	if err := dbtest.Play(d, []dbtest.Step{{Side: req, Bytes: reqs.String()}}, nil); err != nil {
		t.Fatal(err)
	}
	if got := d.pending.Len(); got != n {
		t.Fatalf("pending %d, want %d", got, n)
	}
	if rec.Begun != MaxPending || stats.Overflowed.Load() != n-MaxPending {
		t.Fatalf("begun %d overflowed %d", rec.Begun, stats.Overflowed.Load())
	}
	// Half the replies, then a new command, then the rest: the new
	// command pairs with its own reply, after the overflowed ones.
	half := strings.Repeat("+OK\r\n", n/2)
	steps := []dbtest.Step{{Side: resp, Bytes: half}, {Side: req, Bytes: cmd("GET", "last")}, {Side: resp, Bytes: half}, {Side: resp, Bytes: "$1\r\nx\r\n"}}
	if err := dbtest.Play(d, steps, nil); err != nil {
		t.Fatal(err)
	}
	if len(rec.Ended) != MaxPending+1 || rec.Open() != 0 || !d.pending.Empty() {
		t.Fatalf("ended %d open %d", len(rec.Ended), rec.Open())
	}
	if last := rec.Ended[len(rec.Ended)-1]; last.Query != "GET last" {
		t.Fatalf("last exchange %+v", *last)
	}
}

func TestGapInsideValue(t *testing.T) {
	stats := &db.Stats{}
	rec := &dbtest.Recorder{T: t}
	d := New(stats).NewDecoder(protocol.Client, rec)
	big := cmd("SET", "k", strings.Repeat("v", 10000))
	at := dbtest.Base
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(d.Feed(req, protocol.Chunk{Bytes: []byte(big[:100]), Size: len(big), Tail: []byte(big[len(big)-10:]), Time: at}))
	must(d.Feed(resp, protocol.Chunk{Bytes: []byte("+OK\r\n"), Size: 5, Time: at}))
	check(t, rec, []want{{op: "SET", query: "SET k ?"}})
	// A gap at a boundary is lost sync: counted, and no error (resync).
	err := d.Feed(req, protocol.Chunk{Bytes: []byte("*1\r\n"), Size: 20, Time: at})
	if err != nil || stats.LostSync.Load() != 1 {
		t.Fatalf("gap outside a bulk: err %v, lost %d", err, stats.LostSync.Load())
	}
}

// cut is a chunk of which only the first head bytes and the last tail
// bytes were copied, as the kernel reports a long call.
func cut(side protocol.Side, b string, head, tail int, at time.Time) func(protocol.Decoder) error {
	return func(d protocol.Decoder) error {
		return d.Feed(side, protocol.Chunk{Bytes: []byte(b[:head]), Size: len(b), Tail: []byte(b[len(b)-tail:]), Time: at})
	}
}

// whole is a chunk copied whole.
func whole(side protocol.Side, b string, at time.Time) func(protocol.Decoder) error {
	return func(d protocol.Decoder) error {
		return d.Feed(side, protocol.Chunk{Bytes: []byte(b), Size: len(b), Time: at})
	}
}

// array is a reply of n one-byte bulk strings.
func array(n int) string {
	return fmt.Sprintf("*%d\r\n", n) + strings.Repeat("$1\r\nx\r\n", n)
}

// TestResync: after bytes lost where a header should be (a long call
// copied in part, records dropped), the decoder resumes at the first call
// after a reply that starts a command: no error, no reply paired with the
// wrong command, the commands caught in the loss ended at the last reply
// bytes seen: the one whose reply the loss cut complete, the others
// data_lost (lost: their indexes).
func TestResync(t *testing.T) {
	at := func(ms int) time.Time { return dbtest.Base.Add(time.Duration(ms) * time.Millisecond) }
	mset := []string{"MSET"}
	for i := range 500 {
		mset = append(mset, fmt.Sprint("k", i), "v")
	}
	cases := []struct {
		name  string
		feeds []func(protocol.Decoder) error
		want  []want
		ends  []int // ms of each exchange's end
		lost  []int
	}{
		{"reply cut outside a bulk", []func(protocol.Decoder) error{
			whole(req, cmd("LRANGE", "big", "0", "-1"), at(0)),
			cut(resp, array(2000), 100, 16, at(1)),
			whole(resp, "$1\r\nx\r\n", at(2)), // rest of the reply, read later
			whole(req, cmd("LRANGE", "small", "0", "-1"), at(3)),
			whole(resp, array(3), at(4)),
		}, []want{{op: "LRANGE", query: "LRANGE big ? ?"}, {op: "LRANGE", query: "LRANGE small ? ?", rows: 3}}, []int{2, 4}, nil},
		{"command cut outside a bulk", []func(protocol.Decoder) error{
			whole(req, cmd("GET", "a"), at(0)), whole(resp, "$1\r\nx\r\n", at(1)),
			cut(req, cmd(mset...), 200, 16, at(2)),
			whole(resp, "+OK\r\n", at(3)),
			whole(req, cmd("LRANGE", "l", "0", "-1"), at(4)), whole(resp, array(4), at(5)),
		}, []want{{op: "GET", query: "GET a"}, {op: "LRANGE", query: "LRANGE l ? ?", rows: 4}}, []int{1, 5}, nil},
		{"records dropped mid-command", []func(protocol.Decoder) error{
			whole(req, cmd("SET", "a", "1"), at(0)), whole(resp, "+OK\r\n", at(1)),
			whole(req, "$3\r\nabc\r\n", at(2)), // the end of a command whose start was dropped
			whole(resp, array(7), at(3)),
			whole(req, cmd("LRANGE", "l", "0", "-1"), at(4)), whole(resp, array(2), at(5)),
		}, []want{{op: "SET", query: "SET a ?"}, {op: "LRANGE", query: "LRANGE l ? ?", rows: 2}}, []int{1, 5}, nil},
		{"pipeline caught in a loss", []func(protocol.Decoder) error{
			whole(req, cmd("LRANGE", "a", "0", "-1")+cmd("LRANGE", "b", "0", "-1")+cmd("LRANGE", "c", "0", "-1"), at(0)),
			cut(resp, array(1000)+array(5)+array(6), 64, 16, at(1)),
			whole(req, cmd("LRANGE", "d", "0", "-1"), at(2)), whole(resp, array(9), at(3)),
		}, []want{{op: "LRANGE", query: "LRANGE a ? ?"}, {op: "LRANGE", query: "LRANGE b ? ?"},
			{op: "LRANGE", query: "LRANGE c ? ?"}, {op: "LRANGE", query: "LRANGE d ? ?", rows: 9}}, []int{1, 1, 1, 3}, []int{1, 2}},
		{"lost until a write starts a command", []func(protocol.Decoder) error{
			whole(req, cmd("GET", "a"), at(0)),
			cut(resp, "*400\r\n"+strings.Repeat("+aaaaaaaa\r\n", 400), 50, 8, at(1)),
			whole(req, "3\r\nGET\r\n", at(2)), // not a command start: still lost
			whole(resp, array(5), at(3)),
			whole(req, cmd("LRANGE", "l", "0", "-1"), at(4)), whole(resp, array(1), at(5)),
		}, []want{{op: "GET", query: "GET a"}, {op: "LRANGE", query: "LRANGE l ? ?", rows: 1}}, []int{3, 5}, nil},
		// A large call comes in records of 4 KiB: one that starts a
		// command right after the loss, no reply between, is a later
		// record of the same call; the replies of its earlier commands
		// come first.
		{"a later record of the call of the loss", []func(protocol.Decoder) error{
			whole(req, cmd("GET", "a"), at(0)),
			whole(req, cmd("GET", "b")+"*2\r\n$3\r\nGET\r\n", at(1)),
			whole(req, "?junk\r\n", at(2)), // bytes between were dropped
			whole(req, cmd("GET", "d"), at(2)),
			whole(resp, "$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n", at(3)),
			whole(req, cmd("GET", "e"), at(4)), whole(resp, "$1\r\ne\r\n", at(5)),
		}, []want{{op: "GET", query: "GET a"}, {op: "GET", query: "GET b"}, {op: "GET", query: "GET e"}},
			[]int{3, 3, 5}, []int{0, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stats := &db.Stats{}
			rec := &dbtest.Recorder{T: t}
			d := New(stats).NewDecoder(protocol.Client, rec)
			for i, f := range c.feeds {
				if err := f(d); err != nil {
					t.Fatalf("feed %d: %v", i, err)
				}
			}
			check(t, rec, c.want)
			for i, ms := range c.ends {
				reason := ""
				if slices.Contains(c.lost, i) {
					reason = protocol.ReasonDataLost
				}
				if r := rec.Reason[i]; r != reason {
					t.Errorf("exchange %d reason %q, want %q", i, r, reason)
				}
				if !rec.Ends[i].Equal(at(ms)) {
					t.Errorf("exchange %d ended at %v, want %d ms", i, rec.Ends[i].Sub(dbtest.Base), ms)
				}
			}
			if stats.LostSync.Load() != 1 {
				t.Errorf("lost sync %d times, want 1", stats.LostSync.Load())
			}
		})
	}
}

func TestDetect(t *testing.T) {
	p := New(&db.Stats{})
	cases := []struct {
		in   string
		dir  events.Direction
		want protocol.Verdict
		role protocol.Role
	}{
		{cmd("PING"), events.Write, protocol.Yes, protocol.Client},
		{cmd("GET", "k"), events.Read, protocol.Yes, protocol.Server},
		{"*1", events.Write, protocol.Undecided, 0},
		{"*1\r", events.Write, protocol.Undecided, 0},
		{"*1\r\n+", events.Write, protocol.No, 0},
		{"PING\r\n", events.Write, protocol.No, 0}, // inline: text, never claimed
		{"HELLO there\r\n", events.Write, protocol.No, 0},
		{"GET / HTTP/1.1\r\n", events.Write, protocol.No, 0},
		{"+OK\r\n", events.Read, protocol.No, 0},
		{"", events.Write, protocol.Undecided, 0},
	}
	for _, c := range cases {
		got := p.Detect([]byte(c.in), c.dir)
		if got.Verdict != c.want || got.Verdict == protocol.Yes && got.Role != c.role {
			t.Errorf("Detect(%q) = %+v, want %v %v", c.in, got, c.want, c.role)
		}
		// Decoding restarts after lost bytes where a command is claimed.
		if p.StartsRequest([]byte(c.in)) != (c.want == protocol.Yes) {
			t.Errorf("StartsRequest(%q) = %v", c.in, !(c.want == protocol.Yes))
		}
	}
}

// TestReplyRetainsNothing streams a reply of 262,144 elements (256 MiB),
// every byte copied, through the decoder: it keeps nothing of them.
func TestReplyRetainsNothing(t *testing.T) {
	rec := &dbtest.Recorder{T: t}
	d := New(&db.Stats{}).NewDecoder(protocol.Client, rec)
	const perChunk, n = 64, 4096
	if err := dbtest.Play(d, []dbtest.Step{{Side: req, Bytes: cmd("LRANGE", "big", "0", "-1")},
		{Side: resp, Bytes: fmt.Sprintf("*%d\r\n", perChunk*n)}}, nil); err != nil {
		t.Fatal(err)
	}
	elem := "$1017\r\n" + strings.Repeat("v", 1017) + "\r\n"
	later := dbtest.Base.Add(time.Second)
	kept := dbtest.Retained(func() { dbtest.Stream(t, d, resp, []byte(strings.Repeat(elem, perChunk)), n, later) })
	if kept > 256<<10 {
		t.Errorf("%d bytes retained after a 256 MiB reply", kept)
	}
	if len(rec.Ended) != 1 || rec.Ended[0].Rows != perChunk*n {
		t.Fatalf("got %d exchanges: %+v", len(rec.Ended), rec.Ended)
	}
}
