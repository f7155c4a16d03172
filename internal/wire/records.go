package wire

import (
	"encoding/binary"
	"unsafe"

	"github.com/periscope-apm/periscope/events"
)

// Record types (enum event_type of bpf/periscope.h), from the generated
// mirror of the enum.
const (
	EventData         = uint32(wireEventTypeEVENT_DATA)
	EventBind         = uint32(wireEventTypeEVENT_BIND)
	EventClose        = uint32(wireEventTypeEVENT_CLOSE)
	EventWriteResult  = uint32(wireEventTypeEVENT_WRITE_RESULT)
	EventRequestStart = uint32(wireEventTypeEVENT_REQUEST_START)
	EventRequestEnd   = uint32(wireEventTypeEVENT_REQUEST_END)
	EventExec         = uint32(wireEventTypeEVENT_EXEC)
	EventExit         = uint32(wireEventTypeEVENT_EXIT)
	EventFork         = uint32(wireEventTypeEVENT_FORK)
	EventMmap         = uint32(wireEventTypeEVENT_MMAP)
	EventRetransmit   = uint32(wireEventTypeEVENT_RETRANSMIT)
)

// Per-CPU counters (enum counter): indexes into each object's `counters`
// map.
const (
	CounterRingbufDrops = uint32(wireCounterCOUNTER_RINGBUF_DROPS)
	CounterCallsLost    = uint32(wireCounterCOUNTER_CALLS_LOST)
	// CounterUnparsedCalls counts calls on TCP connections whose
	// protocol no parser handles (the sockets collector).
	CounterUnparsedCalls = uint32(wireCounterCOUNTER_UNPARSED_CALLS)
	// CounterUnclassifiedConns counts connections the classifier gave
	// up on.
	CounterUnclassifiedConns = uint32(wireCounterCOUNTER_UNCLASSIFIED_CONNS)
	// CounterTruncatedCalls counts calls of a protocol copied in chunks
	// that were larger than the chunks carry.
	CounterTruncatedCalls = uint32(wireCounterCOUNTER_TRUNCATED_CALLS)
	CounterMax            = uint32(wireCounterCOUNTER_MAX)
)

// Field offsets of the records, from their generated mirrors so that the
// decoders cannot drift from bpf/periscope.h.
var (
	offType = unsafe.Offsetof(wireEventHeader{}.Type)
	offTS   = unsafe.Offsetof(wireEventHeader{}.Ts)
	offPID  = unsafe.Offsetof(wireEventHeader{}.Pid)
	offTID  = unsafe.Offsetof(wireEventHeader{}.Tid)
	// HeaderSize is sizeof(struct event_header).
	HeaderSize = int(unsafe.Sizeof(wireEventHeader{}))

	offDataConn      = unsafe.Offsetof(wireDataEvent{}.Conn)
	offDataDir       = unsafe.Offsetof(wireDataEvent{}.Dir)
	offDataSize      = unsafe.Offsetof(wireDataEvent{}.Size)
	offDataCaptured  = unsafe.Offsetof(wireDataEvent{}.Captured)
	offDataTailLen   = unsafe.Offsetof(wireDataEvent{}.TailLen)
	offDataGoroutine = unsafe.Offsetof(wireDataEvent{}.Goroutine)
	offDataSeq       = unsafe.Offsetof(wireDataEvent{}.Seq)
	offDataFlags     = unsafe.Offsetof(wireDataEvent{}.Flags)
	offDataTail      = unsafe.Offsetof(wireDataEvent{}.Tail)
	offDataData      = unsafe.Offsetof(wireDataEvent{}.Data)
	tailCap          = len(wireDataEvent{}.Tail)
	// DataCap is DATA_CAP: the most bytes a data record carries.
	DataCap = len(wireDataEvent{}.Data)

	offBindConn  = unsafe.Offsetof(wireBindEvent{}.Conn)
	offBindFD    = unsafe.Offsetof(wireBindEvent{}.Fd)
	offBindFlags = unsafe.Offsetof(wireBindEvent{}.Flags)
	offBindTuple = unsafe.Offsetof(wireBindEvent{}.Tuple)
	bindSize     = unsafe.Sizeof(wireBindEvent{})

	offResultConn      = unsafe.Offsetof(wireWriteResultEvent{}.Conn)
	offResultRequested = unsafe.Offsetof(wireWriteResultEvent{}.Requested)
	offResultAccepted  = unsafe.Offsetof(wireWriteResultEvent{}.Accepted)
	resultSize         = unsafe.Sizeof(wireWriteResultEvent{})

	offCloseConn  = unsafe.Offsetof(wireCloseEvent{}.Conn)
	offCloseFlags = unsafe.Offsetof(wireCloseEvent{}.Flags)
	closeSize     = unsafe.Sizeof(wireCloseEvent{})

	// ProcEventSize is sizeof(struct proc_event).
	ProcEventSize = int(unsafe.Sizeof(wireProcEvent{}))
)

