package symbols

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLinkModes checks that stripped binaries are read right however they
// were linked: position-independent (pointers to runtime.text live in
// dynamic relocations, not in the file) and by the system linker (C start-up
// code comes before runtime.text, so .text does not start there).
func TestLinkModes(t *testing.T) {
	tests := []struct {
		name        string
		full, strip buildVariant
		run         bool
	}{
		{
			"pie",
			buildVariant{name: "pie", arch: "amd64", flags: []string{"-buildmode=pie"}},
			buildVariant{name: "pie-stripped", arch: "amd64", flags: []string{"-buildmode=pie", "-ldflags=-s -w"}},
			true,
		},
		{
			"external",
			buildVariant{name: "ext", arch: "amd64", cgo: true, flags: []string{"-ldflags=-linkmode=external"}},
			buildVariant{name: "ext-stripped", arch: "amd64", cgo: true, flags: []string{"-ldflags=-linkmode=external -s -w"}},
			true,
		},
		{
			"external pie",
			buildVariant{name: "ext-pie", arch: "amd64", cgo: true, flags: []string{"-buildmode=pie", "-ldflags=-linkmode=external"}},
			buildVariant{name: "ext-pie-stripped", arch: "amd64", cgo: true, flags: []string{"-buildmode=pie", "-ldflags=-linkmode=external -s -w"}},
			true,
		},
		{
			"arm64 pie", // R_AARCH64_RELATIVE relocations
			buildVariant{name: "arm64-pie", arch: "arm64", flags: []string{"-buildmode=pie"}},
			buildVariant{name: "arm64-pie-stripped", arch: "arm64", flags: []string{"-buildmode=pie", "-ldflags=-s -w"}},
			false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			full := openGo(t, goBuild(t, "local", tt.full))
			strip := openGo(t, goBuild(t, "local", tt.strip))
			if !strip.Stripped || strip.HasDWARF {
				t.Fatalf("%s: Stripped %v, HasDWARF %v", strip.Path, strip.Stripped, strip.HasDWARF)
			}
			checkPclntabMatchesSymbols(t, full)
			for _, name := range collectorFuncs {
				checkFunc(t, full, strip, name)
			}
			if tt.run {
				checkRuns(t, full.Path)
			}
		})
	}
}

