package symbols

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// A stripped binary's functions are found in .gopclntab. debug/gosym makes
// a record of every function and its symbol (helm: 87 MB and 650 ms) to
// answer a few names; for the formats of Go ≥ 1.18, pclnMatches walks the
// function table instead and keeps only the matches. Where a name leads to
// several functions (a body and its ABI wrapper, told apart by the line
// table), Func falls back to debug/gosym.

// pclnTable is what pclnMatches reads of the pclntab, kept for later calls.
type pclnTable struct {
	data      []byte
	textStart uint64
}

// pclnRaw reads the pclntab and its text base once.
func (b *GoBinary) pclnRaw() (*pclnTable, error) {
	b.rawOnce.Do(func() {
		addr, data, err := b.findPclntab()
		if err == nil {
			switch b.byteOrder().Uint32(data) {
			case pclnMagic118, pclnMagic120:
				var text uint64
				if text, err = b.textStart(addr, data); err == nil {
					b.raw = &pclnTable{data: data, textStart: text}
				}
			default:
				err = fmt.Errorf("pclntab format %#x: %w", b.byteOrder().Uint32(data), errOldPcln)
			}
		}
		if err != nil {
			b.rawErr = fmt.Errorf("read pclntab of %s: %w", b.Path, err)
		}
	})
	return b.raw, b.rawErr
}

var errOldPcln = errors.New("not a Go 1.18+ pclntab")

// pclnMatches returns the pclntab functions whose normalized name is that
// of names[0], walking the function table for those of names not walked
// for before.
func (b *GoBinary) pclnMatches(names ...string) ([]Func, error) {
	t, err := b.pclnRaw()
	if err != nil {
		return nil, err
	}
	b.symMu.Lock()
	defer b.symMu.Unlock()
	return cachedMatches(&b.pclnFound, names, func(want map[string]bool) (map[string][]Func, error) {
		found, err := t.walk(want)
		if err != nil {
			return nil, fmt.Errorf("pclntab of %s: %w", b.Path, err)
		}
		return found, nil
	})
}

// walk reads the function table of a Go 1.18+ pclntab (runtime.pcHeader:
// magic, pad, minLC, ptrSize, then nfunc, nfiles, textStart,
// funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset; the
// function table at pclnOffset is nfunc+1 pairs of uint32 {entry offset
// from text, offset of the _func}, and a _func starts with its entry
// offset and the offset of its name in funcnametab).
func (t *pclnTable) walk(want map[string]bool) (map[string][]Func, error) {
	d := t.data
	if len(d) < 72 || d[7] != 8 {
		return nil, fmt.Errorf("pclntab header: %w", ErrMalformed)
	}
	le := binary.LittleEndian
	nfunc := le.Uint64(d[8:])
	names := le.Uint64(d[32:])
	pcln := le.Uint64(d[64:])
	if names >= uint64(len(d)) || pcln >= uint64(len(d)) || nfunc > (uint64(len(d))-pcln)/8-1 {
		return nil, fmt.Errorf("pclntab claims %d functions, names at %d, table at %d in %d bytes: %w",
			nfunc, names, pcln, len(d), ErrMalformed)
	}
	ftab := d[pcln:]
	found := make(map[string][]Func)
	for i := uint64(0); i < nfunc; i++ {
		entry, fo := le.Uint32(ftab[i*8:]), uint64(le.Uint32(ftab[i*8+4:]))
		end := le.Uint32(ftab[(i+1)*8:])
		if pcln+fo+8 > uint64(len(d)) || end < entry {
			return nil, fmt.Errorf("function %d of the pclntab: %w", i, ErrMalformed)
		}
		nameOff := uint64(le.Uint32(d[pcln+fo+4:]))
		if names+nameOff >= uint64(len(d)) {
			return nil, fmt.Errorf("name of function %d of the pclntab: %w", i, ErrMalformed)
		}
		raw := d[names+nameOff:]
		if j := bytes.IndexByte(raw[:min(len(raw), maxSymbolName)], 0); j >= 0 {
			raw = raw[:j]
		} else {
			continue
		}
		if n, ok := matchNormalized(raw, want); ok {
			found[n] = append(found[n], Func{Name: string(raw), Addr: t.textStart + uint64(entry), Size: uint64(end - entry)})
		}
	}
	return found, nil
}