var ne = binary.NativeEndian

// Header is a record's struct event_header.
type Header struct {
	Type uint32
	TS   uint64 // CLOCK_MONOTONIC nanoseconds
	PID  uint32
	TID  uint32
}

// ReadHeader decodes the header every record starts with; false when raw
// is too short to hold one.
func ReadHeader(raw []byte) (Header, bool) {
	if len(raw) < HeaderSize {
		return Header{}, false
	}
	return Header{
		Type: ne.Uint32(raw[offType:]),
		TS:   ne.Uint64(raw[offTS:]),
		PID:  ne.Uint32(raw[offPID:]),
		TID:  ne.Uint32(raw[offTID:]),
	}, true
}

// Data decodes a struct data_event (its Time left zero). Bytes and Tail
// alias raw, not copied: they are valid only until the ring reuses the
// record, so the sink parses them in place and keeps copies of what it
// needs (events.Sink).
func Data(raw []byte) (events.Data, bool) {
	if uintptr(len(raw)) < offDataData {
		return events.Data{}, false
	}
	captured := int(ne.Uint32(raw[offDataCaptured:]))
	tailLen := int(ne.Uint32(raw[offDataTailLen:]))
	size := int(ne.Uint32(raw[offDataSize:]))
	if captured > DataCap || tailLen > tailCap || int(offDataData)+captured > len(raw) || captured > size {
		return events.Data{}, false
	}
	d := events.Data{
		Conn:      events.ConnID{PID: ne.Uint32(raw[offPID:]), Key: ne.Uint64(raw[offDataConn:])},
		TID:       ne.Uint32(raw[offTID:]),
		Dir:       events.Direction(ne.Uint32(raw[offDataDir:])),
		Size:      size,
		Bytes:     raw[offDataData : int(offDataData)+captured : int(offDataData)+captured],
		Goroutine: ne.Uint32(raw[offDataGoroutine:]),
		Seq:       ne.Uint32(raw[offDataSeq:]),
		HasSeq:    ne.Uint32(raw[offDataFlags:])&uint32(wireDataFlagDATA_SEQ) != 0,
	}
	if tailLen > 0 {
		d.Tail = raw[offDataTail : int(offDataTail)+tailLen : int(offDataTail)+tailLen]
	}
	if d.Dir != events.Read && d.Dir != events.Write {
		return events.Data{}, false
	}
	return d, true
}

// Bind decodes a struct bind_event (its Time left zero).
func Bind(raw []byte) (events.Bind, bool) {
	if uintptr(len(raw)) < bindSize {
		return events.Bind{}, false
	}
	flags := ne.Uint32(raw[offBindFlags:])
	return events.Bind{
		Conn:        events.ConnID{PID: ne.Uint32(raw[offPID:]), Key: ne.Uint64(raw[offBindConn:])},
		FD:          int32(ne.Uint32(raw[offBindFD:])),
		Tuple:       Tuple(raw[offBindTuple:]),
		Plaintext:   flags&uint32(wireBindFlagBIND_PLAINTEXT) != 0,
		StreamStart: flags&uint32(wireBindFlagBIND_STREAM_START) != 0,
		StartKnown:  flags&uint32(wireBindFlagBIND_START_KNOWN) != 0,
	}, true
}

// WriteResult decodes a struct write_result_event (its Time left zero).
func WriteResult(raw []byte) (events.WriteResult, bool) {
	if uintptr(len(raw)) < resultSize {
		return events.WriteResult{}, false
	}
	return events.WriteResult{
		Conn:      events.ConnID{PID: ne.Uint32(raw[offPID:]), Key: ne.Uint64(raw[offResultConn:])},
		Requested: int(ne.Uint32(raw[offResultRequested:])),
		Accepted:  int(ne.Uint32(raw[offResultAccepted:])),
	}, true
}

// Close decodes a struct close_event (its Time left zero).
func Close(raw []byte) (events.Close, bool) {
	if uintptr(len(raw)) < closeSize {
		return events.Close{}, false
	}
	return events.Close{
		Conn:       events.ConnID{PID: ne.Uint32(raw[offPID:]), Key: ne.Uint64(raw[offCloseConn:])},
		Superseded: ne.Uint32(raw[offCloseFlags:])&uint32(wireCloseFlagCLOSE_SUPERSEDED) != 0,
	}, true
}
