package protocol

import (
	"testing"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

// fake claims bytes that start with its prefix.
type fake struct {
	prefix  string
	verdict Verdict
}

func (f fake) Name() string { return f.prefix }
func (f fake) Detect(first []byte, _ events.Direction) Detection {
	if len(first) >= len(f.prefix) && string(first[:len(f.prefix)]) == f.prefix {
		return Detection{Verdict: f.verdict, Role: Server}
	}
	return Detection{}
}
func (fake) NewDecoder(Role, Handler) Decoder            { return nil }
func (fake) Describe(Exchange, Conn, string, *span.Span) {}

func TestRegistryDetect(t *testing.T) {
	r := Registry{fake{"A", Yes}, fake{"B", Undecided}, fake{"", Yes}}
	for _, tc := range []struct {
		first, want string
		verdict     Verdict
	}{
		{"Aaa", "A", Yes},
		{"Bbb", "", Undecided}, // an undecided protocol stops the search
		{"Ccc", "", Yes},       // the last resort claims the rest
	} {
		p, d := r.Detect([]byte(tc.first), events.Read)
		name := ""
		if p != nil {
			name = p.Name()
		}
		if name != tc.want || d.Verdict != tc.verdict {
			t.Errorf("Detect(%q) = %q, %v; want %q, %v", tc.first, name, d.Verdict, tc.want, tc.verdict)
		}
	}
}

func TestSideOf(t *testing.T) {
	for _, tc := range []struct {
		r    Role
		dir  events.Direction
		want Side
	}{
		{Server, events.Read, Requests},
		{Server, events.Write, Responses},
		{Client, events.Write, Requests},
		{Client, events.Read, Responses},
	} {
		if got := SideOf(tc.r, tc.dir); got != tc.want {
			t.Errorf("SideOf(%v, %v) = %v, want %v", tc.r, tc.dir, got, tc.want)
		}
	}
}
