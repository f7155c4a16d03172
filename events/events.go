// Package events defines the typed records that collectors hand to the
// correlator. They describe what the kernel saw (bytes crossing a TLS
// library, a connection's addresses, a process leaving) and nothing about
// protocols: collectors know nothing about HTTP.
package events

import (
	"fmt"
	"net/netip"
	"time"
)

// Direction is the direction of application data as seen by the traced
// process.
type Direction uint8

const (
	// Read is data the process received (plaintext returned by SSL_read).
	Read Direction = 1
	// Write is data the process sent (plaintext passed to SSL_write).
	Write Direction = 2
)

func (d Direction) String() string {
	switch d {
	case Read:
		return "read"
	case Write:
		return "write"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// ConnID names one connection inside one process. Key is opaque to the
// correlator: the OpenSSL collector uses the SSL* pointer.
type ConnID struct {
	PID uint32
	Key uint64
}

func (c ConnID) String() string { return fmt.Sprintf("%d/%#x", c.PID, c.Key) }

// Data is a chunk of application bytes on a connection.
type Data struct {
	Conn ConnID
	TID  uint32
	Time time.Time
	Dir  Direction
	// Size is how many bytes the call moved; Bytes holds the captured
	// prefix (len(Bytes) <= Size). When the call moved more than the
	// capture size, Tail may hold the last bytes of the call, ending at
	// offset Size.
	Size  int
	Bytes []byte
	Tail  []byte
	// Goroutine is the low 32 bits of the runtime.g of the Go code that
	// made the call (sockets collector, Go programs whose requests are
	// seen whole), or 0.
	Goroutine uint32
	// Seq, when HasSeq (sockets collector), is the TCP sequence number
	// of the call's first byte: both ends of the connection number its
	// bytes alike, from whenever either started watching.
	Seq    uint32
	HasSeq bool
}

// Tuple is a TCP connection's addresses from the process's point of view.
type Tuple struct {
	Local  netip.AddrPort
	Remote netip.AddrPort
}

// Bind says that a connection uses socket FD with the given addresses. It is
// sent when the collector first learns the socket of a connection and
// whenever it changes (a reused SSL* on a new socket). A Bind that changes
// the socket of a known connection starts a new connection.
type Bind struct {
	Conn  ConnID
	Time  time.Time
	FD    int32
	Tuple Tuple
	// Plaintext says that the connection's bytes are the socket's own
	// (the sockets collector), not a TLS library's plaintext: its scheme
	// is http, and another collector's report of the same connection
	// wins over it.
	Plaintext bool
	// StreamStart says that the call that bound the connection moved the
	// first bytes of its direction (sockets collector): the connection's
	// requests are counted from its first. A plaintext connection without
	// it was open before the agent saw it, and its requests have no
	// ordinal two agents would agree on.
	StreamStart bool
	// StartKnown says that a TLS collector tells whether it saw the
	// connection from its start (OpenSSL: the SSL*'s handshake seen):
	// StreamStart then says so, and without it the connection's requests
	// have no ordinal either.
	StartKnown bool
}

// WriteResult corrects a Write: its Data was sent when the write was
// offered, but the TLS library took only Accepted of its Requested bytes
// (a non-blocking socket was full, a partial write, an error). The
// application offers the rest again, so the next Requested-Accepted bytes
// written on the connection repeat bytes already seen.
type WriteResult struct {
	Conn      ConnID
	Time      time.Time
	Requested int
	Accepted  int
}

// Close says that the process closed the socket of a connection.
type Close struct {
	Conn ConnID
	Time time.Time
	// Superseded: not a close, but the collector leaving the connection
	// to another that reports its requests whole; what it sent of the
	// connection makes no span.
	Superseded bool
}

// Exit says that a process has exited; all its connections are gone.
type Exit struct {
	PID  uint32
	Time time.Time
}

// Exec says that a process has executed a new program: what named it
// before describes its old program.
type Exec struct {
	PID  uint32
	Time time.Time
	// KTime is the exec's CLOCK_MONOTONIC time in nanoseconds (the
	// kernel's own clock), to order it exactly against reads of /proc.
	KTime uint64
}

// TCPState is a TCP connection state, numbered as the kernel numbers it
// (include/net/tcp_states.h).
type TCPState uint8

// TCP states.
const (
	TCPEstablished TCPState = 1
	TCPSynSent     TCPState = 2
	TCPSynRecv     TCPState = 3
	TCPFinWait1    TCPState = 4
	TCPFinWait2    TCPState = 5
	TCPTimeWait    TCPState = 6
	TCPClose       TCPState = 7
	TCPCloseWait   TCPState = 8
	TCPLastAck     TCPState = 9
	TCPListen      TCPState = 10
	TCPClosing     TCPState = 11
	TCPNewSynRecv  TCPState = 12
)

// String returns the state as OpenTelemetry's network.connection.state
// spells it ("established", "syn_sent", ...).
func (s TCPState) String() string {
	switch s {
	case TCPEstablished:
		return "established"
	case TCPSynSent:
		return "syn_sent"
	case TCPSynRecv, TCPNewSynRecv:
		return "syn_received"
	case TCPFinWait1:
		return "fin_wait_1"
	case TCPFinWait2:
		return "fin_wait_2"
	case TCPTimeWait:
		return "time_wait"
	case TCPClose:
		return "closed"
	case TCPCloseWait:
		return "close_wait"
	case TCPLastAck:
		return "last_ack"
	case TCPListen:
		return "listen"
	case TCPClosing:
		return "closing"
	}
	return fmt.Sprintf("tcp_state(%d)", uint8(s))
}

// SocketRole says which end of a TCP connection the owning process is.
type SocketRole uint8

const (
	// RoleUnknown: the owner was found without seeing the connection open.
	RoleUnknown SocketRole = 0
	// RoleConnected: the owner connected; the peer is the server.
	RoleConnected SocketRole = 1
	// RoleAccepted: the owner accepted; the peer is the client.
	RoleAccepted SocketRole = 2
)

// Retransmit is one retransmission by a TCP socket: the kernel sent
// Segments segments again. Retransmissions happen in softirq context, so
// the collector names the process that owns the socket (the one that
// connected or accepted it), not the one on the CPU.
type Retransmit struct {
	Time time.Time
	// PID owns the socket; 0 when no owner could be found.
	PID uint32
	// Comm is the owner's command name as the kernel knew it (at most 15
	// bytes); "" when unknown.
	Comm string
	Role SocketRole
	// Tuple is the connection from the owner's point of view.
	Tuple    Tuple
	State    TCPState
	Segments int
	// SYN says the segment carried SYN: a connection attempt the peer has
	// not answered yet (a failed-connection signal).
	SYN bool
}

// RequestKind says which end of a request a process was.
type RequestKind uint8

const (
	// RequestServer: the process served the request.
	RequestServer RequestKind = 1
	// RequestClient: the process sent the request.
	RequestClient RequestKind = 2
)

// RequestStart says that a request seen whole by a language-level probe
// (Go net/http) has started. The probe chose the span's ID, so that a client
// call made while serving a request can name its parent before either ends.
type RequestStart struct {
	PID  uint32
	ID   uint64 // the span's ID
	Kind RequestKind
	Time time.Time
	// Parent is the ID of the server request in flight on the same
	// goroutine (client calls made from a handler), or 0.
	Parent uint64
	// Goroutine is the low 32 bits of the runtime.g of the goroutine the
	// request runs on (what the sockets collector reports of a Go
	// program's syscalls), or 0.
	Goroutine uint32
	// FD is the connection's socket (-1: unknown) and Tuple its addresses.
	FD    int32
	Tuple Tuple
	TLS   bool
	// Version is the request's HTTP version as OpenTelemetry writes it
	// ("1.0", "1.1", "2"); "" when the probe does not know it.
	Version string
	// TraceParent is the first value of the incoming request's
	// traceparent header as the probe found it (server requests; "" when
	// there is none or it was not searched), possibly cut at 64 bytes.
	TraceParent string
}

// RequestEnd completes the request started with the same PID and ID.
type RequestEnd struct {
	PID      uint32
	ID       uint64
	Kind     RequestKind
	Time     time.Time
	Method   string
	Path     string
	RawQuery string
	Host     string
	// Status is the HTTP status code; 0 when a client call failed.
	Status int
	// RequestBodySize and ResponseBodySize are -1 when unknown.
	RequestBodySize  int64
	ResponseBodySize int64
	// Failed says that a client call returned an error.
	Failed bool
}

// Sink receives events from collectors. Implementations must not block for
// long: collectors call it from their ring-buffer reading goroutine. A
// Data's Bytes and Tail are the ring's own memory, valid only during the
// call: a sink copies what it keeps.
type Sink interface {
	Data(Data)
	Bind(Bind)
	WriteResult(WriteResult)
	RequestStart(RequestStart)
	RequestEnd(RequestEnd)
	Close(Close)
	Exit(Exit)
	Exec(Exec)
	Retransmit(Retransmit)
}
