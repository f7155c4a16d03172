package symbols

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Symbol tables are read without loading them: debug/elf's Symbols makes a
// string of every name, which for node's 185,000 symbols is ~46 MB and
// ~450 ms, when a collector asks for four names. A scan here streams the
// entries in chunks, reads names through a bounded window of the string
// table, and compares them as bytes.

// Bounds on what a scan reads, so that a hostile file costs bounded memory.
const (
	// maxStrtabWindow is the most of a string table held at once; tables
	// up to this size are read whole, once. Names are not read in order
	// (the dynamic symbol table is ordered by hash; Go's linker writes
	// names in no order of the symbols): a smaller window thrashes
	// (1 MiB on helm's 9 MB table: 10 s instead of 10 ms).
	maxStrtabWindow = 16 << 20
	// maxSymbolName is the longest name compared: longer ones never match
	// a name asked for (and are not returned by scans).
	maxSymbolName = 4096
	// symChunk is how many entries are read at a time.
	symChunk = 4096
)

// ErrMalformed is returned (wrapped) for an ELF file whose structures
// contradict themselves or the file's size.
var ErrMalformed = errors.New("malformed ELF file")

// symEntry is one defined function symbol as a scan sees it; name is only
// valid during the visit.
type symEntry struct {
	name        []byte
	value, size uint64
}

// scanFuncSymbols calls visit for each defined function in the symbol table
// of type typ (elf.SHT_SYMTAB or elf.SHT_DYNSYM), until visit returns true.
// A file without such a table has no functions there: no error.
func scanFuncSymbols(f *elf.File, typ elf.SectionType, visit func(symEntry) (stop bool)) error {
	s := f.SectionByType(typ)
	if s == nil {
		return nil
	}
	entSize := uint64(24) // Elf64_Sym
	if f.Class == elf.ELFCLASS32 {
		entSize = 16
	}
	if s.Flags&elf.SHF_COMPRESSED != 0 || s.Size%entSize != 0 {
		return fmt.Errorf("symbol table %s: size %d is not a whole number of %d-byte entries: %w", s.Name, s.Size, entSize, ErrMalformed)
	}
	if int(s.Link) <= 0 || int(s.Link) >= len(f.Sections) {
		return fmt.Errorf("symbol table %s links to no string table (%d): %w", s.Name, s.Link, ErrMalformed)
	}
	strs := &strtab{r: f.Sections[s.Link], size: f.Sections[s.Link].Size, window: maxStrtabWindow}
	buf := make([]byte, symChunk*entSize)
	for off := uint64(0); off < s.Size; off += uint64(len(buf)) {
		chunk := buf[:min(uint64(len(buf)), s.Size-off)]
		if _, err := s.ReadAt(chunk, int64(off)); err != nil {
			return fmt.Errorf("read symbol table %s at %d: %w (%w)", s.Name, off, err, ErrMalformed)
		}
		for i := uint64(0); i+entSize <= uint64(len(chunk)); i += entSize {
			if off == 0 && i == 0 {
				continue // entry 0 is the undefined symbol
			}
			e, nameOff, ok := decodeSym(f, chunk[i:i+entSize])
			if !ok {
				continue
			}
			name, err := strs.name(nameOff)
			if err != nil {
				return fmt.Errorf("names of %s: %w", s.Name, err)
			}
			if name == nil {
				continue
			}
			e.name = name
			if visit(e) {
				return nil
			}
		}
	}
	return nil
}

// decodeSym decodes one symbol entry and reports whether it is a defined
// function.
func decodeSym(f *elf.File, b []byte) (symEntry, uint32, bool) {
	bo := f.ByteOrder
	var info uint8
	var shndx uint16
	var e symEntry
	nameOff := bo.Uint32(b)
	if f.Class == elf.ELFCLASS32 {
		e.value, e.size = uint64(bo.Uint32(b[4:])), uint64(bo.Uint32(b[8:]))
		info, shndx = b[12], bo.Uint16(b[14:])
	} else {
		info, shndx = b[4], bo.Uint16(b[6:])
		e.value, e.size = bo.Uint64(b[8:]), bo.Uint64(b[16:])
	}
	ok := elf.ST_TYPE(info) == elf.STT_FUNC && elf.SectionIndex(shndx) != elf.SHN_UNDEF && e.value != 0
	return e, nameOff, ok
}

// strtab reads NUL-terminated names from a string table through a window
// of at most window bytes.
type strtab struct {
	r      io.ReaderAt
	size   uint64
	window uint64
	buf    []byte
	base   uint64 // offset of buf[0]
}

// name returns the name at off, nil when it is longer than maxSymbolName
// (or runs off the table).
func (t *strtab) name(off uint32) ([]byte, error) {
	o := uint64(off)
	if o >= t.size {
		return nil, nil
	}
	if o < t.base || o+maxSymbolName > t.base+uint64(len(t.buf)) && t.base+uint64(len(t.buf)) < t.size {
		if err := t.fill(o); err != nil {
			return nil, err
		}
	}
	b := t.buf[o-t.base:]
	if len(b) > maxSymbolName {
		b = b[:maxSymbolName]
	}
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil
	}
	return b[:i], nil
}

// fill reads the window: the whole table when it fits, else from off on.
func (t *strtab) fill(off uint64) error {
	n := min(t.size, t.window)
	start := off
	if t.size <= t.window {
		start = 0
	} else if start+n > t.size {
		start = t.size - n
	}
	if uint64(cap(t.buf)) < n {
		t.buf = make([]byte, n)
	}
	t.buf = t.buf[:n]
	if _, err := t.r.ReadAt(t.buf, int64(start)); err != nil {
		t.buf = t.buf[:0]
		return fmt.Errorf("read string table at %d: %w (%w)", start, err, ErrMalformed)
	}
	t.base = start
	return nil
}

// sectionData reads a whole section, within the analysis memory budget.
func sectionData(s *elf.Section) ([]byte, error) {
	if s.Size > maxSectionBytes {
		return nil, fmt.Errorf("section %s of %d bytes: %w", s.Name, s.Size, ErrTooLarge)
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("%w (%w)", err, ErrMalformed)
	}
	return b, nil
}

// dwarfBytes is what parsing the DWARF of f reads into memory: the debug
// sections, uncompressed.
func dwarfBytes(f *elf.File) uint64 {
	var n uint64
	for _, s := range f.Sections {
		if strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			n += s.Size
		}
	}
	return n
}
