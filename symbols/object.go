package symbols

import (
	"debug/elf"
	"fmt"
	"os"
)

// Object is an open ELF file for looking up functions and their code.
type Object struct {
	path  string
	file  *elf.File
	osf   *os.File
	funcs map[string]Func
}

// Open opens the ELF file at path.
func Open(path string) (*Object, error) {
	osf, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open ELF %s: %w", path, err)
	}
	f, err := elf.NewFile(osf)
	if err != nil {
		osf.Close()
		// Headers that contradict themselves or run past the end of
		// the file.
		return nil, fmt.Errorf("open ELF %s: %w (%w)", path, err, ErrMalformed)
	}
	return &Object{path: path, file: f, osf: osf}, nil
}

// Close closes the file.
func (o *Object) Close() error { return o.osf.Close() }

// Machine is the file's architecture.
func (o *Object) Machine() elf.Machine { return o.file.Machine }

// Func returns the defined function name, from the dynamic or the full
// symbol table (the dynamic one first). Funcs looks up several at once.
func (o *Object) Func(name string) (Func, error) {
	if f, ok := o.funcs[name]; ok {
		return f, nil
	}
	if _, err := o.Funcs(name); err != nil {
		return Func{}, err
	}
	f, ok := o.funcs[name]
	if !ok {
		return Func{}, fmt.Errorf("%s: no function %s", o.path, name)
	}
	return f, nil
}

// Funcs looks up the defined functions names in one pass over the symbol
// tables and returns those found; Func answers them without reading again.
func (o *Object) Funcs(names ...string) (map[string]Func, error) {
	return o.find(false, names)
}

// find looks names up in the dynamic symbol table and, unless dynOnly, in
// the full one, which is read only for names the dynamic one lacks. A
// scan stops once every name is found.
func (o *Object) find(dynOnly bool, names []string) (map[string]Func, error) {
	if o.funcs == nil {
		o.funcs = make(map[string]Func)
	}
	want := make(map[string]bool, len(names))
	found := make(map[string]Func, len(names))
	for _, n := range names {
		if f, ok := o.funcs[n]; ok {
			found[n] = f
		} else {
			want[n] = true
		}
	}
	tables := []elf.SectionType{elf.SHT_DYNSYM, elf.SHT_SYMTAB}
	if dynOnly {
		tables = tables[:1]
	}
	for _, typ := range tables {
		if len(want) == 0 {
			break
		}
		err := scanFuncSymbols(o.file, typ, func(e symEntry) bool {
			if !want[string(e.name)] {
				return false
			}
			start, err := fileOffset(o.file, e.value)
			if err != nil {
				return false
			}
			name := string(e.name)
			f := Func{Name: name, Addr: e.value, Size: e.size, Start: start}
			o.funcs[name], found[name] = f, f
			delete(want, name)
			return len(want) == 0
		})
		if err != nil {
			return nil, fmt.Errorf("read symbols of %s: %w", o.path, err)
		}
	}
	return found, nil
}

// FuncAt describes the code at virtual address addr, of which only size
// bytes are read: for functions without a symbol (static ones reached
// through a call).
func (o *Object) FuncAt(name string, addr, size uint64) (Func, error) {
	start, err := fileOffset(o.file, addr)
	if err != nil {
		return Func{}, fmt.Errorf("%s: %s: %w", o.path, name, err)
	}
	return Func{Name: name, Addr: addr, Size: size, Start: start}, nil
}

// Code returns the machine code of f.
func (o *Object) Code(f Func) ([]byte, error) {
	b, err := f.code(o.file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.path, err)
	}
	return b, nil
}
