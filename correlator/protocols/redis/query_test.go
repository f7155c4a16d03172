package redis

import (
	"strings"
	"testing"
	"unsafe"
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
