package symbols

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The agent reads every executable on the node as root: a file crafted to
// break its readers (huge counts, truncated sections, garbage tables) must
// give an error, never a panic. The fuzz targets here start from a real Go
// binary and mutate it where the readers look.

// fuzzProgram is the real binary the mutations start from: small, with a
// symbol table and uncompressed DWARF (so that mutations reach the DWARF
// reader, not only zlib).
const fuzzProgram = `package main

import (
	"fmt"
	"os"
)

func main() { fmt.Println(len(os.Args)) }
`

var fuzzBase struct {
	once    sync.Once
	path    string
	bin     []byte
	regions []region
	err     error
}

// region is a byte range of the base binary that mutations aim at.
type region struct{ off, size uint64 }

// baseBinary builds fuzzProgram once per process and returns it with the
// regions the readers look at: the ELF header, the program and section
// headers, and the sections read for symbols, pclntab, build info and
// DWARF.
func baseBinary(tb testing.TB) ([]byte, []region) {
	tb.Helper()
	fuzzBase.once.Do(func() {
		dir, err := os.MkdirTemp("", "symbols-fuzz-")
		if err != nil {
			fuzzBase.err = err
			return
		}
		fuzzBase.path = filepath.Join(dir, "prog")
		for name, content := range map[string]string{"go.mod": "module periscope.example/fuzz\n\ngo 1.18\n", "main.go": fuzzProgram} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				fuzzBase.err = err
				return
			}
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-compressdwarf=false", "-o", fuzzBase.path, ".")
		cmd.Dir = dir
		cmd.Env = goBuildEnv("local", withSymbols)
		if out, err := cmd.CombinedOutput(); err != nil {
			fuzzBase.err = err
			fuzzBase.path = string(out)
			return
		}
		fuzzBase.bin, fuzzBase.err = os.ReadFile(fuzzBase.path)
		if fuzzBase.err == nil {
			fuzzBase.regions, fuzzBase.err = elfRegions(fuzzBase.bin)
		}
	})
	if fuzzBase.err != nil {
		tb.Fatalf("build the fuzz base binary: %v %s", fuzzBase.err, fuzzBase.path)
	}
	return fuzzBase.bin, fuzzBase.regions
}

func elfRegions(bin []byte) ([]region, error) {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return nil, err
	}
	phoff := binary.LittleEndian.Uint64(bin[32:])
	shoff := binary.LittleEndian.Uint64(bin[40:])
	regions := []region{
		{0, 64},
		{phoff, uint64(len(f.Progs)) * 56},
		{shoff, uint64(len(f.Sections)) * 64},
	}
	for _, name := range []string{".gopclntab", ".go.buildinfo", ".symtab", ".strtab", ".debug_info", ".debug_abbrev", ".debug_str", ".text", ".noptrdata", ".data"} {
		if s := f.Section(name); s != nil && s.Type != elf.SHT_NOBITS {
			regions = append(regions, region{s.Offset, s.Size})
		}
	}
	return regions, nil
}

// mutate applies ops to a copy of bin. Each op is a region (an index into
// regions), an offset in it (uint16, little-endian) and a count n, then n
// bytes written there; region 0xff truncates the file at offset/65536 of
// its length instead.
func mutate(bin []byte, regions []region, ops []byte) []byte {
	out := bytes.Clone(bin)
	for len(ops) >= 4 {
		r, off, n := ops[0], uint64(binary.LittleEndian.Uint16(ops[1:])), int(ops[3])
		ops = ops[4:]
		if r == 0xff {
			out = out[:uint64(len(out))*off/65536]
			continue
		}
		n = min(n, len(ops))
		reg := regions[int(r)%len(regions)]
		if pos := reg.off + off%max(reg.size, 1); pos < uint64(len(out)) {
			copy(out[pos:], ops[:n])
		}
		ops = ops[n:]
	}
	return out
}

