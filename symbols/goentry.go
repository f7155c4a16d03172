package symbols

import (
	"fmt"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
)

// EntryProbe returns the file offset where an entry uprobe on f costs least
// and still sees what the entry sees.
//
// A Go function that may grow its stack starts by comparing the stack
// pointer with the goroutine's stack bound and branching to morestack:
//
//	amd64: CMPQ SP, 16(R14)  (or LEAQ -n(SP), R12; CMPQ R12, 16(R14))
//	       JLS   morestack
//	arm64: MOVD  16(g), R16  (SUB $n, RSP, R17; CMP R16, R17)
//	       BLS   morestack
//
// The kernel single-steps a probed CMP or MOV out of line, but emulates a
// conditional branch: on the machines here that is ~0.7 µs per hit instead
// of ~19 µs. Everything before the branch writes only the flags and scratch
// registers that carry no arguments (R12/R13 on amd64, X16/X17 on arm64), so
// at the branch the arguments, the goroutine register and the stack are as
// at the entry. When the stack is grown, the function starts over: the
// branch is hit again, as the entry would be.
//
// EntryProbe returns the branch's offset when f starts that way, and f.Start
// otherwise (functions that never grow their stack).
func (b *GoBinary) EntryProbe(f Func) (uint64, error) {
	if f.Size == 0 {
		return 0, fmt.Errorf("entry probe of %s in %s: empty function", f.Name, b.Path)
	}
	n := f.Size
	if n > 32 {
		n = 32
	}
	code, err := b.readAt(f.Addr, n)
	if err != nil {
		return 0, fmt.Errorf("entry probe of %s: %w", f.Name, err)
	}
	switch b.Arch {
	case "amd64":
		return f.Start + stackCheckBranchAMD64(code), nil
	case "arm64":
		return f.Start + stackCheckBranchARM64(code), nil
	}
	return f.Start, nil
}

// stackCheckBranchAMD64 returns the offset of the conditional branch that
// ends a stack-bound check at the start of code, or 0.
func stackCheckBranchAMD64(code []byte) uint64 {
	for i, k := 0, 0; i < len(code) && k < 4; k++ {
		if _, isVEX := vexLength(code[i:]); isVEX {
			return 0
		}
		inst, err := x86asm.Decode(code[i:], 64)
		if err != nil || inst.Op == 0 {
			return 0
		}
		switch inst.Op {
		case x86asm.JBE, x86asm.JB, x86asm.JA, x86asm.JAE, x86asm.JL, x86asm.JLE, x86asm.JG, x86asm.JGE:
			if _, ok := inst.Args[0].(x86asm.Rel); ok {
				return uint64(i)
			}
			return 0
		case x86asm.CMP, x86asm.TEST:
			// Flags only.
		case x86asm.LEA, x86asm.MOV, x86asm.SUB, x86asm.ADD:
			if r, ok := inst.Args[0].(x86asm.Reg); !ok || r != x86asm.R12 && r != x86asm.R13 {
				return 0
			}
		default:
			return 0
		}
		i += inst.Len
	}
	return 0
}

// stackCheckBranchARM64 is stackCheckBranchAMD64 for arm64.
func stackCheckBranchARM64(code []byte) uint64 {
	for i := 0; i+4 <= len(code) && i < 16; i += 4 {
		inst, err := arm64asm.Decode(code[i : i+4])
		if err != nil {
			return 0
		}
		switch inst.Op {
		case arm64asm.B:
			if _, ok := inst.Args[0].(arm64asm.Cond); ok {
				return uint64(i)
			}
			return 0
		case arm64asm.CMP:
			// Flags only.
		case arm64asm.LDR, arm64asm.MOV, arm64asm.SUB, arm64asm.ADD:
			if !scratchARM64(inst.Args[0]) {
				return 0
			}
		default:
			return 0
		}
	}
	return 0
}

// scratchARM64 reports whether a destination operand is X16 or X17, the
// intra-procedure-call scratch registers.
func scratchARM64(a arm64asm.Arg) bool {
	var r arm64asm.Reg
	switch a := a.(type) {
	case arm64asm.Reg:
		r = a
	case arm64asm.RegSP:
		r = arm64asm.Reg(a)
	default:
		return false
	}
	return r == arm64asm.X16 || r == arm64asm.X17
}
