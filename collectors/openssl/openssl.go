package openssl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/collectors"
	"github.com/periscope-apm/periscope/collectors/attach"
	"github.com/periscope-apm/periscope/collectors/loader"
	"github.com/periscope-apm/periscope/discovery"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/symbols"
)

// Name is the collector's name.
const Name = "openssl"

// functions are the probed functions; the _ex pair is missing before
// OpenSSL 1.1.1 and python's ssl module uses only that pair.
var functions = []string{"SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex"}

// Config configures the collector.
type Config struct {
	// PerProcess attaches probes to each selected process instead of once
	// per file for every process (used when a process selection is set,
	// so that other processes never hit a probe).
	PerProcess bool
	// RingBytes is the size of the event ring buffer (default 4 MiB).
	RingBytes int
	// WakeupBytes wakes the reader when this much data waits (default 512
	// KiB); below it, records are collected every PollInterval.
	WakeupBytes uint64
	// PollInterval is the reader's timer (default 20ms).
	PollInterval time.Duration
	// Linger keeps a file's probes attached this long after its last
	// known user exits, so that short-lived processes (curl in a loop)
	// are not missed while probes are attached again (default 1m).
	Linger time.Duration
}

func (c *Config) defaults() {
	if c.RingBytes <= 0 {
		c.RingBytes = 4 << 20
	}
	if c.WakeupBytes == 0 {
		c.WakeupBytes = 512 << 10
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 20 * time.Millisecond
	}
	if c.Linger <= 0 {
		c.Linger = time.Minute
	}
}

// candidate is what is known of a file: whether it defines the functions,
// and its path inside the namespace of the process it was found in.
type candidate struct {
	funcs []string
	path  string
	err   error
}

// Collector is the OpenSSL collector.
type Collector struct {
	cfg   Config
	sink  events.Sink
	log   *slog.Logger
	clock ktime.Clock

	objs  opensslObjects
	progs loader.Programs
	multi bool // uprobe_multi links

	mu    sync.Mutex
	files map[symbols.FileID]candidate
	set   *attach.Set

	m    *collectors.Metrics
	recs collectors.Records
}

// New returns a collector that sends its events to sink.
func New(cfg Config, sink events.Sink, log *slog.Logger, reg prometheus.Registerer) *Collector {
	cfg.defaults()
	c := &Collector{
		cfg:   cfg,
		sink:  sink,
		log:   log.With("collector", Name),
		clock: ktime.NewClock(),
		files: make(map[symbols.FileID]candidate),
	}
	c.m = collectors.NewMetrics(Name, reg, func() string { return attach.PathName(c.multi) }, func() *ebpf.Map { return c.objs.Counters })
	c.set = attach.NewSet(cfg.Linger, c.m.Probes)
	c.recs = collectors.Records{Sink: sink, Clock: c.clock, Read: c.m.Read}
	return c
}

// Name implements collectors.Collector.
func (c *Collector) Name() string { return Name }

// AttachPath implements collectors.Collector.
func (c *Collector) AttachPath() string {
	mode := "once per file for all processes"
	if c.cfg.PerProcess {
		mode = "per selected process (kernel uprobe PID filter)"
	}
	links := "perf-event uprobes"
	if c.multi {
		links = "uprobe_multi links"
	}
	return "uprobe+uretprobe on SSL_read/SSL_write(_ex) or the internal function they share, on an emulated instruction, as " + links + "; " + mode +
		"; syscall tracepoints read/write/recv*/send*/close map SSL* to socket"
}

// Start implements collectors.Collector.
func (c *Collector) Start(ctx context.Context) error {
	spec, err := loadOpenssl()
	if err != nil {
		return fmt.Errorf("load openssl spec: %w", err)
	}
	c.multi = attach.Multi()
	attach.PrepareSpec(spec, c.multi)
	ringCfg := loader.Ring{Bytes: c.cfg.RingBytes, WakeupBytes: c.cfg.WakeupBytes}
	if err := loader.Load(Name, spec, ringCfg, &c.objs, nil, c.log); err != nil {
		return err
	}
	c.progs.Own(&c.objs)
	if err := c.attachKernel(); err != nil {
		c.Close()
		return err
	}
	c.progs.Read(ctx, c.objs.Events, c.cfg.PollInterval, c.decode, c.log)
	c.log.Info("collector started", "path", c.AttachPath())
	return nil
}

// attachKernel attaches the syscall tracepoints that map an SSL* to its
// socket, and the process markers.
func (c *Collector) attachKernel() error {
	sys := func(name string, prog *ebpf.Program) loader.Tracepoint {
		return loader.Tracepoint{Group: "syscalls", Name: name, Prog: prog}
	}
	err := c.progs.Tracepoints(c.log,
		sys("sys_enter_read", c.objs.SysEnterRead),
		sys("sys_enter_write", c.objs.SysEnterWrite),
		sys("sys_enter_readv", c.objs.SysEnterReadv),
		sys("sys_enter_writev", c.objs.SysEnterWritev),
		sys("sys_enter_recvfrom", c.objs.SysEnterRecvfrom),
		sys("sys_enter_sendto", c.objs.SysEnterSendto),
		sys("sys_enter_recvmsg", c.objs.SysEnterRecvmsg),
		sys("sys_enter_sendmsg", c.objs.SysEnterSendmsg),
		sys("sys_enter_close", c.objs.SysEnterClose),
	)
	if err != nil {
		return err
	}
	return c.progs.ProcessMarkers(c.objs.SslProcessExit, c.objs.SslProcessExec)
}

