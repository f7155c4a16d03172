// Package linking links a server span to the client span that caused it
// when the client runs on another node, without touching the traffic: the
// server's agent asks the agent of the node that owns the client's address
// "which span wrote request k on your socket A:p → B:q?" and makes the
// answer the span's parent.
//
// Requests are named by their ordinal on the connection (the k-th request
// the client wrote is the k-th the server read), only when both agents saw
// the connection from its start, or, on multiplexed connections (HTTP/2),
// by their stream ID, which both ends agree on; plaintext requests also by
// the TCP sequence number of the call they began in (a Query carries both,
// the TCP key matched first).
//
// Agents talk gRPC on a port of their own (linking.listen), with a codec of
// their own (this package's fixed-size binary records: connection identity
// and span IDs, never payload), authenticated by a shared token and, when
// configured, mutual TLS with the agents' own CA (LoadTLS). Lookups are
// batched per peer and asynchronous: the correlator holds a server span for
// at most linking.wait, then exports it unlinked, and counts every outcome
// (periscope_link_lookups_total{result}). Every queue and table is bounded.
package linking
