package openssl

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/events"
)

// checkSink fails the fuzz test on an event no record can describe.
type checkSink struct {
	events.Sink
	t *testing.T
}

func (s checkSink) Data(d events.Data) {
	if len(d.Bytes) > dataCap || len(d.Tail) > tailCap || len(d.Bytes) > d.Size || d.Dir != events.Read && d.Dir != events.Write {
		s.t.Fatalf("bad data event: %d bytes of %d, tail %d, dir %v", len(d.Bytes), d.Size, len(d.Tail), d.Dir)
	}
}
func (checkSink) Bind(events.Bind)               {}
func (checkSink) WriteResult(events.WriteResult) {}
func (checkSink) Close(events.Close)             {}
func (checkSink) Exit(events.Exit)               {}
func (checkSink) Exec(events.Exec)               {}

// FuzzDecode: a record from the OpenSSL ring, whatever its bytes, becomes
// a well-formed event or is counted as malformed.
func FuzzDecode(f *testing.F) {
	var d opensslDataEvent
	d.Hdr.Type, d.Hdr.Pid, d.Dir, d.Size, d.Captured = eventData, 7, 1, 18, 18
	copy(d.Data[:], "GET / HTTP/1.1\r\n\r\n")
	f.Add(encode(f, &d))
	var b opensslBindEvent
	b.Hdr.Type, b.Fd = eventBind, 3
	f.Add(encode(f, &b))
	var w opensslWriteResultEvent
	w.Hdr.Type, w.Requested, w.Accepted = eventWriteResult, 10, 5
	f.Add(encode(f, &w))
	var c opensslCloseEvent
	c.Hdr.Type = eventClose
	f.Add(encode(f, &c))
	var p opensslProcEvent
	for _, typ := range []uint32{eventExec, eventExit, 99} {
		p.Hdr.Type = typ
		f.Add(encode(f, &p))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		col := New(Config{}, checkSink{t: t}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		col.decode(raw)
	})
}

// encode writes a generated mirror as the kernel does.
func encode(tb testing.TB, v any) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, v); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}
