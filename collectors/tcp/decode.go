package tcp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"unsafe"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/ktime"
)

// Constants of bpf/periscope.h.
const (
	eventRetransmit = 32
	retransmitSYN   = 1

	ownerUnknown = 0
	ownerConnect = 1
	ownerAccept  = 2

	afInet  = 2
	afInet6 = 10
)

// Field offsets of struct retransmit_event, taken from its generated mirror
// so that the decoder cannot drift from bpf/periscope.h.
var (
	offType = unsafe.Offsetof(tcpRetransmitEvent{}.Hdr) + unsafe.Offsetof(tcpRetransmitEvent{}.Hdr.Type)
	offTS   = unsafe.Offsetof(tcpRetransmitEvent{}.Hdr) + unsafe.Offsetof(tcpRetransmitEvent{}.Hdr.Ts)
	offPID  = unsafe.Offsetof(tcpRetransmitEvent{}.Hdr) + unsafe.Offsetof(tcpRetransmitEvent{}.Hdr.Pid)

	offSock   = unsafe.Offsetof(tcpRetransmitEvent{}.Sock)
	offIno    = unsafe.Offsetof(tcpRetransmitEvent{}.Ino)
	offSegs   = unsafe.Offsetof(tcpRetransmitEvent{}.Segs)
	offFamily = unsafe.Offsetof(tcpRetransmitEvent{}.Family)
	offLPort  = unsafe.Offsetof(tcpRetransmitEvent{}.LocalPort)
	offRPort  = unsafe.Offsetof(tcpRetransmitEvent{}.RemotePort)
	offState  = unsafe.Offsetof(tcpRetransmitEvent{}.State)
	offRole   = unsafe.Offsetof(tcpRetransmitEvent{}.Role)
	offFlags  = unsafe.Offsetof(tcpRetransmitEvent{}.Flags)
	offLAddr  = unsafe.Offsetof(tcpRetransmitEvent{}.LocalAddr)
	offRAddr  = unsafe.Offsetof(tcpRetransmitEvent{}.RemoteAddr)
	offComm   = unsafe.Offsetof(tcpRetransmitEvent{}.Comm)
	commLen   = len(tcpRetransmitEvent{}.Comm)
	eventSize = unsafe.Sizeof(tcpRetransmitEvent{})
)

var ne = binary.NativeEndian

// record is a decoded retransmit_event: the event for the sink, and what
// user space needs to find an unknown owner.
type record struct {
	ev   events.Retransmit
	sock uint64 // struct sock *
	ino  uint64 // socket inode, when the kernel did not know the owner
}

// decode parses one ring record. It reports false for a record that is too
// short, of another type or of an unknown address family.
func decode(raw []byte, clock ktime.Clock) (record, bool) {
	if uintptr(len(raw)) < eventSize || ne.Uint32(raw[offType:]) != eventRetransmit {
		return record{}, false
	}
	tuple, ok := decodeTuple(raw)
	if !ok {
		return record{}, false
	}
	r := record{
		ev: events.Retransmit{
			Time:     clock.Time(ne.Uint64(raw[offTS:])),
			PID:      ne.Uint32(raw[offPID:]),
			Comm:     cString(raw[offComm : int(offComm)+commLen]),
			Role:     roleOf(raw[offRole]),
			Tuple:    tuple,
			State:    events.TCPState(raw[offState]),
			Segments: int(max(ne.Uint32(raw[offSegs:]), 1)),
			SYN:      raw[offFlags]&retransmitSYN != 0,
		},
		sock: ne.Uint64(raw[offSock:]),
		ino:  ne.Uint64(raw[offIno:]),
	}
	return r, true
}

// roleOf maps enum owner_role to the events' roles.
func roleOf(owner uint8) events.SocketRole {
	switch owner {
	case ownerConnect:
		return events.RoleConnected
	case ownerAccept:
		return events.RoleAccepted
	}
	return events.RoleUnknown
}

// ownerRole maps an event role to enum owner_role.
func ownerRole(r events.SocketRole) uint8 {
	switch r {
	case events.RoleConnected:
		return ownerConnect
	case events.RoleAccepted:
		return ownerAccept
	}
	return ownerUnknown
}

func decodeTuple(raw []byte) (events.Tuple, bool) {
	var l, r netip.Addr
	switch ne.Uint16(raw[offFamily:]) {
	case afInet:
		l = netip.AddrFrom4([4]byte(raw[offLAddr : offLAddr+4]))
		r = netip.AddrFrom4([4]byte(raw[offRAddr : offRAddr+4]))
	case afInet6:
		// IPv4 peers of a dual-stack socket are v4-mapped: report them
		// as IPv4, as the OpenSSL collector does.
		l = netip.AddrFrom16([16]byte(raw[offLAddr : offLAddr+16])).Unmap()
		r = netip.AddrFrom16([16]byte(raw[offRAddr : offRAddr+16])).Unmap()
	default:
		return events.Tuple{}, false
	}
	return events.Tuple{
		Local:  netip.AddrPortFrom(l, ne.Uint16(raw[offLPort:])),
		Remote: netip.AddrPortFrom(r, ne.Uint16(raw[offRPort:])),
	}, true
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
