package collectors

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/internal/wire"
)

type sink struct {
	events.Sink // unused methods panic
	data        []events.Data
	closes      []events.Close
	exits       []events.Exit
}

func (s *sink) Data(d events.Data)   { s.data = append(s.data, d) }
func (s *sink) Close(c events.Close) { s.closes = append(s.closes, c) }
func (s *sink) Exit(e events.Exit)   { s.exits = append(s.exits, e) }

// record builds a ring record: a header then the fields after it.
func record(typ, pid uint32, fields ...any) []byte {
	var b bytes.Buffer
	ne := binary.NativeEndian
	binary.Write(&b, ne, uint64(1000)) // ts
	binary.Write(&b, ne, [4]uint32{typ, pid, pid + 1, 0})
	for _, f := range fields {
		binary.Write(&b, ne, f)
	}
	return b.Bytes()
}

func TestRecords(t *testing.T) {
	s := &sink{}
	read := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "read"}, []string{"type"})
	r := Records{Sink: s, Clock: ktime.NewClock(), Read: read}

	// struct data_event: conn, dir, size, captured, tail_len, fd, goroutine, seq, flags, tail[128], data[captured]
	data := record(wire.EventData, 7, uint64(0xabc), uint32(events.Write), uint32(10), uint32(4), uint32(0), int32(3), uint32(0),
		uint32(0), uint32(0), [128]byte{}, []byte("GET "))
	if _, ok := r.Decode(data); !ok {
		t.Fatal("data record not handled")
	}
	// captured > size: malformed, handled, not passed on.
	bad := record(wire.EventData, 7, uint64(0xabc), uint32(events.Write), uint32(2), uint32(4), uint32(0), int32(3), uint32(0),
		uint32(0), uint32(0), [128]byte{}, []byte("GET "))
	r.Decode(bad)
	r.Decode(record(wire.EventClose, 7, uint64(0xabc), int32(3), uint32(0)))
	r.Decode(record(wire.EventExit, 7, uint32(0), int32(-1)))
	if h, ok := r.Decode(record(wire.EventRequestStart, 7)); ok || h.Type != wire.EventRequestStart || h.PID != 7 {
		t.Errorf("a record of another type: handled %v, header %+v", ok, h)
	}
	r.Decode([]byte{1, 2})

	if len(s.data) != 1 || string(s.data[0].Bytes) != "GET " || s.data[0].Size != 10 || s.data[0].Conn != (events.ConnID{PID: 7, Key: 0xabc}) || s.data[0].TID != 8 {
		t.Errorf("data %+v", s.data)
	}
	if len(s.closes) != 1 || s.closes[0].Conn.Key != 0xabc || len(s.exits) != 1 || s.exits[0].PID != 7 {
		t.Errorf("closes %+v exits %+v", s.closes, s.exits)
	}
	for kind, want := range map[string]float64{"data": 1, "malformed": 2, "close": 1, "exit": 1} {
		if got := testutil.ToFloat64(read.WithLabelValues(kind)); got != want {
			t.Errorf("read{type=%s} = %v, want %v", kind, got, want)
		}
	}
}
