package tcp

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/ktime"
)

// raw returns the bytes of a record as the kernel writes them.
func raw(ev *tcpRetransmitEvent) []byte {
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(ev)), unsafe.Sizeof(*ev))...)
}

func comm(s string) (c [16]int8) {
	for i := 0; i < len(s) && i < 15; i++ {
		c[i] = int8(s[i])
	}
	return c
}

func TestDecode(t *testing.T) {
	clock := ktime.NewClock()
	v4 := tcpRetransmitEvent{Sock: 0xffff8881, Segs: 3, Family: afInet, LocalPort: 443, RemotePort: 51000,
		State: 1, Role: 2, Flags: 0, Comm: comm("nginx")}
	v4.Hdr.Type, v4.Hdr.Pid, v4.Hdr.Ts = eventRetransmit, 1234, 5_000_000_000
	copy(v4.LocalAddr[:], []byte{10, 0, 0, 1})
	copy(v4.RemoteAddr[:], []byte{10, 0, 0, 2})

	r, ok := decode(raw(&v4), clock)
	if !ok {
		t.Fatal("decode failed")
	}
	want := events.Retransmit{
		Time: clock.Time(5_000_000_000), PID: 1234, Comm: "nginx", Role: events.RoleAccepted,
		Tuple:    events.Tuple{Local: netip.MustParseAddrPort("10.0.0.1:443"), Remote: netip.MustParseAddrPort("10.0.0.2:51000")},
		State:    events.TCPEstablished,
		Segments: 3,
	}
	if r.ev != want || r.sock != 0xffff8881 || r.ino != 0 {
		t.Errorf("decode:\n got %+v sock %#x ino %d\nwant %+v", r.ev, r.sock, r.ino, want)
	}

	// IPv6, a v4-mapped peer, a SYN, no owner, a full-length command name.
	v6 := tcpRetransmitEvent{Ino: 777, Segs: 0, Family: afInet6, LocalPort: 40000, RemotePort: 80, State: 2,
		Flags: retransmitSYN, Comm: comm("averyveryverylongname")}
	v6.Hdr.Type = eventRetransmit
	copy(v6.LocalAddr[:], netip.MustParseAddr("::ffff:127.0.0.1").AsSlice())
	copy(v6.RemoteAddr[:], netip.MustParseAddr("2001:db8::1").AsSlice())
	r, ok = decode(raw(&v6), clock)
	if !ok {
		t.Fatal("decode v6 failed")
	}
	if r.ev.Tuple.Local != netip.MustParseAddrPort("127.0.0.1:40000") || r.ev.Tuple.Remote != netip.MustParseAddrPort("[2001:db8::1]:80") {
		t.Errorf("tuple %v", r.ev.Tuple)
	}
	if !r.ev.SYN || r.ev.State != events.TCPSynSent || r.ev.Segments != 1 || r.ev.PID != 0 || r.ino != 777 || r.ev.Comm != "averyveryverylon"[:15] {
		t.Errorf("v6 record: %+v ino %d", r.ev, r.ino)
	}

	// Malformed: short, wrong type, unknown family, role out of range.
	b := raw(&v4)
	if _, ok := decode(b[:len(b)-1], clock); ok {
		t.Error("short record decoded")
	}
	bad := v4
	bad.Hdr.Type = 1
	if _, ok := decode(raw(&bad), clock); ok {
		t.Error("record of another type decoded")
	}
	bad = v4
	bad.Family = 1
	if _, ok := decode(raw(&bad), clock); ok {
		t.Error("AF_UNIX record decoded")
	}
	bad = v4
	bad.Role = 9
	if r, ok := decode(raw(&bad), clock); !ok || r.ev.Role != events.RoleUnknown {
		t.Errorf("unknown role: ok %v role %v", ok, r.ev.Role)
	}
}

func FuzzDecode(f *testing.F) {
	ev := tcpRetransmitEvent{Family: afInet}
	ev.Hdr.Type = eventRetransmit
	f.Add(raw(&ev))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decode(b, ktime.Clock{})
	})
}

func TestProcOwners(t *testing.T) {
	root := t.TempDir()
	mk := func(pid, comm string, fds map[string]string) {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(filepath.Join(dir, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "comm"), []byte(comm+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for fd, target := range fds {
			if err := os.Symlink(target, filepath.Join(dir, "fd", fd)); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("100", "nginx", map[string]string{"0": "/dev/null", "3": "socket:[1001]", "4": "socket:[1002]"})
	mk("200", "worker", map[string]string{"5": "socket:[1002]", "6": "socket:[2001]"}) // 1002 inherited
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}

	now := time.Unix(1000, 0)
	p := newProcOwners(root, 2*time.Second)
	p.now = func() time.Time { return now }
	for ino, want := range map[uint64]procOwner{1001: {100, "nginx"}, 1002: {100, "nginx"}, 2001: {200, "worker"}} {
		if got, ok := p.lookup(ino); !ok || got != want {
			t.Errorf("lookup(%d) = %+v, %v; want %+v", ino, got, ok, want)
		}
	}
	// A socket opened after the scan is found at the next scan, not before
	// the interval has passed.
	mk("300", "late", map[string]string{"3": "socket:[3001]"})
	if _, ok := p.lookup(3001); ok {
		t.Error("found before the scan interval passed")
	}
	now = now.Add(3 * time.Second)
	if got, ok := p.lookup(3001); !ok || got.pid != 300 {
		t.Errorf("lookup(3001) after the interval = %+v, %v", got, ok)
	}
	if _, ok := p.lookup(0); ok {
		t.Error("inode 0 found")
	}
}

// TestListening: the listening ports of a process's namespace are its
// tables' listeners (IPv4 and IPv6), read once until the next scan.
func TestListening(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "100", "net")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	for f, rows := range map[string]string{
		"tcp": `   0: 0100007F:480C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 50049 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9249 0100007F:01BB 01 00000000:00000000 00:00000000 00000000     0        0 1351081 2 0000000000000000 100 0 0 10 0
`,
		"tcp6": `   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 43188 1 0000000000000000 100 0 0 10 0
`,
	} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(header+rows), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := newProcOwners(root, time.Minute)
	for port, want := range map[uint16]bool{0x480c: true, 443: true, 0x9249: false, 80: false} {
		if got := p.listening(100, port); got != want {
			t.Errorf("listening(100, %d) = %v, want %v", port, got, want)
		}
	}
	if err := os.Remove(filepath.Join(dir, "tcp6")); err != nil {
		t.Fatal(err)
	}
	if !p.listening(100, 443) {
		t.Error("the ports read again before the next scan")
	}
	if p.listening(200, 443) {
		t.Error("a process without tables listens")
	}
	for _, r := range []events.SocketRole{events.RoleUnknown, events.RoleConnected, events.RoleAccepted} {
		if roleOf(ownerRole(r)) != r {
			t.Errorf("role %v does not survive the round trip", r)
		}
	}
}
