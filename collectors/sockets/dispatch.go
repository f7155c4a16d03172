package sockets

import (
	"errors"

	"github.com/cilium/ebpf"
)

// objects are the loaded programs and maps, with one pair of syscall
// dispatchers under the names sys_enter and sys_exit (syscalls.Choose).
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
