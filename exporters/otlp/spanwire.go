package otlp

import (
	"encoding/binary"
	"math"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/periscope-apm/periscope/span"
)

// A span is written once, straight from the agent's record into protobuf
// bytes (no tracepb structs per span, no second pass to size them): the
// fields proto.Marshal would write for the equivalent tracepb.Span, in
// field-number order, byte for byte (spanwire_test.go compares them).
// Nested messages whose size is not known before they are written (the
// span, its events) get a length reserved in front and moved into place
// after.

// Field numbers and wire types.
const (
	tagSSSpans = 2<<3 | 2 // ScopeSpans.spans

	tagSpanTraceID = 1<<3 | 2
	tagSpanSpanID  = 2<<3 | 2
	tagSpanParent  = 4<<3 | 2
	tagSpanName    = 5<<3 | 2
	tagSpanKind    = 6<<3 | 0
	tagSpanStart   = 7<<3 | 1
	tagSpanEnd     = 8<<3 | 1
	tagSpanAttrs   = 9<<3 | 2
	tagSpanEvents  = 11<<3 | 2
	tagSpanStatus  = 15<<3 | 2

	tagEventTime  = 1<<3 | 1
	tagEventName  = 2<<3 | 2
	tagEventAttrs = 3<<3 | 2

	tagStatusMessage = 2<<3 | 2
	tagStatusCode    = 3<<3 | 0

	tagKVKey   = 1<<3 | 2
	tagKVValue = 2<<3 | 2

	tagAnyString = 1<<3 | 2
	tagAnyBool   = 2<<3 | 0
	tagAnyInt    = 3<<3 | 0
	tagAnyDouble = 4<<3 | 1
	tagAnyArray  = 5<<3 | 2

	tagArrayValues = 1<<3 | 2
)

// spanLenReserve is the length prefix reserved in front of a span: two
// bytes hold lengths up to 16383, most spans.
const spanLenReserve = 2

// appendSpan appends s as one ScopeSpans.spans field.
func appendSpan(b []byte, s *span.Span) []byte {
	b = append(b, tagSSSpans)
	at := len(b)
	b = append(b, make([]byte, spanLenReserve)...)
	b = appendSpanFields(b, s)
	return fixLen(b, at, spanLenReserve)
}

// fixLen writes the length of b[at+reserved:] as a varint at b[at:],
// moving the bytes after it when the varint is not reserved bytes long.
func fixLen(b []byte, at, reserved int) []byte {
	n := len(b) - at - reserved
	need := protowire.SizeVarint(uint64(n))
	if need != reserved {
		body := at + reserved
		if need > reserved {
			b = append(b, make([]byte, need-reserved)...)
		}
		copy(b[at+need:], b[body:body+n])
		b = b[:at+need+n]
	}
	protowire.AppendVarint(b[at:at], uint64(n))
	return b
}

func appendSpanFields(b []byte, s *span.Span) []byte {
	b = append(b, tagSpanTraceID, 16)
	b = append(b, s.TraceID[:]...)
	b = append(b, tagSpanSpanID, 8)
	b = append(b, s.SpanID[:]...)
	flags := flagsLocal
	if s.ParentSpanID.IsValid() {
		b = append(b, tagSpanParent, 8)
		b = append(b, s.ParentSpanID[:]...)
		if s.RemoteParent {
			flags = flagsRemote
		}
	}
	b = appendStr(b, tagSpanName, s.Name)
	b = appendUint(b, tagSpanKind, uint64(spanKind(s.Kind)))
	b = appendFixed64(b, tagSpanStart, unixNano(s.Start))
	b = appendFixed64(b, tagSpanEnd, unixNano(s.End))
	b = appendKVs(b, tagSpanAttrs, s.Attributes)
	for i := range s.Events {
		b = appendEvent(b, &s.Events[i])
	}
	b = appendStatus(b, s)
	// Field 16: its tag takes two bytes.
	b = protowire.AppendTag(b, 16, protowire.Fixed32Type)
	return binary.LittleEndian.AppendUint32(b, flags)
}

func appendEvent(b []byte, ev *span.Event) []byte {
	b = append(b, tagSpanEvents)
	at := len(b)
	b = append(b, 0)
	b = appendFixed64(b, tagEventTime, unixNano(ev.Time))
	b = appendStr(b, tagEventName, ev.Name)
	b = appendKVs(b, tagEventAttrs, ev.Attributes)
	return fixLen(b, at, 1)
}

// appendStatus writes the status; only an error status carries a
// description. The status is always present, empty when unset.
func appendStatus(b []byte, s *span.Span) []byte {
	var code uint64
	msg := ""
	switch s.Status {
	case span.OK:
		code = 1 // STATUS_CODE_OK
	case span.Error:
		code, msg = 2, s.StatusMsg // STATUS_CODE_ERROR
	}
	n := sizeStr(msg)
	if code != 0 {
		n += 2
	}
	b = appendTagLen(b, tagSpanStatus, n)
	b = appendStr(b, tagStatusMessage, msg)
	return appendUint(b, tagStatusCode, code)
}

// shortKV is the most bytes of key and string value (together) whose
// KeyValue is written with one-byte lengths: its whole length, 6 + those
// bytes, stays under 128.
const shortKV = 120

