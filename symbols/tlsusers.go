package symbols

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
)

// The functions every crypto/tls connection comes from: tls.Client and
// tls.Server store the method value c.clientHandshake or c.serverHandshake
// in the new Conn (Go 1.14 and later), so the code that makes a
// connection, where they are inlined or where they are called, loads the
// address of one of these wrappers.
var tlsRoots = []string{"crypto/tls.(*Conn).clientHandshake-fm", "crypto/tls.(*Conn).serverHandshake-fm"}

// tlsListenerAccept serves the connections of tls.NewListener's listener,
// which is only ever called through its net.Listener itab: the code that
// makes such a listener loads the itab, whose method table starts with
// Accept (methods in name order: Accept, Addr, Close) after the interface
// type, the concrete type and the hash (24 bytes).
const (
	tlsListenerAccept = "crypto/tls.(*listener).Accept"
	itabFunOffset     = 24
)

// TLSUsers lists the functions outside crypto/tls from which the program
// can make a crypto/tls connection (a client, a server, a listener), found
// from the code alone, with symbols or stripped: the references to the
// handshake method values of tls.Client and tls.Server, followed up
// through the crypto/tls functions that hold them (tls.Dial, the Dialer,
// the listener's Accept through its itab) to the first function of
// another package. A function value or itab of such a crypto/tls function
// that no code loads is listed as "a data reference to NAME": who uses it
// is unknown. The answer may list more than the program uses (code that
// is linked but never runs), never less; it is an error when the code
// does not look as expected (another architecture, no handshake method
// value, no reference to one).
func (b *GoBinary) TLSUsers() ([]string, error) {
	if b.Arch != "amd64" {
		return nil, fmt.Errorf("TLS users of %s: cannot read %s code: %w", b.Path, b.Arch, errors.ErrUnsupported)
	}
	p, err := b.pclnFuncs()
	if err != nil {
		return nil, err
	}
	funcs := slices.Clone(p.funcs)
	sort.Slice(funcs, func(i, j int) bool { return funcs[i].Addr < funcs[j].Addr })
	tls := map[uint64]Func{}
	var roots []uint64
	var accept uint64
	for _, f := range funcs {
		if !strings.HasPrefix(f.Name, "crypto/tls.") {
			continue
		}
		tls[f.Addr] = f
		if slices.Contains(tlsRoots, f.Name) {
			roots = append(roots, f.Addr)
		}
		if f.Name == tlsListenerAccept {
			accept = f.Addr
		}
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("TLS users of %s: no handshake method value (%s)", b.Path, strings.Join(tlsRoots, ", "))
	}
	data, err := b.dataPointers(tls)
	if err != nil {
		return nil, err
	}
	targets := map[uint64]bool{}
	for a := range tls {
		targets[a] = true
	}
	for _, loc := range data[accept] {
		targets[loc-itabFunOffset] = true
	}
	refs, err := b.codeReferences(funcs, targets)
	if err != nil {
		return nil, err
	}
	return tlsUsers(tls, roots, accept, refs, data)
}

// tlsUsers walks from the roots up the references: crypto/tls functions
// are followed, the others are the users.
func tlsUsers(tls map[uint64]Func, roots []uint64, accept uint64, refs map[uint64][]Func, data map[uint64][]uint64) ([]string, error) {
	reached := map[uint64]bool{}
	queue := slices.Clone(roots)
	users := map[string]bool{}
	found := false
	visit := func(f Func) {
		if _, ok := tls[f.Addr]; ok && strings.HasPrefix(f.Name, "crypto/tls.") {
			if !reached[f.Addr] {
				queue = append(queue, f.Addr)
			}
			return
		}
		users[f.Name] = true
	}
	for len(queue) > 0 {
		t := queue[0]
		queue = queue[1:]
		if reached[t] {
			continue
		}
		reached[t] = true
		for _, f := range refs[t] {
			found = true
			visit(f)
		}
		for _, loc := range data[t] {
			found = true
			itab := refs[loc-itabFunOffset]
			if t != accept || len(itab) == 0 {
				users["a data reference to "+tls[t].Name] = true
				continue
			}
			for _, f := range itab {
				visit(f)
			}
		}
	}
	if !found {
		return nil, errors.New("no reference to the handshake method values")
	}
	out := make([]string, 0, len(users))
	for u := range users {
		out = append(out, u)
	}
	sort.Strings(out)
	return out, nil
}

