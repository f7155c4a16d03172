// Package grpc gives gRPC calls carried by HTTP/2 streams their
// OpenTelemetry RPC semantics (semantic conventions 1.45): span name
// rpc.method ("package.Service/Method"), rpc.system.name "grpc",
// rpc.response.status_code as the status name from the trailers, error
// status per the server and client tables, and the messages each way,
// counted from gRPC's length-prefixed framing of the DATA frames.
//
// grpc-message is never read into a span: it can carry application data.
package grpc

import (
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/periscope-apm/periscope/correlator/httpspan"
	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/span"
)

// System is rpc.system.name for gRPC.
const System = "grpc"

// Other is rpc.method for a method that is not known.
const Other = "_OTHER"

// Attribute keys beyond the semantic conventions.
const (
	AttrRequestMessages  = "periscope.rpc.request.message_count"
	AttrResponseMessages = "periscope.rpc.response.message_count"
)

// IsGRPC tells whether a content-type names gRPC.
func IsGRPC(contentType string) bool {
	return contentType == "application/grpc" || strings.HasPrefix(contentType, "application/grpc+") ||
		strings.HasPrefix(contentType, "application/grpc;")
}

// Call is what an HTTP/2 stream says about one gRPC call.
type Call struct {
	// Path is the request's :path ("/package.Service/Method"), "" when
	// it was not decoded.
	Path string
	// Status is grpc-status as received (decimal), "" when no status
	// came (the stream was reset, or its trailers were not decoded).
	Status string
	// Requests and Responses count the messages each way.
	Requests, Responses Counter
	// Timeout is the request's grpc-timeout, 0 when it had none.
	Timeout time.Duration
}

// statusNames are the gRPC status codes' names, by code.
var statusNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// StatusName returns the name of a grpc-status value; ok is false for a
// value that is not a known code (which is then returned as is).
func StatusName(status string) (string, bool) {
	n, err := strconv.Atoi(status)
	if err != nil || n < 0 || n >= len(statusNames) {
		return status, false
	}
	return statusNames[n], true
}

// resetStatuses map RST_STREAM error codes to gRPC status codes, as
// gRPC's HTTP/2 protocol says (PROTOCOL-HTTP2.md, "Errors"): "" for
// STREAM_CLOSED, which has no mapping.
var resetStatuses = [...]string{
	0x0: "13", 0x1: "13", 0x2: "13", 0x3: "13", 0x4: "13", 0x5: "", 0x6: "13",
	0x7: "14", // REFUSED_STREAM: UNAVAILABLE
	0x8: "1",  // CANCEL: CANCELLED
	0x9: "13", 0xa: "13",
	0xb: "8", // ENHANCE_YOUR_CALM: RESOURCE_EXHAUSTED
	0xc: "7", // INADEQUATE_SECURITY: PERMISSION_DENIED
}

// ResetStatus returns the grpc-status (decimal) of a call ended by a
// RST_STREAM with error code code, and false for a code gRPC does not
// map.
func ResetStatus(code uint32) (string, bool) {
	if code >= uint32(len(resetStatuses)) || resetStatuses[code] == "" {
		return "", false
	}
	return resetStatuses[code], true
}

// Status codes ResetStatus and DeadlineStatus return.
const (
	statusCancelled        = "1"
	statusDeadlineExceeded = "4"
)

// DeadlineStatus returns the status of a call reset after elapsed: a
// CANCEL that came when the request's grpc-timeout had run out (within
// 1%, at least 1 ms: the client's deadline started before its headers
// went out) is the deadline's, DEADLINE_EXCEEDED, as the clients report
// it; anything else is status.
func (c *Call) DeadlineStatus(status string, elapsed time.Duration) string {
	if status != statusCancelled || c.Timeout <= 0 || elapsed < c.Timeout-max(c.Timeout/100, time.Millisecond) {
		return status
	}
	return statusDeadlineExceeded
}

