package httpspan

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/periscope-apm/periscope/correlator/httpparse"
	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/internal/intern"
	"github.com/periscope-apm/periscope/internal/redact"
	"github.com/periscope-apm/periscope/span"
)

// redacted replaces the values of credentials.
const redacted = "REDACTED"

// Config says what HTTP spans may carry.
type Config struct {
	// CaptureQuery exports query strings with the values of
	// SensitiveQueryParams redacted.
	CaptureQuery bool
	// SensitiveQueryParams: empty means DefaultSensitiveQueryParams.
	SensitiveQueryParams []string
	// CaptureHeaders exports headers, with the values of
	// SensitiveHeaders and the headers redact always redacts.
	CaptureHeaders   bool
	SensitiveHeaders []string
	// RoutePatterns are tried before the identifier heuristic.
	RoutePatterns []string
}

// DefaultSensitiveQueryParams are the query parameters redacted by default.
var DefaultSensitiveQueryParams = []string{
	"token", "access_token", "password", "passwd", "secret", "api_key", "apikey",
	"key", "signature", "sig", "code", "auth", "session",
}

// Semantics names HTTP spans per the OpenTelemetry HTTP semantic
// conventions. Every protocol that carries HTTP (HTTP/1.x, HTTP/2, requests
// seen whole by language probes) shares it.
type Semantics struct {
	cfg              Config
	router           *Router
	sensitiveQuery   redact.Names
	sensitiveHeaders map[string]bool

	// names are the span names built so far, by method and route, and
	// routes the routes built from paths with identifiers: each is built
	// once, not per span.
	namesMu sync.Mutex
	names   map[[2]string]string
	routes  *intern.Table

	exchanges exchangePool // GetExchange, Recycle
}

// maxNames bounds the span name cache; past it the cache starts over.
const maxNames = 4096

// spanName returns "METHOD route".
func (h *Semantics) spanName(method, route string) string {
	k := [2]string{method, route}
	h.namesMu.Lock()
	defer h.namesMu.Unlock()
	if n, ok := h.names[k]; ok {
		return n
	}
	if len(h.names) >= maxNames || h.names == nil {
		h.names = make(map[[2]string]string)
	}
	n := method + " " + route
	h.names[k] = n
	return n
}

// route returns the route of path (Router.Route), a kept string when the
// route is not path itself.
func (h *Semantics) route(path string) string {
	if t, ok := h.router.match(path); ok {
		return t
	}
	var buf [256]byte
	r, changed := appendRoute(buf[:0], path)
	if !changed {
		return path
	}
	h.namesMu.Lock()
	defer h.namesMu.Unlock()
	return h.routes.Bytes(r)
}

// New returns the HTTP semantics for cfg.
func New(cfg Config) (*Semantics, error) {
	router, err := NewRouter(cfg.RoutePatterns)
	if err != nil {
		return nil, err
	}
	return &Semantics{
		cfg:              cfg,
		router:           router,
		sensitiveQuery:   redact.NewNames(cfg.SensitiveQueryParams, DefaultSensitiveQueryParams),
		sensitiveHeaders: redact.HeaderSet(cfg.SensitiveHeaders),
		routes:           intern.New(maxNames, 1024),
	}, nil
}

// CaptureHeaders tells whether the configuration keeps headers.
func (h *Semantics) CaptureHeaders() bool { return h.cfg.CaptureHeaders }

// Exchange is an HTTP request and its response (nil until its head is
// known). It implements protocol.Exchange.
type Exchange struct {
	Req  *httpparse.Message
	Resp *httpparse.Message
	// StreamID is the HTTP/2 stream, 0 for HTTP/1.x.
	StreamID uint32
	// PathUnknown says the request's path was not decoded (HTTP/2
	// headers that could not be decompressed): the span has no route.
	PathUnknown bool

	// Storage for Req and Resp, so that an exchange and its messages are
	// one allocation (NewExchange, ReqStorage, RespStorage).
	req, resp httpparse.Message
}

// NewExchange returns an exchange whose Req is its own storage, holding
// req.
func NewExchange(req httpparse.Message) *Exchange {
	x := &Exchange{req: req}
	x.Req = &x.req
	return x
}

// ReqStorage returns the storage for the exchange's request: a parser
// fills it, and Req is then set to it.
func (x *Exchange) ReqStorage() *httpparse.Message { return &x.req }

// RespStorage returns the storage for the exchange's response.
func (x *Exchange) RespStorage() *httpparse.Message { return &x.resp }

// Start implements protocol.Exchange.
func (x *Exchange) Start() time.Time { return x.Req.Start }

// TraceParent implements protocol.Exchange.
func (x *Exchange) TraceParent() string { return x.Req.TraceParent }

// Stream implements protocol.Exchange.
func (x *Exchange) Stream() (uint64, bool) { return uint64(x.StreamID), x.StreamID != 0 }

