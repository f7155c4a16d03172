package correlator

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/periscope-apm/periscope/correlator/httpparse"
	"github.com/periscope-apm/periscope/span"
)

// redacted replaces the values of credentials.
const redacted = "REDACTED"

// maxParentDepth bounds the walk up local parents to find a trace ID.
const maxParentDepth = 32

// buildSpan makes the span of an exchange. resp may be nil or incomplete;
// reason is empty when the exchange completed.
func (c *Correlator) buildSpan(x *exchange, resp *httpparse.Message, end time.Time, reason string) *span.Span {
	cn := x.conn
	req := x.req
	server := cn.role == roleServer

	s := &span.Span{
		SpanID:  x.spanID,
		Kind:    span.Client,
		Start:   req.Start,
		End:     end,
		Process: c.processOf(cn.ps),
	}
	if server {
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

	method, known := normalizeMethod(req.Method)
	route := c.router.Route(req.Path)
	if known {
		s.Name = method + " " + route
	} else {
		s.Name = "HTTP " + route
	}

	attrs := make([]attribute.KeyValue, 0, 20)
	attrs = append(attrs, attribute.String("http.request.method", method))
	if !known {
		attrs = append(attrs, attribute.String("http.request.method_original", req.Method))
	}
	attrs = append(attrs,
		attribute.String("url.scheme", cn.scheme),
		attribute.String("url.path", req.Path),
	)

	host, port := splitHostPort(req.Host)
	defaultPort := 443
	if cn.scheme == "http" {
		defaultPort = 80
	}
	var bindAddr netip.AddrPort // the server's end of the connection
	if cn.bound {
		if server {
			bindAddr = cn.tuple.Local
		} else {
			bindAddr = cn.tuple.Remote
		}
	}
	if host == "" && bindAddr.IsValid() {
		host = bindAddr.Addr().Unmap().String()
	}
	if port == 0 {
		if bindAddr.IsValid() {
			port = int(bindAddr.Port())
		} else {
			port = defaultPort
		}
	}

	query := ""
	if c.cfg.CaptureQuery && req.RawQuery != "" {
		query = redactQuery(req.RawQuery, c.sensitiveQuery)
	}
	if server {
		attrs = append(attrs, attribute.String("http.route", route))
		if query != "" {
			attrs = append(attrs, attribute.String("url.query", query))
		}
	} else {
		if host != "" {
			attrs = append(attrs, attribute.String("url.full", fullURL(cn.scheme, host, port, defaultPort, req.Path, query)))
		}
		attrs = append(attrs, attribute.String("url.template", route))
	}

	version := req.Version
	if resp != nil && resp.Version != "" {
		version = resp.Version
	}
	attrs = append(attrs, attribute.String("network.protocol.version", version))
	status := 0
	if resp != nil && resp.StatusCode > 0 {
		status = resp.StatusCode
		attrs = append(attrs, attribute.Int("http.response.status_code", status))
	}
	if host != "" {
		attrs = append(attrs,
			attribute.String("server.address", host),
			attribute.Int("server.port", port),
		)
	}
	if cn.bound && cn.tuple.Remote.IsValid() {
		peer := cn.peerAddr
		peerPort := int(cn.tuple.Remote.Port())
		if server {
			attrs = append(attrs,
				attribute.String("client.address", peer),
				attribute.Int("client.port", peerPort),
			)
		}
		attrs = append(attrs,
			attribute.String("network.peer.address", peer),
			attribute.Int("network.peer.port", peerPort),
		)
	}
	if req.UserAgent != "" {
		attrs = append(attrs, attribute.String("user_agent.original", req.UserAgent))
	}
	attrs = append(attrs, attribute.Int64("http.request.body.size", req.BodySize))
	if resp != nil && resp.HeadersComplete {
		attrs = append(attrs, attribute.Int64("http.response.body.size", resp.BodySize))
	}

	switch {
	case reason != "":
		s.Status = span.Error
		s.StatusMsg = statusMessage(reason)
		attrs = append(attrs, attribute.String("error.type", reason))
	case status >= 500 || !server && status >= 400:
		s.Status = span.Error
		attrs = append(attrs, attribute.String("error.type", strconv.Itoa(status)))
	}

	if c.cfg.CaptureHeaders {
		attrs = c.appendHeaders(attrs, "http.request.header.", req.Headers)
		if resp != nil {
			attrs = c.appendHeaders(attrs, "http.response.header.", resp.Headers)
		}
	}
	s.Attributes = attrs
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
		return "connection stopped speaking HTTP/1.x"
	}
	return reason
}

// normalizeMethod returns the semantic-conventions form of a method and
// whether it is a known method; unknown methods are "_OTHER".
func normalizeMethod(m string) (string, bool) {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY":
		return m, true
	}
	return "_OTHER", false
}