// TestNoPclntabSection: a linker may merge .gopclntab into another section
// (or a tool may rename it); the table is then found by its header and the
// moduledata that points to it.
func TestNoPclntabSection(t *testing.T) {
	ref := openGo(t, goBuild(t, "local", stripped))
	data, err := os.ReadFile(ref.Path)
	if err != nil {
		t.Fatal(err)
	}
	renamed := bytes.ReplaceAll(data, []byte(".gopclntab\x00"), []byte(".xopclntab\x00"))
	if bytes.Equal(renamed, data) {
		t.Fatal("no .gopclntab section name to rename")
	}
	path := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(path, renamed, 0o755); err != nil {
		t.Fatal(err)
	}
	b := openGo(t, path)
	if b.elf.Section(".gopclntab") != nil {
		t.Fatal("the renamed binary still has a .gopclntab section")
	}
	for _, name := range collectorFuncs {
		want, err := ref.Func(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.Func(name)
		if err != nil {
			t.Fatalf("Func(%s) without a .gopclntab section: %v", name, err)
		}
		if got != want {
			t.Errorf("Func(%s) = %+v without a .gopclntab section, %+v with", name, got, want)
		}
	}
}

// TestFuncMissing: a function the binary does not have is ErrNoFunc.
func TestFuncMissing(t *testing.T) {
	for _, v := range []buildVariant{withSymbols, stripped} {
		b := openGo(t, goBuild(t, "local", v))
		if _, err := b.Func("net/http.(*Server).NoSuchMethod"); !errors.Is(err, ErrNoFunc) {
			t.Errorf("%s: Func of a missing function: %v, want ErrNoFunc", v.name, err)
		}
	}
}

// TestABIWrappers: every function that has an ABI wrapper (a Go function
// called from assembly, an assembly function called from Go) resolves to
// the same body with symbols and stripped, under both of its names.
func TestABIWrappers(t *testing.T) {
	full := openGo(t, goBuild(t, "local", withSymbols))
	strip := openGo(t, goBuild(t, "local", stripped))
	syms, err := full.symbolFuncs()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range syms {
		base, ok := strings.CutSuffix(s.Name, ".abi0")
		if !ok {
			continue
		}
		n++
		for _, name := range []string{base, s.Name} {
			f, err := full.Func(name)
			if err != nil {
				t.Errorf("Func(%s) with symbols: %v", name, err)
				continue
			}
			g, err := strip.Func(name)
			if err != nil {
				t.Errorf("Func(%s) stripped: %v", name, err)
				continue
			}
			if f.Addr != g.Addr || full.isWrapper(f) {
				t.Errorf("Func(%s): %#x (%s) with symbols, %#x stripped; want the same body", name, f.Addr, f.Name, g.Addr)
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d functions with ABI wrappers", n)
	}
}

// TestGNUStrip: a binary stripped after the build (binutils strip, as
// distribution packages do) is read like one linked with -s -w.
func TestGNUStrip(t *testing.T) {
	stripCmd, err := exec.LookPath("strip")
	if err != nil {
		t.Fatalf("binutils strip is needed for this test: %v", err)
	}
	full := openGo(t, goBuild(t, "local", withSymbols))
	path := filepath.Join(t.TempDir(), "prog")
	if out, err := exec.Command(stripCmd, "-o", path, full.Path).CombinedOutput(); err != nil {
		t.Fatalf("strip: %v\n%s", err, out)
	}
	b := openGo(t, path)
	if !b.Stripped || b.HasDWARF {
		t.Fatalf("after strip: Stripped %v, HasDWARF %v", b.Stripped, b.HasDWARF)
	}
	for _, name := range collectorFuncs {
		checkFunc(t, full, b, name)
	}
	if _, err := b.Offsets(); err != nil {
		t.Errorf("Offsets after strip: %v", err)
	}
}

// TestPIEWithoutAddends: Go's linker and GNU ld also write the value of a
// relative relocation into the file, but a linker need not (lld does not by
// default), leaving zeros: runtime.text is then only in the relocations.
func TestPIEWithoutAddends(t *testing.T) {
	ref := openGo(t, goBuild(t, "local", buildVariant{name: "pie-stripped", arch: "amd64", flags: []string{"-buildmode=pie", "-ldflags=-s -w"}}))
	rels, err := ref.relatives()
	if err != nil {
		t.Fatal(err)
	}
	if len(rels) < 1000 {
		t.Fatalf("only %d relative relocations in a PIE", len(rels))
	}
	data, err := os.ReadFile(ref.Path)
	if err != nil {
		t.Fatal(err)
	}
	for addr := range rels {
		off, err := ref.fileOffset(addr)
		if err != nil {
			continue // in .bss
		}
		copy(data[off:off+8], make([]byte, 8))
	}
	// No data points to the pclntab any more (the relocations' addends do).
	pcln := binary.LittleEndian.AppendUint64(nil, ref.elf.Section(".gopclntab").Addr)
	for _, s := range ref.elf.Sections {
		if s.Type == elf.SHT_PROGBITS && s.Flags&elf.SHF_WRITE != 0 {
			if n := bytes.Count(data[s.Offset:s.Offset+s.Size], pcln); n != 0 {
				t.Fatalf("%d pointers to the pclntab left in %s", n, s.Name)
			}
		}
	}
	path := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	b := openGo(t, path)
	for _, name := range collectorFuncs {
		want, err := ref.Func(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.Func(name)
		if err != nil || got != want {
			t.Errorf("Func(%s) = %+v, %v without addends; want %+v", name, got, err, want)
		}
	}
}

// TestConcurrentUse: a GoBinary's methods may be called from several
// goroutines (run with -race).
func TestConcurrentUse(t *testing.T) {
	b := openGo(t, goBuild(t, "local", stripped))
	errs := make(chan error, len(collectorFuncs))
	for _, name := range collectorFuncs {
		go func() {
			f, err := b.Func(name)
			if err == nil {
				_, err = b.Returns(f)
			}
			if err == nil {
				_, err = b.Offsets()
			}
			errs <- err
		}()
	}
	for range collectorFuncs {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
