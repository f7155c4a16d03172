// Package gotls is the collector for Go's crypto/tls, in any Go program
// (grpc-go, or anything else on crypto/tls): the plaintext of
// (*tls.Conn).Write at its entry and of (*tls.Conn).Read at the copy of
// the decrypted record into the caller's buffer, keyed by the *tls.Conn and
// bound to its socket, as events.Data, Bind and Close records, so that the
// bytes flow into the same protocol decoders as OpenSSL's.
//
// Every probe sits on an instruction the kernel emulates (the entry's
// stack-check branch, a direct CALL): three hits per Write and Read pair,
// none on a RET. Connections whose handshake net/http runs are left to the
// gohttp collector (Config.LeaveNetHTTP), which reports their requests
// whole: one request, one span; so are those on which gohttp saw a request
// (Config.NetHTTPConns), whatever opened them. An executable whose only TLS
// connections are net/http's (symbols.TLSUsers, read from its code) gets
// no probe at all then: every Read and Write would cost a hit for nothing.
package gotls
