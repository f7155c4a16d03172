package db

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"go.opentelemetry.io/otel/attribute"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/span"
)

func TestQueueOverflowKeepsOrder(t *testing.T) {
	stats := &Stats{}
	q := NewQueue[int](2, stats)
	for i := 1; i <= 5; i++ {
		q.Push(i) // 1, 2 stored; 3, 4, 5 anonymous after 2
	}
	if q.Len() != 5 || stats.Overflowed.Load() != 3 || !q.Full() {
		t.Fatalf("len %d overflowed %d", q.Len(), stats.Overflowed.Load())
	}
	var got []int
	pop := func() {
		v, ok := q.Pop()
		if !ok {
			v = 0
		}
		got = append(got, v)
	}
	pop()     // 1
	q.Push(6) // stored after the anonymous run
	for !q.Empty() {
		pop()
	}
	want := []int{1, 2, 0, 0, 0, 6}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

type codec struct{ msgs []string }

func (*codec) HeaderLen() int                { return 2 }
func (*codec) BodyLen(h []byte) (int, error) { return int(h[1]), nil }
func (*codec) Keep([]byte) int               { return 3 }
func (c *codec) Message(m *Message) error {
	s := string(m.Header[:1]) + ":" + string(m.Body)
	if m.Truncated() {
		s += "…"
	}
	c.msgs = append(c.msgs, s)
	return nil
}

func TestFramer(t *testing.T) {
	c := &codec{}
	f := NewFramer(c)
	data := "a\x05hello" + "b\x00" + "c\x02hi"
	for i := 0; i < len(data); i++ { // one byte at a time
		if err := f.Write([]byte{data[i]}); err != nil {
			t.Fatal(err)
		}
	}
	// a captured prefix, a gap inside the body, a tail
	if err := Feed(f, []byte("d\x0aab"), 12, []byte("yz")); err != nil {
		t.Fatal(err)
	}
	if err := Feed(f, []byte("e\x01"), 4, nil); err == nil {
		t.Fatal("a gap past the body did not lose sync")
	}
	want := []string{"a:hel…", "b:", "c:hi", "d:ab…"}
	if len(c.msgs) != len(want) {
		t.Fatalf("got %q, want %q", c.msgs, want)
	}
	for i := range want {
		if c.msgs[i] != want[i] {
			t.Fatalf("got %q, want %q", c.msgs, want)
		}
	}
}

func TestDescribe(t *testing.T) {
	server := netip.MustParseAddrPort("10.0.0.5:5432")
	conn := protocol.Conn{Role: protocol.Client, Bound: true, Remote: server, Local: netip.MustParseAddrPort("10.0.0.1:40000")}
	cases := []struct {
		x    Exchange
		name string
	}{
		{Exchange{System: PostgreSQL, Summary: "SELECT users", Namespace: "shop"}, "SELECT users"},
		{Exchange{System: Redis, Operation: "GET", Namespace: "3"}, "GET 10.0.0.5:5432"},
		{Exchange{System: MySQL, Operation: "COM_PING", Namespace: "shop"}, "COM_PING shop"},
		{Exchange{System: Redis, Operation: "EVALSHA", Procedure: "abc"}, "EVALSHA abc"},
		{Exchange{System: MariaDB}, "mariadb"},
	}
	for _, c := range cases {
		var s span.Span
		Describe(&c.x, protocol.Conn{}, "", &s)
		if c.x.System == Redis && c.x.Operation == "GET" {
			Describe(&c.x, conn, "", &s)
		}
		if s.Name != c.name {
			t.Errorf("name %q, want %q", s.Name, c.name)
		}
	}
	x := Exchange{System: PostgreSQL, Summary: "SELECT t", Query: "SELECT * FROM t WHERE a = ?", StatusCode: "42P01", ErrorType: "42P01"}
	var s span.Span
	Describe(&x, conn, "", &s)
	got := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		got[kv.Key] = kv.Value
	}
	for k, v := range map[attribute.Key]string{"db.system.name": "postgresql", "db.query.summary": "SELECT t",
		"db.query.text": "SELECT * FROM t WHERE a = ?", "db.response.status_code": "42P01", "error.type": "42P01",
		"server.address": "10.0.0.5", "network.peer.address": "10.0.0.5"} {
		if got[k].AsString() != v {
			t.Errorf("%s = %q, want %q", k, got[k].AsString(), v)
		}
	}
	if got["server.port"].AsInt64() != 5432 || s.Status != span.Error {
		t.Errorf("server.port %v status %v", got["server.port"], s.Status)
	}
	for _, kv := range MetricAttributes(&x, conn) {
		if kv.Key == "db.query.text" {
			t.Error("the histogram is labelled with query text")
		}
	}
}

