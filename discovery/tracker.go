package discovery

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sort"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/collectors"
	"github.com/periscope-apm/periscope/collectors/loader"
	"github.com/periscope-apm/periscope/collectors/syscalls"
	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/internal/wire"
	"github.com/periscope-apm/periscope/symbols"
)

// processRingBytes is the size of the process event ring buffer.
const processRingBytes = 256 << 10

// Observer learns about selected processes. Calls come from one goroutine.
type Observer interface {
	// ProcessUpdated says that p exists and maps the executable files
	// p.Maps; added are the mappings not reported before (all of them the
	// first time a process is reported). Every process is reported;
	// p.Selected says whether it may be probed.
	ProcessUpdated(p Process, added []Mapping)
	// ProcessExited says that a reported process has exited.
	ProcessExited(pid uint32, at time.Time)
}

// Config configures a Tracker.
type Config struct {
	// ProcRoot is where procfs is mounted (default /proc).
	ProcRoot string
	Selector Selector
	// Rescan is how often /proc is scanned again for anything the events
	// missed (default 30s).
	Rescan time.Duration
	// OnExec, if set, learns of every exec of a selected program as the
	// kernel reports it, before /proc is read: a process may be gone by
	// then, and this is all that names it.
	OnExec func(Exec)
	// Decided, if set, learns of every exec once discovery has decided on
	// the new program (Exec.Selected): by the executable /proc shows, or
	// by the exec's path when the process is gone before it is read.
	// Every exec gets one, also that of a program exec'ing itself, which
	// ProcessUpdated does not report again.
	Decided func(Exec)
	// Progress, if set, learns how far the process events have been
	// handled (ktime.Progress): every exec up to then has been reported
	// to OnExec.
	Progress *ktime.Progress
}

// Exec is a program execution, as the kernel reported it.
type Exec struct {
	PID, PPID uint32
	// Path is the path exec was given (a symbolic link is not resolved).
	Path string
	// Argv is the command line, its first 512 bytes: an argument the cut
	// falls in is left out (but for argv[0]), since a part of it may be a
	// part of a credential that redaction no longer recognises
	// (https://user:pa...).
	Argv []string
	// KTime is when the exec happened: CLOCK_MONOTONIC nanoseconds.
	KTime uint64
	// Selected, given to Config.Decided, says whether the new program is
	// selected.
	Selected bool
}

// Tracker keeps the table of processes.
type Tracker struct {
	cfg   Config
	log   *slog.Logger
	clock ktime.Clock

	// seq makes each change of a process (update, exec, exit) and its
	// report to the observers one step (striped by PID: other processes'
	// changes go on meanwhile): the ring reader and the /proc rescan both
	// change processes, and a check interleaved with another reader's
	// change acts on a state that is gone (an exec's exit of the parent's
	// program, reported after the rescan had attached probes to the new
	// one, detached them while the process ran).
	seq [64]sync.Mutex

	mu        sync.Mutex
	observers []Observer
	procs     map[uint32]*Process
	objs      processObjects
	progs     loader.Programs

	// stale lists the processes whose fork or executable mappings the
	// ring reported in the batch being read, in order, each once: one read
	// of /proc per process and batch (a program starting maps its
	// libraries one by one, each an event), after the batch, unless that
	// process exec'd or exited later in the batch, which makes the read
	// moot. Only the ring's reader uses it.
	stale []uint32

	tracked prometheus.GaugeFunc
	events  *prometheus.CounterVec
	// argvUnread counts exec records without arguments: the kernel side
	// could not read them from the new program's memory.
	argvUnread prometheus.Counter
}

// New returns a Tracker; Start loads its programs.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) *Tracker {
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.Rescan <= 0 {
		cfg.Rescan = 30 * time.Second
	}
	t := &Tracker{
		cfg:   cfg,
		log:   log.With("component", "discovery"),
		clock: ktime.NewClock(),
		procs: make(map[uint32]*Process),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_process_events_total",
			Help: "Process lifecycle events read from the kernel, by type.",
		}, []string{"type"}),
		argvUnread: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "periscope_process_exec_argv_unread_total",
			Help: "Exec events whose command line could not be read from the new program's memory (a process gone before /proc is read then has no process.command).",
		}),
	}
	t.tracked = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "periscope_processes_selected",
		Help: "Running processes the process selection includes.",
	}, func() float64 {
		t.mu.Lock()
		defer t.mu.Unlock()
		n := 0
		for _, p := range t.procs {
			if p.Selected {
				n++
			}
		}
		return float64(n)
	})
	reg.MustRegister(t.tracked, t.events, t.argvUnread,
		collectors.NewDropCounter("process", func() *ebpf.Map { return t.objs.Counters }))
	return t
}

