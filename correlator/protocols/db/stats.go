package db

import "sync/atomic"

// Stats counts what the database decoders of one protocol could not keep.
// The agent exports them; one Stats is shared by all connections of a
// protocol.
type Stats struct {
	// Overflowed counts requests that found the pending queue full: they
	// get no span, and their responses are skipped in order.
	Overflowed atomic.Int64
	// LostSync counts connections given up on because bytes were missing
	// where a message header should have been, or a header was invalid.
	LostSync atomic.Int64
	// Encrypted counts connections that switched to TLS (PostgreSQL
	// SSLRequest/GSSENCRequest accepted, MySQL SSL request): their
	// plaintext, if any, comes from a TLS collector.
	Encrypted atomic.Int64
	// Forgotten counts prepared statements evicted from a connection's
	// table (too many open at once): their executions are named without
	// their text.
	Forgotten atomic.Int64
}
