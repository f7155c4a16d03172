// Package sockets is the collector of plaintext TCP: syscall tracepoints on
// read, write and their vectored, message and sendfile forms copy the bytes
// of every process's TCP connections whose protocol a parser handles
// (HTTP/1.x), decided in the kernel from a connection's first bytes
// (bpf/classify.bpf.h). It emits the records of the OpenSSL collector
// (data, bind, write result, close), keyed by socket, so that the
// correlator builds spans from them the same way.
//
// One request, one span: TLS connections are classified as such in the
// kernel and never copied (the OpenSSL collector has their plaintext), and
// processes whose requests another collector sees whole (Go net/http,
// SkipPID) or that are the agent itself are skipped. Ports to ignore
// (Config.IgnorePorts: the agent's OTLP export path by default) are left
// alone so that exporting spans does not make spans.
package sockets