func TestStatsExported(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s, err := NewStats(reg, "postgresql")
	if err != nil {
		t.Fatal(err)
	}
	s.LostSync.Add(2)
	s.Overflowed.Add(5)
	want := `# HELP periscope_db_decoder_events_total Events of the database protocol decoders that lose data: requests over the pending cap (overflowed), message boundaries lost (lost_sync), connections switched to TLS (encrypted), prepared statements forgotten (forgotten).
# TYPE periscope_db_decoder_events_total counter
periscope_db_decoder_events_total{event="encrypted",protocol="postgresql"} 0
periscope_db_decoder_events_total{event="forgotten",protocol="postgresql"} 0
periscope_db_decoder_events_total{event="lost_sync",protocol="postgresql"} 2
periscope_db_decoder_events_total{event="overflowed",protocol="postgresql"} 5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStats(reg, "postgresql"); err == nil {
		t.Fatal("registering twice did not fail")
	}
	if _, err := NewStats(reg, "redis"); err != nil {
		t.Fatalf("a second protocol: %v", err)
	}
}

// Spans with its cache describe exactly as Describe without one, on the
// first span of a server and on the ones after (cached), past the
// cache's bounds too.
func TestDescribeCached(t *testing.T) {
	sp := NewSpans()
	conns := []protocol.Conn{
		{},
		{Role: protocol.Client, Bound: true, Remote: netip.MustParseAddrPort("10.0.0.5:6379")},
		{Role: protocol.Client, Bound: true, Remote: netip.MustParseAddrPort("[::ffff:127.0.0.1]:6379")},
		{Role: protocol.Server, Bound: true, Local: netip.MustParseAddrPort("[::1]:3306"), Remote: netip.MustParseAddrPort("[::1]:40000")},
	}
	for i := range maxCachedServers + 2 {
		conns = append(conns, protocol.Conn{Role: protocol.Client, Bound: true,
			Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 6379)})
	}
	xs := []Exchange{
		{System: Redis, Operation: "GET", Namespace: "3", Query: "GET k"},
		{System: Redis, Operation: "EVALSHA", Procedure: "abc"},
		{System: Redis},
		{System: MySQL, Operation: "COM_PING", Namespace: "shop"},
		{System: MySQL, Operation: "COM_PING"},
		{System: PostgreSQL, Summary: "SELECT t", ErrorType: "42P01", StatusCode: "42P01"},
	}
	for i := range maxCachedNames + 2 {
		xs = append(xs, Exchange{System: Redis, Operation: "OP" + strconv.Itoa(i)})
	}
	for round := range 2 {
		for _, c := range conns {
			for _, x := range xs {
				var want, got span.Span
				Describe(&x, c, "", &want)
				sp.Describe(&x, c, "", &got)
				if got.Name != want.Name || got.Status != want.Status || !slices.Equal(got.Attributes, want.Attributes) {
					t.Fatalf("round %d %+v on %+v: got %q %v, want %q %v", round, x, c, got.Name, got.Attributes, want.Name, want.Attributes)
				}
			}
		}
	}
	if n := len(sp.cache.servers); n > maxCachedServers {
		t.Errorf("cache holds %d servers, bound %d", n, maxCachedServers)
	}
}
