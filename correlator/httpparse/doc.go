// Package httpparse is an incremental HTTP/1.x parser for one direction of a
// byte stream whose bytes were only partly captured.
//
// The eBPF collectors report each read or write call as a Chunk: the bytes
// captured at the start of the call, the number of bytes the call really
// moved, and optionally the last bytes of the call. The parser walks the
// stream message by message, counts bodies by size rather than by captured
// bytes, and tells its Handler when a message's head has been parsed and when
// the message is complete. When a message boundary falls into bytes that were
// not captured it loses sync gracefully: it estimates where the message ends
// and waits for a call that begins with a start line.
//
// A Parser reads either requests or responses. A response parser must be
// told the method of every request it will see a response to
// (ExpectResponse), because responses to HEAD and CONNECT are framed
// differently.
//
// The parser keeps at most a few kilobytes per stream (the header section is
// capped by Options.MaxHeaderBytes) and never panics on arbitrary input; bytes
// that are not HTTP/1.x are reported as ErrNotHTTP so that the caller can give
// up on the connection.
package httpparse
