// Package kernel probes what the running kernel lets the agent do, by trying
// it: loading and attaching tiny programs, not by reading config files.
package kernel

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/periscope-apm/periscope/internal/tracefs"
)

// Feature is one capability and whether the kernel offers it.
type Feature struct {
	Name string
	OK   bool
	// Required features are those without which the agent cannot run.
	Required bool
	Detail   string
}

// Features is the outcome of Probe, by name.
type Features []Feature

// Has reports whether the named feature is available.
func (fs Features) Has(name string) bool {
	for _, f := range fs {
		if f.Name == name {
			return f.OK
		}
	}
	return false
}

// Missing lists the required features that are not available.
func (fs Features) Missing() []string {
	var out []string
	for _, f := range fs {
		if f.Required && !f.OK {
			out = append(out, f.Name)
		}
	}
	return out
}

// Feature names.
const (
	BTF           = "BTF"
	BPF           = "BPF programs"
	RingBuf       = "ring buffer"
	Tracefs       = "tracefs"
	Uprobe        = "uprobes"
	RawTracepoint = "raw tracepoints"
	// SyscallTracepoint is raw_syscalls:sys_enter/sys_exit as raw
	// tracepoints (CONFIG_FTRACE_SYSCALLS): the agent's one syscall hook.
	SyscallTracepoint = "raw syscall tracepoints"
	Kprobe            = "kprobes"
	Fentry            = "fentry/fexit"
	ProbeWriteUser    = "bpf_probe_write_user from uprobes"
	UprobeMultiLink   = "uprobe_multi links"
)

// Probe tries each feature. It needs the privileges the agent runs with.
func Probe() Features {
	var fs Features
	add := func(name string, required bool, err error, okDetail string) {
		f := Feature{Name: name, Required: required, OK: err == nil, Detail: okDetail}
		switch {
		case errors.Is(err, os.ErrPermission):
			f.Detail = "permission denied: run as root or with CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN (" + err.Error() + ")"
		case err != nil:
			f.Detail = err.Error()
		}
		fs = append(fs, f)
	}

	_ = rlimit.RemoveMemlock()
	spec, err := btf.LoadKernelSpec()
	add(BTF, true, err, "/sys/kernel/btf/vmlinux")
	_ = spec

	prog, err := socketFilter()
	add(BPF, true, err, "can load programs")
	if prog != nil {
		prog.Close()
	}
	add(RingBuf, true, features.HaveMapType(ebpf.RingBuf), "BPF_MAP_TYPE_RINGBUF")

	dir, mounted, err := tracefs.Ensure()
	detail := dir
	if mounted {
		detail += " (mounted by the agent)"
	}
	add(Tracefs, true, err, detail)

	add(Uprobe, true, tryUprobe(), "attached a uprobe to the agent's own binary")
	add(RawTracepoint, true, tryRawTracepoint("sched_process_exit"), "attached sched_process_exit")
	add(SyscallTracepoint, true, tryRawTracepoint("sys_enter"), "attached raw_syscalls:sys_enter")
	add(Kprobe, false, tryKprobe(), "attached a kprobe")
	add(Fentry, false, tryFentry(), "loaded an fentry program")
	add(ProbeWriteUser, false, features.HaveProgramHelper(ebpf.Kprobe, asm.FnProbeWriteUser), "allowed")
	add(UprobeMultiLink, false, features.HaveBPFLinkUprobeMulti(), "available")
	return fs
}

func socketFilter() (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SocketFilter,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
}

func tracingProg(typ ebpf.ProgramType, attach ebpf.AttachType, to string) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         typ,
		AttachType:   attach,
		AttachTo:     to,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
}

// tryUprobe attaches a uprobe at the agent's own ELF entry point, which runs
// only when a process of this binary starts: it needs no symbols (the agent
// may be stripped) and costs nothing while attached.
func tryUprobe() error {
	prog, err := tracingProg(ebpf.Kprobe, ebpf.AttachNone, "")
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	defer prog.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	off, err := entryOffset(exe)
	if err != nil {
		return err
	}
	ex, err := link.OpenExecutable(exe)
	if err != nil {
		return err
	}
	l, err := ex.Uprobe("_start", prog, &link.UprobeOptions{Address: off})
	if err != nil {
		return err
	}
	return l.Close()
}

// entryOffset returns the file offset of an executable's entry point.
func entryOffset(path string) (uint64, error) {
	f, err := elf.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && f.Entry >= p.Vaddr && f.Entry < p.Vaddr+p.Memsz {
			return f.Entry - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("%s: entry point %#x is in no executable segment", path, f.Entry)
}

// tryRawTracepoint attaches an empty raw tracepoint program to tracepoint
// name.
func tryRawTracepoint(name string) error {
	prog, err := tracingProg(ebpf.RawTracepoint, ebpf.AttachNone, "")
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	defer prog.Close()
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: prog})
	if err != nil {
		return err
	}
	return l.Close()
}

func tryKprobe() error {
	prog, err := tracingProg(ebpf.Kprobe, ebpf.AttachNone, "")
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	defer prog.Close()
	l, err := link.Kprobe("tcp_retransmit_skb", prog, nil)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("no kprobe support in this kernel: %w", err)
		}
		return err
	}
	return l.Close()
}

func tryFentry() error {
	prog, err := tracingProg(ebpf.Tracing, ebpf.AttachTraceFEntry, "tcp_retransmit_skb")
	if err != nil {
		return err
	}
	return prog.Close()
}
