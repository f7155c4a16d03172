package tcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/collectors"
	"github.com/periscope-apm/periscope/collectors/loader"
	"github.com/periscope-apm/periscope/collectors/syscalls"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/ktime"
)

// Name is the collector's name.
const Name = "tcp"

// Hook is a way to run a program on every call of tcp_retransmit_skb.
type Hook string

// Hooks, in the order the collector tries them by default.
const (
	// HookTracepoint is the tcp:tcp_retransmit_skb tracepoint (4.15+), in
	// its raw form.
	HookTracepoint Hook = "tracepoint"
	// HookKprobe is kprobes on tcp_retransmit_skb and
	// __tcp_retransmit_skb (kernels without the tracepoint; needs
	// CONFIG_KPROBES).
	HookKprobe Hook = "kprobe"
)

// Describe says what the hook attaches to.
func (h Hook) Describe() string {
	switch h {
	case HookTracepoint:
		return "raw tracepoint tcp:tcp_retransmit_skb"
	case HookKprobe:
		return "kprobe " + kprobeWrapper + " + " + kprobeInner
	}
	return string(h)
}

// The functions HookKprobe probes: the wrapper most resends go through,
// and the function it calls, which tail loss probes call directly
// (tcp_send_loss_probe) and which some kernels inline into the wrapper
// (bpf/tcp.bpf.c counts each resend once).
const (
	kprobeWrapper = "tcp_retransmit_skb"
	kprobeInner   = "__tcp_retransmit_skb"
)

// ErrForcedFailure is the attach error of the hook Config.Fail names.
var ErrForcedFailure = errors.New("attach forced to fail by configuration (tcp.fail_hook)")

// ownersPath describes how sockets get their owners.
const ownersPath = "owners from raw tracepoint sock:inet_sock_set_state (SYN_SENT) and accept(4) in the agent's raw syscall pair, else /proc"

// Config configures the collector.
type Config struct {
	// Prefer is the hook tried first; the other one is the fallback.
	// "" means HookTracepoint.
	Prefer Hook
	// Fail, when set, makes that hook's attach fail after its program
	// loaded, as a kernel refusing it would (ErrForcedFailure): a testing
	// aid, so that the fallback runs on kernels that have both hooks.
	Fail Hook
	// Ring is the event ring (default 256 KiB: ~2,000 records; its pages
	// are resident, in the agent's RSS, from the start) and its reader. Its
	// WakeupBytes, when set, wakes the reader only when this much data
	// waits; below it, records are collected every PollInterval. The
	// default, 0, lets the kernel wake the reader for a record when it is
	// idle (and not while it is busy reading): retransmissions are rare,
	// and they reach the correlator before the TLS data that ends the span
	// they belong to, which waits for the OpenSSL collector's timer.
	loader.Ring
	// ProcRoot is where the proc file system is mounted (default /proc).
	ProcRoot string
	// ScanInterval is the shortest time between two scans of /proc for
	// the owner of a socket the kernel side did not see open (default 2s).
	ScanInterval time.Duration
}

func (c *Config) defaults() {
	if c.Prefer == "" {
		c.Prefer = HookTracepoint
	}
	c.Ring = c.Ring.WithDefaults(256<<10, 0)
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	if c.ScanInterval <= 0 {
		c.ScanInterval = 2 * time.Second
	}
}

// hookOrder returns the hooks in the order to try them.
func hookOrder(prefer Hook) []Hook {
	if prefer == HookKprobe {
		return []Hook{HookKprobe, HookTracepoint}
	}
	return []Hook{HookTracepoint, HookKprobe}
}

// baseObjects are the maps and the programs that track socket owners.
type baseObjects struct {
	Events   *ebpf.Map     `ebpf:"events"`
	Counters *ebpf.Map     `ebpf:"counters"`
	Owners   *ebpf.Map     `ebpf:"owners"`
	SetState *ebpf.Program `ebpf:"tcp_set_state"`
}

