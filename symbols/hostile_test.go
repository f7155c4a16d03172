package symbols

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// sectionHeader locates the section header of the section named name in
// the 64-bit little-endian ELF image b.
func sectionHeader(t *testing.T, b []byte, name string) int {
	t.Helper()
	f, err := elf.NewFile(bytesReaderAt(b))
	if err != nil {
		t.Fatal(err)
	}
	shoff := binary.LittleEndian.Uint64(b[0x28:])
	for i, s := range f.Sections {
		if s.Name == name {
			return int(shoff) + i*64
		}
	}
	t.Fatalf("no section %s", name)
	return 0
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, errors.New("EOF")
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, errors.New("EOF")
	}
	return n, nil
}

// hostileELFs makes broken variants of a small shared library.
func hostileELFs(t *testing.T) map[string]string {
	t.Helper()
	lib := buildC(t, `int SSL_read(void *s, void *b, int n) { return n; }
int SSL_write(void *s, const void *b, int n) { return n; }`, "-Wl,--build-id")
	orig, err := os.ReadFile(lib)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := map[string]string{}
	mutate := func(name string, fn func(b []byte) []byte) {
		b := fn(append([]byte(nil), orig...))
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out[name] = p
	}
	// .dynsym claims a terabyte of entries.
	mutate("huge-symtab", func(b []byte) []byte {
		binary.LittleEndian.PutUint64(b[sectionHeader(t, b, ".dynsym")+0x20:], 24<<36)
		return b
	})
	// .dynstr claims a terabyte.
	mutate("huge-strtab", func(b []byte) []byte {
		binary.LittleEndian.PutUint64(b[sectionHeader(t, b, ".dynstr")+0x20:], 1<<40)
		return b
	})
	// .dynsym links to a section that does not exist.
	mutate("bad-link", func(b []byte) []byte {
		binary.LittleEndian.PutUint32(b[sectionHeader(t, b, ".dynsym")+0x28:], 60000)
		return b
	})
	// 65535 section headers, most of them beyond the end of the file.
	mutate("huge-section-count", func(b []byte) []byte {
		binary.LittleEndian.PutUint16(b[0x3c:], 0xffff)
		return b
	})
	// The file cut in the middle of its symbol table.
	mutate("truncated", func(b []byte) []byte {
		off := binary.LittleEndian.Uint64(b[sectionHeader(t, b, ".dynsym")+0x18:])
		return b[:off+40]
	})
	return out
}

// TestHostileELF: analyses of crafted files end with an error, within the
// memory budget, and each is counted as given up.
func TestHostileELF(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := NewAnalyzer(nil, 10*time.Second, reg)
	files := hostileELFs(t)
	for name, path := range files {
		t.Run(name, func(t *testing.T) {
			before := testutil.ToFloat64(a.failures.WithLabelValues("malformed"))
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			alloc := ms.TotalAlloc
			err := a.Run(path, func() error {
				_, err := Defined(path, "SSL_read", "SSL_write", "SSL_read_ex")
				return err
			})
			runtime.ReadMemStats(&ms)
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("%v", err)
			if got := testutil.ToFloat64(a.failures.WithLabelValues("malformed")); got != before+1 {
				t.Errorf("malformed count %v, want %v", got, before+1)
			}
			if n := ms.TotalAlloc - alloc; n > maxStrtabWindow+(8<<20) {
				t.Errorf("allocated %d bytes", n)
			}
			// Identify reads notes only, and never fails on a broken ELF.
			if _, err := Identify(path); err != nil {
				t.Errorf("Identify: %v", err)
			}
		})
	}
}

// TestAnalyzerGivesUp: a panic, a stall and a budget overrun are errors,
// counted by reason.
func TestAnalyzerGivesUp(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := NewAnalyzer(nil, 100*time.Millisecond, reg)
	if err := a.Run("p", func() error { panic("boom") }); !errors.Is(err, errPanic) {
		t.Errorf("panic: %v", err)
	}
	release := make(chan struct{})
	if err := a.Run("s", func() error { <-release; return nil }); !errors.Is(err, ErrGaveUp) {
		t.Errorf("stall: %v", err)
	}
	// The stalled analysis holds the turn of the next one until it ends.
	if err := a.Run("next", func() error { return nil }); !errors.Is(err, ErrGaveUp) {
		t.Errorf("behind a stall: %v", err)
	}
	close(release)
	if err := a.Run("big", func() error { return ErrTooLarge }); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
	if err := a.Run("ok", func() error { return nil }); err != nil {
		t.Errorf("after the stall ended: %v", err)
	}
	for reason, want := range map[string]float64{"panic": 1, "timeout": 2, "too_large": 1, "malformed": 0} {
		if got := testutil.ToFloat64(a.failures.WithLabelValues(reason)); got != want {
			t.Errorf("%s: %v, want %v", reason, got, want)
		}
	}
}

// TestPclntabHugeCount: a pclntab header claiming more functions than its
// bytes can hold is refused before debug/gosym allocates for them.
func TestPclntabHugeCount(t *testing.T) {
	data := make([]byte, 4096)
	binary.LittleEndian.PutUint32(data, pclnMagic120)
	data[6], data[7] = 1, 8
	binary.LittleEndian.PutUint64(data[8:], 1<<40)
	if _, err := newGosymTable(data, 0x401000); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err %v, want ErrMalformed", err)
	}
}

