package openssl

import (
	"encoding/binary"
	"unsafe"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/wire"
)

// Event types of bpf/periscope.h.
const (
	eventData        = 1
	eventBind        = 2
	eventClose       = 3
	eventWriteResult = 4
	eventExec        = 16
	eventExit        = 17
)

// Field offsets of the records, taken from the generated mirrors of the C
// structs so that the decoder cannot drift from bpf/periscope.h.
var (
	offType = unsafe.Offsetof(opensslDataEvent{}.Hdr) + unsafe.Offsetof(opensslDataEvent{}.Hdr.Type)
	offTS   = unsafe.Offsetof(opensslDataEvent{}.Hdr) + unsafe.Offsetof(opensslDataEvent{}.Hdr.Ts)
	offPID  = unsafe.Offsetof(opensslDataEvent{}.Hdr) + unsafe.Offsetof(opensslDataEvent{}.Hdr.Pid)
	offTID  = unsafe.Offsetof(opensslDataEvent{}.Hdr) + unsafe.Offsetof(opensslDataEvent{}.Hdr.Tid)
	hdrSize = unsafe.Sizeof(opensslDataEvent{}.Hdr)

	offDataConn     = unsafe.Offsetof(opensslDataEvent{}.Conn)
	offDataDir      = unsafe.Offsetof(opensslDataEvent{}.Dir)
	offDataSize     = unsafe.Offsetof(opensslDataEvent{}.Size)
	offDataCaptured = unsafe.Offsetof(opensslDataEvent{}.Captured)
	offDataTailLen  = unsafe.Offsetof(opensslDataEvent{}.TailLen)
	offDataTail     = unsafe.Offsetof(opensslDataEvent{}.Tail)
	offDataData     = unsafe.Offsetof(opensslDataEvent{}.Data)
	tailCap         = len(opensslDataEvent{}.Tail)
	dataCap         = len(opensslDataEvent{}.Data)

	offBindConn  = unsafe.Offsetof(opensslBindEvent{}.Conn)
	offBindFD    = unsafe.Offsetof(opensslBindEvent{}.Fd)
	offBindTuple = unsafe.Offsetof(opensslBindEvent{}.Tuple)
	bindSize     = unsafe.Sizeof(opensslBindEvent{})

	offResultConn      = unsafe.Offsetof(opensslWriteResultEvent{}.Conn)
	offResultRequested = unsafe.Offsetof(opensslWriteResultEvent{}.Requested)
	offResultAccepted  = unsafe.Offsetof(opensslWriteResultEvent{}.Accepted)
	resultSize         = unsafe.Sizeof(opensslWriteResultEvent{})

	offCloseConn = unsafe.Offsetof(opensslCloseEvent{}.Conn)
	closeSize    = unsafe.Sizeof(opensslCloseEvent{})
)

var ne = binary.NativeEndian

// decode turns one ring record into an event for the sink. Records too short
// for their type are counted as malformed and skipped.
func (c *Collector) decode(raw []byte) {
	if uintptr(len(raw)) < hdrSize {
		c.m.Read.WithLabelValues("malformed").Inc()
		return
	}
	typ := ne.Uint32(raw[offType:])
	pid := ne.Uint32(raw[offPID:])
	ts := ne.Uint64(raw[offTS:])
	at := c.clock.Time(ts)
	switch typ {
	case eventData:
		d, ok := decodeData(raw)
		if !ok {
			c.m.Read.WithLabelValues("malformed").Inc()
			return
		}
		d.Time = at
		c.m.Read.WithLabelValues("data").Inc()
		c.sink.Data(d)
	case eventBind:
		if uintptr(len(raw)) < bindSize {
			c.m.Read.WithLabelValues("malformed").Inc()
			return
		}
		c.m.Read.WithLabelValues("bind").Inc()
		c.sink.Bind(events.Bind{
			Conn:  events.ConnID{PID: pid, Key: ne.Uint64(raw[offBindConn:])},
			Time:  at,
			FD:    int32(ne.Uint32(raw[offBindFD:])),
			Tuple: wire.Tuple(raw[offBindTuple:]),
		})
	case eventWriteResult:
		if uintptr(len(raw)) < resultSize {
			c.m.Read.WithLabelValues("malformed").Inc()
			return
		}
		c.m.Read.WithLabelValues("write_result").Inc()
		c.sink.WriteResult(events.WriteResult{
			Conn:      events.ConnID{PID: pid, Key: ne.Uint64(raw[offResultConn:])},
			Time:      at,
			Requested: int(ne.Uint32(raw[offResultRequested:])),
			Accepted:  int(ne.Uint32(raw[offResultAccepted:])),
		})
	case eventClose:
		if uintptr(len(raw)) < closeSize {
			c.m.Read.WithLabelValues("malformed").Inc()
			return
		}
		c.m.Read.WithLabelValues("close").Inc()
		c.sink.Close(events.Close{Conn: events.ConnID{PID: pid, Key: ne.Uint64(raw[offCloseConn:])}, Time: at})
	case eventExit:
		c.m.Read.WithLabelValues("exit").Inc()
		c.sink.Exit(events.Exit{PID: pid, Time: at})
	case eventExec:
		c.m.Read.WithLabelValues("exec").Inc()
		c.sink.Exec(events.Exec{PID: pid, Time: at, KTime: ts})
	default:
		c.m.Read.WithLabelValues("malformed").Inc()
	}
}

func decodeData(raw []byte) (events.Data, bool) {
	if uintptr(len(raw)) < offDataData {
		return events.Data{}, false
	}
	captured := int(ne.Uint32(raw[offDataCaptured:]))
	tailLen := int(ne.Uint32(raw[offDataTailLen:]))
	size := int(ne.Uint32(raw[offDataSize:]))
	if captured > dataCap || tailLen > tailCap || int(offDataData)+captured > len(raw) || captured > size {
		return events.Data{}, false
	}
	d := events.Data{
		Conn: events.ConnID{PID: ne.Uint32(raw[offPID:]), Key: ne.Uint64(raw[offDataConn:])},
		TID:  ne.Uint32(raw[offTID:]),
		Dir:  events.Direction(ne.Uint32(raw[offDataDir:])),
		Size: size,
		// The ring's memory is reused: copy what the event keeps.
		Bytes: append([]byte(nil), raw[offDataData:int(offDataData)+captured]...),
	}
	if tailLen > 0 {
		d.Tail = append([]byte(nil), raw[offDataTail:int(offDataTail)+tailLen]...)
	}
	if d.Dir != events.Read && d.Dir != events.Write {
		return events.Data{}, false
	}
	return d, true
}