// Describe names the span of an HTTP exchange and sets its attributes and
// status (see protocol.Protocol).
func (h *Semantics) Describe(x *Exchange, cn protocol.Conn, reason string, s *span.Span) {
	req, resp := x.Req, x.Resp
	server := cn.Role == protocol.Server

	method, known := normalizeMethod(req.Method)
	route := h.route(req.Path)
	name := method
	if !known {
		name = "HTTP"
	}
	s.Name = name
	if !x.PathUnknown {
		s.Name = h.spanName(name, route)
	}

	attrs := s.Attributes[:0] // a pooled span's array
	if cap(attrs) < 20 {
		attrs = make([]attribute.KeyValue, 0, 20)
	}
	attrs = append(attrs, attribute.String("http.request.method", method))
	if !known && req.Method != "" {
		attrs = append(attrs, attribute.String("http.request.method_original", req.Method))
	}
	attrs = append(attrs, attribute.String("url.scheme", cn.Scheme))
	if !x.PathUnknown {
		attrs = append(attrs, attribute.String("url.path", req.Path))
	}

	host, port, defaultPort := ServerHostPort(req.Host, cn)
	query := ""
	if h.cfg.CaptureQuery && req.RawQuery != "" {
		query = redactQuery(req.RawQuery, h.sensitiveQuery)
	}
	switch {
	case x.PathUnknown:
	case server:
		attrs = append(attrs, attribute.String("http.route", route))
		if query != "" {
			attrs = append(attrs, attribute.String("url.query", query))
		}
	default:
		if host != "" {
			attrs = append(attrs, attribute.String("url.full", fullURL(cn.Scheme, host, port, defaultPort, req.Path, query)))
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
	attrs = AppendPeer(attrs, cn)
	if req.UserAgent != "" {
		attrs = append(attrs, attribute.String("user_agent.original", req.UserAgent))
	}
	if req.BodySize >= 0 { // < 0: not known
		attrs = append(attrs, attribute.Int64("http.request.body.size", req.BodySize))
	}
	if resp != nil && resp.HeadersComplete && resp.BodySize >= 0 {
		attrs = append(attrs, attribute.Int64("http.response.body.size", resp.BodySize))
	}

	if reason == "" && (status >= 500 || !server && status >= 400) {
		s.Status = span.Error
		attrs = append(attrs, attribute.String("error.type", strconv.Itoa(status)))
	}
	if h.cfg.CaptureHeaders {
		attrs = h.appendHeaders(attrs, "http.request.header.", req.Headers)
		if resp != nil {
			attrs = h.appendHeaders(attrs, "http.response.header.", resp.Headers)
		}
	}
	s.Attributes = attrs
}

// ServerHostPort returns the server's host and port for a request whose
// Host (or :authority) is hostHeader: from the header, else from the
// connection's server address, else the scheme's default port (also
// returned).
func ServerHostPort(hostHeader string, cn protocol.Conn) (host string, port, defaultPort int) {
	host, port = splitHostPort(hostHeader)
	defaultPort = 443
	if cn.Scheme == "http" {
		defaultPort = 80
	}
	bindAddr := cn.ServerAddr()
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
	return host, port, defaultPort
}

// AppendPeer appends the peer's address (and, on servers, the client's).
func AppendPeer(attrs []attribute.KeyValue, cn protocol.Conn) []attribute.KeyValue {
	if !cn.Bound || !cn.Remote.IsValid() {
		return attrs
	}
	peerPort := int(cn.Remote.Port())
	if cn.Role == protocol.Server {
		attrs = append(attrs,
			attribute.String("client.address", cn.PeerAddr),
			attribute.Int("client.port", peerPort),
		)
	}
	return append(attrs,
		attribute.String("network.peer.address", cn.PeerAddr),
		attribute.Int("network.peer.port", peerPort),
	)
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
func (sem *Semantics) appendHeaders(attrs []attribute.KeyValue, prefix string, hs []httpparse.Header) []attribute.KeyValue {
	type field struct {
		key    string
		values []string
	}
	var fields []field
next:
	for _, h := range hs {
		name := strings.ToLower(h.Name)
		value := h.Value
		if sem.sensitiveHeaders[name] {
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

// redactQuery replaces the values of sensitive parameters in a raw query.
func redactQuery(raw string, set redact.Names) string {
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
		if hasValue && set.Match(decoded) {
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
			if i+2 >= len(s) || httpparse.Unhex(s[i+1]) < 0 || httpparse.Unhex(s[i+2]) < 0 {
				return "", errBadEscape
			}
			b.WriteByte(byte(httpparse.Unhex(s[i+1])<<4 | httpparse.Unhex(s[i+2])))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

var errBadEscape = errors.New("invalid % escape")
