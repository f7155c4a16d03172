package http2

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"

	"github.com/periscope-apm/periscope/correlator/httpspan"
	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/grpc"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

// AttrHeadersIncomplete marks a span whose header blocks were not all
// decoded.
const AttrHeadersIncomplete = "periscope.http2.headers_incomplete"

// AttrFramesLost marks a span during which frames of its connection went
// by uncaptured: its end (and sizes) may not be the stream's own.
const AttrFramesLost = "periscope.http2.frames_lost"

// Protocol is HTTP/2, with gRPC on top.
type Protocol struct {
	sem   *httpspan.Semantics
	stats stats
}

type stats struct {
	incomplete prometheus.Counter // spans with headers_incomplete
	framesLost prometheus.Counter
	resyncs    prometheus.Counter
}

var _ protocol.Protocol = (*Protocol)(nil)

// New returns HTTP/2 with the HTTP span semantics sem; reg (may be nil)
// receives its counters.
func New(sem *httpspan.Semantics, reg prometheus.Registerer) (*Protocol, error) {
	p := &Protocol{sem: sem, stats: stats{
		incomplete: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "periscope_http2_headers_incomplete_spans_total",
			Help: "HTTP/2 and gRPC spans with header fields that could not be decoded (the agent started after the connection did).",
		}),
		framesLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "periscope_http2_frame_sync_lost_total",
			Help: "Times the HTTP/2 frame boundaries of a connection direction were lost (a frame header not captured).",
		}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "periscope_http2_hpack_table_resets_total",
			Help: "HPACK dynamic table size updates to 0 seen: from there the agent's table matches the encoder's.",
		}),
	}}
	if reg != nil {
		for _, c := range []prometheus.Collector{p.stats.incomplete, p.stats.framesLost, p.stats.resyncs} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register HTTP/2 metrics: %w", err)
			}
		}
	}
	return p, nil
}

// Name implements protocol.Protocol.
func (*Protocol) Name() string { return "http2" }

// SkipsGaps implements protocol.GapSkipper: streams pair by their IDs, and
// the decoder finds frames again after bytes not captured.
func (*Protocol) SkipsGaps() {}

// Detect implements protocol.Protocol: the client preface decides; on a
// connection found after its start, frames that look like HTTP/2 do once
// a HEADERS frame shows which end sends requests. The port never does.
func (*Protocol) Detect(first []byte, dir events.Direction) protocol.Detection {
	if len(first) >= 4 && strings.HasPrefix(Preface, string(first[:min(len(first), len(Preface))])) {
		return protocol.Detection{Verdict: protocol.Yes, Role: roleOf(true, dir)}
	}
	if !plausible(first) {
		return protocol.Detection{}
	}
	sender, ok := headersSender(first)
	if !ok {
		return protocol.Detection{Verdict: protocol.Undecided}
	}
	return protocol.Detection{Verdict: protocol.Yes, Role: roleOf(sender == protocol.Client, dir)}
}

// roleOf returns the traced process's role when the data's sender is the
// client (or not) and moved in direction dir.
func roleOf(clientSent bool, dir events.Direction) protocol.Role {
	if clientSent == (dir == events.Write) {
		return protocol.Client
	}
	return protocol.Server
}

// headersSender finds the first HEADERS frame in b and tells who sent it
// from its first header field: a request pseudo-header (:method, :path,
// :scheme, :authority) or :status, named through the static table, which
// never depends on connection state.
func headersSender(b []byte) (protocol.Role, bool) {
	for len(b) >= frameHeaderLen {
		fh := parseFrameHeader(b)
		p := b[frameHeaderLen:]
		if uint32(len(p)) > fh.length {
			p = p[:fh.length]
		}
		if fh.typ == frameHeaders {
			block, ok := blockOf(fh, p)
			if !ok {
				return protocol.Unknown, false
			}
			return firstFieldSender(block)
		}
		if uint32(len(b)-frameHeaderLen) < fh.length {
			break
		}
		b = b[frameHeaderLen+fh.length:]
	}
	return protocol.Unknown, false
}

func firstFieldSender(block []byte) (protocol.Role, bool) {
	for len(block) > 0 && block[0]&0xe0 == 0x20 && block[0] != 0x3f {
		block = block[1:] // a one-byte dynamic table size update
	}
	if len(block) == 0 {
		return protocol.Unknown, false
	}
	b := block[0]
	var idx byte
	switch {
	case b&0x80 != 0:
		idx = b & 0x7f
	case b&0xc0 == 0x40:
		idx = b & 0x3f
	case b&0xe0 == 0:
		idx = b & 0x0f
	}
	switch {
	case idx >= 1 && idx <= 7:
		return protocol.Client, true
	case idx >= 8 && idx <= 14:
		return protocol.Server, true
	}
	return protocol.Unknown, false
}

// NewDecoder implements protocol.Protocol.
func (p *Protocol) NewDecoder(_ protocol.Role, h protocol.Handler) protocol.Decoder {
	return newDecoder(p, h)
}

// Upgraded implements http1.H2C: the decoder of a connection after the
// 101 response to an HTTP/1.1 request with "Upgrade: h2c" (RFC 7540 §3.2).
// The request is stream 1, half-closed by the client; its response comes
// in HTTP/2 frames, after which up ends. The client's preface is still to
// come; the request's HTTP2-Settings are its first SETTINGS.
func (p *Protocol) Upgraded(h protocol.Handler, up *httpspan.Exchange) protocol.Decoder {
	d := newDecoder(p, h)
	x := &Exchange{}
	x.Req, x.StreamID = up.Req, 1
	// From now on the request pairs with the other end's by its stream.
	up.StreamID = 1
	d.streams[1] = &stream{x: x, up: up}
	d.order = append(d.order, 1)
	if s, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(up.Req.HTTP2Settings, "=")); err == nil {
		d.dirs[protocol.Requests-1].settings(s)
	}
	return d
}

// Describe implements protocol.Protocol.
func (p *Protocol) Describe(px protocol.Exchange, c protocol.Conn, reason string, s *span.Span) {
	x := px.(*Exchange)
	if x.GRPC {
		grpc.Describe(&x.Call, x.Req.Host, c, reason, s)
	} else {
		p.sem.Describe(&x.Exchange, c, reason, s)
	}
	if x.HeadersIncomplete {
		s.Attributes = append(s.Attributes, attribute.Bool(AttrHeadersIncomplete, true))
		p.stats.incomplete.Inc()
	}
	if x.FramesLost {
		s.Attributes = append(s.Attributes, attribute.Bool(AttrFramesLost, true))
	}
}
