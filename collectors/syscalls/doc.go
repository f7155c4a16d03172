// Package syscalls is the agent's one hook on syscalls: a pair of programs
// on the raw tracepoints raw_syscalls:sys_enter and sys_exit, dispatching
// on the syscall number, that runs what every collector needs from
// syscalls (bpf/syshooks.bpf.h). A program on any syscalls:sys_{enter,exit}_*
// tracepoint would switch on the kernel's per-syscall tracing for every
// syscall of every process; the pair costs about half of that.
//
// The pair is the sockets collector's programs when that collector runs
// (it passes its spec through Hooks.Prepare), else the small Pair of this
// package. Either way the collectors' hooks work on the collectors' own maps
// and rings, which replace the pair's at load time: the collectors load
// first, the pair last.
package syscalls
