package sockets

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/periscope-apm/periscope/discovery"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/wire"
)

type sink struct {
	events.Sink
	data  []events.Data
	binds []events.Bind
	exits []events.Exit
}

func (s *sink) Data(d events.Data) { s.data = append(s.data, d) }
func (s *sink) Bind(b events.Bind) { s.binds = append(s.binds, b) }
func (s *sink) Exit(e events.Exit) { s.exits = append(s.exits, e) }
func (s *sink) Exec(events.Exec)   {}

// record builds a ring record of type typ from process pid: the header,
// then fields.
func record(t *testing.T, typ, pid uint32, fields ...any) []byte {
	var b bytes.Buffer
	for _, f := range append([]any{uint64(1), typ, pid, pid, uint32(0)}, fields...) {
		if err := binary.Write(&b, binary.NativeEndian, f); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// With a selection, the records of a process discovery rejected are
// dropped, those of a selected one pass, those of an undecided one wait for
// the decision (ExecDecided for an exec'd program), and the exit of any
// process passes in order.
func TestDecodeSelection(t *testing.T) {
	s := &sink{}
	c := New(Config{PerProcess: true}, s, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	c.ProcessUpdated(discovery.Process{PID: 10, Selected: true}, nil)
	c.hold.decide(20, false, 0) // as ProcessUpdated, for a process still running
	tuple := make([]byte, wire.TupleSize)
	bind := func(pid uint32) []byte {
		return record(t, wire.EventBind, pid, uint64(1<<61|7), int32(5), uint32(1), tuple)
	}
	data := func(pid uint32) []byte {
		return record(t, wire.EventData, pid, uint64(1<<61|7), uint32(events.Read), uint32(4), uint32(4), uint32(0),
			int32(5), uint32(0), uint32(0), uint32(0), make([]byte, 128), []byte("GET "))
	}
	// Process 30 exec'd a program (the ring's marker at 1; discovery's
	// record of the exec, stamped before it, at 0).
	c.decode(record(t, wire.EventExec, 30, uint32(0), int32(-1)))
	for _, pid := range []uint32{10, 20, 30} { // selected, rejected, undecided
		c.decode(bind(pid))
		c.decode(data(pid))
		c.decode(record(t, wire.EventExit, pid, uint32(0), int32(-1)))
	}
	if len(s.binds) != 1 || len(s.data) != 1 || len(s.exits) != 2 {
		t.Fatalf("passed %d binds, %d data, %d exits; want 1, 1, 2", len(s.binds), len(s.data), len(s.exits))
	}
	c.ExecDecided(discovery.Exec{PID: 30, Selected: true})
	if len(s.binds) != 2 || len(s.data) != 2 || len(s.exits) != 3 || s.exits[2].PID != 30 {
		t.Fatalf("after the decision: %d binds, %d data, %d exits; want 2, 2, 3 (the exit last)", len(s.binds), len(s.data), len(s.exits))
	}
	for _, b := range s.binds {
		if !b.Plaintext || b.Conn.PID == 20 {
			t.Errorf("bind %+v", b)
		}
	}
	if got := testutil.ToFloat64(c.m.Read.WithLabelValues("unselected")); got != 2 {
		t.Errorf("unselected records counted %v, want 2", got)
	}
}

func TestKernelRelease(t *testing.T) {
	for _, tc := range []struct {
		rel          string
		major, minor int
		ok           bool
	}{
		{"6.18.0-1-amd64", 6, 18, true},
		{"5.12.0", 5, 12, true},
		{"5.4", 5, 4, true},
		{"5.11-rc1", 5, 11, true},
		{"6", 0, 0, false},
		{"", 0, 0, false},
		{"x.y", 0, 0, false},
	} {
		major, minor, ok := kernelRelease(tc.rel)
		if major != tc.major || minor != tc.minor || ok != tc.ok {
			t.Errorf("kernelRelease(%q) = %d, %d, %v; want %d, %d, %v", tc.rel, major, minor, ok, tc.major, tc.minor, tc.ok)
		}
	}
}

func TestShareCallSlots(t *testing.T) {
	for _, tc := range []struct {
		n    int
		mask uint32
		ok   bool
	}{
		{0, 16383, true}, {1, 0, true}, {4, 3, true}, {16384, 16383, true},
		{3, 0, false}, {-2, 0, false}, {32768, 0, false},
	} {
		spec, err := loadSockets()
		if err != nil {
			t.Fatal(err)
		}
		err = shareCallSlots(spec, tc.n)
		if (err == nil) != tc.ok {
			t.Errorf("shareCallSlots(%d): %v", tc.n, err)
			continue
		}
		var mask uint32
		if err := spec.Variables["call_slot_mask"].Get(&mask); err != nil {
			t.Fatal(err)
		}
		if tc.ok && mask != tc.mask {
			t.Errorf("shareCallSlots(%d): mask %d, want %d", tc.n, mask, tc.mask)
		}
	}
}
