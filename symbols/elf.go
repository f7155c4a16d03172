package symbols

import (
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
// no symbol tables at all defines nothing; that is not an error. The full
// table is read only when the dynamic one lacks a name.
func Defined(path string, names ...string) (map[string]bool, error) {
	return defined(path, false, names)
}

// Exported is Defined restricted to the dynamic symbol table: what a shared
// library offers to others. It reads far less than Defined for large files.
func Exported(path string, names ...string) (map[string]bool, error) {
	return defined(path, true, names)
}

func defined(path string, dynOnly bool, names []string) (map[string]bool, error) {
	o, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer o.Close()
	found, err := o.find(dynOnly, names)
	if err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		_, want[n] = found[n]
	}
	return want, nil
}
