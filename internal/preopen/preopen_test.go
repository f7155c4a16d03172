package preopen

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/procnet"
)

func TestConnections(t *testing.T) {
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 101 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:A001 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 102 1 0000000000000000 20 4 30 10 -1
`)
	r := &record{open: make(map[events.Tuple]bool)}
	inodes := map[uint64]bool{100: true, 101: true}
	if err := procnet.Parse(table, func(s procnet.Socket) bool { return r.add(s, inodes) }); err != nil {
		t.Fatal(err)
	}
	want := events.Tuple{Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:40960")}
	if len(r.open) != 1 || !r.open[want] || r.all {
		t.Errorf("recorded %v (all %v), want only %v (the listener and other sockets left out)", r.open, r.all, want)
	}
	// A full record stops the reading, and has none of its connections
	// fresh.
	full := &record{open: make(map[events.Tuple]bool)}
	for i := range maxPerProcess {
		full.open[events.Tuple{Local: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(i))}] = true
	}
	if n := 0; procnet.Parse(table, func(s procnet.Socket) bool { n++; return full.add(s, inodes) }) != nil || n != 2 || !full.all {
		t.Errorf("a full record: read %d rows, all %v; want 2 rows (the listener, then a connection), all", n, full.all)
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