// TestDWARFSiblingCycle: DWARF whose sibling links point back at the
// entry itself (a cycle) ends the search for struct offsets.
func TestDWARFSiblingCycle(t *testing.T) {
	abbrev := []byte{
		1, 0x11, 1, 0, 0, // compile unit, children, no attributes
		2, 0x13, 1, 0x03, 0x08, 0x01, 0x13, 0, 0, // struct: name (string), sibling (ref4)
		0,
	}
	var die []byte
	die = append(die, 1) // the compile unit
	structAt := 11 + len(die)
	die = append(die, 2)
	die = append(die, "not/wanted.T\x00"...)
	die = binary.LittleEndian.AppendUint32(die, uint32(structAt)) // sibling: itself
	die = append(die, 2)
	die = append(die, "other.T\x00"...)
	die = binary.LittleEndian.AppendUint32(die, uint32(structAt)) // sibling: back to the first
	die = append(die, 0, 0, 0)
	info := binary.LittleEndian.AppendUint32(nil, uint32(7+len(die)))
	info = binary.LittleEndian.AppendUint16(info, 4)
	info = binary.LittleEndian.AppendUint32(info, 0)
	info = append(info, 8)
	info = append(info, die...)
	d, err := dwarf.New(abbrev, nil, nil, info, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := OffsetsFromDWARF(d)
		done <- err
	}()
	select {
	case err := <-done:
		t.Logf("OffsetsFromDWARF: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("OffsetsFromDWARF does not end on a sibling cycle")
	}
}

// TestCache: results survive a new Cache on the same directory, are keyed
// by identity and agent version, and corrupt files are ignored.
func TestCache(t *testing.T) {
	dir := t.TempDir()
	c, err := NewCache(dir, "v1")
	if err != nil {
		t.Fatal(err)
	}
	id := Identity{Dev: 1, Ino: 2, Size: 3, MtimeNs: 4, BuildID: "gnu:ab"}
	type result struct{ Sites []uint64 }
	if err := c.Put("k/1", id, result{Sites: []uint64{7, 8}}); err != nil {
		t.Fatal(err)
	}
	var r result
	again, _ := NewCache(dir, "v1")
	if !again.Get("k/1", id, &r) || len(r.Sites) != 2 || r.Sites[1] != 8 {
		t.Fatalf("not read back from disk: %+v", r)
	}
	other := id
	other.MtimeNs++
	if again.Get("k/1", other, &r) {
		t.Error("a file of another mtime hit")
	}
	if newer, _ := NewCache(dir, "v2"); newer.Get("k/1", id, &r) {
		t.Error("another agent version hit")
	}
	// Corrupt every file: a new cache misses and removes them.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.WriteFile(filepath.Join(dir, e.Name()), []byte(`{"format":1,"kind":"k/1","val`), 0o600)
	}
	fresh, _ := NewCache(dir, "v1")
	if fresh.Get("k/1", id, &r) {
		t.Error("a corrupt file hit")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("%d corrupt files left", len(ents))
	}
}

// TestPclnWalkMalformed: function tables whose counts and offsets point
// outside the pclntab end in ErrMalformed, never an out-of-range read.
func TestPclnWalkMalformed(t *testing.T) {
	header := func(nfunc, names, pcln uint64) []byte {
		d := make([]byte, 256)
		binary.LittleEndian.PutUint32(d, pclnMagic120)
		d[6], d[7] = 1, 8
		binary.LittleEndian.PutUint64(d[8:], nfunc)
		binary.LittleEndian.PutUint64(d[32:], names)
		binary.LittleEndian.PutUint64(d[64:], pcln)
		return d
	}
	badFunc := header(2, 100, 128)
	binary.LittleEndian.PutUint32(badFunc[128+4:], 1<<30) // _func far beyond the end
	badName := header(1, 100, 128)
	binary.LittleEndian.PutUint32(badName[128+4:], 32) // _func at 160
	binary.LittleEndian.PutUint32(badName[128+8:], 8)
	binary.LittleEndian.PutUint32(badName[160+4:], 1<<30) // its name far beyond the end
	for name, d := range map[string][]byte{
		"huge count":     header(1<<40, 100, 128),
		"table past end": header(1, 100, 1<<40),
		"func past end":  badFunc,
		"name past end":  badName,
		"short header":   header(1, 100, 128)[:40],
	} {
		_, err := (&pclnTable{data: d, textStart: 0x401000}).walk(map[string]bool{"main.main": true})
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
}

// TestIdentitySame: a file rewritten in place, or a new file on a reused
// inode, is not the file an identity names.
func TestIdentitySame(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	id, err := Identify(p)
	if err != nil {
		t.Fatal(err)
	}
	if !id.Same(p) {
		t.Fatal("a file is not the same as itself")
	}
	if err := os.WriteFile(p, []byte("longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	if id.Same(p) {
		t.Error("a rewritten file of another size is the same")
	}
	if id.Same(p + ".missing") {
		t.Error("a missing file is the same")
	}
}
