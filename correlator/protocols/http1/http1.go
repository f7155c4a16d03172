// Package http1 is the HTTP/1.x protocol: the parser of package httpparse
// behind the protocol.Protocol interface. Requests and responses pair in
// order (keep-alive and pipelining); a connection that upgrades (101,
// CONNECT) leaves the protocol.
package http1

import (
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
type Protocol struct{ sem *httpspan.Semantics }

var _ protocol.Protocol = (*Protocol)(nil)

// New returns HTTP/1.x with the span semantics sem.
func New(sem *httpspan.Semantics) *Protocol { return &Protocol{sem: sem} }

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

// Describe implements protocol.Protocol.
func (p *Protocol) Describe(x protocol.Exchange, c protocol.Conn, reason string, s *span.Span) {
	p.sem.Describe(x.(*httpspan.Exchange), c, reason, s)
}

// NewDecoder implements protocol.Protocol.
func (p *Protocol) NewDecoder(_ protocol.Role, h protocol.Handler) protocol.Decoder {
	d := &decoder{h: h}
	opts := httpparse.Options{AllHeaders: p.sem.CaptureHeaders()}
	d.req = httpparse.New(httpparse.Request, opts, d)
	d.resp = httpparse.New(httpparse.Response, opts, d)
	return d
}

// decoder pairs the messages of the two parsers of a connection.
type decoder struct {
	h         protocol.Handler
	req, resp *httpparse.Parser
	pending   []*httpspan.Exchange // oldest first
	left      bool
	// next is the exchange whose request the request parser is reading
	// (NewMessage), until its head is known.
	next *httpspan.Exchange
}

var _ httpparse.Allocator = (*decoder)(nil)

// NewMessage implements httpparse.Allocator: a request is read into a new
// exchange's storage, a response into that of the oldest exchange still
// waiting for one, so that an exchange and its two messages are one
// allocation.
func (d *decoder) NewMessage(k httpparse.Kind) *httpparse.Message {
	if k == httpparse.Request {
		if d.next == nil {
			d.next = &httpspan.Exchange{}
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
		x = &httpspan.Exchange{}
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
	x.Resp = m
	d.h.End(x, m.End, "")
	switch {
	case m.Upgrade:
		// The connection carries another protocol from now on.
		d.left = true
		pending := d.pending
		d.pending = nil
		for _, p := range pending {
			d.h.End(p, m.End, protocol.ReasonClosed)
		}
	case x.Req.Upgrade:
		// The server declined the upgrade: HTTP goes on.
		d.req.Resume()
	}
}

func errorsIsNotHTTP(err error) bool { return errors.Is(err, httpparse.ErrNotHTTP) }