func (o *baseObjects) Close() error {
	var errs []error
	for _, m := range []*ebpf.Map{o.Events, o.Counters, o.Owners} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	if o.SetState != nil {
		errs = append(errs, o.SetState.Close())
	}
	*o = baseObjects{}
	return errors.Join(errs...)
}

// Collector is the TCP collector.
type Collector struct {
	cfg   Config
	sink  events.Sink
	log   *slog.Logger
	clock ktime.Clock

	objs     baseObjects
	progs    loader.Programs
	path     Hook
	fellBack Hook // the preferred hook, when it could not be used
	hook     atomic.Pointer[hookObjects]

	owners *procOwners

	read     *prometheus.CounterVec
	ownedBy  *prometheus.CounterVec
	attached prometheus.Gauge
}

// New returns a collector that sends its events to sink.
func New(cfg Config, sink events.Sink, log *slog.Logger, reg prometheus.Registerer) *Collector {
	cfg.defaults()
	c := &Collector{
		cfg:    cfg,
		sink:   sink,
		log:    log.With("collector", Name),
		clock:  ktime.NewClock(),
		owners: newProcOwners(cfg.ProcRoot, cfg.ScanInterval),
		read: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "periscope_events_read_total",
			Help:        "Events read from the kernel, by collector and type.",
			ConstLabels: prometheus.Labels{"collector": Name},
		}, []string{"type"}),
		ownedBy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_tcp_retransmit_owners_total",
			Help: "Retransmissions by how their socket's owner was found: kernel (seen at connect or accept), proc (socket inode found in /proc), none (charged to no process).",
		}, []string{"source"}),
	}
	c.attached = collectors.NewProbeGauge(reg, Name, c.pathName)
	misses := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "periscope_tcp_retransmit_hook_misses_total",
		Help: "Calls of tcp_retransmit_skb the retransmit hook's program did not run for (the kernel's recursion misses: it was already running on that CPU): retransmissions not counted.",
	}, c.hookMisses)
	reg.MustRegister(c.read, c.ownedBy, misses, collectors.NewDropCounter(Name, func() *ebpf.Map { return c.objs.Counters }))
	return c
}

// hookMisses sums the recursion misses of the retransmit hook's programs
// (Linux 5.12+; 0 before, or before the hook is attached).
func (c *Collector) hookMisses() float64 {
	h := c.hook.Load()
	if h == nil {
		return 0
	}
	var n uint64
	for _, p := range h.programs() {
		if st, err := p.Stats(); err == nil {
			n += st.RecursionMisses
		}
	}
	return float64(n)
}

// Name implements collectors.Collector.
func (c *Collector) Name() string { return Name }

// AttachPath implements collectors.Collector: the hook in use once started,
// else the order in which the hooks will be tried.
func (c *Collector) AttachPath() string {
	if c.path == "" {
		order := hookOrder(c.cfg.Prefer)
		return order[0].Describe() + ", else " + order[1].Describe() + "; " + ownersPath
	}
	s := c.path.Describe()
	if c.fellBack != "" {
		s += " (" + c.fellBack.Describe() + " failed)"
	}
	return s + "; " + ownersPath
}

// Hook returns the hook in use (after Start).
func (c *Collector) Hook() Hook { return c.path }

// Start implements collectors.Collector.
func (c *Collector) Start(ctx context.Context) error {
	spec, err := loadTcp()
	if err != nil {
		return fmt.Errorf("load tcp spec: %w", err)
	}
	if err := loader.Load(Name, spec, c.cfg.Ring, &c.objs, nil, c.log); err != nil {
		return err
	}
	c.progs.Own(&c.objs)
	if err := c.attachOwners(); err != nil {
		c.Close()
		return err
	}
	if err := c.attachRetransmit(spec); err != nil {
		c.Close()
		return err
	}
	c.attached.Set(float64(c.progs.Links()))
	c.progs.Read(ctx, c.objs.Events, c.cfg.Ring, c.handle, c.log)
	c.log.Info("collector started", "hook", c.path.Describe(), "path", c.AttachPath())
	return nil
}

