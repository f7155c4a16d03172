// Package http1 is the HTTP/1.x protocol: the parser of package httpparse
// behind the protocol.Protocol interface. Requests and responses pair in
// order (keep-alive and pipelining); a connection that upgrades (101,
// CONNECT) leaves the protocol, for HTTP/2 when it upgraded to h2c (the
// correlator switches it to that decoder: protocol.Switcher), else for
// good.
package http1

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/periscope-apm/periscope/correlator/httpparse"
	"github.com/periscope-apm/periscope/correlator/httpspan"
	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

// MaxPending bounds the requests waiting for a response on one
// connection; past it the oldest ends as evicted.
const MaxPending = 64

// Protocol is HTTP/1.x.
type Protocol struct {
	sem *httpspan.Semantics
	h2c H2C
}

var _ protocol.Protocol = (*Protocol)(nil)

// H2C is HTTP/2, which an HTTP/1.1 connection switches to with
// "Upgrade: h2c" and a 101 response (RFC 7540 §3.2): the upgrading request
// is the HTTP/2 connection's stream 1, its response comes in HTTP/2 frames.
type H2C interface {
	protocol.Protocol
	// Upgraded returns the decoder of the connection after the 101
	// response to x's request; x, begun already, continues as stream 1
	// and is ended through h.
	Upgraded(h protocol.Handler, x *httpspan.Exchange) protocol.Decoder
}

// New returns HTTP/1.x with the span semantics sem; h2c (may be nil) is
// the protocol that upgrades to h2c continue in.
func New(sem *httpspan.Semantics, h2c H2C) *Protocol { return &Protocol{sem: sem, h2c: h2c} }

// Name implements protocol.Protocol.
func (*Protocol) Name() string { return "http1" }

// Detect implements protocol.Protocol. HTTP/1.x is the last resort: it
// claims any bytes, and the parser gives up on those that are not HTTP.
// The process that reads the first bytes serves requests, unless those
// bytes are a response: then the connection was found with a request in
// flight (the agent attached late), and the reader is the client.
func (*Protocol) Detect(first []byte, dir events.Direction) protocol.Detection {
	isResponse := len(first) >= 5 && string(first[:5]) == "HTTP/"
	if (dir == events.Read) != isResponse {
		return protocol.Detection{Verdict: protocol.Yes, Role: protocol.Server}
	}
	return protocol.Detection{Verdict: protocol.Yes, Role: protocol.Client}
}

// maxMethod bounds the method token StartsRequest accepts.
const maxMethod = 24

