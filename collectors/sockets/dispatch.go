package sockets

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// objects are the loaded programs and maps, with one pair of syscall
// dispatchers (see dispatchers) under the names sys_enter and sys_exit.
type objects struct {
	programs
	socketsMaps
	socketsVariables
}

type programs struct {
	SysEnter        *ebpf.Program `ebpf:"sys_enter"`
	SysExit         *ebpf.Program `ebpf:"sys_exit"`
	SockProcessExit *ebpf.Program `ebpf:"sock_process_exit"`
	SockProcessExec *ebpf.Program `ebpf:"sock_process_exec"`
	SockProcessFork *ebpf.Program `ebpf:"sock_process_fork"`
}

// Close frees the programs and maps (the programs of the read/write
// shapes go with their program array).
func (o *objects) Close() error {
	var errs []error
	for _, p := range []*ebpf.Program{o.SysEnter, o.SysExit, o.SockProcessExit, o.SockProcessExec, o.SockProcessFork} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(append(errs, o.socketsMaps.Close())...)
}

// dispatchers keeps one set of syscall programs in spec: the tp_btf set
// where the kernel loads a tp_btf program on raw_syscalls:sys_enter (the
// registers come as a typed pointer: no helper call per syscall to read
// them; Linux 5.5+, unless the kernel refuses tracing programs), else the
// raw tracepoint set. The other set's program array is emptied, so that
// its programs are not loaded. It returns whether tp_btf was chosen.
func dispatchers(spec *ebpf.CollectionSpec) (typed bool, err error) {
	for _, name := range []string{"sys_enter", "sys_exit", "sys_enter_btf", "sys_exit_btf"} {
		if spec.Programs[name] == nil {
			return false, fmt.Errorf("sockets spec has no program %s", name)
		}
	}
	raw, btf := spec.Maps["io_progs"], spec.Maps["io_progs_btf"]
	if raw == nil || btf == nil {
		return false, errors.New("sockets spec has no io_progs or io_progs_btf")
	}
	typed = tpBTF()
	if typed {
		spec.Programs["sys_enter"] = spec.Programs["sys_enter_btf"]
		spec.Programs["sys_exit"] = spec.Programs["sys_exit_btf"]
		raw.Contents = nil
	} else {
		btf.Contents = nil
	}
	delete(spec.Programs, "sys_enter_btf")
	delete(spec.Programs, "sys_exit_btf")
	return typed, nil
}

// Dispatchers names the programs the syscall dispatchers are on this
// kernel: "tp_btf" or "raw tracepoints".
func Dispatchers() string {
	if tpBTF() {
		return "tp_btf"
	}
	return "raw tracepoints"
}

// tpBTF reports whether a tp_btf program loads for raw_syscalls:sys_enter.
func tpBTF() bool {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "sys_enter", License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return false
	}
	prog.Close()
	return true
}

// attachDispatcher attaches prog to the raw tracepoint name, as the
// program type it was loaded as.
func attachDispatcher(prog *ebpf.Program, name string, typed bool) (link.Link, error) {
	if typed {
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			return nil, fmt.Errorf("attach tp_btf %s: %w", name, err)
		}
		return l, nil
	}
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: prog})
	if err != nil {
		return nil, fmt.Errorf("attach raw_tracepoint %s: %w", name, err)
	}
	return l, nil
}
