package gohttp

import (
	"encoding/binary"
	"time"
	"unsafe"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/wire"
)

// Field offsets of the records, from the generated mirrors of the C structs.
var (
	startSize      = unsafe.Sizeof(gohttpRequestStartEvent{})
	offStartID     = unsafe.Offsetof(gohttpRequestStartEvent{}.Id)
	offStartParent = unsafe.Offsetof(gohttpRequestStartEvent{}.Parent)
	offStartG      = unsafe.Offsetof(gohttpRequestStartEvent{}.Goroutine)
	offStartKind   = unsafe.Offsetof(gohttpRequestStartEvent{}.Kind)
	offStartFD     = unsafe.Offsetof(gohttpRequestStartEvent{}.Fd)
	offStartTLS    = unsafe.Offsetof(gohttpRequestStartEvent{}.Tls)
	offStartMajor  = unsafe.Offsetof(gohttpRequestStartEvent{}.ProtoMajor)
	offStartMinor  = unsafe.Offsetof(gohttpRequestStartEvent{}.ProtoMinor)
	offStartTuple  = unsafe.Offsetof(gohttpRequestStartEvent{}.Tuple)
	offStartLookup = unsafe.Offsetof(gohttpRequestStartEvent{}.HeaderLookup)
	offStartTPLen  = unsafe.Offsetof(gohttpRequestStartEvent{}.TraceparentLen)
	offStartTP     = unsafe.Offsetof(gohttpRequestStartEvent{}.Traceparent)
	traceparentCap = len(gohttpRequestStartEvent{}.Traceparent)

	endSize        = unsafe.Sizeof(gohttpRequestEndEvent{})
	offEndID       = unsafe.Offsetof(gohttpRequestEndEvent{}.Id)
	offEndKind     = unsafe.Offsetof(gohttpRequestEndEvent{}.Kind)
	offEndStatus   = unsafe.Offsetof(gohttpRequestEndEvent{}.Status)
	offEndReqSize  = unsafe.Offsetof(gohttpRequestEndEvent{}.RequestSize)
	offEndRespSize = unsafe.Offsetof(gohttpRequestEndEvent{}.ResponseSize)
	offEndError    = unsafe.Offsetof(gohttpRequestEndEvent{}.Error)
	offMethodLen   = unsafe.Offsetof(gohttpRequestEndEvent{}.MethodLen)
	offPathLen     = unsafe.Offsetof(gohttpRequestEndEvent{}.PathLen)
	offHostLen     = unsafe.Offsetof(gohttpRequestEndEvent{}.HostLen)
	offQueryLen    = unsafe.Offsetof(gohttpRequestEndEvent{}.QueryLen)
	offEndMethod   = unsafe.Offsetof(gohttpRequestEndEvent{}.Method)
	offEndPath     = unsafe.Offsetof(gohttpRequestEndEvent{}.Path)
	offEndHost     = unsafe.Offsetof(gohttpRequestEndEvent{}.Host)
	offEndQuery    = unsafe.Offsetof(gohttpRequestEndEvent{}.Query)
	methodCap      = len(gohttpRequestEndEvent{}.Method)
	pathCap        = len(gohttpRequestEndEvent{}.Path)
	hostCap        = len(gohttpRequestEndEvent{}.Host)
	queryCap       = len(gohttpRequestEndEvent{}.Query)
)

var ne = binary.NativeEndian

// Decode hands one ring record to the sink, as the ring reader does
// (replays and benchmarks feed recorded records through it).
func (c *Collector) Decode(raw []byte) { c.decode(raw) }

// decode hands one ring record to the sink: the request records here, the
// process markers through the shared decoder.
func (c *Collector) decode(raw []byte) {
	h, ok := c.recs.Decode(raw)
	if ok {
		return
	}
	at := c.clock.Time(h.TS)
	switch h.Type {
	case wire.EventRequestStart:
		if uintptr(len(raw)) < startSize {
			c.recs.Count("malformed")
			return
		}
		c.recs.Count("request_start")
		c.sink.RequestStart(c.decodeStart(raw, h.PID, at))
	case wire.EventRequestEnd:
		if uintptr(len(raw)) < endSize {
			c.recs.Count("malformed")
			return
		}
		c.recs.Count("request_end")
		c.sink.RequestEnd(c.decodeEnd(raw, h.PID, at))
	default:
		c.recs.Count("malformed")
	}
}

func (c *Collector) decodeStart(raw []byte, pid uint32, at time.Time) events.RequestStart {
	lookup := headerLookup(ne.Uint32(raw[offStartLookup:]))
	if lookup != headerNotSearched && lookup <= headerFault {
		c.byLookup[lookup].Inc()
	}
	var tp string
	if lookup == headerFound {
		l := min(int(ne.Uint16(raw[offStartTPLen:])), traceparentCap)
		tp = string(raw[offStartTP : offStartTP+uintptr(l)])
	}
	return events.RequestStart{
		PID:         pid,
		ID:          ne.Uint64(raw[offStartID:]),
		Parent:      ne.Uint64(raw[offStartParent:]),
		Goroutine:   uint32(ne.Uint64(raw[offStartG:])),
		Kind:        events.RequestKind(ne.Uint32(raw[offStartKind:])),
		Time:        at,
		FD:          int32(ne.Uint32(raw[offStartFD:])),
		TLS:         ne.Uint32(raw[offStartTLS:]) != 0,
		Version:     httpVersion(ne.Uint16(raw[offStartMajor:]), ne.Uint16(raw[offStartMinor:])),
		Tuple:       wire.Tuple(raw[offStartTuple:]),
		TraceParent: tp,
	}
}

// httpVersion writes an HTTP version as network.protocol.version does:
// "1.0", "1.1", "2"; "" when unknown.
func httpVersion(major, minor uint16) string {
	switch {
	case major == 1 && minor <= 1:
		if minor == 0 {
			return "1.0"
		}
		return "1.1"
	case major == 2 && minor == 0:
		return "2"
	}
	return ""
}

// decodeEnd decodes a request end. Methods, paths and hosts repeat: they
// are kept in c.strings; query strings are copied.
func (c *Collector) decodeEnd(raw []byte, pid uint32, at time.Time) events.RequestEnd {
	field := func(off, lenOff uintptr, capacity int) []byte {
		l := min(int(ne.Uint16(raw[lenOff:])), capacity)
		return raw[off : off+uintptr(l)]
	}
	return events.RequestEnd{
		PID:              pid,
		ID:               ne.Uint64(raw[offEndID:]),
		Kind:             events.RequestKind(ne.Uint32(raw[offEndKind:])),
		Time:             at,
		Status:           int(ne.Uint32(raw[offEndStatus:])),
		RequestBodySize:  int64(ne.Uint64(raw[offEndReqSize:])),
		ResponseBodySize: int64(ne.Uint64(raw[offEndRespSize:])),
		Failed:           ne.Uint32(raw[offEndError:]) != 0,
		Method:           c.strings.Bytes(field(offEndMethod, offMethodLen, methodCap)),
		Path:             c.strings.Bytes(field(offEndPath, offPathLen, pathCap)),
		Host:             c.strings.Bytes(field(offEndHost, offHostLen, hostCap)),
		RawQuery:         string(field(offEndQuery, offQueryLen, queryCap)),
	}
}
