package redis

import (
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
)

func TestQueryText(t *testing.T) {
	for _, tc := range []struct {
		args            []string
		query, op, proc string
	}{
		{[]string{"get", "user:1"}, "GET user:1", "GET", ""},
		{[]string{"SET", "k", "secret"}, "SET k ?", "SET", ""},
		{[]string{"MSET", "a", "1", "b", "2"}, "MSET a ? ? ?", "MSET", ""},
		{[]string{"PING"}, "PING", "PING", ""},
		{[]string{"AUTH", "user", "pw"}, "AUTH ? ?", "AUTH", ""},
		{[]string{"config", "set", "requirepass", "pw"}, "CONFIG SET ? ?", "CONFIG", ""},
		{[]string{"CONFIG", "not a word", "x"}, "CONFIG ? ?", "CONFIG", ""},
		{[]string{"OBJECT", "encoding", "k"}, "OBJECT ENCODING ?", "OBJECT", ""},
		{[]string{"evalsha", "abc123", "0"}, "EVALSHA abc123 ?", "EVALSHA", "abc123"},
		{[]string{"FCALL", "myfn"}, "FCALL myfn", "FCALL", "myfn"},
		{[]string{"GET", "bad\xffkey"}, "GET bad\uFFFDkey", "GET", ""},
		{[]string{"GET", ""}, "GET ", "GET", ""},
		{[]string{"mymodule.cmd", "secret"}, "MYMODULE.CMD ?", "MYMODULE.CMD", ""},
		{[]string{"x\xff", "secret"}, "X\uFFFD ?", "X\uFFFD", ""},
		{[]string{"GET", strings.Repeat("k", 1000)}, "GET " + strings.Repeat("k", 1000), "GET", ""},
	} {
		var ts texts
		c := lookup([]byte(tc.args[0]))
		first := []byte(nil)
		if len(tc.args) > 1 {
			first = []byte(tc.args[1])
		}
		q, proc := queryText(&ts, c, first, len(tc.args))
		if q != tc.query || c.name != tc.op || proc != tc.proc {
			t.Errorf("%q: got %q %q %q, want %q %q %q", tc.args, q, c.name, proc, tc.query, tc.op, tc.proc)
		}
	}
}

// A known command's name is the table's string, not a copy per command.
func TestCommandNamesInterned(t *testing.T) {
	a, b := lookup([]byte("get")), lookup([]byte("GeT"))
	if a != b || unsafe.StringData(a.name) != unsafe.StringData(commands["GET"].name) {
		t.Fatal("GET looked up twice gives two names")
	}
	if c := lookup([]byte("subscribe")); !c.subscribe {
		t.Fatal("SUBSCRIBE is not a subscription")
	}
	if c := lookup([]byte("OBJECT")); c.arg != argSub {
		t.Fatalf("OBJECT is %v, want a container", c.arg)
	}
}

// Texts carved from one buffer never overwrite each other.
func TestTextsKeepEarlierStrings(t *testing.T) {
	var ts texts
	c := lookup([]byte("GET"))
	var got, want []string
	for i := range 3 * textChunk / 8 {
		key := strings.Repeat(string(rune('a'+i%26)), 1+i%40)
		q, _ := queryText(&ts, c, []byte(key), 2)
		got, want = append(got, q), append(want, "GET "+key)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("text %d = %q, want %q", i, got[i], want[i])
		}
	}
}

// textRecorder keeps each command's query text and procedure at Begin.
type textRecorder struct{ texts, procs []string }

func (r *textRecorder) Begin(x protocol.Exchange) {
	r.texts = append(r.texts, x.(*db.Exchange).Query)
	r.procs = append(r.procs, x.(*db.Exchange).Procedure)
}
func (*textRecorder) End(protocol.Exchange, time.Time, string) {}

// A command repeated on the same key gets the text of the one before it
// (the same bytes, not a new copy); any difference (the command, the key,
// the argument count) makes a text of its own.
func TestQueryTextRepeated(t *testing.T) {
	long := strings.Repeat("k", keepKey+10)
	cmds := [][]string{
		{"GET", "a"}, {"get", "a"}, {"GET", "b"}, {"SET", "a", "v"}, {"SET", "a", "v", "EX", "10"},
		{"SET", "a", "w"}, {"GET", "a"}, {"EVALSHA", "abc", "0"}, {"EVALSHA", "abc", "0"}, {"EVALSHA", "abd", "0"},
		{"FOO", "a"}, {"FOO", "a"}, {"GET", long}, {"GET", long}, {"PING"}, {"PING"},
	}
	want := []struct {
		text, proc string
		shared     bool // the text's bytes are the previous command's
	}{
		{"GET a", "", false}, {"GET a", "", true}, {"GET b", "", false}, {"SET a ?", "", false},
		{"SET a ? ? ?", "", false}, {"SET a ?", "", false}, {"GET a", "", false},
		{"EVALSHA abc ?", "abc", false}, {"EVALSHA abc ?", "abc", true}, {"EVALSHA abd ?", "abd", false},
		{"FOO ?", "", false}, {"FOO ?", "", true}, {"GET " + long[:keepKey], "", false}, {"GET " + long[:keepKey], "", true},
		{"PING", "", false}, {"PING", "", true},
	}
	rec := &textRecorder{}
	d := New(&db.Stats{}).NewDecoder(protocol.Client, rec)
	for _, c := range cmds {
		b := []byte(cmd(c...))
		if err := d.Feed(protocol.Requests, protocol.Chunk{Bytes: b, Size: len(b), Time: time.Unix(1, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	if len(rec.texts) != len(want) {
		t.Fatalf("%d commands, want %d", len(rec.texts), len(want))
	}
	for i, w := range want {
		if rec.texts[i] != w.text || rec.procs[i] != w.proc {
			t.Errorf("%q: text %q procedure %q, want %q %q", cmds[i], rec.texts[i], rec.procs[i], w.text, w.proc)
		}
		if i > 0 && w.shared && unsafe.StringData(rec.texts[i]) != unsafe.StringData(rec.texts[i-1]) {
			t.Errorf("%q: a new text, want the one of %q", cmds[i], cmds[i-1])
		}
	}
}
