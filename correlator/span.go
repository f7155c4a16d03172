package correlator

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/span"
)

// maxParentDepth bounds the walk up local parents to find a trace ID.
const maxParentDepth = 32

// buildSpan makes the span of an exchange, from the correlator's pool:
// the caller releases it after exporting it. reason is empty when the
// exchange completed.
func (c *Correlator) buildSpan(x *exchange, end time.Time, reason string) *span.Span {
	cn := x.conn
	s := c.spans.Get()
	s.SpanID, s.Kind, s.Start, s.End, s.Process = x.spanID, span.Client, x.start, end, c.processOf(cn.ps)
	if cn.role == roleServer {
		s.Kind = span.Server
	}
	if s.End.Before(s.Start) {
		s.End = s.Start
	}
	s.TraceID = c.traceOf(x, 0)
	switch {
	case x.hasRemote:
		s.ParentSpanID, s.RemoteParent = x.remoteSpan, true
	case x.parent != nil:
		// A parent in another process is remote too.
		s.ParentSpanID, s.RemoteParent = x.parent.spanID, x.parent.conn.ps != cn.ps
	}
	x.proto.Describe(x.px, cn.info(), reason, s)
	if reason != "" {
		s.Status = span.Error
		s.StatusMsg = statusMessage(reason)
		s.Attributes = append(s.Attributes, attribute.String("error.type", reason))
	}
	return s
}

// traceOf returns the trace ID of an exchange: its remote parent's, its
// local parent's, or a new one. Every exchange on the way is fixed: it keeps
// that trace from now on.
func (c *Correlator) traceOf(x *exchange, depth int) trace.TraceID {
	x.fixed = true
	switch {
	case x.hasRemote:
		return x.remoteTrace
	case x.parent != nil && depth < maxParentDepth:
		return c.traceOf(x.parent, depth+1)
	}
	if !x.traceID.IsValid() {
		x.traceID = c.newTraceID()
	}
	return x.traceID
}

func statusMessage(reason string) string {
	switch reason {
	case reasonClosed:
		return "connection closed before the response completed"
	case reasonExit:
		return "process exited before the response completed"
	case reasonTimeout:
		return "no response before the idle timeout"
	case reasonEvicted:
		return "request state evicted before the response completed"
	case reasonParseError:
		return "connection stopped speaking its protocol"
	case protocol.ReasonReset:
		return "stream reset before the response completed"
	case reasonDataLost:
		return "bytes of the connection were lost (agent ring buffer full); the response could not be paired"
	}
	return reason
}

// parseTraceParent parses a W3C traceparent header value.
func parseTraceParent(v string) (trace.TraceID, trace.SpanID, bool) {
	var tid trace.TraceID
	var sid trace.SpanID
	// version "-" trace-id "-" parent-id "-" flags
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return tid, sid, false
	}
	ver, ok := hexByte(v[0], v[1])
	if !ok || ver == 0xff || ver == 0 && len(v) != 55 || len(v) > 55 && v[55] != '-' {
		return tid, sid, false
	}
	if _, ok := hexByte(v[53], v[54]); !ok {
		return tid, sid, false
	}
	for i := range tid {
		b, ok := hexByte(v[3+2*i], v[4+2*i])
		if !ok {
			return tid, sid, false
		}
		tid[i] = b
	}
	for i := range sid {
		b, ok := hexByte(v[36+2*i], v[37+2*i])
		if !ok {
			return tid, sid, false
		}
		sid[i] = b
	}
	return tid, sid, tid.IsValid() && sid.IsValid()
}

// hexByte decodes two lower-case hex digits.
func hexByte(hi, lo byte) (byte, bool) {
	h, l := lowerHex(hi), lowerHex(lo)
	if h < 0 || l < 0 {
		return 0, false
	}
	return byte(h<<4 | l), true
}

func lowerHex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}
