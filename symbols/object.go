package symbols

import (
	"debug/elf"
	"errors"
	"fmt"
)

// Object is an open ELF file for looking up functions and their code.
type Object struct {
	path  string
	file  *elf.File
	funcs map[string]Func
}

// Open opens the ELF file at path.
func Open(path string) (*Object, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open ELF %s: %w", path, err)
	}
	return &Object{path: path, file: f}, nil
}

// Close closes the file.
func (o *Object) Close() error { return o.file.Close() }

// Machine is the file's architecture.
func (o *Object) Machine() elf.Machine { return o.file.Machine }

// Func returns the defined function name, from the dynamic or the full
// symbol table.
func (o *Object) Func(name string) (Func, error) {
	if o.funcs == nil {
		o.funcs = make(map[string]Func)
		dyn, err := o.file.DynamicSymbols()
		if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
			return Func{}, fmt.Errorf("read dynamic symbols of %s: %w", o.path, err)
		}
		syms, err := o.file.Symbols()
		if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
			return Func{}, fmt.Errorf("read symbols of %s: %w", o.path, err)
		}
		for _, s := range append(dyn, syms...) {
			if s.Section == elf.SHN_UNDEF || s.Value == 0 || elf.ST_TYPE(s.Info) != elf.STT_FUNC {
				continue
			}
			if _, seen := o.funcs[s.Name]; seen {
				continue
			}
			start, err := fileOffset(o.file, s.Value)
			if err != nil {
				continue
			}
			o.funcs[s.Name] = Func{Name: s.Name, Addr: s.Value, Size: s.Size, Start: start}
		}
	}
	f, ok := o.funcs[name]
	if !ok {
		return Func{}, fmt.Errorf("%s: no function %s", o.path, name)
	}
	return f, nil
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
