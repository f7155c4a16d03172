package discovery

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/periscope-apm/periscope/symbols"
)

func TestParseMapsLine(t *testing.T) {
	tests := []struct {
		line string
		want Mapping
		ok   bool
	}{
		{"7f2c4a9d1000-7f2c4aa3f000 r-xp 00022000 fd:01 1315 /usr/lib/x86_64-linux-gnu/libssl.so.3",
			Mapping{"/usr/lib/x86_64-linux-gnu/libssl.so.3", symbols.FileID{Dev: unix.Mkdev(0xfd, 1), Ino: 1315}}, true},
		{"7f2c4a9d1000-7f2c4aa3f000 r-xp 00022000 00:2a 77 /opt/my app/bin", Mapping{"/opt/my app/bin", symbols.FileID{Dev: unix.Mkdev(0, 0x2a), Ino: 77}}, true},
		{"7f2c4a9d1000-7f2c4aa3f000 r--p 00000000 fd:01 1315 /usr/lib/libssl.so.3", Mapping{}, false},
		{"7ffd1b5f2000-7ffd1b5f4000 r-xp 00000000 00:00 0 [vdso]", Mapping{}, false},
		{"7f2c4a9d1000-7f2c4aa3f000 r-xp 00000000 00:00 0 ", Mapping{}, false},
		{"7f2c4a9d1000-7f2c4aa3f000 r-xp 00022000 fd:01 1315 /tmp/x.so (deleted)", Mapping{}, false},
		{"garbage", Mapping{}, false},
	}
	for _, tt := range tests {
		got, ok := parseMapsLine(tt.line)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseMapsLine(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
		if ok && !executableFileLine([]byte(tt.line)) {
			t.Errorf("executableFileLine(%q) = false for a line parseMapsLine keeps", tt.line)
		}
	}
}

func TestReadProcessSelf(t *testing.T) {
	p, err := readProcess("/proc", uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	if p.Exe != exe {
		t.Errorf("Exe = %q, want %q", p.Exe, exe)
	}
	if p.PPID != uint32(os.Getppid()) {
		t.Errorf("PPID = %d, want %d", p.PPID, os.Getppid())
	}
	found := false
	for _, m := range p.Maps {
		if m.Path == exe {
			found = true
			id, err := symbols.Stat(p.HostPath(m.Path))
			if err != nil {
				t.Fatal(err)
			}
			if id != m.File {
				t.Errorf("maps says %v, stat says %v", m.File, id)
			}
		}
	}
	if !found {
		t.Errorf("own executable not in maps: %+v", p.Maps)
	}
}

// TestPrograms: every process with an executable is listed with it, read
// time set; one without (a kernel thread) is left out.
func TestPrograms(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 42, "/usr/bin/curl (deleted)", "/usr/bin/curl 10")
	fakeProc(t, root, 43, "/usr/bin/gotp-a", "/usr/bin/gotp-a 11")
	if err := os.MkdirAll(filepath.Join(root, "2"), 0o755); err != nil {
		t.Fatal(err)
	}
	procs, err := Programs(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range procs {
		if p.Read == 0 {
			t.Errorf("%d: no read time", p.PID)
		}
		got = append(got, fmt.Sprintf("%d %s", p.PID, p.Exe))
	}
	if strings.Join(got, ",") != "42 /usr/bin/curl,43 /usr/bin/gotp-a" {
		t.Errorf("got %q", got)
	}
}
