package symbols

import (
	"fmt"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
)

// maxFuncSize bounds the code Returns reads: no Go function worth probing
// comes near it, and a corrupt size must not allocate gigabytes.
const maxFuncSize = 16 << 20

// Returns lists the file offsets of every return instruction of f, found by
// disassembling its body from entry to end. The Go collector puts a plain
// uprobe at each: uretprobes rewrite the return address on the stack, and Go
// moves goroutine stacks, which crashes the program.
//
// A probe placed inside an instruction corrupts the program, so a reported
// offset is always the start of a RET instruction. On arm64, a word that
// does not decode is skipped. On amd64, where instructions have any length,
// decoding resumes after an undecodable instruction (assembly using AVX or
// ADX, which the disassembler does not know) at the next address where the
// pclntab's line table changes, which is the start of an instruction; the
// bytes in between are not searched. Compiled Go code decodes fully.
func (b *GoBinary) Returns(f Func) ([]uint64, error) {
	if f.Size == 0 || f.Size > maxFuncSize {
		return nil, fmt.Errorf("returns of %s in %s: implausible size %d", f.Name, b.Path, f.Size)
	}
	off, err := b.fileOffset(f.Addr)
	if err != nil {
		return nil, fmt.Errorf("returns of %s: %w", f.Name, err)
	}
	if off != f.Start {
		return nil, fmt.Errorf("returns of %s in %s: file offset %#x does not match address %#x (Func from another binary?)", f.Name, b.Path, f.Start, f.Addr)
	}
	code, err := b.readAt(f.Addr, f.Size)
	if err != nil {
		return nil, fmt.Errorf("returns of %s: %w", f.Name, err)
	}
	var rets []uint64
	switch b.Arch {
	case "amd64":
		resync := func(i uint64) (uint64, bool) {
			p, err := b.pclnFuncs()
			if err != nil {
				return 0, false
			}
			next, ok := p.nextLineStart(f.Addr+i, f.Addr+f.Size)
			return next - f.Addr, ok
		}
		rets = returnsAMD64(code, resync)
	case "arm64":
		rets = returnsARM64(code)
	default:
		return nil, fmt.Errorf("returns of %s in %s: cannot disassemble %s code", f.Name, b.Path, b.Arch)
	}
	for i := range rets {
		rets[i] += f.Start
	}
	return rets, nil
}

// returnsAMD64 returns the offsets in code of its RET instructions. When an
// instruction at i does not decode, resync(i) gives the next offset known to
// start an instruction; without one, decoding stops.
//
// x86asm decodes the legacy encodings. It gets some VEX ones wrong without
// saying so (it reads VZEROUPPER, c5 f8 77, as five bytes), and a wrong
// length could put a "RET" inside another instruction, so the lengths of
// VEX and EVEX instructions (AVX, BMI; never a RET) are computed here.
func returnsAMD64(code []byte, resync func(i uint64) (uint64, bool)) []uint64 {
	var rets []uint64
	for i := uint64(0); i < uint64(len(code)); {
		n, isVEX := vexLength(code[i:])
		if isVEX && n > 0 {
			i += uint64(n)
			continue
		}
		var inst x86asm.Inst
		var err error
		if !isVEX {
			inst, err = x86asm.Decode(code[i:], 64)
		}
		if isVEX || err != nil || inst.Len == 0 || inst.Op == 0 {
			// Op 0: x86asm's answer to some truncated instructions.
			next, ok := resync(i)
			if !ok || next <= i {
				break
			}
			i = next
			continue
		}
		if inst.Op == x86asm.RET {
			rets = append(rets, i)
		}
		i += uint64(inst.Len)
	}
	return rets
}

// vexLength returns the length of the VEX- or EVEX-encoded instruction
// (64-bit mode) at the start of code, and whether code starts with one at
// all; a length of 0 means it does, but is truncated.
func vexLength(code []byte) (n int, isVEX bool) {
	i := 0
	// Segment and address-size prefixes may precede a VEX prefix.
	for i < len(code) && i < 4 {
		switch code[i] {
		case 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x67:
			i++
			continue
		}
		break
	}
	if i >= len(code) {
		return 0, false
	}
	var opMap byte // 1: 0F, 2: 0F 38, 3: 0F 3A
	evex := false
	switch code[i] {
	case 0xc5: // 2-byte VEX: map 0F
		opMap, i = 1, i+2
	case 0xc4: // 3-byte VEX
		if i+1 >= len(code) {
			return 0, true
		}
		opMap, i = code[i+1]&0x1f, i+3
	case 0x62: // EVEX
		if i+1 >= len(code) {
			return 0, true
		}
		opMap, i, evex = code[i+1]&0x07, i+4, true
	default:
		return 0, false
	}
	if i >= len(code) {
		return 0, true
	}
	op := code[i]
	i++
	if opMap == 1 && op == 0x77 && !evex { // VZEROUPPER, VZEROALL: no ModRM
		return i, true
	}
	if i >= len(code) {
		return 0, true
	}
	modrm := code[i]
	i++
	mod, rm := modrm>>6, modrm&7
	if mod != 3 {
		if rm == 4 { // SIB
			if i >= len(code) {
				return 0, true
			}
			if mod == 0 && code[i]&7 == 5 {
				i += 4 // no base: disp32
			}
			i++
		} else if mod == 0 && rm == 5 {
			i += 4 // RIP-relative disp32
		}
		switch mod {
		case 1:
			i++ // disp8 (scaled in EVEX, still one byte)
		case 2:
			i += 4
		}
	}
	if vexImm8(opMap, op) {
		i++
	}
	if i > len(code) {
		return 0, true
	}
	return i, true
}

// vexImm8 tells whether a VEX/EVEX opcode takes an 8-bit immediate: all of
// map 0F 3A, and in map 0F the shuffles, shifts by immediate, compares,
// inserts and extracts.
func vexImm8(opMap, op byte) bool {
	if opMap == 3 {
		return true
	}
	if opMap != 1 {
		return false
	}
	switch op {
	case 0x70, 0x71, 0x72, 0x73, 0xc2, 0xc4, 0xc5, 0xc6:
		return true
	}
	return false
}

// returnsARM64 returns the offsets in code of its RET instructions.
func returnsARM64(code []byte) []uint64 {
	var rets []uint64
	for i := 0; i+4 <= len(code); i += 4 {
		inst, err := arm64asm.Decode(code[i : i+4])
		if err != nil {
			continue // fixed width: the next word is an instruction
		}
		if inst.Op == arm64asm.RET {
			rets = append(rets, uint64(i))
		}
	}
	return rets
}
