// Package sockets is the collector of plaintext TCP: syscall tracepoints on
// read, write and their vectored, message and sendfile forms copy the bytes
// of every process's TCP connections whose protocol a parser handles
// (HTTP/1.x, PostgreSQL, MySQL/MariaDB, Redis), decided in the kernel from a
// connection's first bytes
// (bpf/classify.bpf.h). It emits the records of the OpenSSL collector
// (data, bind, write result, close), keyed by socket, so that the
// correlator builds spans from them the same way.
//
// One request, one span: TLS connections are classified as such in the
// kernel and never copied (the OpenSSL collector has their plaintext), and
// the HTTP connections of processes whose requests another collector sees
// whole (Go net/http, SkipPID) and every connection of the agent itself are
// skipped; a Go program's database connections are still traced. Ports to ignore
// (Config.IgnorePorts: the agent's OTLP export path by default) are left
// alone so that exporting spans does not make spans.
package sockets