// ParseTimeout parses a grpc-timeout value: 1 to 8 digits and a unit (H,
// M, S, m, u, n).
func ParseTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseUint(v[:len(v)-1], 10, 64)
	if err != nil {
		return 0, false
	}
	unit, ok := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second,
		'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond}[v[len(v)-1]]
	if !ok {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// serverErrors are the statuses that are errors on the server side (on the
// client side, every status but OK is).
var serverErrors = map[string]bool{
	"UNKNOWN": true, "DEADLINE_EXCEEDED": true, "UNIMPLEMENTED": true,
	"INTERNAL": true, "UNAVAILABLE": true, "DATA_LOSS": true,
}

// Method returns rpc.method for a :path, and the original when rpc.method
// is _OTHER: a path that is not "/service/method", and a method the
// server did not implement (UNIMPLEMENTED), are _OTHER.
func Method(path, statusName string) (method, original string) {
	m, ok := strings.CutPrefix(path, "/")
	svc, name, found := strings.Cut(m, "/")
	if !ok || !found || svc == "" || name == "" || strings.Contains(name, "/") {
		return Other, path
	}
	if statusName == "UNIMPLEMENTED" {
		return Other, m
	}
	return m, ""
}

// Describe names the span of a gRPC call and sets its attributes and
// status (see protocol.Protocol). authority is the request's :authority.
func Describe(call *Call, authority string, c protocol.Conn, reason string, s *span.Span) {
	status, known := "", false
	if call.Status != "" {
		status, known = StatusName(call.Status)
	}
	method, original := Method(call.Path, status)
	s.Name = method
	if method == Other {
		s.Name = System
	}
	attrs := make([]attribute.KeyValue, 0, 16)
	attrs = append(attrs,
		attribute.String("rpc.system.name", System),
		attribute.String("rpc.method", method),
	)
	if original != "" {
		attrs = append(attrs, attribute.String("rpc.method_original", original))
	}
	if status != "" {
		attrs = append(attrs, attribute.String("rpc.response.status_code", status))
	}
	host, port, _ := httpspan.ServerHostPort(authority, c)
	if host != "" {
		attrs = append(attrs, attribute.String("server.address", host), attribute.Int("server.port", port))
	}
	attrs = httpspan.AppendPeer(attrs, c)
	attrs = append(attrs,
		attribute.String("network.protocol.name", "http"),
		attribute.String("network.protocol.version", "2"),
		attribute.String("network.transport", "tcp"),
	)
	if n, ok := call.Requests.Count(); ok {
		attrs = append(attrs, attribute.Int(AttrRequestMessages, n))
	}
	if n, ok := call.Responses.Count(); ok {
		attrs = append(attrs, attribute.Int(AttrResponseMessages, n))
	}
	if reason == "" && status != "" && isError(status, known, c.Role == protocol.Server) {
		s.Status = span.Error
		attrs = append(attrs, attribute.String("error.type", status))
	}
	s.Attributes = attrs
}

// isError applies the conventions' table: on servers only the statuses
// that say the server failed, on clients every status but OK.
func isError(status string, known, server bool) bool {
	if !known {
		return true
	}
	if server {
		return serverErrors[status]
	}
	return status != "OK"
}

// Counter counts the length-prefixed messages of one direction of a call
// (a flag byte and a 4-byte big-endian length before each message) from
// the bytes of its DATA frames, some of which may be unknown.
type Counter struct {
	n      int
	prefix [5]byte
	np     int    // prefix bytes seen of the current message
	body   uint64 // body bytes still to skip
	lost   bool   // a prefix fell into unknown bytes
}

// Write counts the messages in known bytes.
func (c *Counter) Write(b []byte) {
	for len(b) > 0 && !c.lost {
		if c.body > 0 {
			k := min(uint64(len(b)), c.body)
			c.body -= k
			b = b[k:]
			continue
		}
		k := copy(c.prefix[c.np:], b)
		c.np += k
		b = b[k:]
		if c.np == 5 {
			c.n++
			c.np = 0
			c.body = uint64(c.prefix[1])<<24 | uint64(c.prefix[2])<<16 | uint64(c.prefix[3])<<8 | uint64(c.prefix[4])
		}
	}
}

// Skip passes over n unknown bytes; n < 0: an unknown number.
func (c *Counter) Skip(n int) {
	if c.lost || n == 0 {
		return
	}
	if n < 0 || c.np > 0 || uint64(n) > c.body {
		c.lost = true
		return
	}
	c.body -= uint64(n)
}

// Count returns the messages counted; ok is false when some prefix was
// not seen, or a message is cut short.
func (c *Counter) Count() (int, bool) { return c.n, !c.lost && c.np == 0 && c.body == 0 }
