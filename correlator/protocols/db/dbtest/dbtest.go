// Package dbtest has what the tests of the database decoders share: a
// handler that records exchanges and checks their order, and chunking.
package dbtest

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
)

// Recorder is a protocol.Handler that keeps the exchanges it is given and
// fails the test when an exchange ends twice or ends without beginning.
type Recorder struct {
	T      testing.TB
	Begun  int
	Ended  []*db.Exchange
	open   map[*db.Exchange]bool
	Reason []string
	Ends   []time.Time // when each of Ended ended
}

// Begin implements protocol.Handler.
func (r *Recorder) Begin(x protocol.Exchange) {
	if r.open == nil {
		r.open = map[*db.Exchange]bool{}
	}
	e := x.(*db.Exchange)
	if r.open[e] {
		r.T.Fatalf("exchange begun twice: %+v", e)
	}
	r.open[e] = true
	r.Begun++
}

// End implements protocol.Handler.
func (r *Recorder) End(x protocol.Exchange, end time.Time, reason string) {
	e := x.(*db.Exchange)
	if !r.open[e] {
		r.T.Fatalf("exchange ended but not open: %+v", e)
	}
	if end.Before(e.Begun) {
		r.T.Fatalf("exchange ends before it begins: %v < %v %+v", end, e.Begun, e)
	}
	delete(r.open, e)
	r.Ended = append(r.Ended, e)
	r.Reason = append(r.Reason, reason)
	r.Ends = append(r.Ends, end)
}

// Open returns how many exchanges began and did not end.
func (r *Recorder) Open() int { return len(r.open) }

// Step is one chunk of a conversation.
type Step struct {
	Side  protocol.Side
	Bytes string
}

// Base is the time of the first step; step i happens at Base + i ms.
var Base = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// Play feeds steps to d, each step cut into pieces by rng when rng is not
// nil (all pieces of a step at the step's time).
func Play(d protocol.Decoder, steps []Step, rng *rand.Rand) error {
	for i, s := range steps {
		at := Base.Add(time.Duration(i) * time.Millisecond)
		b := []byte(s.Bytes)
		for len(b) > 0 {
			n := len(b)
			if rng != nil {
				n = 1 + rng.IntN(len(b))
			}
			if err := d.Feed(s.Side, protocol.Chunk{Bytes: b[:n], Size: n, Time: at}); err != nil {
				return err
			}
			b = b[n:]
		}
	}
	return nil
}

// LoadCapture reads a file written by scripts/dbcapture/proxy: one read
// per line, "C <hex>" from the client, "S <hex>" from the server.
func LoadCapture(path string) ([]Step, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var steps []Step
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		tag, h, ok := strings.Cut(line, " ")
		b, err := hex.DecodeString(h)
		if !ok || err != nil || tag != "C" && tag != "S" {
			return nil, fmt.Errorf("%s:%d: not a capture line", path, i+1)
		}
		side := protocol.Requests
		if tag == "S" {
			side = protocol.Responses
		}
		steps = append(steps, Step{Side: side, Bytes: string(b)})
	}
	return steps, nil
}

// Replay plays a capture through a decoder made by newDecoder, whole and
// then cut at random points with a few seeds, checks that every cut gives
// the same exchanges and that no exchange holds a planted value, and
// returns the exchanges as Lines.
func Replay(t *testing.T, path string, newDecoder func(protocol.Handler) protocol.Decoder) []string {
	t.Helper()
	steps, err := LoadCapture(path)
	if err != nil {
		t.Fatal(err)
	}
	var first []string
	for seed := range uint64(4) {
		var rng *rand.Rand
		if seed > 0 {
			rng = rand.New(rand.NewPCG(seed, 7))
		}
		rec := &Recorder{T: t}
		if err := Play(newDecoder(rec), steps, rng); err != nil {
			t.Fatalf("%s (seed %d): %v", path, seed, err)
		}
		if rec.Open() != 0 {
			t.Fatalf("%s: %d exchanges still open", path, rec.Open())
		}
		lines := make([]string, len(rec.Ended))
		for i, x := range rec.Ended {
			lines[i] = Line(x, rec.Reason[i])
			if strings.Contains(strings.ToLower(fmt.Sprintf("%+v", *x)), "planted") {
				t.Fatalf("%s: a planted value reached an exchange: %+v", path, *x)
			}
		}
		if seed == 0 {
			first = lines
		} else if strings.Join(lines, "\n") != strings.Join(first, "\n") {
			t.Fatalf("%s: cut with seed %d gives other exchanges:\n%s\nwant\n%s", path, seed,
				strings.Join(lines, "\n"), strings.Join(first, "\n"))
		}
	}
	return first
}

