package discovery

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"slices"
	"testing"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/internal/wire"
)

func TestDecodeExec(t *testing.T) {
	record := func(path string, args []byte, n uint32) []byte {
		var e processExecEvent
		e.Hdr.Type, e.Hdr.Pid, e.Ppid, e.ArgsLen = wire.EventExec, 42, 7, n
		for i := range min(len(path), len(e.Filename)) {
			e.Filename[i] = int8(path[i])
		}
		for i := range min(len(args), len(e.Args)) {
			e.Args[i] = int8(args[i])
		}
		var b bytes.Buffer
		if err := binary.Write(&b, binary.NativeEndian, &e); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	full := bytes.Repeat([]byte("a"), len(processExecEvent{}.Args))
	for _, tc := range []struct {
		name     string
		raw      []byte
		ok       bool
		wantPath string
		wantArgv []string
	}{
		{"argv", record("/usr/bin/curl", []byte("curl\x00-sS\x00https://x/\x00"), 22), true, "/usr/bin/curl", []string{"curl", "-sS", "https://x/"}},
		{"no args", record("/bin/true", nil, 0), true, "/bin/true", nil},
		{"argv cut at the cap", record("/bin/x", full, uint32(len(full))), true, "/bin/x", []string{string(full)}},
		{"the argument the cut falls in is left out", record("/bin/curl", append([]byte("curl\x00-v\x00"), full...), uint32(len(full))), true, "/bin/curl", []string{"curl", "-v"}},
		{"a bad length", record("/bin/x", []byte("x\x00"), 1<<20), true, "/bin/x", []string{"x"}},
		{"a proc_event, too short", make([]byte, unsafe.Sizeof(processProcEvent{})), false, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := decodeExec(tc.raw)
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if e.PID != 42 || e.PPID != 7 || e.Path != tc.wantPath || !slices.Equal(e.Argv, tc.wantArgv) {
				t.Errorf("got %+v, want path %q argv %q", e, tc.wantPath, tc.wantArgv)
			}
		})
	}
}

// TestExecDecided: every exec is decided (Config.Decided) once handled: by
// the executable /proc shows when the process could be read, else by the
// exec's path; OnExec learns early of a path that matches.
func TestExecDecided(t *testing.T) {
	for _, tc := range []struct {
		name      string
		path, exe string // exe "" : gone before /proc is read
		want      bool
		early     bool
	}{
		{"selected", "/usr/bin/gotp-a", "/usr/bin/gotp-a", true, true},
		{"not selected", "/usr/bin/curl", "/usr/bin/curl", false, false},
		{"gone, selected by path", "/usr/bin/gotp-a", "", true, true},
		{"gone, not selected by path", "/usr/bin/curl", "", false, false},
		{"a link to a selected program", "/usr/bin/link", "/usr/bin/gotp-a", true, false},
		{"a matching link to another program", "/usr/bin/gotp-link", "/usr/bin/curl", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.exe != "" {
				fakeProc(t, root, 42, tc.exe, tc.exe+" 10")
			}
			var early bool
			var got []Exec
			tr := New(Config{ProcRoot: root, Selector: Selector{Include: []string{"gotp-*"}},
				OnExec:  func(Exec) { early = true },
				Decided: func(e Exec) { got = append(got, e) },
			}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			var e processExecEvent
			e.Hdr.Type, e.Hdr.Pid, e.Hdr.Ts = wire.EventExec, 42, 77
			for i := range len(tc.path) {
				e.Filename[i] = int8(tc.path[i])
			}
			var b bytes.Buffer
			if err := binary.Write(&b, binary.NativeEndian, &e); err != nil {
				t.Fatal(err)
			}
			tr.handle(b.Bytes())
			if len(got) != 1 || got[0].PID != 42 || got[0].KTime != 77 || got[0].Selected != tc.want || early != tc.early {
				t.Errorf("decided %+v, early %v; want one for 42 at 77, selected %v, early %v", got, early, tc.want, tc.early)
			}
		})
	}
}
