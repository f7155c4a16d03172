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
	return b.scan(f, "returns", func(code []byte, resync func(uint64) (uint64, bool)) []uint64 {
		if b.Arch == "arm64" {
			return returnsARM64(code)
		}
		return returnsAMD64(code, resync)
	})
}

// scan reads f's code and returns the offsets in it that find reports
// (relative to the code), as file offsets. On amd64, resync gives find the
// next offset known to start an instruction (see Returns).
func (b *GoBinary) scan(f Func, what string, find func(code []byte, resync func(uint64) (uint64, bool)) []uint64) ([]uint64, error) {
	if f.Size == 0 || f.Size > maxFuncSize {
		return nil, fmt.Errorf("%s of %s in %s: implausible size %d", what, f.Name, b.Path, f.Size)
	}
	if b.Arch != "amd64" && b.Arch != "arm64" {
		return nil, fmt.Errorf("%s of %s in %s: cannot disassemble %s code", what, f.Name, b.Path, b.Arch)
	}
	off, err := b.fileOffset(f.Addr)
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", what, f.Name, err)
	}
	if off != f.Start {
		return nil, fmt.Errorf("%s of %s in %s: file offset %#x does not match address %#x (Func from another binary?)", what, f.Name, b.Path, f.Start, f.Addr)
	}
	code, err := b.readAt(f.Addr, f.Size)
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", what, f.Name, err)
	}
	resync := func(i uint64) (uint64, bool) {
		p, err := b.pclnFuncs()
		if err != nil {
			return 0, false
		}
		next, ok := p.nextLineStart(f.Addr+i, f.Addr+f.Size)
		return next - f.Addr, ok
	}
	found := find(code, resync)
	for i := range found {
		found[i] += f.Start
	}
	return found, nil
}

// CallSites lists the file offsets of the direct calls in f to any of the
// functions at the virtual addresses targets (CALL rel32 on amd64, BL on
// arm64: instructions the kernel emulates under a uprobe). At such a site
// the callee's arguments are in their registers.
func (b *GoBinary) CallSites(f Func, targets ...uint64) ([]uint64, error) {
	want := make(map[uint64]bool, len(targets))
	for _, t := range targets {
		want[t] = true
	}
	return b.scan(f, "calls", func(code []byte, resync func(uint64) (uint64, bool)) []uint64 {
		if b.Arch == "arm64" {
			return callsARM64(code, f.Addr, want)
		}
		return callsAMD64(code, f.Addr, want, resync)
	})
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
	walkAMD64(code, resync, func(i uint64, inst x86asm.Inst) {
		if inst.Op == x86asm.RET {
			rets = append(rets, i)
		}
	})
	return rets
}

// callsAMD64 returns the offsets in code (at virtual address addr) of its
// CALL rel32 instructions to the addresses in targets.
func callsAMD64(code []byte, addr uint64, targets map[uint64]bool, resync func(i uint64) (uint64, bool)) []uint64 {
	var calls []uint64
	walkAMD64(code, resync, func(i uint64, inst x86asm.Inst) {
		if inst.Op != x86asm.CALL {
			return
		}
		if rel, ok := inst.Args[0].(x86asm.Rel); ok && targets[uint64(int64(addr+i)+int64(inst.Len)+int64(rel))] {
			calls = append(calls, i)
		}
	})
	return calls
}

// walkAMD64 decodes code and hands visit each instruction with its
// offset; VEX and EVEX instructions are skipped.
func walkAMD64(code []byte, resync func(i uint64) (uint64, bool), visit func(i uint64, inst x86asm.Inst)) {
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
		visit(i, inst)
		i += uint64(inst.Len)
	}
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

// callsARM64 returns the offsets in code (at virtual address addr) of its
// BL instructions to the addresses in targets.
func callsARM64(code []byte, addr uint64, targets map[uint64]bool) []uint64 {
	var calls []uint64
	for i := 0; i+4 <= len(code); i += 4 {
		inst, err := arm64asm.Decode(code[i : i+4])
		if err != nil || inst.Op != arm64asm.BL {
			continue
		}
		if rel, ok := inst.Args[0].(arm64asm.PCRel); ok && targets[uint64(int64(addr)+int64(i)+int64(rel))] {
			calls = append(calls, uint64(i))
		}
	}
	return calls
}
