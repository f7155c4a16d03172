package symbols

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Go functions are described by Func (placement.go): Name is the name in
// the binary, which may differ from the name asked for by an ABI suffix
// (.abi0) or type arguments; Addr the entry's virtual address; Size the
// length of the code, up to the next function; Start the file offset of the
// entry, where a uprobe attaches.

// ErrNoFunc is returned (wrapped) by Func when the binary has no such
// function, for instance net/http functions in a program that does not use
// net/http.
var ErrNoFunc = errors.New("no such function")

// Func finds the function called name ("net/http.serverHandler.ServeHTTP",
// "net/http.(*Transport).roundTrip", "runtime.goexit1"), in the symbol
// table when the binary has one, else in .gopclntab. Names match without
// ABI suffixes (.abi0, .abiinternal) and with type arguments written [...];
// where a name then leads to a function body and to a compiler-generated
// ABI wrapper of it, Func returns the body, with or without symbols. A name
// that leads to several bodies (instances of a generic function) is an
// error, as is a missing function (wrapping ErrNoFunc).
func (b *GoBinary) Func(name string) (Func, error) {
	var errs []error
	if !b.Stripped {
		syms, err := b.symbolMatches(name)
		if err == nil {
			f, err := lookupFunc(syms, name, b.isWrapper)
			if err == nil {
				return b.finishFunc(f)
			}
			// The symbol table lists every function the linker kept: one
			// it lacks is not in the binary, and the pclntab (whose
			// reading costs tens of MB in a large binary) is not read.
			return Func{}, fmt.Errorf("find %s in the symbol table of %s: %w", name, b.Path, err)
		}
		errs = append(errs, err)
	}
	// One function of that name in the function table: that is it, and
	// none: there is none. Several: a body and its wrapper, which only
	// the line table tells apart (debug/gosym, below).
	if fs, err := b.pclnMatches(name); err == nil {
		if len(fs) == 0 {
			return Func{}, fmt.Errorf("find %s in %s: %s: %w", name, b.Path, name, ErrNoFunc)
		}
		if len(fs) == 1 {
			return b.finishFunc(fs[0])
		}
	}
	p, err := b.pclnFuncs()
	if err != nil {
		return Func{}, errors.Join(append(errs, err)...)
	}
	// The pclntab's wrappers were dropped where they share a name.
	f, err := lookupFunc(p.funcs, name, nil)
	if err != nil {
		return Func{}, fmt.Errorf("find %s in %s: %w", name, b.Path, err)
	}
	return b.finishFunc(f)
}

// FindFuncs reads the symbol table once for all of names, so that Func
// answers each of them without reading it again. Without it, each Func of
// a name not asked for before reads the symbol table.
func (b *GoBinary) FindFuncs(names ...string) error {
	if b.Stripped {
		_, err := b.pclnMatches(names...)
		if errors.Is(err, errOldPcln) {
			return nil // Func reads it with debug/gosym
		}
		return err
	}
	_, err := b.symbolMatches(names...)
	return err
}

// symbolMatches returns the functions of the symbol table whose normalized
// name is that of names[0], scanning the table for those of names not
// scanned for before. Only matching symbols are kept.
func (b *GoBinary) symbolMatches(names ...string) ([]Func, error) {
	b.symMu.Lock()
	defer b.symMu.Unlock()
	return cachedMatches(&b.symFound, names, func(want map[string]bool) (map[string][]Func, error) {
		found := make(map[string][]Func, len(want))
		err := scanFuncSymbols(b.elf, elf.SHT_SYMTAB, func(e symEntry) bool {
			if n, ok := matchNormalized(e.name, want); ok {
				found[n] = append(found[n], Func{Name: string(e.name), Addr: e.value, Size: e.size})
			}
			return false
		})
		if err != nil {
			return nil, fmt.Errorf("read symbols of %s: %w", b.Path, err)
		}
		return found, nil
	})
}

// cachedMatches returns (*cache)[normalized names[0]], first calling
// search for the normalized names not searched for before and recording
// its answers (an empty, non-nil slice: searched, none).
func cachedMatches(cache *map[string][]Func, names []string, search func(want map[string]bool) (map[string][]Func, error)) ([]Func, error) {
	if *cache == nil {
		*cache = make(map[string][]Func)
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		if n := normalizeFuncName(n); (*cache)[n] == nil {
			want[n] = true
		}
	}
	if len(want) > 0 {
		found, err := search(want)
		if err != nil {
			return nil, err
		}
		for n := range want {
			if found[n] == nil {
				found[n] = []Func{}
			}
			(*cache)[n] = found[n]
		}
	}
	return (*cache)[normalizeFuncName(names[0])], nil
}

