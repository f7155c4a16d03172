package symbols

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// collectorFuncs are the functions the Go collector probes or may probe.
var collectorFuncs = []string{
	"net/http.serverHandler.ServeHTTP",
	"net/http.(*Transport).roundTrip",
	"net/http.(*response).finishRequest",
	"net/http.(*conn).serve",
	"crypto/tls.(*Conn).Read",
	"crypto/tls.(*Conn).Write",
	"runtime.goexit1",
}

func TestParseGoVersion(t *testing.T) {
	tests := []struct {
		in   string
		want GoVersion
		err  bool
	}{
		{"go1.22.12", GoVersion{1, 22, 12}, false},
		{"go1.20", GoVersion{1, 20, 0}, false},
		{"go1.26rc1", GoVersion{1, 26, 0}, false},
		{"devel go1.27-3a6b9c1 Tue Nov 3 12:00:00 2026 +0000", GoVersion{1, 27, 0}, false},
		{"go1.24.0 X:boringcrypto", GoVersion{1, 24, 0}, false},
		{"go2", GoVersion{}, true},
		{"1.22.1", GoVersion{}, true},
		{"", GoVersion{}, true},
	}
	for _, tt := range tests {
		got, err := ParseGoVersion(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseGoVersion(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestNormalizeFuncName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"runtime.goexit1", "runtime.goexit1"},
		{"runtime.goexit.abi0", "runtime.goexit"},
		{"runtime.memmove.abiinternal", "runtime.memmove"},
		{"slices.Sort[go.shape.int]", "slices.Sort[...]"},
		{"slices.Sort[...]", "slices.Sort[...]"},
		{"bytes.Equal[go.shape.[]uint8]", "bytes.Equal[...]"},
		{"p.(*List[go.shape.string]).Push", "p.(*List[...]).Push"},
		{"net/http.(*Transport).roundTrip", "net/http.(*Transport).roundTrip"},
	}
	for _, tt := range tests {
		if got := normalizeFuncName(tt.in); got != tt.want {
			t.Errorf("normalizeFuncName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLookupFunc(t *testing.T) {
	funcs := []Func{
		{Name: "a.F", Addr: 0x1000, Size: 0x10},
		{Name: "a.G", Addr: 0x1010, Size: 0x10},      // a Go function...
		{Name: "a.G.abi0", Addr: 0x1100, Size: 0x10}, // ...and its ABI0 wrapper
		{Name: "a.A", Addr: 0x1110, Size: 0x10},      // an assembly function's ABIInternal wrapper...
		{Name: "a.A.abi0", Addr: 0x1020, Size: 0x10}, // ...and the assembly body
		{Name: "a.H[go.shape.int]", Addr: 0x1030, Size: 0x10},
		{Name: "a.K[go.shape.int]", Addr: 0x1040, Size: 0x10},
		{Name: "a.K[go.shape.string]", Addr: 0x1050, Size: 0x10},
	}
	wrapper := func(f Func) bool { return f.Addr >= 0x1100 }
	tests := []struct {
		name     string
		wrappers func(Func) bool
		wantAddr uint64
		wantErr  string
	}{
		{"a.F", wrapper, 0x1000, ""},
		{"a.G", wrapper, 0x1010, ""},
		{"a.G.abi0", wrapper, 0x1010, ""}, // the body, as in a stripped binary
		{"a.A", wrapper, 0x1020, ""},
		{"a.A.abi0", wrapper, 0x1020, ""},
		{"a.A", nil, 0x1110, ""}, // nothing tells wrappers: the exact name
		{"a.H[...]", wrapper, 0x1030, ""},
		{"a.H", wrapper, 0, "no such function"},
		{"a.K[...]", wrapper, 0, "names 2 functions"},
		{"a.Missing", wrapper, 0, "no such function"},
	}
	for _, tt := range tests {
		f, err := lookupFunc(funcs, tt.name, tt.wrappers)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("lookupFunc(%s) = %v, %v; want error %q", tt.name, f, err, tt.wantErr)
			}
			continue
		}
		if err != nil || f.Addr != tt.wantAddr {
			t.Errorf("lookupFunc(%s) = %#x, %v; want %#x", tt.name, f.Addr, err, tt.wantAddr)
		}
	}
}

func TestGoInfoNotGo(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 1024), 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cLib := buildC(t, "int f(void) { return 1; }\n")
	tests := []struct {
		name, path string
		notGo      bool
		msg        string
	}{
		{"garbage", garbage, true, "not an ELF file"},
		{"shell script", script, true, "not an ELF file"},
		{"C shared library", cLib, true, "no Go build information"},
		{"missing file", filepath.Join(dir, "missing"), false, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := GoInfo(tt.path)
			if err == nil {
				b.Close()
				t.Fatalf("GoInfo(%s): want an error", tt.name)
			}
			if errors.Is(err, ErrNotGo) != tt.notGo {
				t.Errorf("errors.Is(%v, ErrNotGo) = %v, want %v", err, !tt.notGo, tt.notGo)
			}
			if !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("error %q should name the file and say %q", err, tt.msg)
			}
		})
	}
}

