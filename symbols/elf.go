package symbols

import (
	"debug/elf"
	"errors"
	"fmt"
	"syscall"
)

// FileID names a file independently of the path it was reached by.
type FileID struct {
	Dev uint64
	Ino uint64
}

func (f FileID) String() string { return fmt.Sprintf("%d:%d", f.Dev, f.Ino) }

// Stat returns the FileID of path (following symlinks).
func Stat(path string) (FileID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return FileID{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return FileID{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}

// Defined reports which of names the ELF file at path defines as functions,
// in its dynamic symbol table or its full symbol table. Symbols the file only
// imports (undefined, as libcurl imports SSL_read) do not count. A file with
// no symbol tables at all defines nothing; that is not an error.
func Defined(path string, names ...string) (map[string]bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open ELF %s: %w", path, err)
	}
	defer f.Close()
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = false
	}
	dyn, err := f.DynamicSymbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("read dynamic symbols of %s: %w", path, err)
	}
	markDefined(want, dyn)
	syms, err := f.Symbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("read symbols of %s: %w", path, err)
	}
	markDefined(want, syms)
	return want, nil
}

// Exported is Defined restricted to the dynamic symbol table: what a shared
// library offers to others. It reads far less than Defined for large files.
func Exported(path string, names ...string) (map[string]bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open ELF %s: %w", path, err)
	}
	defer f.Close()
	dyn, err := f.DynamicSymbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("read dynamic symbols of %s: %w", path, err)
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = false
	}
	markDefined(want, dyn)
	return want, nil
}

func markDefined(want map[string]bool, syms []elf.Symbol) {
	for _, s := range syms {
		if s.Section == elf.SHN_UNDEF || s.Value == 0 || elf.ST_TYPE(s.Info) != elf.STT_FUNC {
			continue
		}
		if _, ok := want[s.Name]; ok {
			want[s.Name] = true
		}
	}
}