// Subscribe adds an observer. Call it before Start.
func (t *Tracker) Subscribe(o Observer) { t.observers = append(t.observers, o) }

// AttachPath says how discovery follows processes.
const AttachPath = "raw_tracepoint sched_process_{exec,fork,exit} + mmap in the agent's raw syscall pair, /proc rescans"

// ring is the process ring: process events are small and rare, and wake
// the reader at once, so a small ring will do (its pages are resident, in
// the agent's RSS, from the start). Its timer only moves the progress on
// while no event comes (an event wakes the reader anyway): on the
// collectors' 20 ms beat, not a 5 ms one of its own, which woke an idle
// agent 200 times a second (test/bench/results-pipeline.md, cpu7).
func (t *Tracker) ring() loader.Ring {
	return loader.Ring{RingBytes: processRingBytes, PollInterval: loader.DefaultPollInterval, Progress: t.cfg.Progress, Drained: t.updateStale}
}

// Attach loads and attaches the process programs; what they report waits
// in the ring until Start. The agent attaches them before any collector's
// process markers: on the same tracepoint, programs run in the order they
// were attached, so that an exec is in discovery's ring, stamped, before
// any collector's ring marks it (the correlator names what follows a
// marker by discovery's record, which it can then wait for).
func (t *Tracker) Attach() error {
	spec, err := loadProcess()
	if err != nil {
		return fmt.Errorf("load process spec: %w", err)
	}
	if err := loader.Load("process", spec, t.ring(), &t.objs, nil, t.log); err != nil {
		return err
	}
	t.progs.Own(&t.objs)
	err = errors.Join(
		t.progs.RawTracepoint("sched_process_exec", t.objs.ProcessExec),
		t.progs.RawTracepoint("sched_process_fork", t.objs.ProcessFork),
		t.progs.RawTracepoint("sched_process_exit", t.objs.ProcessExit),
	)
	if err != nil {
		t.Close()
		return err
	}
	t.log.Info("process discovery attached", "path", AttachPath)
	return nil
}

// SyscallHook implements syscalls.Hooker: executable file mappings are
// reported in discovery's ring by the agent's pair of syscall programs,
// once attached.
func (t *Tracker) SyscallHook() syscalls.Hook {
	return syscalls.Hook{Collector: "discovery", Syscalls: "mmap with PROT_EXEC",
		Maps: syscalls.Prefixed("discovery", map[string]*ebpf.Map{"events": t.objs.Events, "counters": t.objs.Counters})}
}

// Start attaches the process programs unless Attach did, reports the
// processes that already run, and follows changes until ctx is done or
// Close is called.
func (t *Tracker) Start(ctx context.Context) error {
	if t.objs.Events == nil {
		if err := t.Attach(); err != nil {
			return err
		}
	}
	t.progs.Read(ctx, t.objs.Events, t.ring(), t.handle, t.log)
	t.scan()
	go t.rescanLoop(ctx)
	return nil
}

// Close detaches the programs and frees them. The reader stops on its own
// once the caller's context is done.
func (t *Tracker) Close() error { return t.progs.Close() }

// Processes returns a snapshot of the known processes, by PID.
func (t *Tracker) Processes() []Process {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Process, 0, len(t.procs))
	for _, p := range t.procs {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

func (t *Tracker) rescanLoop(ctx context.Context) {
	tick := time.NewTicker(t.cfg.Rescan)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.scan()
		}
	}
}

// scan walks /proc: new processes are reported, known ones are checked for
// new mappings, and vanished ones (whose exit event was lost) are removed.
func (t *Tracker) scan() {
	pids, err := listPIDs(t.cfg.ProcRoot)
	if err != nil {
		t.log.Warn("scan processes", "err", err)
		return
	}
	listed := make(map[uint32]bool, len(pids))
	for _, pid := range pids {
		listed[pid] = true
		t.update(pid)
	}
	t.sweep(listed)
}

