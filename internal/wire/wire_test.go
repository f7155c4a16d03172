package wire

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/periscope-apm/periscope/events"
)

func tuple(family uint16, l, r netip.Addr, lport, rport uint16) []byte {
	b := make([]byte, TupleSize)
	ne := binary.NativeEndian
	ne.PutUint16(b[tupleFamily:], family)
	ne.PutUint16(b[tupleLocalPort:], lport)
	ne.PutUint16(b[tupleRemotePort:], rport)
	copy(b[tupleLocalAddr:], l.AsSlice())
	copy(b[tupleRemoteAddr:], r.AsSlice())
	return b
}

func TestTuple(t *testing.T) {
	v4l, v4r := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("127.0.0.1")
	v6l, v6r := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("::1")
	mapped := netip.MustParseAddr("::ffff:192.0.2.7")
	tests := []struct {
		name string
		raw  []byte
		want events.Tuple
	}{
		{"ipv4", tuple(afInet, v4l, v4r, 443, 51000), events.Tuple{Local: netip.AddrPortFrom(v4l, 443), Remote: netip.AddrPortFrom(v4r, 51000)}},
		{"ipv6", tuple(afInet6, v6l, v6r, 8443, 40000), events.Tuple{Local: netip.AddrPortFrom(v6l, 8443), Remote: netip.AddrPortFrom(v6r, 40000)}},
		{"v4-mapped v6 is unmapped", tuple(afInet6, mapped, mapped, 1, 2), events.Tuple{Local: netip.MustParseAddrPort("192.0.2.7:1"), Remote: netip.MustParseAddrPort("192.0.2.7:2")}},
		{"unknown family", tuple(1, v4l, v4r, 1, 2), events.Tuple{}},
		{"short", make([]byte, 10), events.Tuple{}},
	}
	for _, tt := range tests {
		if got := Tuple(tt.raw); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// The generated mirror of struct tuple must be what Tuple decodes.
func TestTupleLayout(t *testing.T) {
	if got := unsafe.Sizeof(wireBindEvent{}.Tuple); got != TupleSize {
		t.Fatalf("sizeof(struct tuple) = %d, Tuple decodes %d", got, TupleSize)
	}
}

// A close record's flags say whether it is a close or a collector leaving
// the connection to another.
func TestCloseSuperseded(t *testing.T) {
	for _, flags := range []uint32{0, uint32(wireCloseFlagCLOSE_SUPERSEDED)} {
		raw := make([]byte, closeSize)
		ne := binary.NativeEndian
		ne.PutUint32(raw[offPID:], 42)
		ne.PutUint64(raw[offCloseConn:], 0xabc)
		ne.PutUint32(raw[offCloseFlags:], flags)
		got, ok := Close(raw)
		want := events.Close{Conn: events.ConnID{PID: 42, Key: 0xabc}, Superseded: flags != 0}
		if !ok || got != want {
			t.Errorf("flags %d: %+v %v, want %+v", flags, got, ok, want)
		}
	}
	if _, ok := Close(make([]byte, closeSize-1)); ok {
		t.Error("a short close record decoded")
	}
}

// A data record's TCP sequence number is decoded only when its flag says
// the collector set it.
func TestDataSeq(t *testing.T) {
	for _, flags := range []uint32{0, uint32(wireDataFlagDATA_SEQ)} {
		raw := make([]byte, offDataData+4)
		ne := binary.NativeEndian
		ne.PutUint32(raw[offDataDir:], 1)
		ne.PutUint32(raw[offDataSize:], 4)
		ne.PutUint32(raw[offDataCaptured:], 4)
		ne.PutUint32(raw[offDataSeq:], 0xfffffffe)
		ne.PutUint32(raw[offDataFlags:], flags)
		copy(raw[offDataData:], "GET ")
		d, ok := Data(raw)
		if !ok || d.HasSeq != (flags != 0) || d.HasSeq && d.Seq != 0xfffffffe {
			t.Errorf("flags %d: seq %#x has %v ok %v", flags, d.Seq, d.HasSeq, ok)
		}
	}
}