// mutants seeds f with fuzzSeeds and returns a function that writes the
// base binary mutated by ops to a file and returns its path.
func mutants(f *testing.F) func(t *testing.T, ops []byte) string {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	bin, regions := baseBinary(f)
	path := filepath.Join(f.TempDir(), "bin")
	return func(t *testing.T, ops []byte) string {
		if err := os.WriteFile(path, mutate(bin, regions, ops), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
}

// fuzzSeeds are mutations worth starting from: none, a huge section count,
// a truncated file, a zeroed pclntab header, garbage DWARF and build info.
func fuzzSeeds() [][]byte {
	return [][]byte{
		nil,
		{0, 60, 0, 2, 0xff, 0xff},             // e_shnum = 65535
		{0, 32, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1}, // e_phoff far away
		{0xff, 0x00, 0x80, 0},                 // truncated at half
		{3, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0},  // pclntab magic
		{3, 8, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},    // pclntab nfunc
		{4, 14, 0, 2, 0xff, 0xff},                                       // build info
		{7, 0, 0, 4, 0xff, 0xff, 0xff, 0x7f},                            // .debug_info unit length
		{8, 0, 0, 6, 1, 0x13, 1, 0x49, 0x13, 0},                         // .debug_abbrev
		{2, 0x80, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, // a section header's offset
	}
}

// FuzzGoBinary: GoInfo and everything the Go collector asks of a binary
// (functions from the symbol table or pclntab, their RETs and entry
// probes, struct offsets from DWARF), on a mutated real Go binary.
func FuzzGoBinary(f *testing.F) {
	mutant := mutants(f)
	f.Fuzz(func(t *testing.T, ops []byte) {
		path := mutant(t, ops)
		b, err := GoInfo(path)
		if err != nil {
			if len(ops) == 0 {
				t.Fatalf("GoInfo of the unmodified binary: %v", err)
			}
			return
		}
		defer b.Close()
		for _, name := range []string{"main.main", "fmt.Fprintln", "runtime.morestack"} {
			fn, err := b.Func(name)
			if err != nil {
				if len(ops) == 0 {
					t.Fatalf("%s in the unmodified binary: %v", name, err)
				}
				continue
			}
			_, _ = b.Returns(fn)
			_, _ = b.EntryProbe(fn)
		}
		_, _ = b.Offsets()
		_, _ = b.OffsetsDWARF()
		_, _ = b.Dependency("golang.org/x/net")
	})
}

// FuzzObject: the ELF symbol readers the OpenSSL collector uses on every
// library and executable, on a mutated real binary.
func FuzzObject(f *testing.F) {
	mutant := mutants(f)
	f.Fuzz(func(t *testing.T, ops []byte) {
		path := mutant(t, ops)
		_, _ = Defined(path, "main.main", "SSL_read")
		_, _ = Exported(path, "SSL_read", "SSL_write")
		o, err := Open(path)
		if err != nil {
			return
		}
		defer o.Close()
		if fn, err := o.Func("main.main"); err == nil {
			if code, err := o.Code(fn); err == nil {
				_, _ = CheapEntry(code)
			}
		}
	})
}

// FuzzCode: the disassembly of function bodies (RET sites, entry probes,
// placement) on any bytes, seeded with real functions' code.
func FuzzCode(f *testing.F) {
	bin, _ := baseBinary(f)
	if ef, err := elf.NewFile(bytes.NewReader(bin)); err == nil {
		if syms, err := ef.Symbols(); err == nil {
			for _, s := range syms {
				switch s.Name {
				case "main.main", "fmt.Fprintln", "runtime.memmove", "runtime.morestack", "internal/bytealg.IndexByteString":
					if fn := (Func{Name: s.Name, Addr: s.Value, Size: s.Size}); fn.Size > 0 && fn.Size < 1<<16 {
						if code, err := fn.code(ef); err == nil {
							f.Add(code, s.Value)
						}
					}
				}
			}
		}
	}
	f.Add([]byte{0xc5, 0xf8, 0x77, 0xc3}, uint64(0x401000))
	f.Add([]byte{0xc0, 0x03, 0x5f, 0xd6}, uint64(0x10000))
	f.Fuzz(func(t *testing.T, code []byte, addr uint64) {
		n := uint64(len(code))
		for _, r := range returnsAMD64(code, func(i uint64) (uint64, bool) { return i + 1 + i%7, true }) {
			if r >= n {
				t.Fatalf("amd64 RET at %d of %d bytes", r, n)
			}
		}
		_ = returnsAMD64(code, func(uint64) (uint64, bool) { return 0, true }) // a resync that does not move on
		for _, r := range returnsARM64(code) {
			if r >= n {
				t.Fatalf("arm64 RET at %d of %d bytes", r, n)
			}
		}
		_ = stackCheckBranchAMD64(code)
		_ = stackCheckBranchARM64(code)
		_, _ = CheapEntry(code)
		fn := Func{Name: "f", Addr: addr, Size: n}
		_, _ = ForwardTarget(fn, code)
		_ = Calls(fn, code, addr+n/2)
	})
}

// FuzzPclntab: the pclntab parser on a real table's head with mutations.
func FuzzPclntab(f *testing.F) {
	bin, _ := baseBinary(f)
	if ef, err := elf.NewFile(bytes.NewReader(bin)); err == nil {
		if s := ef.Section(".gopclntab"); s != nil {
			if data, err := s.Data(); err == nil {
				text := ef.Section(".text").Addr
				f.Add(data, text)
				f.Add(data[:min(len(data), 4096)], text)
			}
		}
	}
	f.Add([]byte{0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8}, uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, text uint64) {
		tab, err := newGosymTable(data, text)
		if err != nil {
			return
		}
		for i, fn := range tab.Funcs {
			if i == 64 {
				break
			}
			_ = autogenerated(tab, fn.Entry)
		}
	})
}

// FuzzDWARF: struct offsets from DWARF sections (abbreviations, the head
// of .debug_info, strings) of a real binary, mutated.
func FuzzDWARF(f *testing.F) {
	bin, _ := baseBinary(f)
	if ef, err := elf.NewFile(bytes.NewReader(bin)); err == nil {
		sec := func(name string, limit int) []byte {
			if s := ef.Section(name); s != nil {
				if b, err := s.Data(); err == nil {
					return b[:min(len(b), limit)]
				}
			}
			return nil
		}
		abbrev, info, str := sec(".debug_abbrev", 1<<20), sec(".debug_info", 1<<20), sec(".debug_str", 1<<20)
		f.Add(abbrev, firstUnits(info, 32<<10), str)
	}
	f.Fuzz(func(t *testing.T, abbrev, info, str []byte) {
		d, err := dwarf.New(abbrev, nil, nil, info, nil, nil, nil, str)
		if err != nil {
			return
		}
		_, _ = OffsetsFromDWARF(d)
	})
}

// firstUnits returns the whole compilation units at the head of a
// .debug_info section (32-bit DWARF), up to limit bytes.
func firstUnits(info []byte, limit int) []byte {
	end := 0
	for end+4 <= len(info) {
		n := end + 4 + int(binary.LittleEndian.Uint32(info[end:]))
		if n > limit || n > len(info) {
			break
		}
		end = n
	}
	return info[:end]
}