// attachOwners attaches the program that records who connected each
// socket (who accepted one: SyscallHook).
func (c *Collector) attachOwners() error {
	return c.progs.RawTracepoint("inet_sock_set_state", c.objs.SetState)
}

// SyscallHook implements syscalls.Hooker: the agent's pair of syscall
// programs records the owner of each socket accept() and accept4() return
// in this collector's owners, once started.
func (c *Collector) SyscallHook() syscalls.Hook {
	return syscalls.Hook{Collector: Name, Syscalls: "accept/accept4 exit",
		Maps: syscalls.Prefixed(Name, map[string]*ebpf.Map{"owners": c.objs.Owners})}
}

// attachRetransmit hooks tcp_retransmit_skb, trying the hooks in order.
func (c *Collector) attachRetransmit(spec *ebpf.CollectionSpec) error {
	order := hookOrder(c.cfg.Prefer)
	var failed []error
	for _, h := range order {
		progs, links, err := attachHook(spec, &c.objs, h, c.cfg.Fail, c.log)
		if err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", h.Describe(), err))
			continue
		}
		c.path = h
		c.hook.Store(progs)
		c.progs.Own(progs)
		c.progs.Add(links...)
		break
	}
	if c.path == "" {
		return fmt.Errorf("no way to hook tcp_retransmit_skb: %w", errors.Join(failed...))
	}
	if len(failed) > 0 {
		c.fellBack = order[0]
		// The one line that says the preferred hook was not used.
		c.log.Warn("retransmit hook fell back", "wanted", order[0].Describe(), "using", c.path.Describe(), "err", failed[0])
	}
	return nil
}

// attachHook loads the programs of hook h, sharing the maps of base, and
// attaches them; when h is fail, the attach fails with ErrForcedFailure
// instead. Each hook's programs are loaded on their own, so that a kernel
// refusing one hook still gets the other.
func attachHook(spec *ebpf.CollectionSpec, base *baseObjects, h, fail Hook, log *slog.Logger) (*hookObjects, []link.Link, error) {
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		"events":   base.Events,
		"counters": base.Counters,
		"owners":   base.Owners,
	}}
	var objs hookObjects
	var load any
	switch h {
	case HookTracepoint:
		load = &objs.tp
	case HookKprobe:
		load = &objs.kp
	default:
		return nil, nil, fmt.Errorf("unknown hook %q", h)
	}
	if err := spec.LoadAndAssign(load, opts); err != nil {
		return nil, nil, loader.Verbose(fmt.Errorf("load: %w", err), log)
	}
	links, err := objs.attach(h, fail)
	if err != nil {
		for _, l := range links {
			l.Close()
		}
		objs.Close()
		return nil, nil, fmt.Errorf("attach: %w", err)
	}
	return &objs, links, nil
}

// hookObjects are the programs of one hook.
type hookObjects struct {
	tp struct {
		Tracepoint *ebpf.Program `ebpf:"tcp_retransmit_tp"`
	}
	kp struct {
		Wrapper    *ebpf.Program `ebpf:"tcp_retransmit_kprobe"`
		WrapperRet *ebpf.Program `ebpf:"tcp_retransmit_kretprobe"`
		Inner      *ebpf.Program `ebpf:"tcp_retransmit_inner_kprobe"`
	}
}

// attach attaches the loaded programs of hook h, or fails with
// ErrForcedFailure when h is fail. It returns the links made, also on error.
func (o *hookObjects) attach(h, fail Hook) ([]link.Link, error) {
	if h == fail {
		return nil, ErrForcedFailure
	}
	if h == HookTracepoint {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "tcp_retransmit_skb", Program: o.tp.Tracepoint})
		if err != nil {
			return nil, err
		}
		return []link.Link{l}, nil
	}
	var links []link.Link
	for _, a := range []struct {
		symbol string
		prog   *ebpf.Program
		ret    bool
		// optional: a kernel that inlined the function everywhere
		// has no symbol for it, and the wrapper sees every resend.
		optional bool
	}{
		// The return first: a wrapper entry counted without its return
		// would leave its socket marked.
		{kprobeWrapper, o.kp.WrapperRet, true, false},
		{kprobeWrapper, o.kp.Wrapper, false, false},
		{kprobeInner, o.kp.Inner, false, true},
	} {
		attach := link.Kprobe
		if a.ret {
			attach = link.Kretprobe
		}
		l, err := attach(a.symbol, a.prog, nil)
		if a.optional && errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return links, fmt.Errorf("%s: %w", a.symbol, err)
		}
		links = append(links, l)
	}
	return links, nil
}

