package sockets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/collectors"
	"github.com/periscope-apm/periscope/collectors/loader"
	"github.com/periscope-apm/periscope/collectors/syscalls"
	"github.com/periscope-apm/periscope/discovery"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/internal/wire"
)

// Name is the collector's name.
const Name = "sockets"

// Config configures the collector.
type Config struct {
	// PerProcess traces only the processes the selection includes
	// (ProcessUpdated adds them); otherwise every process.
	PerProcess bool
	// CaptureBytes is how many bytes of each call are copied (default
	// and maximum: wire.DataCap).
	CaptureBytes int
	// IgnorePorts are local or remote ports whose connections are never
	// traced.
	IgnorePorts []uint16
	// Ring is the event ring (default 8 MiB, the reader woken when
	// 512 KiB wait) and its reader.
	loader.Ring
	// ProcRoot is where procfs is mounted (default /proc).
	ProcRoot string
	// Hooks returns, at Start, what the other collectors (started
	// first) need from syscalls: the collector's syscall programs are the
	// agent's only ones, and run them too (bpf/syshooks.bpf.h). Nil: none.
	Hooks func() syscalls.Hooks
	// NetHTTPConns is the gohttp collector's record of net/http's sockets
	// (gohttp.NewNetHTTPConns): in a process left to gohttp, an HTTP/2
	// connection found there is net/http's and left alone (nil: none is).
	NetHTTPConns *ebpf.Map
	// CallSlots, a testing aid, is how many of the per-thread call slots
	// threads share (a power of two, at most the thread_calls map's size;
	// 0: all): fewer force calls of threads whose slot is taken onto the
	// calls hash.
	CallSlots int
}

func (c *Config) defaults() {
	if c.CaptureBytes <= 0 || c.CaptureBytes > wire.DataCap {
		c.CaptureBytes = wire.DataCap
	}
	c.Ring = c.Ring.WithDefaults(8<<20, 512<<10)
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
}

// Collector is the sockets collector.
type Collector struct {
	cfg   Config
	log   *slog.Logger
	clock ktime.Clock

	objs  objects
	typed bool           // the syscall programs are tp_btf programs
	hooks syscalls.Hooks // the other collectors' syscall hooks they run
	progs loader.Programs
	m     *collectors.Metrics
	recs  collectors.Records

	hold *hold // PerProcess: records of undecided processes

	epochMu sync.Mutex
	epoch   uint64 // user space's selection epoch (sel_epoch[0])
}

// New returns a collector that sends its events to sink.
func New(cfg Config, sink events.Sink, log *slog.Logger, reg prometheus.Registerer) *Collector {
	cfg.defaults()
	c := &Collector{cfg: cfg, log: log.With("collector", Name), clock: ktime.NewClock()}
	counters := func() *ebpf.Map { return c.objs.Counters }
	c.m = collectors.NewMetrics(Name, reg, func() string { return "tracepoint" }, counters)
	reg.MustRegister(
		collectors.NewCounterFunc(Name, "periscope_unparsed_calls_total",
			"Calls on TCP connections whose protocol no parser handles (TLS, unclassified, ignored ports): counted, bytes not copied, by collector. Once a descriptor is known to be a net/http connection the Go collector reports, its calls are no longer counted.",
			counters, wire.CounterUnparsedCalls),
		collectors.NewCounterFunc(Name, "periscope_unclassified_connections_total",
			"TCP connections whose first calls matched no known protocol, by collector.",
			counters, wire.CounterUnclassifiedConns),
	)
	c.recs = collectors.Records{Sink: sink, Clock: c.clock, Read: c.m.Read}
	c.hold = newHold(c.forward, func(reason string) { c.recs.Count(reason) }, cfg.Ring.Progress)
	c.hold.log = c.log
	return c
}

// Name implements collectors.Collector.
func (c *Collector) Name() string { return Name }

// AttachPath implements collectors.Collector.
func (c *Collector) AttachPath() string {
	mode := "every process"
	if c.cfg.PerProcess {
		mode = "selected processes"
	}
	hooks := ""
	if len(c.hooks) > 0 {
		hooks = "; the same pair runs the hooks of " + c.hooks.Describe()
	}
	return syscalls.Kind(c.typed) + " raw_syscalls:sys_enter/sys_exit (one program pair for every syscall, dispatching on its number: " +
		"read, write, readv, writev, recvfrom, sendto, recvmsg, sendmsg, sendfile, recvmmsg, sendmmsg, close, close_range, dup2/dup3, socket, accept(4), dup); reads blocked at start from /proc/PID/task/TID/syscall; TCP sockets classified in the kernel, HTTP/1.x, HTTP/2 (h2c: the connection preface), PostgreSQL, MySQL and Redis copied; " + mode + hooks
}

// SyscallPath says which programs hook syscalls and for whom (after
// Start): the collector's pair, for itself and the other collectors.
func (c *Collector) SyscallPath() string {
	return syscalls.Path(c.typed, append(syscalls.Hooks{{Collector: Name, Syscalls: "its own"}}, c.hooks...))
}