// Line formats what the tests check of an exchange.
func Line(x *db.Exchange, reason string) string {
	s := fmt.Sprintf("%s | %s | %s | %s", x.Summary, x.Operation, x.Query, x.Namespace)
	if x.StatusCode != "" || x.ErrorType != "" {
		s += " | error " + x.StatusCode + " " + x.ErrorType
	}
	if x.Rows != 0 {
		s += fmt.Sprintf(" | rows %d", x.Rows)
	}
	if reason != "" {
		s += " | ended " + reason
	}
	return s
}

// Compare fails the test when got and want differ, showing both.
func Compare(t *testing.T, name string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s: got\n\t%s\nwant\n\t%s", name, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// Repeat returns n copies of line.
func Repeat(line string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = line
	}
	return out
}

// Rand returns a generator for Play, nil (whole steps) for seed 0.
func Rand(seed uint64) *rand.Rand {
	if seed == 0 {
		return nil
	}
	return rand.New(rand.NewPCG(seed, 7))
}

// Capped returns steps as a collector that captures the first head and
// the last tail bytes of each read would deliver them.
func Capped(steps []Step, head, tail int) []protocol.Chunk {
	var out []protocol.Chunk
	for i, s := range steps {
		c := protocol.Chunk{Bytes: []byte(s.Bytes), Size: len(s.Bytes), Time: Base.Add(time.Duration(i) * time.Millisecond)}
		if len(c.Bytes) > head {
			c.Tail = c.Bytes[max(head, len(c.Bytes)-tail):]
			c.Bytes = c.Bytes[:head]
		}
		out = append(out, c)
	}
	return out
}

// ReplayCapped plays a capture as the sockets collector captures it (4096
// bytes from the start of each read, 128 from its end) and returns the
// exchanges as Lines. A decoder error fails the test.
func ReplayCapped(t *testing.T, path string, d protocol.Decoder, rec *Recorder) []string {
	t.Helper()
	steps, err := LoadCapture(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range Capped(steps, 4096, 128) {
		if err := d.Feed(steps[i].Side, c); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	lines := make([]string, len(rec.Ended))
	for i, x := range rec.Ended {
		lines[i] = Line(x, rec.Reason[i])
	}
	return lines
}

// NewDecoder makes a decoder of one protocol for a test.
type NewDecoder func(stats *db.Stats, role protocol.Role, h protocol.Handler) protocol.Decoder

// CheckCaptures replays testdata/<name>.capture for each case, in both
// roles (the server's view decodes the same), and compares the exchanges.
func CheckCaptures(t *testing.T, cases map[string][]string, newDecoder NewDecoder) {
	t.Helper()
	for name, want := range cases {
		for _, role := range []protocol.Role{protocol.Client, protocol.Server} {
			got := Replay(t, "testdata/"+name+".capture", func(h protocol.Handler) protocol.Decoder {
				return newDecoder(&db.Stats{}, role, h)
			})
			Compare(t, name, got, want)
		}
	}
}

// CheckCapturesCapped replays every capture in testdata as the sockets
// collector captures it and checks that it gives the exchanges of the
// whole capture, with no loss counted, except for the cases in lossy:
// there edit changes the whole capture's exchanges into the expected ones
// and lost is the number of losses expected.
func CheckCapturesCapped(t *testing.T, newDecoder NewDecoder, lossy map[string]func([]string) []string, lost int64) {
	t.Helper()
	files, err := filepath.Glob("testdata/*.capture")
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures: %v", err)
	}
	for _, f := range files {
		stats := &db.Stats{}
		rec := &Recorder{T: t}
		got := ReplayCapped(t, f, newDecoder(stats, protocol.Client, rec), rec)
		want := Replay(t, f, func(h protocol.Handler) protocol.Decoder {
			return newDecoder(&db.Stats{}, protocol.Client, h)
		})
		wantLost := int64(0)
		if edit, ok := lossy[strings.TrimSuffix(filepath.Base(f), ".capture")]; ok {
			want, wantLost = edit(want), lost
		}
		Compare(t, f, got, want)
		if stats.LostSync.Load() != wantLost || rec.Open() != 0 {
			t.Errorf("%s: lost %d, want %d; open %d", f, stats.LostSync.Load(), wantLost, rec.Open())
		}
	}
}

// Retained returns how many bytes of heap f leaves allocated once it
// returned (after a collection): what a decoder kept of what it was fed.
func Retained(f func()) int64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return int64(after.HeapAlloc) - int64(before.HeapAlloc)
}

// Stream feeds the same chunk to side n times (a large result or pipeline
// read call after call, each copied whole), at time at.
func Stream(t testing.TB, d protocol.Decoder, side protocol.Side, chunk []byte, n int, at time.Time) {
	t.Helper()
	for range n {
		if err := d.Feed(side, protocol.Chunk{Bytes: chunk, Size: len(chunk), Time: at}); err != nil {
			t.Fatal(err)
		}
	}
}
