// Package protocol defines what the correlator asks of an application
// protocol: detect it from the first bytes of a connection and their
// direction, decode the bytes of each direction into exchanges (a request
// and its response), name the span of an exchange and its attributes per
// the protocol's semantic conventions, and list the duration histograms
// (RED metrics) its spans record into.
//
// One package per protocol implements Protocol (correlator/protocols/...);
// the agent registers them in order in a Registry. The correlator owns
// everything that is not protocol-specific: connections, roles, timing,
// trace IDs, parents, linking the two ends of a connection, retransmits and
// exporting.
package protocol

import (
	"errors"
	"net/netip"
	"time"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

// Role is the traced process's side of a connection.
type Role uint8

const (
	// Unknown: not decided yet.
	Unknown Role = iota
	// Server: the process receives requests.
	Server
	// Client: the process sends requests.
	Client
)

// Side names the two byte streams of a connection.
type Side uint8

const (
	// Requests is the stream from the client to the server.
	Requests Side = iota + 1
	// Responses is the stream from the server to the client.
	Responses
)

// SideOf returns the stream that data moved in direction dir belongs to,
// for a process in role r.
func SideOf(r Role, dir events.Direction) Side {
	if (r == Server) == (dir == events.Read) {
		return Requests
	}
	return Responses
}

// Chunk is one read or write call on a stream. Bytes holds the first
// captured bytes of the call, Size how many bytes the call moved in all,
// and Tail, when the call moved more than was captured, the last bytes of
// the call (ending at offset Size). Bytes in neither are unknown.
type Chunk struct {
	Bytes []byte
	Size  int
	Tail  []byte
	Time  time.Time
}

// Verdict is what a protocol says of a connection's first bytes.
type Verdict uint8

const (
	// No: the bytes are not this protocol's.
	No Verdict = iota
	// Yes: they are; Detection.Role says who the traced process is.
	Yes
	// Undecided: they may be; more bytes are needed (the chunk itself is
	// not decoded). It stops the search through the registry, so a
	// protocol answers it only for bytes that no protocol after it could
	// start with (HTTP/2 frames start with a zero byte; HTTP/1 never).
	Undecided
)

// Detection is the result of Protocol.Detect.
type Detection struct {
	Verdict Verdict
	Role    Role
}

// Exchange is one request and its response as a decoder reports them.
// Protocols define their own exchange types; the correlator reads only
// this much and hands them back to the protocol's Describe.
type Exchange interface {
	// Start is the time of the request's first byte.
	Start() time.Time
	// TraceParent is the W3C traceparent the request carried, or "".
	TraceParent() string
	// Stream identifies the exchange on a multiplexed connection (the
	// same on both ends of it), ok false when the protocol pairs requests
	// and responses by order.
	Stream() (id uint64, ok bool)
}

// GreetingWaiter is implemented by protocols whose spans are described
// from what another connection's stream carried (MySQL over TLS: the
// greeting that names the system went over the socket, whose records come
// through another collector's ring). While AwaitsGreeting(x, c) — the
// exchange's connection is not bound to its socket yet, or no greeting of
// that connection (or of its server) has been read — its span waits until
// every ring has been read past its end, whatever else would let it out
// (the Bind, its peer).
type GreetingWaiter interface {
	AwaitsGreeting(x Exchange, c Conn) bool
}

// Handler receives the exchanges of a decoder, in the order their
// requests started (Begin) and ended (End).
type Handler interface {
	// Begin is called once the request's head is known.
	Begin(x Exchange)
	// End is called when the exchange is over at end: complete (reason
	// ""), or ended by the protocol (a stream reset, a connection that
	// stopped speaking the protocol): reason is then one of the Reason
	// constants.
	End(x Exchange, end time.Time, reason string)
}

// ConnInfo is implemented by handlers that can tell a decoder which
// connection it decodes: a protocol that must match one connection's
// stream with another's (MySQL's greeting on the socket, the rest inside
// TLS) asks.
type ConnInfo interface {
	Info() Conn
}

// Client returns the client's end of a bound connection.
func (c Conn) Client() netip.AddrPort {
	switch {
	case !c.Bound:
		return netip.AddrPort{}
	case c.Role == Server:
		return c.Remote
	}
	return c.Local
}

// Decoder decodes the two streams of one connection.
type Decoder interface {
	// Feed decodes one chunk of stream side. An error means the
	// connection broke the protocol: the correlator stops feeding it and
	// ends the exchanges in flight (ErrNotProtocol when the bytes were
	// never this protocol's).
	Feed(side Side, c Chunk) error
	// EOF tells that the connection ended at t: exchanges whose end is
	// the connection's end complete now. Others stay in flight; the
	// correlator ends them.
	EOF(t time.Time)
	// Left tells whether the connection left the protocol (an HTTP/1
	// upgrade): its bytes are not decoded any more.
	Left() bool
}

// Switcher is implemented by a decoder whose connection can switch to
// another protocol (an HTTP/1.1 upgrade to h2c). Once the decoder has left
// its protocol (Left), Switched returns the protocol and decoder of the
// rest of the connection, and the bytes that came after the switch in the
// calls that carried it, to be fed to that decoder in order; dec is nil
// when the connection did not switch to a protocol the correlator decodes.
type Switcher interface {
	Switched() (p Protocol, dec Decoder, rest []SideChunk)
}

// Lost bytes. A plaintext record that starts past where the last one of its
// direction ended (its TCP sequence number says so) follows bytes the agent
// lost: records dropped in the kernel. What the correlator does then
// depends on how the protocol pairs requests with responses.

// Restarter is implemented by protocols that pair by order and whose
// requests can be told from the middle of a connection (HTTP/1, Redis,
// PostgreSQL).
// After lost bytes the requests in flight end (ReasonDataLost), and a new
// decoder starts at the next call on the requests side that StartsRequest;
// the other side's bytes until then are dropped.
type Restarter interface {
	// StartsRequest reports whether first, the bytes of a call on the
	// requests side, start a request.
	StartsRequest(first []byte) bool
}

// Resetter is implemented by the decoders of Restarter protocols that
// keep state of the connection beyond its messages in flight (Redis: the
// database selected, a subscription; PostgreSQL: the database, prepared
// statements). Reset forgets the messages in
// flight (the correlator ended their requests) and keeps that state; the
// decoder goes on at the next request. Other decoders are replaced.
type Resetter interface {
	Reset()
}

// GapSkipper is implemented by protocols whose decoders pair by stream
// and follow a connection past bytes not captured (Chunk.Size beyond its
// bytes) themselves (HTTP/2): lost bytes are fed to them as such.
type GapSkipper interface {
	SkipsGaps()
}

// Protocols that are neither (MySQL: its packets' sequence and result
// state cannot be found again mid-connection) stop being decoded on the
// connection after lost bytes; the requests in flight end (ReasonDataLost).

// SideChunk is a chunk of one stream of a connection.
type SideChunk struct {
	Side  Side
	Chunk Chunk
}

// Conn is what the correlator knows of a connection when it builds a span.
type Conn struct {
	Role   Role
	Scheme string // "https" for data from TLS libraries, else "http"
	// Bound is set once the connection's socket is known; Local and
	// Remote are then its addresses (either may be invalid) and PeerAddr
	// Remote's address formatted.
	Bound         bool
	Local, Remote netip.AddrPort
	PeerAddr      string
}

// ServerAddr returns the server's end of a bound connection.
func (c Conn) ServerAddr() netip.AddrPort {
	switch {
	case !c.Bound:
		return netip.AddrPort{}
	case c.Role == Server:
		return c.Local
	}
	return c.Remote
}

// Protocol is one application protocol.
type Protocol interface {
	// Name names the protocol in logs and metrics ("http1", "http2").
	Name() string
	// Detect looks at the first bytes a connection carried, moved in
	// direction dir, and says whether they are this protocol's and, if
	// so, the role of the traced process.
	Detect(first []byte, dir events.Direction) Detection
	// NewDecoder returns a decoder for a new connection on which the
	// traced process has role r; it reports exchanges to h.
	NewDecoder(r Role, h Handler) Decoder
	// Describe names the span of an exchange and sets its attributes
	// and status per the protocol's semantic conventions. s has its
	// kind, times and IDs set. reason is "" for a complete exchange, else
	// why it ended early: the correlator then sets the span's error
	// status and error.type itself.
	Describe(x Exchange, c Conn, reason string, s *span.Span)
}

// MaxStreams bounds the exchanges in flight on one multiplexed connection
// (one whose exchanges name their stream); past it the oldest ends as
// evicted.
const MaxStreams = 1024

// Reasons an exchange ends without a complete response (error.type).
const (
	ReasonClosed     = "connection_closed"
	ReasonExit       = "process_exited"
	ReasonTimeout    = "timeout"
	ReasonEvicted    = "evicted"
	ReasonParseError = "parse_error"
	ReasonRequestErr = "request_failed" // a client call returned an error
	ReasonReset      = "stream_reset"   // the stream was reset (HTTP/2 RST_STREAM, GOAWAY)
	// ReasonDataLost: bytes of the connection were lost before the
	// response (records dropped in the kernel): a protocol that pairs by
	// order can no longer tell which response is whose.
	ReasonDataLost = "data_lost"
)

// ErrNotProtocol is returned (wrapped) by Feed when a connection's bytes
// turn out not to be the protocol's.
var ErrNotProtocol = errors.New("not the protocol")

// Registry is the protocols the correlator tries, in order.
type Registry []Protocol

// Detect returns the first protocol that claims first, and its role. A
// protocol that is undecided stops the search: nil, Undecided.
func (r Registry) Detect(first []byte, dir events.Direction) (Protocol, Detection) {
	for _, p := range r {
		d := p.Detect(first, dir)
		switch d.Verdict {
		case Yes:
			return p, d
		case Undecided:
			return nil, d
		}
	}
	return nil, Detection{}
}