// TestGoBinaries checks GoInfo, Func, Returns and Offsets on the same
// program built by each test toolchain, with symbols and stripped.
func TestGoBinaries(t *testing.T) {
	for _, tc := range testToolchains {
		t.Run(tc, func(t *testing.T) {
			want := localGoVersion(t)
			if tc != "local" {
				v, err := ParseGoVersion(tc)
				if err != nil {
					t.Fatal(err)
				}
				want = v
			}
			full := openGo(t, goBuild(t, tc, withSymbols))
			strip := openGo(t, goBuild(t, tc, stripped))
			checkInfo(t, full, want, true)
			checkInfo(t, strip, want, false)
			checkRuns(t, full.Path)
			for _, name := range collectorFuncs {
				checkFunc(t, full, strip, name)
			}
			checkPclntabMatchesSymbols(t, full)
			checkOffsets(t, full, strip)
		})
	}
}

func checkInfo(t *testing.T, b *GoBinary, want GoVersion, symbols bool) {
	t.Helper()
	if b.Version != want {
		t.Errorf("%s: Version = %v (%q), want %v", b.Path, b.Version, b.GoVersionRaw, want)
	}
	if b.Arch != "amd64" {
		t.Errorf("%s: Arch = %q, want amd64", b.Path, b.Arch)
	}
	if b.HasDWARF != symbols || b.Stripped == symbols {
		t.Errorf("%s: HasDWARF = %v, Stripped = %v; want %v, %v", b.Path, b.HasDWARF, b.Stripped, symbols, !symbols)
	}
	if b.Build.Path != "periscope.example/probetarget" || b.Build.Main.Path != "periscope.example/probetarget" {
		t.Errorf("%s: main package %q, module %q; want periscope.example/probetarget", b.Path, b.Build.Path, b.Build.Main.Path)
	}
}

// checkRuns runs the program: it serves itself one request.
func checkRuns(t *testing.T, bin string) {
	t.Helper()
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "GET /ping 200" {
		t.Errorf("%s: %v, output %q; want \"GET /ping 200\"", bin, err, out)
	}
}

// checkFunc finds name in both builds: same address, size and file offset;
// the file offset holds the bytes the ELF section says are at the address;
// Returns finds the same RETs in both, each a 0xC3 byte.
func checkFunc(t *testing.T, full, strip *GoBinary, name string) {
	t.Helper()
	f, err := full.Func(name)
	if err != nil {
		t.Errorf("Func(%s) with symbols: %v", name, err)
		return
	}
	s, err := strip.Func(name)
	if err != nil {
		t.Errorf("Func(%s) stripped: %v", name, err)
		return
	}
	if f.Addr != s.Addr || f.Start != s.Start {
		t.Errorf("%s: with symbols at %#x (file %#x), stripped at %#x (file %#x)", name, f.Addr, f.Start, s.Addr, s.Start)
	}
	if s.Size < f.Size || s.Size > f.Size+64 {
		// The symbol's size is the code; pclntab's runs to the next
		// function, past the alignment padding.
		t.Errorf("%s: size %d with symbols, %d stripped", name, f.Size, s.Size)
	}
	checkFileOffset(t, full, f)
	checkEntryProbe(t, full, f)
	checkEntryProbe(t, strip, s)
	rf, err := full.Returns(f)
	if err != nil {
		t.Errorf("Returns(%s) with symbols: %v", name, err)
		return
	}
	rs, err := strip.Returns(s)
	if err != nil {
		t.Errorf("Returns(%s) stripped: %v", name, err)
		return
	}
	if name != "runtime.goexit1" && len(rf) == 0 {
		t.Errorf("%s: no RET found", name)
	}
	if len(rf) != len(rs) {
		t.Errorf("%s: %d RETs with symbols, %d stripped", name, len(rf), len(rs))
	}
	for _, r := range append(rf, rs...) {
		if r < f.Start || r >= f.Start+s.Size {
			t.Errorf("%s: RET at file offset %#x is outside the function [%#x, %#x)", name, r, f.Start, f.Start+s.Size)
		}
	}
	checkBytesAt(t, full.Path, rf, retBytes[full.Arch])
	checkBytesAt(t, strip.Path, rs, retBytes[strip.Arch])
}

// retBytes are the return instructions Go emits.
var retBytes = map[string][]byte{
	"amd64": {0xc3},
	"arm64": {0xc0, 0x03, 0x5f, 0xd6}, // RET (X30)
}

// checkFileOffset compares the bytes at f.Start in the file with those the
// ELF section holding f.Addr has there.
func checkFileOffset(t *testing.T, b *GoBinary, f Func) {
	t.Helper()
	var sec *elf.Section
	for _, s := range b.elf.Sections {
		if s.Flags&elf.SHF_EXECINSTR != 0 && f.Addr >= s.Addr && f.Addr+f.Size <= s.Addr+s.Size {
			sec = s
		}
	}
	if sec == nil {
		t.Errorf("%s at %#x: in no executable section", f.Name, f.Addr)
		return
	}
	want := make([]byte, f.Size)
	if _, err := sec.ReadAt(want, int64(f.Addr-sec.Addr)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, f.Size)
	if _, err := b.file.ReadAt(got, int64(f.Start)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: bytes at file offset %#x differ from the section's at %#x", f.Name, f.Start, f.Addr)
	}
}