// splitHostPort splits a Host header value ("host", "host:port",
// "[v6]:port"); port is 0 when absent or invalid.
func splitHostPort(h string) (host string, port int) {
	if h == "" {
		return "", 0
	}
	if h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return h[1:], 0
		}
		host, rest := h[1:end], h[end+1:]
		if len(rest) > 1 && rest[0] == ':' {
			return host, parsePort(rest[1:])
		}
		return host, 0
	}
	i := strings.LastIndexByte(h, ':')
	if i < 0 || strings.IndexByte(h[:i], ':') >= 0 {
		return h, 0 // no port, or a bare IPv6 address
	}
	return h[:i], parsePort(h[i+1:])
}

func parsePort(s string) int {
	if s == "" || len(s) > 5 {
		return 0
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 65535 {
		return 0
	}
	return n
}

func fullURL(scheme, host string, port, defaultPort int, path, query string) string {
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	if strings.IndexByte(host, ':') >= 0 {
		b.WriteByte('[')
		b.WriteString(host)
		b.WriteByte(']')
	} else {
		b.WriteString(host)
	}
	if port != defaultPort {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(port))
	}
	if path == "" || path[0] != '/' {
		b.WriteByte('/')
	} else {
		b.WriteString(path)
	}
	if query != "" {
		b.WriteByte('?')
		b.WriteString(query)
	}
	return b.String()
}

// appendHeaders appends one string-slice attribute per header name, with
// the values of sensitive headers redacted.
func (c *Correlator) appendHeaders(attrs []attribute.KeyValue, prefix string, hs []httpparse.Header) []attribute.KeyValue {
	type field struct {
		key    string
		values []string
	}
	var fields []field
next:
	for _, h := range hs {
		name := strings.ToLower(h.Name)
		value := h.Value
		if c.sensitiveHeaders[name] {
			value = redacted
		}
		key := prefix + name
		for i := range fields {
			if fields[i].key == key {
				fields[i].values = append(fields[i].values, value)
				continue next
			}
		}
		fields = append(fields, field{key: key, values: []string{value}})
	}
	for _, f := range fields {
		attrs = append(attrs, attribute.StringSlice(f.key, f.values))
	}
	return attrs
}

// headerSet returns the lower-case names of the headers to redact.
func headerSet(extra []string) map[string]bool {
	set := make(map[string]bool, len(alwaysRedactedHeaders)+len(extra))
	for _, h := range alwaysRedactedHeaders {
		set[h] = true
	}
	for _, h := range extra {
		set[strings.ToLower(strings.TrimSpace(h))] = true
	}
	return set
}

// sensitiveNameSet returns the normalised names of sensitive query
// parameters (names, or defaults when names is empty).
func sensitiveNameSet(names, defaults []string) map[string]bool {
	if len(names) == 0 {
		names = defaults
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		if k := normalizeParam(n); k != "" {
			set[k] = true
		}
	}
	return set
}

// normalizeParam lower-cases a parameter name and drops separators.
func normalizeParam(n string) string {
	var b strings.Builder
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case isParamSep(c):
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isParamSep(c byte) bool {
	return c == '-' || c == '_' || c == '.' || c == '[' || c == ']' || c == ' '
}

// sensitiveParam reports whether a query parameter name is sensitive: its
// normalised form, or a run of its words, is in set.
func sensitiveParam(name string, set map[string]bool) bool {
	if set[normalizeParam(name)] {
		return true
	}
	var words []string
	for w := range strings.FieldsFuncSeq(name, func(r rune) bool { return r < 0x80 && isParamSep(byte(r)) }) {
		words = append(words, strings.ToLower(w))
		if len(words) == 8 {
			break
		}
	}
	for i := range words {
		run := ""
		for j := i; j < len(words); j++ {
			run += words[j]
			if set[run] {
				return true
			}
		}
	}
	return false
}

// redactQuery replaces the values of sensitive parameters in a raw query.
func redactQuery(raw string, set map[string]bool) string {
	var b strings.Builder
	b.Grow(len(raw))
	first := true
	for part := range strings.SplitSeq(raw, "&") {
		if !first {
			b.WriteByte('&')
		}
		first = false
		name, _, hasValue := strings.Cut(part, "=")
		decoded := name
		if d, err := queryUnescape(name); err == nil {
			decoded = d
		}
		if hasValue && sensitiveParam(decoded, set) {
			b.WriteString(name)
			b.WriteString("=" + redacted)
			continue
		}
		b.WriteString(part)
	}
	return b.String()
}

// queryUnescape decodes %XX escapes and '+' in a query component.
func queryUnescape(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			b.WriteByte(' ')
		case '%':
			if i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0 {
				return "", errBadEscape
			}
			b.WriteByte(byte(unhex(s[i+1])<<4 | unhex(s[i+2])))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

var errBadEscape = errors.New("invalid % escape")

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
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
