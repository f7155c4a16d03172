package correlator

import (
	"strings"
	"testing"
)

// FuzzParseTraceParent: a traceparent header comes from the network; it
// parses into non-zero IDs spelled in its lower-case hex, or is refused.
func FuzzParseTraceParent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future")
	f.Add("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("00-00000000000000000000000000000000-00f067aa0ba902b7-01")
	f.Fuzz(func(t *testing.T, v string) {
		tid, sid, ok := parseTraceParent(v)
		if !ok {
			return
		}
		if !tid.IsValid() || !sid.IsValid() {
			t.Fatalf("parseTraceParent(%q): zero IDs accepted", v)
		}
		if l := strings.ToLower(v); l[3:35] != tid.String() || l[36:52] != sid.String() {
			t.Fatalf("parseTraceParent(%q) = %s %s", v, tid, sid)
		}
	})
}