// checkBytesAt checks that the file at path holds want at every offset.
func checkBytesAt(t *testing.T, path string, offsets []uint64, want []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range offsets {
		if got := data[off : off+uint64(len(want))]; !bytes.Equal(got, want) {
			t.Errorf("%s: % x at RET offset %#x, want % x", path, got, off, want)
		}
	}
}

// checkPclntabMatchesSymbols checks that the function table read from
// .gopclntab (what stripped binaries rely on) agrees with the symbol
// table: runtime.text, and the address of every function.
func checkPclntabMatchesSymbols(t *testing.T, b *GoBinary) {
	t.Helper()
	p, err := b.pclnFuncs()
	if err != nil {
		t.Fatalf("pclntab: %v", err)
	}
	syms, err := b.symbolFuncs()
	if err != nil {
		t.Fatal(err)
	}
	at := map[uint64][]string{}
	for _, s := range syms {
		at[s.Addr] = append(at[s.Addr], s.Name)
	}
	if text, ok := textSymbol(t, b); !ok || text != p.textStart {
		t.Errorf("pclntab text start %#x, symbol runtime.text %#x", p.textStart, text)
	}
	checked := 0
	for _, f := range p.funcs {
		names := at[f.Addr]
		if len(names) == 0 {
			continue // a function the symbol table leaves out
		}
		checked++
		found := false
		for _, n := range names {
			found = found || normalizeFuncName(n) == normalizeFuncName(f.Name)
		}
		if !found {
			t.Errorf("pclntab has %s at %#x, the symbol table %s", f.Name, f.Addr, strings.Join(names, ", "))
		}
	}
	if checked < 1000 {
		t.Errorf("only %d of %d pclntab functions are in the symbol table", checked, len(p.funcs))
	}
}

func textSymbol(t *testing.T, b *GoBinary) (uint64, bool) {
	syms, err := b.elf.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		if s.Name == "runtime.text" {
			return s.Value, true
		}
	}
	return 0, false
}

// checkOffsets: the DWARF of the build with symbols gives the embedded
// table's offsets for its version, and the stripped build (no DWARF) gets
// them from the table.
func checkOffsets(t *testing.T, full, strip *GoBinary) {
	t.Helper()
	table, err := TableOffsets(full.Version)
	if err != nil {
		t.Fatalf("TableOffsets(%v): %v", full.Version, err)
	}
	fromDWARF, err := full.OffsetsDWARF()
	if err != nil {
		t.Fatalf("OffsetsDWARF: %v", err)
	}
	if fromDWARF != table {
		t.Errorf("DWARF of %v and the table differ:\n%s", full.Version, offsetsDiff(fromDWARF, table))
	}
	if o, err := full.Offsets(); err != nil || o != fromDWARF {
		t.Errorf("Offsets with DWARF = %v; want the DWARF's", err)
	}
	if _, err := strip.OffsetsDWARF(); err == nil {
		t.Errorf("OffsetsDWARF of a stripped binary: want an error")
	}
	o, err := strip.Offsets()
	if err != nil {
		t.Fatalf("Offsets of the stripped binary: %v", err)
	}
	if o != table {
		t.Errorf("stripped %v: Offsets differ from the table:\n%s", strip.Version, offsetsDiff(o, table))
	}
	if v := o.RequestPattern; (v == Absent) != full.Version.Less(GoVersion{1, 23, 0}) {
		t.Errorf("Request.Pattern offset %d in %v: want Absent exactly before Go 1.23", v, full.Version)
	}
}

func offsetsDiff(a, b Offsets) string {
	var sb strings.Builder
	for _, f := range OffsetFields() {
		if x, y := a.Get(f.Name), b.Get(f.Name); x != y {
			fmt.Fprintf(&sb, "\t%s.%s: %d vs %d\n", f.Struct, f.Field, x, y)
		}
	}
	return sb.String()
}

func TestDependency(t *testing.T) {
	b := &GoBinary{Build: &debug.BuildInfo{Deps: []*debug.Module{
		{Path: "golang.org/x/net", Version: "v0.59.0"},
		{Path: "google.golang.org/grpc", Version: "v1.60.0", Replace: &debug.Module{Path: "example.com/grpc", Version: "v1.60.1-fork"}},
	}}}
	tests := []struct {
		path, wantVersion string
		ok                bool
	}{
		{"golang.org/x/net", "v0.59.0", true},
		{"google.golang.org/grpc", "v1.60.1-fork", true},
		{"github.com/absent/mod", "", false},
	}
	for _, tt := range tests {
		m, ok := b.Dependency(tt.path)
		if ok != tt.ok || m.Version != tt.wantVersion {
			t.Errorf("Dependency(%s) = %+v, %v; want version %q, %v", tt.path, m, ok, tt.wantVersion, tt.ok)
		}
	}
}
