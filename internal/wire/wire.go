// Package wire decodes the parts of eBPF records that several programs share
// (bpf/periscope.h): the event header and the TCP address tuple.
package wire

import (
	"encoding/binary"
	"net/netip"

	"github.com/periscope-apm/periscope/events"
)

// TupleSize is sizeof(struct tuple) in bpf/periscope.h. Collectors check
// their generated mirrors against it in a test.
const TupleSize = 40

// Offsets of struct tuple's fields.
const (
	tupleFamily     = 0
	tupleLocalPort  = 2
	tupleRemotePort = 4
	tupleLocalAddr  = 8
	tupleRemoteAddr = 24
)

const (
	afInet  = 2
	afInet6 = 10
)

// Tuple decodes a struct tuple. An unknown family gives the zero Tuple.
func Tuple(b []byte) events.Tuple {
	if len(b) < TupleSize {
		return events.Tuple{}
	}
	ne := binary.NativeEndian
	lport := ne.Uint16(b[tupleLocalPort:])
	rport := ne.Uint16(b[tupleRemotePort:])
	var l, r netip.Addr
	switch ne.Uint16(b[tupleFamily:]) {
	case afInet:
		l = netip.AddrFrom4([4]byte(b[tupleLocalAddr : tupleLocalAddr+4]))
		r = netip.AddrFrom4([4]byte(b[tupleRemoteAddr : tupleRemoteAddr+4]))
	case afInet6:
		l = netip.AddrFrom16([16]byte(b[tupleLocalAddr : tupleLocalAddr+16])).Unmap()
		r = netip.AddrFrom16([16]byte(b[tupleRemoteAddr : tupleRemoteAddr+16])).Unmap()
	default:
		return events.Tuple{}
	}
	return events.Tuple{Local: netip.AddrPortFrom(l, lport), Remote: netip.AddrPortFrom(r, rport)}
}
