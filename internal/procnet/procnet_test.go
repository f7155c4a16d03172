package procnet

import (
	"bytes"
	"cmp"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

func TestAddr(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "0100007F:1F90", want: "127.0.0.1:8080"},
		{in: "0203000A:0050", want: "10.0.3.2:80"},
		{in: "00000000000000000000000001000000:01BB", want: "[::1]:443"},
		{in: "0000000000000000FFFF00000203000A:0050", want: "10.0.3.2:80"}, // v4-mapped
		{in: "B80D0120000000000000000001000000:0016", want: "[2001:db8::1]:22"},
		{in: "0100007F", bad: true},
		{in: "0100007:1F90", bad: true},
		{in: "0100007F:XYZ", bad: true},
		{in: "01000000:10000", bad: true},
		{in: "0100007F00:0050", bad: true},
		{in: ":0050", bad: true},
	} {
		got, err := Addr(tc.in)
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

func TestParse(t *testing.T) {
	table := header + `   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 101 1 0000000000000000 20 4 30 10 -1
   0: 00000000000000000000000001000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 43188 1 0000000000000000 100 0 0 10 0

`
	var got []Socket
	if err := Parse([]byte(table), func(s Socket) bool { got = append(got, s); return true }); err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	want := []Socket{
		{Local: ap("127.0.0.1:8080"), Remote: ap("0.0.0.0:0"), State: Listen, Inode: 100},
		{Local: ap("127.0.0.1:8080"), Remote: ap("127.0.0.1:40960"), State: 1, Inode: 101},
		{Local: ap("[::1]:443"), Remote: ap("[::]:0"), State: Listen, Inode: 43188},
	}
	if len(got) != len(want) {
		t.Fatalf("rows %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	n := 0
	if err := Parse([]byte(table), func(Socket) bool { n++; return false }); err != nil || n != 1 {
		t.Errorf("stopped after %d rows (%v), want 1", n, err)
	}
	if err := Parse(nil, func(Socket) bool { t.Error("a row of nothing"); return true }); err != nil {
		t.Error(err)
	}
}

func TestParseRejects(t *testing.T) {
	row := "   0: 0100007F:1F90 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 101 1 0000000000000000 20 4 30 10 -1"
	for name, tc := range map[string]struct{ line, err string }{
		"short row":      {"   3: 0100007F:A002 0100007F:1F90 01", "line 2: 4 fields"},
		"bad local":      {strings.Replace(row, "0100007F:1F90", "zz:1", 1), `line 2: bad address "zz:1"`},
		"bad remote":     {strings.Replace(row, "0100007F:A000", "0100007F:", 1), `line 2: bad port in "0100007F:"`},
		"bad state":      {strings.Replace(row, " 01 ", " 1FF ", 1), `line 2: bad state "1FF"`},
		"bad inode":      {strings.Replace(row, " 101 ", " -5 ", 1), `line 2: bad inode "-5"`},
		"after good row": {row + "\n" + strings.Replace(row, " 101 ", " x ", 1), `line 3: bad inode "x"`},
	} {
		var rows int
		err := Parse([]byte(header+tc.line+"\n"), func(Socket) bool { rows++; return true })
		if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", name, err, tc.err)
		}
		if want := strings.Count(tc.line, "\n"); rows != want {
			t.Errorf("%s: %d rows before the error, want %d", name, rows, want)
		}
	}
}

func TestRead(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "42", "net")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	v4 := header + "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1\n"
	v6 := header + "   0: 00000000000000000000000001000000:01BB 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 200 1\n"
	if err := os.WriteFile(filepath.Join(dir, "tcp"), []byte(v4), 0o644); err != nil {
		t.Fatal(err)
	}
	inodes := func() ([]uint64, error) {
		var got []uint64
		err := Read(root, 42, func(s Socket) bool { got = append(got, s.Inode); return true })
		return got, err
	}
	if got, err := inodes(); err != nil || len(got) != 1 || got[0] != 100 {
		t.Errorf("without tcp6 (IPv6 off): %v, %v; want [100]", got, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tcp6"), []byte(v6), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := inodes(); err != nil || len(got) != 2 || got[1] != 200 {
		t.Errorf("with tcp6: %v, %v; want [100 200]", got, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tcp6"), []byte(header+"junk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := inodes(); err == nil || !strings.Contains(err.Error(), "tcp6 table of 42: line 2") {
		t.Errorf("a bad tcp6 table: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, "tcp")); err != nil {
		t.Fatal(err)
	}
	if _, err := inodes(); err == nil {
		t.Error("no error without a tcp table")
	}
	// This process's own tables, as the kernel writes them, parse.
	if err := Read("/proc", uint32(os.Getpid()), func(Socket) bool { return true }); err != nil {
		t.Errorf("this process's tables: %v", err)
	}
}

func TestSocketInode(t *testing.T) {
	for target, want := range map[string]uint64{"socket:[12345]": 12345, "socket:[]": 0, "pipe:[5]": 0, "/dev/null": 0,
		"socket:[12x]": 0, "socket:[18446744073709551616]": 0, "socket:[-1]": 0, "socket:[7": 0} {
		got, ok := SocketInode(target)
		if got != want || ok != (want != 0) {
			t.Errorf("SocketInode(%q) = %d, %v", target, got, ok)
		}
	}
}

// FuzzParse: a table as the kernel (or a hostile FUSE mount) writes it
// parses, or gives an error naming its line; every row yielded has the
// address and inode its line spells; a /proc/PID/fd link target names a
// socket's inode or none.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b, "socket:[12345]")
		}
	}
	f.Add([]byte(header+"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 100 1\n"), "socket:[]")
	f.Add([]byte("h\n0: :FFFFF x 0A a b c d e 1\n\n"), "socket:[18446744073709551616]")
	f.Fuzz(func(t *testing.T, table []byte, target string) {
		if ino, ok := SocketInode(target); ok && !strings.Contains(target, strconv.FormatUint(ino, 10)) {
			t.Fatalf("SocketInode(%q) = %d", target, ino)
		}
		lines := bytes.Split(table, []byte("\n"))
		n := 0
		err := Parse(table, func(s Socket) bool {
			for len(bytes.TrimSpace(lines[n+1])) == 0 {
				n++
			}
			n++
			f := strings.Fields(string(lines[n]))
			if a, err := Addr(f[1]); err != nil || a != s.Local {
				t.Fatalf("line %d: local %v, spelled %q", n+1, s.Local, f[1])
			}
			if spelled := strings.TrimLeft(f[9], "0"); strconv.FormatUint(s.Inode, 10) != cmp.Or(spelled, "0") {
				t.Fatalf("line %d: inode %d, spelled %q", n+1, s.Inode, f[9])
			}
			return true
		})
		if err != nil && !strings.HasPrefix(err.Error(), "line ") {
			t.Fatalf("error without its line: %v", err)
		}
	})
}
