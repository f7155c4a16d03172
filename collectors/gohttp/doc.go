// Package gohttp is the collector for Go net/http servers and clients, from
// the binary alone: it recognises Go executables (build info), finds the
// functions by symbol table or .gopclntab, reads struct field offsets from
// DWARF or the table in symbols/, and puts plain uprobes on the branch of
// each function's stack check, where the kernel emulates the probed
// instruction (cheap) and the arguments are still in their registers. The
// client's end is read at each RET of (*persistConn).roundTrip; there are
// no uretprobes on Go code, whose moving stacks they would corrupt.
//
// Requests are reported whole (events.RequestStart and RequestEnd), with
// span IDs made in the kernel so that a client call made from a handler
// names the handler's span as its parent. HTTP/2 requests are not seen yet.
package gohttp