// Start implements collectors.Collector.
func (c *Collector) Start(ctx context.Context) error {
	spec, err := loadSockets()
	if err != nil {
		return fmt.Errorf("load sockets spec: %w", err)
	}
	consts := map[string]any{
		"capture_bytes":   uint32(c.cfg.CaptureBytes),
		"parsed_protos":   parsedProtos,
		"filter_selected": boolByte(c.cfg.PerProcess),
		"fd_cache":        boolByte(AtomicsCmpxchg()),
		"call_slots":      boolByte(AtomicsCmpxchg()),
	}
	for name, v := range consts {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	if err := sizeThreadMaps(spec, c.cfg.ProcRoot); err != nil {
		return err
	}
	if err := shareCallSlots(spec, c.cfg.CallSlots); err != nil {
		return err
	}
	c.typed = syscalls.Typed()
	if err := syscalls.Choose(spec, c.typed); err != nil {
		return err
	}
	if c.cfg.Hooks != nil {
		c.hooks = c.cfg.Hooks()
	}
	repl, err := c.hooks.Prepare(spec)
	if err != nil {
		return err
	}
	if c.cfg.NetHTTPConns != nil {
		repl[loader.NetHTTPConns] = c.cfg.NetHTTPConns
	}
	if err := loader.Load(Name, spec, c.cfg.Ring, &c.objs, &ebpf.CollectionOptions{MapReplacements: repl}, c.log); err != nil {
		return err
	}
	c.progs.Own(&c.objs)
	if err := c.fill(); err != nil {
		c.Close()
		return err
	}
	c.hold.markersFrom = ktime.Now()
	if err := c.attach(); err != nil {
		c.Close()
		return err
	}
	c.m.Probes.Set(float64(c.progs.Links()))
	c.progs.Read(ctx, c.objs.Events, c.cfg.Ring, c.decode, c.log)
	if c.cfg.PerProcess {
		go c.expireHeld(ctx)
	}
	t0 := time.Now()
	adopted, bits, err := c.adoptBlockedReads()
	if err != nil {
		c.log.Warn("reads blocked at start not recorded: the first request of idle connections may have no server span", "err", err)
	}
	go c.endAdoption(ctx, bits)
	c.log.Info("collector started", "path", c.AttachPath(), "ignore_ports", c.cfg.IgnorePorts, "blocked_reads", adopted, "blocked_reads_scan", time.Since(t0).Round(time.Microsecond))
	return nil
}

// fill writes the ports to ignore and the agent's own PID (never traced:
// its exports would become spans).
func (c *Collector) fill() error {
	for _, p := range c.cfg.IgnorePorts {
		if err := c.objs.IgnorePorts.Put(p, uint8(1)); err != nil {
			return fmt.Errorf("ignore port %d: %w", p, err)
		}
	}
	return c.skip(uint32(os.Getpid()), socketsSkipSKIP_ALL)
}

// parsedProtos are the protocols whose bytes the kernel copies (a bit per
// enum proto): those the correlator's registry decodes.
const parsedProtos = uint32(1)<<socketsProtoPROTO_HTTP1 | 1<<socketsProtoPROTO_HTTP2 | 1<<socketsProtoPROTO_POSTGRES |
	1<<socketsProtoPROTO_MYSQL | 1<<socketsProtoPROTO_REDIS

func (c *Collector) attach() error {
	if err := syscalls.Attach(&c.progs, c.objs.SysEnter, c.objs.SysExit, c.typed); err != nil {
		return err
	}
	if err := c.progs.RawTracepoint("sched_process_fork", c.objs.SockProcessFork); err != nil {
		return err
	}
	return c.progs.ProcessMarkers(c.objs.SockProcessExit, c.objs.SockProcessExec)
}

// SkipPID stops (skip) or resumes tracing the net/http connections of
// process pid: a process whose net/http requests another collector sees
// whole. HTTP/1 is skipped from the first bytes, HTTP/2 once the gohttp
// collector records a request on the socket (Config.NetHTTPConns): grpc-go's
// h2c is still traced, as are its other connections (databases, caches).
func (c *Collector) SkipPID(pid uint32, skip bool) error {
	if !skip {
		return c.skip(pid, socketsSkipSKIP_NONE)
	}
	return c.skip(pid, socketsSkipSKIP_HTTP)
}

// skip sets what is not traced of process pid.
func (c *Collector) skip(pid uint32, what socketsSkip) error {
	if c.objs.SkipPids == nil {
		return errors.New("sockets collector not started")
	}
	defer c.bumpEpoch()
	if what != socketsSkipSKIP_NONE {
		return c.objs.SkipPids.Put(pid, uint8(what))
	}
	if err := c.objs.SkipPids.Delete(pid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

// bumpEpoch tells the programs that skip_pids or selected changed: the
// answers cached per descriptor (traced_fd) no longer hold. Called after
// the change.
func (c *Collector) bumpEpoch() {
	c.epochMu.Lock()
	defer c.epochMu.Unlock()
	c.epoch++
	if err := c.objs.SelEpoch.Put(uint32(0), c.epoch); err != nil {
		c.log.Warn("selection epoch", "err", err)
	}
}

// ProcessUpdated implements discovery.Observer: with PerProcess, a
// selected process is traced and another one is not.
func (c *Collector) ProcessUpdated(p discovery.Process, _ []discovery.Mapping) {
	if !c.cfg.PerProcess {
		return
	}
	at := p.Read
	if at == 0 {
		at = ktime.Now()
	}
	c.hold.decide(p.PID, p.Selected, at)
	if !p.Selected && !c.stillRuns(p) {
		// It has exec'd since it was read (a child forked by an
		// unselected program): the new program is decided when its
		// exec is handled; rejecting it now would miss its start.
		return
	}
	c.mark(p.PID, p.Selected)
}

// stillRuns reports whether process p still runs the program it was read
// with.
func (c *Collector) stillRuns(p discovery.Process) bool {
	exe, err := os.Readlink(filepath.Join(c.cfg.ProcRoot, strconv.FormatUint(uint64(p.PID), 10), "exe"))
	return err == nil && strings.TrimSuffix(exe, " (deleted)") == p.Exe
}

// Select traces process pid when the collector traces selected processes
// only: the agent calls it as soon as the kernel reports the exec of a
// selected program, before discovery reads the process from /proc, so that
// the children it forks meanwhile inherit the selection in the kernel.
func (c *Collector) Select(pid uint32) { c.mark(pid, true) }

// ExecDecided settles the records of the program a process exec'd (held
// since the exec) by discovery's decision e.Selected (discovery.Config's
// Decided).
func (c *Collector) ExecDecided(e discovery.Exec) {
	if c.cfg.PerProcess {
		c.hold.decideExec(e.PID, e.Selected, e.KTime)
	}
}

// mark tells the kernel whether process pid is selected. Until it is
// decided, a new process is traced (and what it sent is held here; see
// hold).
func (c *Collector) mark(pid uint32, selected bool) {
	if !c.cfg.PerProcess || c.objs.Selected == nil {
		return
	}
	if err := c.objs.Selected.Put(pid, boolByte(selected)); err != nil {
		c.log.Warn("select process", "pid", pid, "err", err)
	}
	c.bumpEpoch()
	if selected {
		c.forgetOther(pid)
	}
}

// fdOtherBlocks is FD_OTHER_BLOCKS of bpf/sockets.bpf.c: the fd_other
// slots a process has.
const fdOtherBlocks = 32

// forgetOther empties the fd_other slots of process pid (other_slot in
// bpf/sockets.bpf.c), after the epoch was bumped: the TCP sockets the
// programs noted there while the process was not traced (untraced) are
// looked at again now that it is. A slot another process shares is
// emptied too, which only costs it a lookup.
func (c *Collector) forgetOther(pid uint32) {
	slots := c.objs.FdOther.MaxEntries() // FD_OTHER_SLOTS
	for b := range uint32(fdOtherBlocks) {
		if err := c.objs.FdOther.Put((pid+b*0x9E37)%slots, uint64(0)); err != nil {
			c.log.Warn("forget the descriptors of a process", "pid", pid, "err", err)
			return
		}
	}
}

// ProcessExited implements discovery.Observer.
func (c *Collector) ProcessExited(pid uint32, _ time.Time) {
	c.hold.gone(pid, ktime.Now())
	if c.objs.Selected != nil {
		_ = c.objs.Selected.Delete(pid)
	}
	if c.objs.SkipPids != nil && pid != uint32(os.Getpid()) {
		_ = c.objs.SkipPids.Delete(pid)
	}
	if c.objs.SelEpoch != nil {
		c.bumpEpoch()
	}
}

// Close implements collectors.Collector.
func (c *Collector) Close() error {
	err := c.progs.Close()
	c.m.Probes.Set(0)
	return err
}

// Wait implements collectors.Collector.
func (c *Collector) Wait() { c.progs.Wait() }

// decode hands a record to the sink; with PerProcess, through the hold,
// which keeps back the records of undecided processes.
func (c *Collector) decode(raw []byte) {
	if c.cfg.PerProcess {
		if h, ok := wire.ReadHeader(raw); ok {
			c.hold.record(h, raw)
			return
		}
	}
	c.forward(raw)
}

// forward hands a record to the sink.
func (c *Collector) forward(raw []byte) {
	if _, ok := c.recs.Decode(raw); !ok {
		c.m.Read.WithLabelValues("malformed").Inc()
	}
}

// expireHeld gives up on what has been held for too long (hold.expire)
// until ctx is done.
func (c *Collector) expireHeld(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			c.hold.expire(ktime.Now())
		}
	}
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