// programs returns the programs loaded.
func (o *hookObjects) programs() []*ebpf.Program {
	var ps []*ebpf.Program
	for _, p := range []*ebpf.Program{o.tp.Tracepoint, o.kp.Wrapper, o.kp.WrapperRet, o.kp.Inner} {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// Close closes the programs.
func (o *hookObjects) Close() error {
	var errs []error
	for _, p := range o.programs() {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// Probe tries the hooks in their default order on this kernel, as Start
// would, and returns the one that attaches (detached again), with the
// errors of those that did not.
func Probe(log *slog.Logger) (Hook, []error) {
	spec, err := loadTcp()
	if err != nil {
		return "", []error{fmt.Errorf("load tcp spec: %w", err)}
	}
	var base baseObjects
	if err := loader.Load(Name, spec, loader.Ring{RingBytes: 4096}, &base, nil, log); err != nil {
		return "", []error{err}
	}
	defer base.Close()
	var failed []error
	for _, h := range hookOrder(HookTracepoint) {
		progs, links, err := attachHook(spec, &base, h, "", log)
		if err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", h.Describe(), err))
			continue
		}
		for _, l := range links {
			l.Close()
		}
		progs.Close()
		return h, failed
	}
	return "", failed
}

// handle decodes one ring record, finds the owner of a socket the kernel
// side did not see open, and hands the retransmission to the sink.
func (c *Collector) handle(raw []byte) {
	r, ok := decode(raw, c.clock)
	if !ok {
		c.read.WithLabelValues("malformed").Inc()
		return
	}
	c.read.WithLabelValues("retransmit").Inc()
	switch {
	case r.ev.PID != 0:
		c.ownedBy.WithLabelValues("kernel").Inc()
	default:
		if o, ok := c.owners.lookup(r.ino); ok {
			r.ev.PID, r.ev.Comm = o.pid, o.comm
			r.ev.Role = events.RoleConnected
			if c.owners.listening(o.pid, r.ev.Tuple.Local.Port()) {
				r.ev.Role = events.RoleAccepted
			}
			c.ownedBy.WithLabelValues("proc").Inc()
			c.remember(r.sock, o, r.ev.Role)
		} else {
			c.ownedBy.WithLabelValues("none").Inc()
		}
	}
	c.sink.Retransmit(r.ev)
}

// remember writes an owner found in /proc into the kernel's map, so that
// the socket's next retransmissions are charged without a lookup.
func (c *Collector) remember(sock uint64, o procOwner, role events.SocketRole) {
	v := tcpSockOwner{Tgid: o.pid, Role: ownerRole(role)}
	for i := 0; i < len(v.Comm)-1 && i < len(o.comm); i++ {
		v.Comm[i] = int8(o.comm[i])
	}
	if err := c.objs.Owners.Update(sock, v, ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		c.log.Debug("remember socket owner", "pid", o.pid, "err", err)
	}
}

// Close implements collectors.Collector.
func (c *Collector) Close() error {
	err := c.progs.Close()
	c.attached.Set(0)
	return err
}

// Wait implements collectors.Collector.
func (c *Collector) Wait() { c.progs.Wait() }

// pathName is the attach path for metric labels: the hook in use, or
// "none" before one is attached.
func (c *Collector) pathName() string {
	if c.path == "" {
		return "none"
	}
	return string(c.path)
}