// Close implements collectors.Collector.
func (c *Collector) Close() error {
	return errors.Join(c.set.Close(), c.progs.Close())
}

// Wait implements collectors.Collector.
func (c *Collector) Wait() { c.progs.Wait() }

// ProcessUpdated implements discovery.Observer: it attaches to the files p
// maps that contain OpenSSL.
func (c *Collector) ProcessUpdated(p discovery.Process, added []discovery.Mapping) {
	if p.Selected && c.cfg.PerProcess && len(added) == len(p.Maps) {
		c.preattach(p)
	}
	for _, m := range added {
		funcs := c.inspect(p, m)
		if len(funcs) == 0 || !p.Selected {
			continue
		}
		key := attach.Key{File: m.File}
		if c.cfg.PerProcess {
			key.PID = p.PID
		}
		c.use(key, p, m, funcs)
	}
}

// ProcessExited implements discovery.Observer.
func (c *Collector) ProcessExited(pid uint32, _ time.Time) { c.set.Exited(pid) }

// preattach gives a newly selected process probes on every OpenSSL file
// already known, before its dynamic loader maps them: the kernel arms a
// per-process uprobe when the file is mapped, so a process that does TLS
// right after it starts (curl) is not missed while discovery notices the
// mapping. Files are matched by identity through the process's own root.
func (c *Collector) preattach(p discovery.Process) {
	type known struct {
		id   symbols.FileID
		cand candidate
	}
	var files []known
	c.mu.Lock()
	for id, cand := range c.files {
		if len(cand.funcs) > 0 {
			files = append(files, known{id, cand})
		}
	}
	c.mu.Unlock()
	for _, f := range files {
		if id, err := symbols.Stat(p.HostPath(f.cand.path)); err != nil || id != f.id {
			continue
		}
		c.use(attach.Key{File: f.id, PID: p.PID}, p, discovery.Mapping{Path: f.cand.path, File: f.id}, f.cand.funcs)
	}
}

// inspect says which probed functions the mapped file defines. Results are
// cached per file. Shared libraries must export the functions; the main
// executable may also define them in its full symbol table.
func (c *Collector) inspect(p discovery.Process, m discovery.Mapping) []string {
	c.mu.Lock()
	cand, ok := c.files[m.File]
	c.mu.Unlock()
	if ok {
		return cand.funcs
	}
	isExe := m.Path == p.Exe
	base := path.Base(m.Path)
	if !isExe && !strings.HasPrefix(base, "lib") {
		return nil
	}
	var defined map[string]bool
	var err error
	if isExe {
		defined, err = symbols.Defined(p.HostPath(m.Path), functions...)
	} else {
		defined, err = symbols.Exported(p.HostPath(m.Path), functions...)
	}
	if err == nil {
		for _, f := range functions {
			if defined[f] {
				cand.funcs = append(cand.funcs, f)
			}
		}
		if !(defined["SSL_read"] && defined["SSL_write"]) && !(defined["SSL_read_ex"] && defined["SSL_write_ex"]) {
			cand.funcs = nil
		}
	}
	cand.err = err
	cand.path = m.Path
	c.mu.Lock()
	c.files[m.File] = cand
	c.mu.Unlock()
	return cand.funcs
}

func (c *Collector) use(key attach.Key, p discovery.Process, m discovery.Mapping, funcs []string) {
	var sites []site
	created, err := c.set.Use(key, m.Path, p.PID, func() ([]link.Link, error) {
		links, s, err := c.attach(p.HostPath(m.Path), key.PID, funcs)
		sites = s
		return links, err
	})
	if attach.Gone(err, key, p) {
		c.log.Debug("process exited before attach", "file", m.Path, "pid", p.PID)
		return
	}
	if err != nil {
		c.m.Failed.Inc()
		c.log.Warn("cannot attach", "file", m.Path, "pid", p.PID, "err", err)
		return
	}
	if !created {
		return
	}
	probed := make([]string, 0, len(sites))
	expensive := 0
	for _, s := range sites {
		probed = append(probed, s.desc)
		if !s.cheap {
			expensive++
		}
	}
	c.log.Info("attached", "file", m.Path, "pid", p.PID, "exe", p.Exe, "probes", probed,
		"single_stepped", expensive, "per_process", key.PID != 0)
}

func (c *Collector) attach(hostPath string, pid uint32, funcs []string) ([]link.Link, []site, error) {
	sites, err := plan(hostPath, funcs)
	if err != nil {
		return nil, nil, fmt.Errorf("plan probes for %s: %w", hostPath, err)
	}
	entry := map[entryKind]*ebpf.Program{
		readPlain:  c.objs.SslReadEnter,
		writePlain: c.objs.SslWriteEnter,
		readEx:     c.objs.SslReadExEnter,
		writeEx:    c.objs.SslWriteExEnter,
	}
	var probes []attach.Probe
	for _, s := range sites {
		probes = append(probes,
			attach.Probe{Name: s.desc, Offset: s.offset, Prog: entry[s.kind]},
			attach.Probe{Name: s.desc, Offset: s.offset, Prog: c.objs.SslLeave, Return: true})
	}
	links, err := attach.Uprobes(hostPath, pid, probes, c.multi)
	if err != nil {
		return nil, nil, err
	}
	return links, sites, nil
}

// Attachments implements collectors.Attacher.
func (c *Collector) Attachments() []collectors.Attachment { return c.set.Attachments() }
