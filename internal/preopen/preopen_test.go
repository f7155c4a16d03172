package preopen

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/events"
)

func TestProcAddr(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "0100007F:1F90", want: "127.0.0.1:8080"},
		{in: "0203000A:0050", want: "10.0.3.2:80"},
		{in: "00000000000000000000000001000000:01BB", want: "[::1]:443"},
		{in: "0000000000000000FFFF00000203000A:0050", want: "10.0.3.2:80"}, // v4-mapped
		{in: "0100007F", bad: true},
		{in: "0100007:1F90", bad: true},
		{in: "0100007F:XYZ", bad: true},
		{in: "01000000:10000", bad: true},
	} {
		got, err := procAddr(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("%q: %v, %v, want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestConnections(t *testing.T) {
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 101 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:A001 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 102 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:A002 0100007F:1F90 01
`)
	r := &record{open: make(map[events.Tuple]bool)}
	if err := connections(table, map[uint64]bool{100: true, 101: true}, r); err != nil {
		t.Fatal(err)
	}
	want := events.Tuple{Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:40960")}
	if len(r.open) != 1 || !r.open[want] {
		t.Errorf("recorded %v, want only %v (the listener, other sockets and short lines left out)", r.open, want)
	}
	if err := connections([]byte("header\n 0: zz:1 0100007F:1F90 01 a b c d e 7\n"), map[uint64]bool{7: true}, r); err == nil {
		t.Error("a bad address gave no error")
	}
}

// TestFromStart records this process with a connection open: that
// connection is not seen from its start, one opened after the record is,
// once its first request comes after the record; a process never
// recorded, or forgotten, has none.
func TestFromStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	dial := func() events.Tuple {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return events.Tuple{Local: netip.MustParseAddrPort(c.LocalAddr().String()), Remote: netip.MustParseAddrPort(c.RemoteAddr().String())}
	}
	old := dial()
	tb := New("/proc")
	pid := uint32(os.Getpid())
	if err := tb.Probed(pid); err != nil {
		t.Fatal(err)
	}
	fresh := dial()
	later := time.Now().Add(time.Second)
	if tb.FromStart(pid, old, later) {
		t.Error("a connection open when the process was recorded is taken as seen from its start")
	}
	if !tb.FromStart(pid, fresh, later) {
		t.Error("a connection opened after the record is not taken as seen from its start")
	}
	if tb.FromStart(pid, fresh, time.Now().Add(-time.Second)) {
		t.Error("a request before the record is taken as seen from its connection's start")
	}
	v6 := events.Tuple{Local: netip.AddrPortFrom(netip.AddrFrom16(fresh.Local.Addr().As16()), fresh.Local.Port()),
		Remote: netip.AddrPortFrom(netip.AddrFrom16(fresh.Remote.Addr().As16()), fresh.Remote.Port())}
	if !tb.FromStart(pid, v6, later) {
		t.Error("the v4-mapped form of a fresh connection is not taken as it")
	}
	if tb.FromStart(pid+1, fresh, later) {
		t.Error("a process never recorded has a connection seen from its start")
	}
	tb.Exited(pid, time.Now().Add(-time.Hour))
	if !tb.FromStart(pid, fresh, later) {
		t.Error("an exit from before the record forgot it")
	}
	// Its events may come after its exit: the record stays a while.
	exit := time.Now()
	tb.Exited(pid, exit)
	if !tb.FromStart(pid, fresh, later) {
		t.Error("an exited process was forgotten at once")
	}
	tb.Exited(pid+1, exit.Add(exitLinger+time.Second)) // another process's exit, later
	if tb.FromStart(pid, fresh, later) || tb.Len() != 0 {
		t.Errorf("a process that exited %v ago is still recorded", exitLinger+time.Second)
	}
	if err := tb.Probed(1 << 30); err == nil {
		t.Error("a process that does not exist was recorded")
	}
}