// dataPointers finds the 64-bit pointers to the functions at the given
// entries held in the program's data (function values, itabs), by entry.
// In a position-independent executable they are relative relocations.
func (b *GoBinary) dataPointers(funcs map[uint64]Func) (map[uint64][]uint64, error) {
	out := map[uint64][]uint64{}
	rels, err := b.relatives()
	if err != nil {
		return nil, err
	}
	for loc, v := range rels {
		if _, ok := funcs[v]; ok {
			out[v] = append(out[v], loc)
		}
	}
	for _, s := range b.elf.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_ALLOC == 0 || s.Flags&elf.SHF_EXECINSTR != 0 || !holdsPointers(s.Name) {
			continue
		}
		err := b.scanSection(s, 8, func(addr uint64, chunk []byte) {
			for i := 0; i+8 <= len(chunk); i += 8 {
				if v := b.elf.ByteOrder.Uint64(chunk[i:]); v != 0 {
					if _, ok := funcs[v]; ok {
						out[v] = append(out[v], addr+uint64(i))
					}
				}
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// holdsPointers tells the data sections that can hold a function's
// address: not the function table (offsets only), the type and itab
// link tables, the build information or notes.
func holdsPointers(name string) bool {
	switch name {
	case ".gopclntab", ".gosymtab", ".typelink", ".itablink", ".go.buildinfo", ".go.fuzzcntrs":
		return false
	}
	return !strings.HasPrefix(name, ".note") && !strings.HasPrefix(name, ".debug") && !strings.HasPrefix(name, ".zdebug")
}

// codeReferences finds, in the executable sections, the direct calls and
// jumps (CALL/JMP rel32) to and the RIP-relative address loads (LEA) of
// the targets, and returns the functions holding them by target. A byte
// pattern, not a disassembly: a match inside another instruction can only
// add a function, never hide one.
func (b *GoBinary) codeReferences(funcs []Func, targets map[uint64]bool) (map[uint64][]Func, error) {
	out := map[uint64][]Func{}
	add := func(target, pc uint64) {
		i := sort.Search(len(funcs), func(i int) bool { return funcs[i].Addr > pc }) - 1
		if i < 0 || pc >= funcs[i].Addr+funcs[i].Size {
			return
		}
		f := funcs[i]
		if !slices.ContainsFunc(out[target], func(g Func) bool { return g.Addr == f.Addr }) {
			out[target] = append(out[target], f)
		}
	}
	for _, s := range b.elf.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_EXECINSTR == 0 {
			continue
		}
		err := b.scanSection(s, 1, func(addr uint64, code []byte) {
			for i := 0; i+7 <= len(code); i++ {
				pc := addr + uint64(i)
				switch {
				case code[i] == 0xe8 || code[i] == 0xe9: // CALL, JMP rel32
					if t := pc + 5 + uint64(int64(int32(b.elf.ByteOrder.Uint32(code[i+1:])))); targets[t] {
						add(t, pc)
					}
				case (code[i] == 0x48 || code[i] == 0x4c) && code[i+1] == 0x8d && code[i+2]&0xc7 == 0x05: // LEA r64, [RIP+disp32]
					if t := pc + 7 + uint64(int64(int32(b.elf.ByteOrder.Uint32(code[i+3:])))); targets[t] {
						add(t, pc)
					}
				}
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// scanSection hands section s to visit in chunks, each starting at
// addr (aligned to align) and overlapping the next by the 7 bytes an
// instruction pattern needs.
func (b *GoBinary) scanSection(s *elf.Section, align uint64, visit func(addr uint64, chunk []byte)) error {
	const chunk, overlap = 4 << 20, 8
	buf := make([]byte, chunk+overlap)
	r := s.Open()
	for off := uint64(0); off < s.Size; off += chunk {
		n, err := r.(io.ReaderAt).ReadAt(buf, int64(off))
		if err != nil && err != io.EOF {
			return fmt.Errorf("read section %s of %s: %w", s.Name, b.Path, err)
		}
		if align > 1 {
			n -= n % int(align)
		}
		visit(s.Addr+off, buf[:n])
	}
	return nil
}
