package gohttp

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/wire"
)

// record is a sink that keeps what it gets.
type record struct {
	starts []events.RequestStart
	ends   []events.RequestEnd
	exits  []events.Exit
	execs  []events.Exec
}

func (r *record) Data(events.Data)               {}
func (r *record) Bind(events.Bind)               {}
func (r *record) WriteResult(events.WriteResult) {}
func (r *record) Close(events.Close)             {}
func (r *record) Retransmit(events.Retransmit)   {}
func (r *record) Exit(e events.Exit)             { r.exits = append(r.exits, e) }
func (r *record) Exec(e events.Exec)             { r.execs = append(r.execs, e) }
func (r *record) RequestStart(s events.RequestStart) {
	r.starts = append(r.starts, s)
}
func (r *record) RequestEnd(e events.RequestEnd) { r.ends = append(r.ends, e) }

func TestTupleLayout(t *testing.T) {
	if got := unsafe.Sizeof(gohttpRequestStartEvent{}.Tuple); got != wire.TupleSize {
		t.Fatalf("sizeof(struct tuple) = %d, internal/wire decodes %d", got, wire.TupleSize)
	}
}

// raw encodes a generated mirror as the kernel would.
func raw(t testing.TB, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestDecode(t *testing.T) {
	sink := &record{}
	c := New(Config{}, sink, slog.New(slog.DiscardHandler), prometheus.NewRegistry())

	var start gohttpRequestStartEvent
	start.Hdr.Type, start.Hdr.Pid = wire.EventRequestStart, 42
	start.Id, start.Parent, start.Kind, start.Fd, start.Tls = 7, 3, uint32(events.RequestClient), 9, 1
	start.ProtoMajor, start.ProtoMinor = 2, 0
	start.Tuple.Family, start.Tuple.LocalPort, start.Tuple.RemotePort = 2, 40000, 443
	copy(start.Tuple.LocalAddr[:], []byte{127, 0, 0, 1})
	copy(start.Tuple.RemoteAddr[:], []byte{10, 0, 0, 9})
	c.decode(raw(t, &start))

	var end gohttpRequestEndEvent
	end.Hdr.Type, end.Hdr.Pid = wire.EventRequestEnd, 42
	end.Id, end.Kind, end.Status = 7, uint32(events.RequestClient), 503
	end.RequestSize, end.ResponseSize = -1, 12
	putString(end.Method[:], "POST")
	end.MethodLen = 4
	long := string(bytes.Repeat([]byte("a"), len(end.Path)))
	putString(end.Path[:], long)
	end.PathLen = uint16(len(end.Path) + 50) // the path was cut
	putString(end.Host[:], "api:443")
	end.HostLen = 7
	c.decode(raw(t, &end))

	var exit gohttpProcEvent
	exit.Hdr.Type, exit.Hdr.Pid = wire.EventExit, 42
	c.decode(raw(t, &exit))
	var exec gohttpProcEvent
	exec.Hdr.Type, exec.Hdr.Pid, exec.Hdr.Ts = wire.EventExec, 43, 123456789
	c.decode(raw(t, &exec))
	c.decode([]byte{1, 2, 3}) // too short: counted, not decoded

	if len(sink.starts) != 1 || len(sink.ends) != 1 || len(sink.exits) != 1 || len(sink.execs) != 1 {
		t.Fatalf("decoded %d starts, %d ends, %d exits, %d execs", len(sink.starts), len(sink.ends), len(sink.exits), len(sink.execs))
	}
	if x := sink.execs[0]; x.PID != 43 || x.KTime != 123456789 {
		t.Errorf("exec %+v", x)
	}
	s := sink.starts[0]
	wantTuple := events.Tuple{Local: netip.MustParseAddrPort("127.0.0.1:40000"), Remote: netip.MustParseAddrPort("10.0.0.9:443")}
	if s.PID != 42 || s.ID != 7 || s.Parent != 3 || s.Kind != events.RequestClient || s.FD != 9 || !s.TLS || s.Tuple != wantTuple || s.Version != "2" {
		t.Errorf("start %+v", s)
	}
	e := sink.ends[0]
	if e.ID != 7 || e.Method != "POST" || e.Host != "api:443" || e.Status != 503 || e.RequestBodySize != -1 ||
		e.ResponseBodySize != 12 || e.Path != long || e.Failed {
		t.Errorf("end %+v", e)
	}
	if e.Time.IsZero() || time.Since(e.Time) > 100*365*24*time.Hour {
		t.Errorf("time %v", e.Time)
	}
}

// putString copies s into a C char array mirror.
func putString(dst []int8, s string) {
	for i := 0; i < len(s) && i < len(dst); i++ {
		dst[i] = int8(s[i])
	}
}

// TestDecodeTraceParent: the header value is passed on only when the probe
// found it, cut to what the record holds; every search is counted by result.
func TestDecodeTraceParent(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	long := tp + "-" + string(bytes.Repeat([]byte("x"), 40))
	tests := []struct {
		name   string
		lookup headerLookup
		value  string
		len    int // traceparent_len as the kernel reports it
		want   string
	}{
		{"found", headerFound, tp, len(tp), tp},
		{"found longer than kept", headerFound, long, len(long), long[:traceparentCap]},
		{"found without value", headerFound, "", 0, ""},
		{"absent", headerAbsent, "", 0, ""},
		{"bound", headerBound, "", 0, ""},
		{"fault leaves stale bytes unused", headerFault, tp, len(tp), ""},
		{"not searched", headerNotSearched, "", 0, ""},
	}
	sink := &record{}
	reg := prometheus.NewRegistry()
	c := New(Config{}, sink, slog.New(slog.DiscardHandler), reg)
	for i, tc := range tests {
		var start gohttpRequestStartEvent
		start.Hdr.Type, start.Hdr.Pid = wire.EventRequestStart, 42
		start.Id, start.Kind, start.Fd = uint64(i+1), uint32(events.RequestServer), -1
		start.HeaderLookup = uint32(tc.lookup)
		putString(start.Traceparent[:], tc.value)
		start.TraceparentLen = uint16(tc.len)
		c.decode(raw(t, &start))
		if got := sink.starts[len(sink.starts)-1].TraceParent; got != tc.want {
			t.Errorf("%s: TraceParent %q, want %q", tc.name, got, tc.want)
		}
	}
	for result, want := range map[string]float64{"found": 3, "absent": 1, "bound": 1, "fault": 1, "not_searched": 0} {
		if got := testutil.ToFloat64(c.lookups.WithLabelValues(result)); got != want {
			t.Errorf("lookups{result=%q} = %v, want %v", result, got, want)
		}
	}
}

func TestHTTPVersion(t *testing.T) {
	for _, tc := range []struct {
		major, minor uint16
		want         string
	}{
		{1, 0, "1.0"}, {1, 1, "1.1"}, {2, 0, "2"}, {0, 0, ""}, {1, 2, ""}, {3, 0, ""}, {2, 1, ""},
	} {
		if got := httpVersion(tc.major, tc.minor); got != tc.want {
			t.Errorf("httpVersion(%d, %d) = %q, want %q", tc.major, tc.minor, got, tc.want)
		}
	}
}
