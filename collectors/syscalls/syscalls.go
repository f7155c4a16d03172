package syscalls

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/periscope-apm/periscope/collectors/loader"
)

// Hook is what one collector needs from syscalls: its part of
// bpf/syshooks.bpf.h, switched on by the variable hook_<Collector>, working
// on Maps, the collector's instances of that part's maps by their names
// there.
type Hook struct {
	// Collector is the collector's name: discovery, tcp, gotls, openssl.
	Collector string
	// Syscalls names what the hook follows, for the attach path.
	Syscalls string
	Maps     map[string]*ebpf.Map
}

// Hooker is a collector with a hook on syscalls, once it is started.
type Hooker interface {
	SyscallHook() Hook
}

// Hooks are the hooks of the collectors that run.
type Hooks []Hook

// HooksOf returns the hooks of those of cols that have one.
func HooksOf[T any](cols []T) Hooks {
	var hs Hooks
	for _, c := range cols {
		if h, ok := any(c).(Hooker); ok {
			hs = append(hs, h.SyscallHook())
		}
	}
	return hs
}

// Has reports whether the hook of collector name is in hs.
func (hs Hooks) Has(name string) bool {
	for _, h := range hs {
		if h.Collector == name {
			return true
		}
	}
	return false
}

// Prepare switches the hooks of hs on in spec and returns the maps that
// replace spec's, having sized spec's to match them. The maps of the hooks
// that are off stay as small as the object declares them.
func (hs Hooks) Prepare(spec *ebpf.CollectionSpec) (map[string]*ebpf.Map, error) {
	repl := map[string]*ebpf.Map{}
	for _, h := range hs {
		v := spec.Variables["hook_"+h.Collector]
		if v == nil {
			return nil, fmt.Errorf("no syscall hook for collector %s", h.Collector)
		}
		if err := v.Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("switch on the syscall hook of %s: %w", h.Collector, err)
		}
		for name, m := range h.Maps {
			ms := spec.Maps[name]
			if ms == nil || m == nil {
				return nil, fmt.Errorf("syscall hook of %s: map %s missing", h.Collector, name)
			}
			ms.MaxEntries = m.MaxEntries()
			repl[name] = m
		}
	}
	// The rings of hooks that are off: the smallest ring the kernel makes.
	for name, ms := range spec.Maps {
		if ms.Type == ebpf.RingBuf && repl[name] == nil && name != "events" {
			ms.MaxEntries = uint32(os.Getpagesize())
		}
	}
	return repl, nil
}

// Describe says what the hooks of hs follow.
func (hs Hooks) Describe() string {
	var parts []string
	for _, h := range hs {
		parts = append(parts, h.Collector+": "+h.Syscalls)
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// Typed reports whether a tp_btf program loads for raw_syscalls:sys_enter
// (the registers come as a typed pointer: no helper call per syscall to
// read them; Linux 5.5+, unless the kernel refuses tracing programs).
// Otherwise the pair is raw tracepoint programs.
func Typed() bool {
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

// Kind names the programs the pair is: "tp_btf" or "raw tracepoints".
func Kind(typed bool) string {
	if typed {
		return "tp_btf"
	}
	return "raw tracepoints"
}

// Choose keeps one set of programs in spec, which holds each program of
// the pair twice: as a raw tracepoint program (sys_enter, sys_exit) and as
// a tp_btf one (sys_enter_btf, sys_exit_btf). With typed, the tp_btf ones
// take the plain names. Program arrays come in the same two sets (name and
// name_btf): the other set's is emptied, so that its programs are not
// loaded.
func Choose(spec *ebpf.CollectionSpec, typed bool) error {
	for _, name := range []string{"sys_enter", "sys_exit"} {
		raw, btf := spec.Programs[name], spec.Programs[name+"_btf"]
		if raw == nil || btf == nil {
			return fmt.Errorf("spec has no program %s or %s_btf", name, name)
		}
		if typed {
			spec.Programs[name] = btf
		}
		delete(spec.Programs, name+"_btf")
	}
	for name, ms := range spec.Maps {
		btf := spec.Maps[name+"_btf"]
		if ms.Type != ebpf.ProgramArray || btf == nil {
			continue
		}
		if typed {
			ms.Contents = nil
		} else {
			btf.Contents = nil
		}
	}
	return nil
}

// Attach attaches the pair, the exit first (an entry recorded without its
// exit would stay recorded); a nil exit is not attached.
func Attach(p *loader.Programs, enter, exit *ebpf.Program, typed bool) error {
	for _, d := range []struct {
		name string
		prog *ebpf.Program
	}{{"sys_exit", exit}, {"sys_enter", enter}} {
		if d.prog == nil {
			continue
		}
		if err := p.RawTracepointAs(d.name, d.prog, typed); err != nil {
			return err
		}
	}
	return nil
}

// closeAll closes the programs that are set.
func closeAll(progs ...*ebpf.Program) error {
	var errs []error
	for _, p := range progs {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(errs...)
}

// Prefixed names a collector's maps as the pair does: collector_name.
func Prefixed(collector string, maps map[string]*ebpf.Map) map[string]*ebpf.Map {
	out := make(map[string]*ebpf.Map, len(maps))
	for name, m := range maps {
		out[collector+"_"+name] = m
	}
	return out
}
