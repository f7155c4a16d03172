package openssl

import (
	"debug/elf"
	"fmt"

	"github.com/periscope-apm/periscope/symbols"
)

// entryKind says which entry program a site gets. The _ex shape is
// (ssl, buf, size_t num, size_t *count) returning >0 on success; OpenSSL's
// internal ssl_read_internal/ssl_write_internal have it too.
type entryKind int

const (
	readPlain entryKind = iota
	writePlain
	readEx
	writeEx
	free      // SSL_free: an entry probe only
	handshake // SSL_do_handshake: an entry probe only
)

// site is one place for an entry probe and a return probe.
type site struct {
	Desc   string    `json:"desc"`   // what is probed, for logs
	Offset uint64    `json:"offset"` // file offset of the probed instruction
	Kind   entryKind `json:"kind"`
	Cheap  bool      `json:"cheap"` // the probed instruction is emulated by the kernel
}

// plan decides where the probes of one file go. On amd64 a probe is put on
// an instruction the kernel emulates (see symbols.CheapEntry: ~0.7 µs per
// hit instead of ~19 µs on the VMs this was measured on). OpenSSL's
// SSL_read/SSL_read_ex (and the write pair) are thin wrappers that start
// with a stack adjustment, which is single-stepped; both call one internal
// function with the _ex arguments, which starts with pushes. When the
// wrappers are recognised for sure (SSL_read_ex forwards its arguments
// unchanged to a direct call, and SSL_read calls the same function), one
// probe pair on the internal function serves both. Otherwise each exported
// function is probed at its cheapest entry instruction.
func plan(path string, funcs []string) ([]site, error) {
	obj, err := symbols.Open(path)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	// One pass over the symbol tables for all of them.
	if _, err := obj.Funcs(funcs...); err != nil {
		return nil, err
	}
	has := make(map[string]bool, len(funcs))
	for _, f := range funcs {
		has[f] = true
	}
	amd64 := obj.Machine() == elf.EM_X86_64

	var sites []site
	for _, dir := range []struct {
		plain, ex       string
		plainKind, kind entryKind
	}{
		{"SSL_read", "SSL_read_ex", readPlain, readEx},
		{"SSL_write", "SSL_write_ex", writePlain, writeEx},
	} {
		if amd64 && has[dir.plain] && has[dir.ex] {
			if s, ok := internalSite(obj, dir.plain, dir.ex, dir.kind); ok {
				sites = append(sites, s)
				continue
			}
		}
		if sites, err = appendEntrySites(sites, obj, has, amd64, namedKind{dir.plain, dir.plainKind}, namedKind{dir.ex, dir.kind}); err != nil {
			return nil, err
		}
	}
	return appendEntrySites(sites, obj, has, amd64, namedKind{"SSL_free", free}, namedKind{handshakeFunc, handshake})
}

// namedKind is a function to probe and the kind of its probe.
type namedKind struct {
	name string
	kind entryKind
}

// appendEntrySites appends to sites an entry site (entrySite) for each of
// fns that the object has.
func appendEntrySites(sites []site, obj *symbols.Object, has map[string]bool, amd64 bool, fns ...namedKind) ([]site, error) {
	for _, fn := range fns {
		if !has[fn.name] {
			continue
		}
		s, err := entrySite(obj, fn.name, fn.kind, amd64)
		if err != nil {
			return nil, err
		}
		sites = append(sites, s)
	}
	return sites, nil
}

// entrySite is a probe on function name, at its cheapest entry
// instruction on amd64 (kinds free and handshake have no return probe:
// CheapEntryOnly).
func entrySite(obj *symbols.Object, name string, kind entryKind, amd64 bool) (site, error) {
	f, err := obj.Func(name)
	if err != nil {
		return site{}, err
	}
	s := site{Desc: name, Offset: f.Start, Kind: kind}
	if amd64 {
		if code, err := obj.Code(f); err == nil {
			cheap := symbols.CheapEntry
			if kind == free || kind == handshake {
				cheap = symbols.CheapEntryOnly
			}
			if off, err := cheap(code); err == nil {
				s.Offset += off
				s.Cheap = true
				s.Desc = fmt.Sprintf("%s+%d", name, off)
			}
		}
	}
	return s, nil
}

// internalSite finds the function both wrappers call and its cheap entry.
func internalSite(obj *symbols.Object, plain, ex string, kind entryKind) (site, bool) {
	exFn, err := obj.Func(ex)
	if err != nil {
		return site{}, false
	}
	exCode, err := obj.Code(exFn)
	if err != nil {
		return site{}, false
	}
	target, ok := symbols.ForwardTarget(exFn, exCode)
	if !ok {
		return site{}, false
	}
	plainFn, err := obj.Func(plain)
	if err != nil {
		return site{}, false
	}
	plainCode, err := obj.Code(plainFn)
	if err != nil || !symbols.Calls(plainFn, plainCode, target) {
		return site{}, false
	}
	name := fmt.Sprintf("%s callee %#x", ex, target)
	internal, err := obj.FuncAt(name, target, 64)
	if err != nil {
		return site{}, false
	}
	code, err := obj.Code(internal)
	if err != nil {
		return site{}, false
	}
	off, err := symbols.CheapEntry(code)
	if err != nil {
		return site{}, false
	}
	return site{Desc: fmt.Sprintf("%s+%d (serves %s and %s)", name, off, plain, ex), Offset: internal.Start + off, Kind: kind, Cheap: true}, true
}
