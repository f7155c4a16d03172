// Package http2 is the HTTP/2 protocol (RFC 9113), and gRPC on top of it:
// the frames of both directions of a connection, their header blocks
// decoded with golang.org/x/net/http2/hpack, one exchange per stream,
// paired by stream ID. A request's span starts with its HEADERS frame and
// ends with the END_STREAM of its response, a RST_STREAM, or a GOAWAY that
// excludes it.
//
// The agent may start after a connection did. HPACK's dynamic table is
// connection state: a header block that references an entry the agent
// never saw cannot be decoded. The decoder never guesses: the fields
// decoded before the unknown reference are kept, the exchange is marked
// (periscope.http2.headers_incomplete=true) and counted, and decoding goes
// on with an empty table, which holds only entries seen inserted and so
// never gives a wrong value. The table is whole again when the encoder
// empties it (a dynamic table size update to 0) or on a new connection.
//
// The bytes of a call may be captured only in part (a prefix and a tail).
// DATA payloads in the unknown middle are skipped by their length; a
// header block in it is lost like an unknown reference; a frame header in
// it loses the frame boundaries until a later call starts with a plausible
// frame.
//
// An HTTP/1.1 connection that upgrades to h2c (Upgrade: h2c, then 101)
// continues here (Protocol.Upgraded): the upgrading request, begun by the
// HTTP/1 decoder, is stream 1 and ends with its HTTP/2 response.
package http2
