package correlator

import (
	"container/list"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/periscope-apm/periscope/correlator/httpparse"
	"github.com/periscope-apm/periscope/events"
)

// role is the traced process's side of a connection.
type role uint8

const (
	roleUnknown role = iota
	roleServer       // the process read the first bytes: it serves requests
	roleClient       // the process wrote the first bytes: it sends requests
)

// conn is the state of one connection.
type conn struct {
	c    *Correlator
	id   events.ConnID
	ps   *procState
	elem *list.Element

	lastActive time.Time
	role       role
	scheme     string // url.scheme; "https" while all data comes from TLS libraries

	bound    bool
	fd       int32
	tuple    events.Tuple
	peerAddr string // tuple.Remote's address, formatted once

	req, resp *httpparse.Parser
	pending   []*exchange // requests waiting for their response, oldest first
	// held are finished exchanges waiting for the connection's socket
	// (Config.BindGrace), oldest first.
	held []heldExchange
	// ignored connections are not HTTP, broke the protocol or left it
	// (upgrade): their data is dropped until a Bind changes the socket.
	ignored bool
	// multiplexed connections (HTTP/2) carry concurrent requests whose
	// order says nothing about which is which.
	multiplexed bool
	tid         uint32 // thread of the data being parsed
	// repeatWrite counts written bytes still to come that repeat bytes
	// already parsed (see events.WriteResult).
	repeatWrite int
	// retrans are the recent TCP retransmissions of the connection's
	// socket, oldest first (see retransmit.go).
	retrans []retransmitMark
}

// heldExchange is a finished exchange whose span is not built yet.
type heldExchange struct {
	x      *exchange
	resp   *httpparse.Message
	end    time.Time
	reason string
}

// waiting returns the exchanges that may still be paired with the other
// end of the connection: the held ones, then the pending ones.
func (cn *conn) waiting() []*exchange {
	if len(cn.held) == 0 {
		return cn.pending
	}
	out := make([]*exchange, 0, len(cn.held)+len(cn.pending))
	for _, h := range cn.held {
		out = append(out, h.x)
	}
	return append(out, cn.pending...)
}

// exchange is one request and its response.
type exchange struct {
	conn *conn
	req  *httpparse.Message
	resp *httpparse.Message // once the response head is parsed
	tid  uint32

	spanID  trace.SpanID
	traceID trace.TraceID // own trace, when there is no parent; set lazily

	// The parent: either a remote span from traceparent, or an exchange
	// traced here (same thread, or the client end of the connection).
	hasRemote   bool
	remoteTrace trace.TraceID
	remoteSpan  trace.SpanID
	parent      *exchange

	peer  *exchange // the exchange at the other end of the connection
	whole wholeKey  // set for requests seen whole (request.go)
	fixed bool      // the trace ID was used: the exchange may not be re-parented
	done  bool
}

// start sets the role from the first data and creates the parsers. The
// process that reads the first bytes serves requests, unless those bytes
// are a response: then the connection was found with a request in flight
// (the agent attached late), and the reader is the client.
func (cn *conn) start(dir events.Direction, first []byte) {
	isResponse := len(first) >= 5 && string(first[:5]) == "HTTP/"
	if (dir == events.Read) != isResponse {
		cn.role = roleServer
	} else {
		cn.role = roleClient
	}
	opts := httpparse.Options{AllHeaders: cn.c.cfg.CaptureHeaders}
	cn.req = httpparse.New(httpparse.Request, opts, cn)
	cn.resp = httpparse.New(httpparse.Response, opts, cn)
}

// parser returns the parser for data in direction dir.
func (cn *conn) parser(dir events.Direction) *httpparse.Parser {
	if (cn.role == roleServer) == (dir == events.Read) {
		return cn.req
	}
	return cn.resp
}

// Headers implements httpparse.Handler.
func (cn *conn) Headers(m *httpparse.Message) {
	if m.Kind == httpparse.Response {
		for _, x := range cn.pending {
			if x.resp == nil {
				x.resp = m
				return
			}
		}
		return
	}

	c := cn.c
	x := &exchange{conn: cn, req: m, tid: cn.tid, spanID: c.newSpanID()}
	if len(cn.pending) >= maxPendingPerConn {
		old := cn.pending[0]
		cn.pending = cn.pending[1:]
		c.finish(old, old.resp, m.Start, reasonEvicted)
	}
	cn.pending = append(cn.pending, x)
	cn.resp.ExpectResponse(m.Method)

	switch cn.role {
	case roleServer:
		if tid, sid, ok := parseTraceParent(m.TraceParent); ok {
			x.hasRemote, x.remoteTrace, x.remoteSpan = true, tid, sid
		}
		cn.ps.threads[x.tid] = x
	case roleClient:
		if p := cn.ps.threads[x.tid]; p != nil && !p.done {
			x.parent = p
		}
	}
	c.linkByTuple(cn)
}

// Message implements httpparse.Handler.
func (cn *conn) Message(m *httpparse.Message) {
	if m.Kind == httpparse.Request {
		return // the exchange exists since the head; it ends with the response
	}
	if len(cn.pending) == 0 {
		return // a response to a request we did not see
	}
	x := cn.pending[0]
	cn.pending[0] = nil
	cn.pending = cn.pending[1:]
	if len(cn.pending) == 0 {
		cn.pending = nil
	}
	cn.c.finish(x, m, m.End, "")
	switch {
	case m.Upgrade:
		// The connection carries another protocol from now on.
		cn.ignored = true
		cn.c.endPending(cn, m.End, reasonClosed)
	case x.req.Upgrade && cn.req != nil:
		// The server declined the upgrade: HTTP goes on.
		cn.req.Resume()
	}
}