// sweep removes the processes of the table that /proc did not list and
// that are gone now. A process born during the scan was not listed, but
// its fork or exec event may have added it meanwhile: it stays (removing
// it would detach its probes while it runs).
func (t *Tracker) sweep(listed map[uint32]bool) {
	t.mu.Lock()
	var unlisted []uint32
	for pid := range t.procs {
		if !listed[pid] {
			unlisted = append(unlisted, pid)
		}
	}
	t.mu.Unlock()
	for _, pid := range unlisted {
		unlock := t.lock(pid)
		if _, err := os.Stat(procDir(t.cfg.ProcRoot, pid)); errors.Is(err, fs.ErrNotExist) {
			t.exitedLocked(pid, time.Now())
		}
		unlock()
	}
}

var (
	execSize     = unsafe.Sizeof(processExecEvent{})
	offExecPPID  = unsafe.Offsetof(processExecEvent{}.Ppid)
	offExecNArgs = unsafe.Offsetof(processExecEvent{}.ArgsLen)
	offExecPath  = unsafe.Offsetof(processExecEvent{}.Filename)
	offExecArgs  = unsafe.Offsetof(processExecEvent{}.Args)
	execPathCap  = len(processExecEvent{}.Filename)
	execArgsCap  = len(processExecEvent{}.Args)
)

// decodeExec reads an exec record.
func decodeExec(raw []byte) (Exec, bool) {
	if uintptr(len(raw)) < execSize {
		return Exec{}, false
	}
	h, _ := wire.ReadHeader(raw)
	e := Exec{PID: h.PID, PPID: binary.NativeEndian.Uint32(raw[offExecPPID:]), KTime: h.TS}
	path := raw[offExecPath : offExecPath+uintptr(execPathCap)]
	if i := bytes.IndexByte(path, 0); i >= 0 {
		path = path[:i]
	}
	e.Path = string(path)
	n := min(int(binary.NativeEndian.Uint32(raw[offExecNArgs:])), execArgsCap)
	args := raw[offExecArgs : offExecArgs+uintptr(n)]
	cut := n == execArgsCap && args[n-1] != 0
	if args = bytes.TrimRight(args, "\x00"); len(args) > 0 {
		for _, a := range bytes.Split(args, []byte{0}) {
			e.Argv = append(e.Argv, string(a))
		}
	}
	if cut && len(e.Argv) > 1 {
		e.Argv = e.Argv[:len(e.Argv)-1]
	}
	return e, true
}

func (t *Tracker) handle(raw []byte) {
	if len(raw) < wire.ProcEventSize {
		return
	}
	h, _ := wire.ReadHeader(raw)
	pid := h.PID
	switch h.Type {
	case wire.EventExec:
		t.events.WithLabelValues("exec").Inc()
		t.unmarkStale(pid)
		if lag := time.Since(t.clock.Time(h.TS)); lag > slowEvent {
			t.log.Debug("exec event read late", "pid", pid, "lag", lag)
		}
		e, ok := decodeExec(raw)
		if ok && len(e.Argv) == 0 {
			t.argvUnread.Inc()
		}
		matched := ok && t.cfg.Selector.Match(e.Path)
		if matched && t.cfg.OnExec != nil {
			t.cfg.OnExec(e)
		}
		t.reexec(pid)
		if ok && t.cfg.Decided != nil {
			e.Selected = t.decided(pid, matched)
			t.cfg.Decided(e)
		}
	case wire.EventFork:
		t.events.WithLabelValues("fork").Inc()
		t.markStale(pid)
	case wire.EventMmap:
		t.events.WithLabelValues("mmap").Inc()
		t.markStale(pid)
	case wire.EventExit:
		t.events.WithLabelValues("exit").Inc()
		t.unmarkStale(pid)
		t.exited(pid, t.clock.Time(h.TS))
	}
}

// markStale notes that process pid must be read again once the batch has
// been handled.
func (t *Tracker) markStale(pid uint32) {
	if !slices.Contains(t.stale, pid) {
		t.stale = append(t.stale, pid)
	}
}

// unmarkStale forgets that process pid is stale: it exec'd or exited, and
// a read of /proc now could only show the new program (which the exec's
// handling reads) or nothing.
func (t *Tracker) unmarkStale(pid uint32) {
	if i := slices.Index(t.stale, pid); i >= 0 {
		t.stale = slices.Delete(t.stale, i, i+1)
	}
}