// StartsRequest implements protocol.Restarter: first starts with a whole
// request line, a method token (upper-case letters, '-', '_'), a target
// without spaces and the version (HTTP/1.0 or HTTP/1.1). Bytes of a body
// seldom do; a request line cut short is not taken (the next request
// restarts).
func (*Protocol) StartsRequest(first []byte) bool {
	line, _, ok := bytes.Cut(first, []byte("\n"))
	if !ok {
		return false
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	method, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(method) == 0 || len(method) > maxMethod {
		return false
	}
	for i, b := range method {
		if !(b >= 'A' && b <= 'Z' || i > 0 && (b == '-' || b == '_')) {
			return false
		}
	}
	target, version, ok := bytes.Cut(rest, []byte(" "))
	return ok && len(target) > 0 && (string(version) == "HTTP/1.1" || string(version) == "HTTP/1.0")
}

// Describe implements protocol.Protocol.
func (p *Protocol) Describe(x protocol.Exchange, c protocol.Conn, reason string, s *span.Span) {
	p.sem.Describe(x.(*httpspan.Exchange), c, reason, s)
}

// NewDecoder implements protocol.Protocol.
func (p *Protocol) NewDecoder(_ protocol.Role, h protocol.Handler) protocol.Decoder {
	d := &decoder{h: h, h2c: p.h2c, sem: p.sem}
	opts := httpparse.Options{AllHeaders: p.sem.CaptureHeaders()}
	d.req = httpparse.New(httpparse.Request, opts, d)
	d.resp = httpparse.New(httpparse.Response, opts, d)
	return d
}

// decoder pairs the messages of the two parsers of a connection.
type decoder struct {
	h         protocol.Handler
	sem       *httpspan.Semantics // its exchanges come from its pool
	req, resp *httpparse.Parser
	pending   []*httpspan.Exchange // oldest first
	left      bool
	// next is the exchange whose request the request parser is reading
	// (NewMessage), until its head is known.
	next *httpspan.Exchange

	h2c H2C
	// An upgrade to h2c: the protocol and decoder the connection goes on
	// in, and what the calls that carried the switch had after it.
	switched protocol.Decoder
	rest     []protocol.SideChunk
}

var _ protocol.Switcher = (*decoder)(nil)

// Switched implements protocol.Switcher.
func (d *decoder) Switched() (protocol.Protocol, protocol.Decoder, []protocol.SideChunk) {
	if d.switched == nil {
		return nil, nil, nil
	}
	rest := d.rest
	d.rest = nil
	return d.h2c, d.switched, rest
}

var _ httpparse.Allocator = (*decoder)(nil)

// NewMessage implements httpparse.Allocator: a request is read into a new
// exchange's storage, a response into that of the oldest exchange still
// waiting for one, so that an exchange and its two messages are one
// allocation.
func (d *decoder) NewMessage(k httpparse.Kind) *httpparse.Message {
	if k == httpparse.Request {
		if d.next == nil {
			d.next = d.sem.GetExchange()
		}
		return d.next.ReqStorage()
	}
	for _, x := range d.pending {
		if x.Resp == nil {
			return x.RespStorage()
		}
	}
	return new(httpparse.Message) // a response to a request we did not see
}

// Feed implements protocol.Decoder.
func (d *decoder) Feed(side protocol.Side, c protocol.Chunk) error {
	if d.left {
		return nil
	}
	p := d.req
	if side == protocol.Responses {
		p = d.resp
	}
	err := p.Feed(httpparse.Chunk(c))
	if rest, ok := p.TakeRest(); ok && err == nil {
		d.keepRest(side, rest)
	}
	switch {
	case err == nil:
		return nil
	case errorsIsNotHTTP(err):
		return fmt.Errorf("%w: %w", protocol.ErrNotProtocol, err)
	}
	return err
}

// EOF implements protocol.Decoder.
func (d *decoder) EOF(t time.Time) {
	if !d.left {
		d.resp.EOF(t) // may complete a read-until-close response
	}
	d.req.EOF(t) // a request without a parsed head cannot be named
}

// Left implements protocol.Decoder.
func (d *decoder) Left() bool { return d.left }

// Headers implements httpparse.Handler.
func (d *decoder) Headers(m *httpparse.Message) {
	if m.Kind == httpparse.Response {
		for _, x := range d.pending {
			if x.Resp == nil {
				x.Resp = m
				return
			}
		}
		return
	}
	x := d.next
	d.next = nil
	if x == nil || x.ReqStorage() != m {
		x = d.sem.GetExchange()
	}
	x.Req = m
	if len(d.pending) >= MaxPending {
		old := d.pending[0]
		d.pending = d.pending[1:]
		d.h.End(old, m.Start, protocol.ReasonEvicted)
	}
	d.pending = append(d.pending, x)
	d.resp.ExpectResponse(m.Method)
	d.h.Begin(x)
}

// Message implements httpparse.Handler.
func (d *decoder) Message(m *httpparse.Message) {
	if m.Kind == httpparse.Request {
		return // the exchange exists since the head; it ends with the response
	}
	if len(d.pending) == 0 {
		return // a response to a request we did not see
	}
	x := d.pending[0]
	// Shifted down, not resliced: the array serves the next requests of
	// the connection without an allocation each.
	d.pending = slices.Delete(d.pending, 0, 1)
	// Read before End: an exchange ended is the handler's, which may
	// recycle it (and m, its storage) at once.
	left, declined := m.Upgrade, x.Req.Upgrade
	h2c := m.Upgrade && m.StatusCode == 101 && x.Req.UpgradeH2C && d.h2c != nil
	if h2c {
		// The request goes on as HTTP/2's stream 1: its response is
		// still to come.
		d.switched = d.h2c.Upgraded(d.h, x)
	} else {
		x.Resp = m
		d.h.End(x, endOf(x, m.End), "")
	}
	switch {
	case left:
		// The connection carries another protocol from now on.
		d.left = true
		pending := d.pending
		d.pending = nil
		for _, p := range pending {
			d.h.End(p, endOf(p, m.End), protocol.ReasonClosed)
		}
	case declined:
		// The server declined the upgrade: HTTP goes on.
		d.rest = nil
		d.req.Resume()
	}
}

// endOf is when x ends if its response ended at t: never before x began. A
// response read before its request (records of the two directions read
// out of order, or a response whose request was never seen pairing with
// the next one) would otherwise give a span of negative duration.
func endOf(x *httpspan.Exchange, t time.Time) time.Time {
	if t.Before(x.Start()) {
		return x.Start()
	}
	return t
}

// keepRest keeps the bytes a call carried after a message that left HTTP:
// a request's are kept (copied) until the response says whether the
// connection switches; a switching response's go, after them, to the
// protocol it switched to. Others are dropped.
func (d *decoder) keepRest(side protocol.Side, c httpparse.Chunk) {
	if c.Size == 0 || d.h2c == nil {
		return
	}
	if side == protocol.Requests {
		if len(d.pending) == 0 || !d.pending[len(d.pending)-1].Req.UpgradeH2C {
			return
		}
		c.Bytes, c.Tail = slices.Clone(c.Bytes), slices.Clone(c.Tail)
		d.rest = append(d.rest, protocol.SideChunk{Side: side, Chunk: protocol.Chunk(c)})
		return
	}
	if d.switched == nil {
		d.rest = nil
		return
	}
	d.rest = append(d.rest, protocol.SideChunk{Side: side, Chunk: protocol.Chunk(c)})
}

func errorsIsNotHTTP(err error) bool { return errors.Is(err, httpparse.ErrNotHTTP) }
