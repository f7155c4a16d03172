package correlator

import (
	"slices"

	"go.opentelemetry.io/otel/trace"

	"github.com/periscope-apm/periscope/correlator/httpparse"
	"github.com/periscope-apm/periscope/correlator/httpspan"
	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

// Requests seen whole by a language-level probe (Go net/http) arrive as a
// start and an end instead of bytes. Each becomes an exchange on a
// connection keyed by its socket, with no parser, so that everything else
// (tuple pairing with the other end of the connection, a client call's
// parent, trace IDs, attributes, ending on exit or timeout) is shared with
// the byte-stream path.

// wholeKey names a request seen whole.
type wholeKey struct {
	pid uint32
	id  uint64
}

// Keys of the connections of whole requests, apart from the pointers the
// byte-stream collectors use as keys (user-space addresses stay below 2^57).
const (
	wholeFDKey  = 1 << 63 // | fd: the connection's socket
	wholeReqKey = 1 << 62 // | request ID: socket unknown
)

// RequestStart handles the start of a request seen whole.
func (c *Correlator) RequestStart(r events.RequestStart) {
	c.mu.Lock()
	defer c.mu.Unlock()

	id := events.ConnID{PID: r.PID, Key: wholeFDKey | uint64(uint32(r.FD))}
	if r.FD < 0 {
		id.Key = wholeReqKey | r.ID&(wholeReqKey-1)
	}
	cn := c.lookup(id)
	if cn != nil && (validTuple(r.Tuple) && cn.tuple != r.Tuple || cn.role != roleOf(r.Kind)) {
		// The descriptor now names another connection.
		c.endConn(cn, r.Time, reasonClosed)
		c.remove(cn)
		cn = nil
	}
	if cn == nil {
		cn = c.connFor(id, r.Time)
		cn.role = roleOf(r.Kind)
		cn.scheme = "http"
		if r.TLS {
			cn.scheme = "https"
		}
		if r.FD >= 0 {
			cn.bound, cn.fd = true, r.FD
		}
		if validTuple(r.Tuple) {
			c.silenced(cn, r.Tuple)
			c.setTuple(cn, r.Tuple)
			if !c.fromStart(r.PID, r.Tuple, r.Time) {
				cn.setMidStream() // its requests have no ordinal (link.go)
			}
		}
	}
	c.touch(cn, r.Time)
	if r.Version == "" {
		r.Version = "1.1"
	}
	if r.Version == "2" {
		cn.multiplexed = true
	}

	key := wholeKey{r.PID, r.ID}
	x := c.newExchange()
	*x = exchange{
		conn:   cn,
		proto:  c.wholeSem,
		px:     c.wholeSem.exchange(httpparse.Message{Kind: httpparse.Request, Start: r.Time, Version: r.Version}),
		start:  r.Time,
		spanID: spanIDOf(r.ID),
		whole:  key,
	}
	switch r.Kind {
	case events.RequestClient:
		if r.Parent != 0 {
			if p := c.whole[wholeKey{r.PID, r.Parent}]; p != nil && !p.done {
				x.adopt(p)
			}
		}
	case events.RequestServer:
		// The caller's traceparent makes its span the remote parent. It
		// wins over the link to a client request traced on this node
		// (linkByTuple leaves such a server request's parent alone),
		// as on the byte-stream path: the header is what the caller
		// declared, usually from its own instrumentation, whose spans
		// the rest of the trace hangs from; when the caller is traced
		// here and sends no header, the 4-tuple link still applies.
		if tid, sid, ok := parseTraceParent(r.TraceParent); ok {
			x.hasRemote, x.remoteTrace, x.remoteSpan = true, tid, sid
		}
		if r.Goroutine != 0 {
			x.goroutine = r.Goroutine
			c.serveOn(cn.ps, x)
		}
	}
	if old := c.whole[key]; old != nil {
		dropPending(old)
		c.finish(old, r.Time, reasonEvicted) // the same ID again: a lost end
	}
	c.whole[key] = x
	cn.nextSeq(x)
	cn.pending = append(cn.pending, x)
	c.linkByTuple(cn)
	c.startLink(x, r.Time)
}

// RequestEnd handles the end of a request seen whole.
func (c *Correlator) RequestEnd(r events.RequestEnd) {
	c.mu.Lock()
	defer c.mu.Unlock()

	x := c.whole[wholeKey{r.PID, r.ID}]
	if x == nil {
		c.m.unmatchedEnds.Inc()
		return
	}
	cn := x.conn
	c.touch(cn, r.Time)
	hx := x.px.(*httpspan.Exchange)
	req := hx.Req
	req.Method = r.Method
	req.Path = r.Path
	req.RawQuery = r.RawQuery
	req.Host = r.Host
	if r.RequestBodySize > 0 {
		req.BodySize = r.RequestBodySize
	}
	dropPending(x)
	var resp *httpparse.Message
	reason := ""
	if r.Failed {
		reason = reasonRequestErr
	} else {
		resp = hx.RespStorage()
		*resp = httpparse.Message{
			Kind:            httpparse.Response,
			Version:         req.Version,
			StatusCode:      r.Status,
			HeadersComplete: true,
			Start:           r.Time,
			End:             r.Time,
		}
		if r.ResponseBodySize >= 0 {
			resp.BodySize = r.ResponseBodySize
		}
	}
	hx.Resp = resp
	x.recycle = true // no decoder holds it
	c.finish(x, r.Time, reason)
	if cn.id.Key&wholeReqKey != 0 && len(cn.pending) == 0 {
		c.remove(cn) // a connection of one request
	}
}

// dropPending takes x off its connection's list of requests in flight.
func dropPending(x *exchange) {
	cn := x.conn
	if i := slices.Index(cn.pending, x); i >= 0 {
		cn.pending = slices.Delete(cn.pending, i, i+1) // the array stays for the next requests
	}
}

func roleOf(k events.RequestKind) role {
	if k == events.RequestServer {
		return roleServer
	}
	return roleClient
}

// spanIDOf turns a probe's request ID into a span ID.
func spanIDOf(id uint64) trace.SpanID {
	var s trace.SpanID
	putUint64(s[:], id)
	return s
}

// wholeHTTP describes the requests seen whole: HTTP, whatever the version.
type wholeHTTP struct{ sem *httpspan.Semantics }

func (wholeHTTP) Name() string { return "http" }

// Detect never claims bytes: whole requests come without any.
func (wholeHTTP) Detect([]byte, events.Direction) protocol.Detection { return protocol.Detection{} }

func (wholeHTTP) NewDecoder(protocol.Role, protocol.Handler) protocol.Decoder { return nil }

// exchange returns an exchange from the semantics' pool holding req.
func (w wholeHTTP) exchange(req httpparse.Message) *httpspan.Exchange {
	x := w.sem.GetExchange()
	*x.ReqStorage() = req
	x.Req = x.ReqStorage()
	return x
}

func (w wholeHTTP) Describe(x protocol.Exchange, c protocol.Conn, reason string, s *span.Span) {
	w.sem.Describe(x.(*httpspan.Exchange), c, reason, s)
}
