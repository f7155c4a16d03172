package discovery

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/periscope-apm/periscope/internal/wire"

	"github.com/prometheus/client_golang/prometheus"
)

// FuzzParseMapsLine: a line of /proc/PID/maps yields an executable file
// mapping with an absolute path, or nothing.
func FuzzParseMapsLine(f *testing.F) {
	if b, err := os.ReadFile("/proc/self/maps"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f.Add(sc.Text())
		}
	}
	f.Add("7f2c4a9d1000-7f2c4aa3f000 r-xp 00022000 fd:01 1315 /usr/lib/x86_64-linux-gnu/libssl.so.3")
	f.Add("7f2c4a9d1000-7f2c4aa3f000 r-xp 00022000 fd:01 1315 /tmp/a b (deleted)")
	f.Fuzz(func(t *testing.T, line string) {
		m, ok := parseMapsLine(line)
		if ok && (!strings.HasPrefix(m.Path, "/") || m.File.Ino == 0) {
			t.Fatalf("parseMapsLine(%q) = %+v", line, m)
		}
		if ok && !executableFileLine([]byte(line)) {
			t.Fatalf("readMaps's first look skips %q, which parseMapsLine keeps", line)
		}
	})
}

// FuzzHandle: a record from discovery's ring, whatever its bytes, is
// decoded or counted, never a panic.
func FuzzHandle(f *testing.F) {
	var e processExecEvent
	e.Hdr.Type, e.Hdr.Pid, e.Ppid, e.ArgsLen = wire.EventExec, 42, 7, 12
	copy(e.Args[:], []int8{'c', 'u', 'r', 'l', 0, '-', 's', 'S', 0, 'x', 0, 0})
	f.Add(rawRecord(f, &e))
	var p processProcEvent
	for _, typ := range []uint32{wire.EventExit, wire.EventFork, wire.EventMmap, 99} {
		p.Hdr.Type, p.Hdr.Pid = typ, 1
		f.Add(rawRecord(f, &p))
	}
	tr := New(Config{ProcRoot: f.TempDir(), OnExec: func(Exec) {}}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	f.Fuzz(func(t *testing.T, raw []byte) {
		tr.handle(raw)
		tr.updateStale()
		if e, ok := decodeExec(raw); ok && len(e.Argv) > 0 && len(strings.Join(e.Argv, "\x00")) > execArgsCap {
			t.Fatalf("argv of %d bytes from a %d-byte buffer", len(strings.Join(e.Argv, "\x00")), execArgsCap)
		}
	})
}

// rawRecord encodes a generated mirror as the kernel writes it.
func rawRecord(tb testing.TB, v any) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, v); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}
