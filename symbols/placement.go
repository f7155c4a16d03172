package symbols

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// Where a uprobe sits decides what it costs. The kernel runs most probed
// instructions out of line with a single-step trap, but emulates a few
// (push of a register, nops, direct calls and jumps): on the nested VMs this
// was measured on, a probe on a single-stepped instruction (sub, mov,
// endbr64, ret) cost ~19 µs per hit and one on an emulated instruction
// ~0.7 µs. So an entry probe goes on the first emulated instruction that
// runs before the function touches its stack or arguments, and a thin
// wrapper with no such instruction is looked through to the function it
// calls with the same arguments.

// ErrNoCheapEntry says that a function has no emulated instruction before
// its stack changes.
var ErrNoCheapEntry = errors.New("no emulated instruction at the function entry")

// Func is a function in an ELF file.
type Func struct {
	Name  string
	Addr  uint64 // virtual address
	Size  uint64
	Start uint64 // file offset of Addr
}

// Code returns the function's machine code.
func (f Func) code(file *elf.File) ([]byte, error) {
	for _, p := range file.Progs {
		if p.Type != elf.PT_LOAD || f.Addr < p.Vaddr || f.Addr+f.Size > p.Vaddr+p.Filesz {
			continue
		}
		b := make([]byte, f.Size)
		if _, err := p.ReadAt(b, int64(f.Addr-p.Vaddr)); err != nil {
			return nil, fmt.Errorf("read %s: %w", f.Name, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%s at %#x is in no loadable segment", f.Name, f.Addr)
}

// fileOffset converts a virtual address to a file offset.
func fileOffset(file *elf.File, addr uint64) (uint64, error) {
	for _, p := range file.Progs {
		if p.Type == elf.PT_LOAD && addr >= p.Vaddr && addr < p.Vaddr+p.Filesz {
			return addr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x is in no loadable segment", addr)
}

// CheapEntry returns how many bytes into code an entry probe should go: the
// first instruction the kernel emulates, reached before anything moves the
// stack pointer, so that a return probe placed there still finds the return
// address on top of the stack. Only endbr64 and nops may be skipped.
func CheapEntry(code []byte) (uint64, error) { return cheapAt(code, false) }

// CheapEntryOnly is CheapEntry for a probe with no return probe, which
// needs only the argument registers as they were at entry: it may also
// skip instructions that write nothing but the flags (test, cmp: SSL_free
// starts with the test of its argument for NULL, then a jcc).
func CheapEntryOnly(code []byte) (uint64, error) { return cheapAt(code, true) }

func cheapAt(code []byte, flagsOnly bool) (uint64, error) {
	var off int
	for off < len(code) && off < 32 {
		if bytes.HasPrefix(code[off:], endbr64) {
			off += len(endbr64)
			continue
		}
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			return 0, fmt.Errorf("decode at +%d: %w", off, err)
		}
		if emulated(inst) {
			return uint64(off), nil
		}
		if inst.Op != x86asm.NOP && !(flagsOnly && (inst.Op == x86asm.TEST || inst.Op == x86asm.CMP)) {
			break
		}
		off += inst.Len
	}
	return 0, ErrNoCheapEntry
}

// endbr64 is matched by its bytes: x86asm does not know it.
var endbr64 = []byte{0xf3, 0x0f, 0x1e, 0xfa}

// emulated reports whether the x86 uprobe code emulates the instruction
// instead of single-stepping it: push of a register, nop, call/jmp/jcc
// with a relative target.
func emulated(inst x86asm.Inst) bool {
	switch inst.Op {
	case x86asm.PUSH:
		_, isReg := inst.Args[0].(x86asm.Reg)
		return isReg
	case x86asm.NOP:
		return true
	case x86asm.CALL, x86asm.JMP, x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JG,
		x86asm.JGE, x86asm.JL, x86asm.JLE, x86asm.JNE, x86asm.JNO, x86asm.JNP, x86asm.JNS, x86asm.JO,
		x86asm.JP, x86asm.JS:
		_, isRel := inst.Args[0].(x86asm.Rel)
		return isRel
	}
	return false
}

// argRegs are the System V argument registers a wrapper must pass through
// untouched (first four: the TLS functions take at most four arguments).
var argRegs = map[x86asm.Reg]bool{
	x86asm.RDI: true, x86asm.EDI: true, x86asm.DI: true, x86asm.DIB: true,
	x86asm.RSI: true, x86asm.ESI: true, x86asm.SI: true, x86asm.SIB: true,
	x86asm.RDX: true, x86asm.EDX: true, x86asm.DX: true, x86asm.DL: true, x86asm.DH: true,
	x86asm.RCX: true, x86asm.ECX: true, x86asm.CX: true, x86asm.CL: true, x86asm.CH: true,
}

// ForwardTarget reports the function a thin wrapper forwards its arguments
// to: the first instruction that is not stack set-up is a direct call, and
// nothing before it writes an argument register or branches. It returns the
// call's target address (fn.Addr-relative code is decoded as at fn.Addr).
func ForwardTarget(fn Func, code []byte) (uint64, bool) {
	for off := 0; off < len(code) && off < 64; {
		if bytes.HasPrefix(code[off:], endbr64) {
			off += len(endbr64)
			continue
		}
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			return 0, false
		}
		next := fn.Addr + uint64(off+inst.Len)
		if inst.Op == x86asm.CALL {
			rel, ok := inst.Args[0].(x86asm.Rel)
			if !ok {
				return 0, false
			}
			return uint64(int64(next) + int64(rel)), true
		}
		if inst.Op == x86asm.RET || inst.Op == x86asm.JMP || emulated(inst) && inst.Op != x86asm.PUSH && inst.Op != x86asm.NOP {
			return 0, false // control flow before the call
		}
		if r, ok := inst.Args[0].(x86asm.Reg); ok && argRegs[r] {
			return 0, false // an argument is changed
		}
		off += inst.Len
	}
	return 0, false
}

// Calls reports whether code (of fn) contains a direct call to target.
func Calls(fn Func, code []byte, target uint64) bool {
	for off := 0; off < len(code); {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			off++
			continue
		}
		next := fn.Addr + uint64(off+inst.Len)
		if inst.Op == x86asm.CALL {
			if rel, ok := inst.Args[0].(x86asm.Rel); ok && uint64(int64(next)+int64(rel)) == target {
				return true
			}
		}
		off += inst.Len
	}
	return false
}
