package syscalls

import (
	"fmt"
	"log/slog"

	"github.com/cilium/ebpf"

	"github.com/periscope-apm/periscope/collectors/loader"
)

// Pair is the pair of syscall programs when the sockets collector is off:
// the collectors' hooks alone (bpf/syscalls.bpf.c).
type Pair struct {
	hooks Hooks
	log   *slog.Logger
	typed bool
	objs  pairObjects
	progs loader.Programs
}

// pairObjects are the chosen pair (Choose).
type pairObjects struct {
	SysEnter *ebpf.Program `ebpf:"sys_enter"`
	SysExit  *ebpf.Program `ebpf:"sys_exit"`
}

func (o *pairObjects) Close() error { return closeAll(o.SysEnter, o.SysExit) }

// NewPair returns the pair that runs hooks.
func NewPair(hooks Hooks, log *slog.Logger) *Pair {
	return &Pair{hooks: hooks, log: log.With("component", "syscalls")}
}

// Start loads the pair and attaches it: the exit only when a hook needs
// it (the tcp collector's accept).
func (p *Pair) Start() error {
	spec, err := loadSyscalls()
	if err != nil {
		return fmt.Errorf("load syscalls spec: %w", err)
	}
	p.typed = Typed()
	if err := Choose(spec, p.typed); err != nil {
		return err
	}
	repl, err := p.hooks.Prepare(spec)
	if err != nil {
		return err
	}
	if err := loader.Load("syscalls", spec, loader.Ring{}, &p.objs, &ebpf.CollectionOptions{MapReplacements: repl}, p.log); err != nil {
		return err
	}
	p.progs.Own(&p.objs)
	exit := p.objs.SysExit
	if !p.hooks.Has("tcp") {
		exit = nil
	}
	if err := Attach(&p.progs, p.objs.SysEnter, exit, p.typed); err != nil {
		p.progs.Close()
		return err
	}
	p.log.Info("syscall hooks attached", "path", p.AttachPath())
	return nil
}

// AttachPath says which programs run the hooks and what they follow.
func (p *Pair) AttachPath() string { return Path(p.typed, p.hooks) }

// Path is the attach path of the pair of kind typed running hooks.
func Path(typed bool, hooks Hooks) string {
	return Kind(typed) + " raw_syscalls:sys_enter/sys_exit (one program pair for every syscall, dispatching on its number) for " + hooks.Describe()
}

// Close detaches the pair and frees it.
func (p *Pair) Close() error { return p.progs.Close() }
