package symbols

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
)

// ELF relocation types that say "base address + addend", the only dynamic
// relocations Go's static data needs in a position-independent executable.
const (
	rX86_64Relative  = 8    // R_X86_64_RELATIVE
	rAarch64Relative = 1027 // R_AARCH64_RELATIVE
)

// fileOffset returns where in the file the byte at virtual address addr is
// stored. Uprobes are attached by file offset, not by address.
func (b *GoBinary) fileOffset(addr uint64) (uint64, error) {
	for _, p := range b.elf.Progs {
		if p.Type == elf.PT_LOAD && addr >= p.Vaddr && addr < p.Vaddr+p.Filesz {
			return addr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x of %s is in no loadable segment", addr, b.Path)
}

// executable reports whether addr lies in an executable loadable segment.
func (b *GoBinary) executable(addr uint64) bool {
	for _, p := range b.elf.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && addr >= p.Vaddr && addr < p.Vaddr+p.Filesz {
			return true
		}
	}
	return false
}

// readAt reads n bytes stored at virtual address addr.
func (b *GoBinary) readAt(addr, n uint64) ([]byte, error) {
	off, err := b.fileOffset(addr)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if _, err := b.file.ReadAt(buf, int64(off)); err != nil && err != io.EOF {
		return nil, fmt.Errorf("read %d bytes at %#x of %s: %w", n, addr, b.Path, err)
	}
	return buf, nil
}

// pointer reads the 64-bit pointer stored at virtual address addr as the
// loader would leave it, less the load base: in a position-independent
// executable the value lives in a relative relocation, not in the file.
func (b *GoBinary) pointer(addr uint64) (uint64, error) {
	rels, err := b.relatives()
	if err != nil {
		return 0, err
	}
	if v, ok := rels[addr]; ok {
		return v, nil
	}
	buf, err := b.readAt(addr, 8)
	if err != nil {
		return 0, err
	}
	return b.elf.ByteOrder.Uint64(buf), nil
}

// relatives maps each address patched by a relative dynamic relocation to
// its addend. Executables that are not position-independent have none.
func (b *GoBinary) relatives() (map[uint64]uint64, error) {
	b.relOnce.Do(func() {
		b.rels, b.relErr = readRelatives(b.elf)
		if b.relErr != nil {
			b.relErr = fmt.Errorf("read relocations of %s: %w", b.Path, b.relErr)
		}
	})
	return b.rels, b.relErr
}

func readRelatives(f *elf.File) (map[uint64]uint64, error) {
	rels := map[uint64]uint64{}
	if f.Type != elf.ET_DYN || f.Class != elf.ELFCLASS64 {
		return rels, nil
	}
	var want uint32
	switch f.Machine {
	case elf.EM_X86_64:
		want = rX86_64Relative
	case elf.EM_AARCH64:
		want = rAarch64Relative
	default:
		return rels, nil
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_RELA || s.Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		data, err := sectionData(s)
		if err != nil {
			return nil, fmt.Errorf("section %s: %w", s.Name, err)
		}
		const size = 24 // Elf64_Rela
		for i := 0; i+size <= len(data); i += size {
			off := f.ByteOrder.Uint64(data[i:])
			info := f.ByteOrder.Uint64(data[i+8:])
			addend := f.ByteOrder.Uint64(data[i+16:])
			if elf.R_TYPE64(info) == want {
				rels[off] = addend
			}
		}
	}
	return rels, nil
}

// byteOrder is the byte order of the ELF file, for code that only has the
// bytes at hand.
func (b *GoBinary) byteOrder() binary.ByteOrder { return b.elf.ByteOrder }
