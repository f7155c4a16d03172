package httpparse

import (
	"errors"
	"time"
)

// Kind says whether a parser reads requests or responses.
type Kind uint8

const (
	// Request parsers read the stream that carries requests.
	Request Kind = iota + 1
	// Response parsers read the stream that carries responses.
	Response
)

func (k Kind) String() string {
	switch k {
	case Request:
		return "request"
	case Response:
		return "response"
	}
	return "kind(?)"
}

// Chunk is one read or write call on the stream. Bytes holds the first
// captured bytes of the call, Size how many bytes the call moved in all, and
// Tail, when the call moved more than was captured, the last bytes of the
// call (ending at offset Size). Bytes in neither are unknown.
type Chunk struct {
	Bytes []byte
	Size  int
	Tail  []byte
	Time  time.Time
}

// Header is one header field as received.
type Header struct {
	Name  string
	Value string
}

// Message is one parsed request or response. Strings are copies: a handler
// may keep the message.
type Message struct {
	Kind Kind

	// Requests.
	Method   string // as received, case preserved
	Target   string // the raw request-target
	Path     string // path part of Target ("" for authority-form targets)
	RawQuery string // query part of Target without '?'

	// Responses.
	StatusCode int
	// Interim counts the 1xx responses (e.g. 100 Continue) that came
	// before this final response; they are not reported on their own.
	Interim int

	// Version is the HTTP version: "1.1" or "1.0".
	Version string

	// Selected headers (the last occurrence wins).
	Host        string
	ContentType string
	UserAgent   string
	TraceParent string
	TraceState  string
	// ContentLength is the Content-Length header, -1 when absent.
	ContentLength int64
	// Chunked is set when the body uses the chunked transfer coding.
	Chunked bool
	// Headers holds every header field in order when Options.AllHeaders is
	// set (at most maxHeaders fields).
	Headers []Header

	// BodySize counts the body bytes (chunked: the decoded payload; when
	// the parser lost sync inside a chunked body, the raw bytes instead).
	BodySize int64

	// Start is the time of the call that carried the message's first byte,
	// End the time of the call that carried its last byte.
	Start, End time.Time

	// HeadersComplete is set once the header section has been parsed.
	HeadersComplete bool
	// Complete is set once the whole message has been seen.
	Complete bool
	// Truncated is set when parts of the message were not captured: header
	// fields may be missing and the end of the message may be an estimate.
	Truncated bool
	// Upgrade is set on a request that asks to leave HTTP (CONNECT, or an
	// Upgrade header with Connection: upgrade) and on a response that
	// does (101 Switching Protocols, or 2xx to CONNECT). After an upgrading
	// response the stream carries another protocol and is ignored.
	Upgrade bool
	// UpgradeH2C is set when the Upgrade header lists h2c (HTTP/2 over
	// cleartext, RFC 7540 §3.2), and HTTP2Settings holds the request's
	// HTTP2-Settings header (base64url SETTINGS payload) then.
	UpgradeH2C    bool
	HTTP2Settings string
}

// Handler receives parsed messages. Both methods get the same *Message for
// one message; the parser never touches a message after it is complete.
// Handlers must not call Feed or EOF on the parser that is calling them.
type Handler interface {
	// Headers is called when the start line and header section of a
	// message have been parsed (1xx interim responses are skipped).
	Headers(*Message)
	// Message is called when a message is complete.
	Message(*Message)
}

// Allocator is implemented by a Handler that provides the storage of the
// messages it will be given (the parser resets it), so that a message can
// live inside the handler's own record of the exchange instead of an
// allocation of its own. NewMessage is called when a message starts; a
// message that is dropped before Headers (an interim 1xx response, a start
// line cut short) may be followed by another NewMessage call.
type Allocator interface {
	NewMessage(Kind) *Message
}

// Options tune a Parser. The zero value is usable.
type Options struct {
	// MaxHeaderBytes caps the start line plus header section (and the
	// trailer section of chunked bodies). Zero means DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// AllHeaders keeps every header field in Message.Headers.
	AllHeaders bool
}

// DefaultMaxHeaderBytes is the header size cap when Options leave it zero.
const DefaultMaxHeaderBytes = 16 << 10

const (
	maxHeaders      = 128  // header fields kept in Message.Headers
	maxMethodLen    = 32   // longest method accepted
	maxChunkLineLen = 1024 // longest chunk-size line (with extensions)
	maxPending      = 256  // request methods queued on a response parser
	windowSize      = 512  // bytes kept to find the end of a chunked body after losing sync
	keepLineCap     = 2048 // a line buffer grown past this is released after use
)

// Errors reported by Feed. They are wrapped with details; test them with
// errors.Is.
var (
	// ErrNotHTTP means that the stream does not start with an HTTP/1.x
	// message: the caller should give up on the connection.
	ErrNotHTTP = errors.New("not HTTP/1.x")
	// ErrMalformed means that a stream that carried HTTP broke the
	// protocol (bad start line, header, length or chunk framing).
	ErrMalformed = errors.New("malformed HTTP message")
	// ErrHeaderTooLarge means that a header section exceeded the cap.
	ErrHeaderTooLarge = errors.New("HTTP header section too large")
)
