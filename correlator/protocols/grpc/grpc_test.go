package grpc

import (
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/span"
)

func TestMethod(t *testing.T) {
	for _, tc := range []struct{ path, status, method, original string }{
		{"/pkg.Svc/Get", "OK", "pkg.Svc/Get", ""},
		{"/Svc/Get", "NOT_FOUND", "Svc/Get", ""},
		{"/pkg.Svc/Nope", "UNIMPLEMENTED", Other, "pkg.Svc/Nope"},
		{"/pkg.Svc", "OK", Other, "/pkg.Svc"},
		{"/a/b/c", "OK", Other, "/a/b/c"},
		{"", "", Other, ""},
	} {
		m, o := Method(tc.path, tc.status)
		if m != tc.method || o != tc.original {
			t.Errorf("Method(%q, %q) = %q, %q; want %q, %q", tc.path, tc.status, m, o, tc.method, tc.original)
		}
	}
}

func TestCounter(t *testing.T) {
	msg := func(n int) []byte { return append([]byte{0, 0, 0, byte(n >> 8), byte(n)}, make([]byte, n)...) }
	var two []byte
	two = append(append(two, msg(3)...), msg(300)...)
	for _, tc := range []struct {
		name  string
		run   func(c *Counter)
		n     int
		exact bool
	}{
		{"none", func(*Counter) {}, 0, true},
		{"two in one write", func(c *Counter) { c.Write(two) }, 2, true},
		{"byte by byte", func(c *Counter) {
			for i := range two {
				c.Write(two[i : i+1])
			}
		}, 2, true},
		{"body skipped", func(c *Counter) { c.Write(msg(300)[:10]); c.Skip(295); c.Write(msg(1)) }, 2, true},
		{"prefix skipped", func(c *Counter) { c.Write(msg(3)); c.Skip(5) }, 1, false},
		{"cut short", func(c *Counter) { c.Write(msg(10)[:8]) }, 1, false},
		{"unknown amount", func(c *Counter) { c.Write(msg(1)); c.Skip(-1) }, 1, false},
	} {
		var c Counter
		tc.run(&c)
		if n, ok := c.Count(); n != tc.n || ok != tc.exact {
			t.Errorf("%s: Count() = %d, %v; want %d, %v", tc.name, n, ok, tc.n, tc.exact)
		}
	}
}

func TestDescribeStatus(t *testing.T) {
	conn := func(r protocol.Role) protocol.Conn {
		return protocol.Conn{Role: r, Scheme: "https", Bound: true,
			Local: netip.MustParseAddrPort("10.0.0.1:50051"), Remote: netip.MustParseAddrPort("10.0.0.2:40000"), PeerAddr: "10.0.0.2"}
	}
	for _, tc := range []struct {
		status     string
		role       protocol.Role
		name, code string
		err        bool
	}{
		{"0", protocol.Server, "pkg.Svc/Get", "OK", false},
		{"5", protocol.Server, "pkg.Svc/Get", "NOT_FOUND", false},
		{"5", protocol.Client, "pkg.Svc/Get", "NOT_FOUND", true},
		{"13", protocol.Server, "pkg.Svc/Get", "INTERNAL", true},
		{"12", protocol.Server, "grpc", "UNIMPLEMENTED", true},
		{"99", protocol.Server, "pkg.Svc/Get", "99", true},
		{"", protocol.Client, "pkg.Svc/Get", "", false},
	} {
		call := &Call{Path: "/pkg.Svc/Get", Status: tc.status}
		if tc.status == "12" {
			call.Path = "/pkg.Svc/Gone"
		}
		var s span.Span
		Describe(call, "api:443", conn(tc.role), "", &s)
		attrs := map[attribute.Key]attribute.Value{}
		for _, a := range s.Attributes {
			attrs[a.Key] = a.Value
		}
		if s.Name != tc.name || attrs["rpc.response.status_code"].AsString() != tc.code || (s.Status == span.Error) != tc.err ||
			attrs["rpc.system.name"].AsString() != "grpc" || attrs["server.address"].AsString() != "api" || attrs["server.port"].AsInt64() != 443 {
			t.Errorf("status %q role %v: name %q status %v attrs %v", tc.status, tc.role, s.Name, s.Status, s.Attributes)
		}
		if tc.err && attrs["error.type"].AsString() != tc.code || !tc.err && attrs["error.type"].Type() != attribute.INVALID {
			t.Errorf("status %q role %v: error.type %v", tc.status, tc.role, attrs["error.type"])
		}
		if _, ok := attrs["grpc.message"]; ok {
			t.Error("grpc-message exported")
		}
	}
}

func TestParseTimeout(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"1S", time.Second, true}, {"250m", 250 * time.Millisecond, true}, {"99999999n", 99999999, true},
		{"2H", 2 * time.Hour, true}, {"3M", 3 * time.Minute, true}, {"7u", 7 * time.Microsecond, true},
		{"", 0, false}, {"S", 0, false}, {"123456789S", 0, false}, {"1s", 0, false}, {"-1S", 0, false}, {"1.5S", 0, false},
	} {
		got, ok := ParseTimeout(tc.v)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseTimeout(%q) = %v %v, want %v %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
}

func TestDeadlineStatus(t *testing.T) {
	c := Call{Timeout: time.Second}
	for _, tc := range []struct {
		status  string
		elapsed time.Duration
		want    string
	}{
		{"1", 500 * time.Millisecond, "1"}, {"1", 995 * time.Millisecond, "4"}, {"1", 2 * time.Second, "4"},
		{"14", 2 * time.Second, "14"},
	} {
		if got := c.DeadlineStatus(tc.status, tc.elapsed); got != tc.want {
			t.Errorf("DeadlineStatus(%s, %v) = %s, want %s", tc.status, tc.elapsed, got, tc.want)
		}
	}
	if got := (&Call{}).DeadlineStatus("1", time.Hour); got != "1" {
		t.Errorf("without grpc-timeout: %s, want 1", got)
	}
}