// matchNormalized reports whether the normalized form of the symbol name
// raw is in want, without allocating for the common names (no type
// arguments, no middle dot).
func matchNormalized(raw []byte, want map[string]bool) (string, bool) {
	if bytes.IndexByte(raw, '[') < 0 && !bytes.Contains(raw, []byte("·")) {
		raw = bytes.TrimSuffix(raw, []byte(".abi0"))
		raw = bytes.TrimSuffix(raw, []byte(".abiinternal"))
		if want[string(raw)] {
			return string(raw), true
		}
		return "", false
	}
	n := normalizeFuncName(string(raw))
	return n, want[n]
}

// isWrapper reports whether f is code the compiler generated (an ABI
// wrapper), as the pclntab's line table says.
func (b *GoBinary) isWrapper(f Func) bool {
	p, err := b.pclnFuncs()
	return err == nil && autogenerated(p.tab, f.Addr)
}

// finishFunc fills in the file offset, and the end of a function whose
// symbol had no size.
func (b *GoBinary) finishFunc(f Func) (Func, error) {
	if f.Size == 0 {
		p, err := b.pclnFuncs()
		if err != nil {
			return Func{}, fmt.Errorf("size of %s: %w", f.Name, err)
		}
		for _, g := range p.funcs {
			if g.Addr == f.Addr {
				f.Size = g.Size
			}
		}
		if f.Size == 0 {
			return Func{}, fmt.Errorf("size of %s in %s: unknown", f.Name, b.Path)
		}
	}
	off, err := b.fileOffset(f.Addr)
	if err != nil {
		return Func{}, fmt.Errorf("file offset of %s: %w", f.Name, err)
	}
	f.Start = off
	return f, nil
}

// symbolFuncs lists every function of the ELF symbol table (for tests:
// Func reads only what it looks for).
func (b *GoBinary) symbolFuncs() ([]Func, error) {
	var out []Func
	err := scanFuncSymbols(b.elf, elf.SHT_SYMTAB, func(e symEntry) bool {
		out = append(out, Func{Name: string(e.name), Addr: e.value, Size: e.size})
		return false
	})
	if err != nil {
		return nil, fmt.Errorf("read symbols of %s: %w", b.Path, err)
	}
	return out, nil
}

// lookupFunc picks the function called name from funcs: among those whose
// normalized name matches, the bodies if isWrapper tells some from
// wrappers, then the one with exactly that name, else the only one.
func lookupFunc(funcs []Func, name string, isWrapper func(Func) bool) (Func, error) {
	want := normalizeFuncName(name)
	var found []Func
	for _, f := range funcs {
		if normalizeFuncName(f.Name) == want {
			found = append(found, f)
		}
	}
	if len(found) == 0 {
		return Func{}, fmt.Errorf("%s: %w", name, ErrNoFunc)
	}
	if len(found) > 1 && isWrapper != nil {
		var bodies []Func
		for _, f := range found {
			if !isWrapper(f) {
				bodies = append(bodies, f)
			}
		}
		if len(bodies) > 0 {
			found = bodies
		}
	}
	for _, f := range found {
		if f.Name == name {
			return f, nil
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Addr < found[j].Addr })
	if found[0].Addr != found[len(found)-1].Addr {
		names := make([]string, len(found))
		for i, f := range found {
			names[i] = f.Name
		}
		return Func{}, fmt.Errorf("%s names %d functions: %s", name, len(found), strings.Join(names, ", "))
	}
	return found[0], nil
}

// normalizeFuncName drops ABI suffixes, writes · as ., and every list of type
// arguments as [...], the way Go ≥ 1.21 names generic functions in
// .gopclntab: "pkg.F[go.shape.int]" and "pkg.F[...]" both become "pkg.F[...]".
func normalizeFuncName(name string) string {
	for _, suffix := range []string{".abi0", ".abiinternal"} {
		name = strings.TrimSuffix(name, suffix)
	}
	// The symbol table spells the middle dot of some generated names
	// (type:.eq.T·1) as a dot.
	name = strings.ReplaceAll(name, "·", ".")
	if !strings.Contains(name, "[") {
		return name
	}
	var sb strings.Builder
	depth := 0
	for _, r := range name {
		switch {
		case r == '[':
			if depth == 0 {
				sb.WriteString("[...]")
			}
			depth++
		case r == ']' && depth > 0:
			depth--
		case depth == 0:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}
