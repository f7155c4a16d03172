package wire

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/periscope-apm/periscope/events"
)

// FuzzRecords: a record from a collector's ring, whatever its bytes, is
// decoded into a well-formed event or refused, never a panic.
func FuzzRecords(f *testing.F) {
	var d wireDataEvent
	d.Hdr.Type, d.Hdr.Pid, d.Dir, d.Size, d.Captured = EventData, 7, 1, 18, 18
	copy(d.Data[:], "GET / HTTP/1.1\r\n\r\n")
	var b wireBindEvent
	b.Hdr.Type, b.Fd = EventBind, 3
	var w wireWriteResultEvent
	w.Hdr.Type, w.Requested, w.Accepted = EventWriteResult, 10, 5
	var c wireCloseEvent
	c.Hdr.Type = EventClose
	for _, v := range []any{&d, &b, &w, &c} {
		var buf bytes.Buffer
		if err := binary.Write(&buf, binary.NativeEndian, v); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, _ = ReadHeader(raw)
		if d, ok := Data(raw); ok {
			if len(d.Bytes) > DataCap || len(d.Tail) > tailCap || len(d.Bytes) > d.Size || d.Dir != events.Read && d.Dir != events.Write {
				t.Fatalf("bad data event: %d bytes of %d, tail %d, dir %v", len(d.Bytes), d.Size, len(d.Tail), d.Dir)
			}
		}
		_, _ = Bind(raw)
		_, _ = WriteResult(raw)
		_, _ = Close(raw)
	})
}