func appendKVs(b []byte, tag byte, kvs []attribute.KeyValue) []byte {
	for i := range kvs {
		kv := &kvs[i]
		key := string(kv.Key)
		// One look at the value's type for the common ones; most of
		// their KeyValues are short, every length one byte: written
		// without sizing.
		switch kv.Value.Type() {
		case attribute.STRING:
			s := kv.Value.AsString()
			if key != "" && len(key)+len(s) <= shortKV { // an empty key is not written
				b = append(b, tag, byte(6+len(key)+len(s)), tagKVKey, byte(len(key)))
				b = append(b, key...)
				b = append(b, tagKVValue, byte(2+len(s)), tagAnyString, byte(len(s)))
				b = append(b, s...)
				continue
			}
			vn := sizeMsg(len(s))
			b = appendKeyValueHead(b, tag, key, vn)
			b = append(appendTagLen(b, tagAnyString, len(s)), s...)
		case attribute.INT64:
			x := uint64(kv.Value.AsInt64())
			if key != "" && len(key) <= shortKV-10 { // a varint takes at most 10 bytes
				n := protowire.SizeVarint(x)
				b = append(b, tag, byte(5+len(key)+n), tagKVKey, byte(len(key)))
				b = append(b, key...)
				b = protowire.AppendVarint(append(b, tagKVValue, byte(1+n), tagAnyInt), x)
				continue
			}
			b = appendKeyValueHead(b, tag, key, 1+protowire.SizeVarint(x))
			b = protowire.AppendVarint(append(b, tagAnyInt), x)
		default:
			b = appendKeyValueHead(b, tag, key, sizeValue(kv.Value))
			b = appendValue(b, kv.Value)
		}
	}
	return b
}

// appendKeyValueHead starts a KeyValue of key and a value of vn bytes:
// its tag and length, its key, and its value's tag and length.
func appendKeyValueHead(b []byte, tag byte, key string, vn int) []byte {
	b = appendTagLen(b, tag, sizeStr(key)+sizeMsg(vn))
	b = appendStr(b, tagKVKey, key)
	return appendTagLen(b, tagKVValue, vn)
}

// sizeValue is the size of v as an AnyValue: a oneof member is written
// even when zero.
func sizeValue(v attribute.Value) int {
	switch v.Type() {
	case attribute.STRING:
		return sizeMsg(len(v.AsString()))
	case attribute.INT64:
		return 1 + protowire.SizeVarint(uint64(v.AsInt64()))
	case attribute.BOOL:
		return 2
	case attribute.FLOAT64:
		return 9
	case attribute.BOOLSLICE:
		return sizeMsg(sizeArray(v.AsBoolSlice(), attribute.BoolValue))
	case attribute.INT64SLICE:
		return sizeMsg(sizeArray(v.AsInt64Slice(), attribute.Int64Value))
	case attribute.FLOAT64SLICE:
		return sizeMsg(sizeArray(v.AsFloat64Slice(), attribute.Float64Value))
	case attribute.STRINGSLICE:
		return sizeMsg(sizeArray(v.AsStringSlice(), attribute.StringValue))
	}
	return sizeMsg(len(invalidValue))
}

// invalidValue stands for a value of no known type.
const invalidValue = "INVALID"

func sizeArray[T any](vs []T, value func(T) attribute.Value) int {
	n := 0
	for _, v := range vs {
		n += sizeMsg(sizeValue(value(v)))
	}
	return n
}

func appendValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.STRING:
		s := v.AsString()
		return append(appendTagLen(b, tagAnyString, len(s)), s...)
	case attribute.INT64:
		return protowire.AppendVarint(append(b, tagAnyInt), uint64(v.AsInt64()))
	case attribute.BOOL:
		var x byte
		if v.AsBool() {
			x = 1
		}
		return append(b, tagAnyBool, x)
	case attribute.FLOAT64:
		return binary.LittleEndian.AppendUint64(append(b, tagAnyDouble), math.Float64bits(v.AsFloat64()))
	case attribute.BOOLSLICE:
		return appendArray(b, v.AsBoolSlice(), attribute.BoolValue)
	case attribute.INT64SLICE:
		return appendArray(b, v.AsInt64Slice(), attribute.Int64Value)
	case attribute.FLOAT64SLICE:
		return appendArray(b, v.AsFloat64Slice(), attribute.Float64Value)
	case attribute.STRINGSLICE:
		return appendArray(b, v.AsStringSlice(), attribute.StringValue)
	}
	return append(appendTagLen(b, tagAnyString, len(invalidValue)), invalidValue...)
}

func appendArray[T any](b []byte, vs []T, value func(T) attribute.Value) []byte {
	b = appendTagLen(b, tagAnyArray, sizeArray(vs, value))
	for _, v := range vs {
		ev := value(v)
		b = appendTagLen(b, tagArrayValues, sizeValue(ev))
		b = appendValue(b, ev)
	}
	return b
}

// sizeMsg is a nested message's size with its one-byte tag and length.
func sizeMsg(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

func sizeStr(s string) int {
	if s == "" {
		return 0
	}
	return sizeMsg(len(s))
}

func appendTagLen(b []byte, tag byte, n int) []byte {
	return protowire.AppendVarint(append(b, tag), uint64(n))
}

func appendStr(b []byte, tag byte, s string) []byte {
	if s == "" {
		return b
	}
	return append(appendTagLen(b, tag, len(s)), s...)
}

func appendUint(b []byte, tag byte, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(append(b, tag), v)
}

func appendFixed64(b []byte, tag byte, v uint64) []byte {
	if v == 0 {
		return b
	}
	return binary.LittleEndian.AppendUint64(append(b, tag), v)
}