// updateStale reads the processes the batch marked stale, in the order
// they were marked.
func (t *Tracker) updateStale() {
	for _, pid := range t.stale {
		t.update(pid)
	}
	t.stale = t.stale[:0]
}

// reexec handles an exec: the process keeps its PID but is a new program,
// so observers see the old one exit and the new one appear. Unless the
// table already describes the new program: the fork event of a child that
// execs at once is often read after the exec. Reporting an exit then would
// make the collectors detach the probes they just attached and attach them
// again, and a process that does its work at once (curl) would lose what
// it did in between.
func (t *Tracker) reexec(pid uint32) {
	defer t.lock(pid)()
	t.mu.Lock()
	old, known := t.procs[pid]
	t.mu.Unlock()
	if known {
		if p, err := readProcess(t.cfg.ProcRoot, pid); err != nil || !sameProgram(*old, p) {
			t.exitedLocked(pid, time.Now())
		}
	}
	t.updateLocked(pid)
}

// decided returns whether process pid, just exec'd and handled, is
// selected: as the table says when it could be read (after the exec),
// else as its exec's path matched.
func (t *Tracker) decided(pid uint32, matched bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.procs[pid]; ok {
		return p.Selected
	}
	return matched
}

// sameProgram reports whether two reads of a process show the same
// executable file.
func sameProgram(a, b Process) bool {
	if a.Exe != b.Exe {
		return false
	}
	fa, oka := exeFile(a)
	fb, okb := exeFile(b)
	return oka && okb && fa == fb
}

// exeFile returns the file identity of a process's executable mapping.
func exeFile(p Process) (symbols.FileID, bool) {
	for _, m := range p.Maps {
		if m.Path == p.Exe {
			return m.File, true
		}
	}
	return symbols.FileID{}, false
}

// lock takes the changes of process pid (seq) and returns their unlock.
func (t *Tracker) lock(pid uint32) func() {
	m := &t.seq[pid%uint32(len(t.seq))]
	m.Lock()
	return m.Unlock
}

// update reads a process and reports it if it is new or maps files it did
// not map before.
func (t *Tracker) update(pid uint32) {
	defer t.lock(pid)()
	t.updateLocked(pid)
}

func (t *Tracker) updateLocked(pid uint32) {
	if pid == uint32(os.Getpid()) {
		return
	}
	p, err := readProcess(t.cfg.ProcRoot, pid)
	if err != nil {
		return // gone already, or a kernel thread
	}
	p.Selected = t.cfg.Selector.Match(p.Exe)
	t.mu.Lock()
	old, known := t.procs[pid]
	obs := t.observers
	t.mu.Unlock()
	var added []Mapping
	if !known {
		added = p.Maps
	} else {
		have := make(map[symbols.FileID]bool, len(old.Maps))
		for _, m := range old.Maps {
			have[m.File] = true
		}
		for _, m := range p.Maps {
			if !have[m.File] {
				added = append(added, m)
			}
		}
	}
	if !known || len(added) > 0 {
		for _, o := range obs {
			began := time.Now()
			o.ProcessUpdated(p, added)
			if d := time.Since(began); d > slowEvent {
				t.log.Debug("slow observer", "pid", pid, "exe", p.Exe, "observer", fmt.Sprintf("%T", o), "took", d)
			}
		}
	}
	// Listed (Processes: the agent's /status) once every observer has
	// handled it: a process listed new has all its probes attached, and
	// whoever waits for that (a test before it drives the program) does
	// not see one collector's attachment while another's is under way.
	// The per-process lock keeps its exit from overtaking this.
	t.mu.Lock()
	t.procs[pid] = &p
	t.mu.Unlock()
}

// slowEvent is how long handling an event may take before it is logged
// (at debug level): what delays the probes of a new process.
const slowEvent = 10 * time.Millisecond

func (t *Tracker) exited(pid uint32, at time.Time) {
	defer t.lock(pid)()
	t.exitedLocked(pid, at)
}

func (t *Tracker) exitedLocked(pid uint32, at time.Time) {
	t.mu.Lock()
	_, known := t.procs[pid]
	delete(t.procs, pid)
	obs := t.observers
	t.mu.Unlock()
	if !known {
		return
	}
	for _, o := range obs {
		o.ProcessExited(pid, at)
	}
}
