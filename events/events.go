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
}

// Exit says that a process has exited; all its connections are gone.
type Exit struct {
	PID  uint32
	Time time.Time
}

// Sink receives events from collectors. Implementations must not block for
// long: collectors call it from their ring-buffer reading goroutine.
type Sink interface {
	Data(Data)
	Bind(Bind)
	WriteResult(WriteResult)
	Close(Close)
	Exit(Exit)
}
