package openssl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
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
	"github.com/periscope-apm/periscope/collectors/syscalls"
	"github.com/periscope-apm/periscope/discovery"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/symbols"
)

// Name is the collector's name.
const Name = "openssl"

// functions are the probed functions; the _ex pair is missing before
// OpenSSL 1.1.1 and python's ssl module uses only that pair. SSL_free ends
// an SSL*'s connection (the allocator may give its address to the next
// one); SSL_do_handshake (which SSL_connect and SSL_accept call) marks an
// SSL* seen from its start, for cross-node linking's request ordinals; a
// file without either is still probed (without SSL_do_handshake its
// connections have no ordinal).
var functions = []string{"SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex", "SSL_free", handshakeFunc}

const handshakeFunc = "SSL_do_handshake"

// Config configures the collector.
type Config struct {
	// PerProcess attaches probes to each selected process instead of once
	// per file for every process (used when a process selection is set,
	// so that other processes never hit a probe).
	PerProcess bool
	// Ring is the event ring (default 4 MiB, the reader woken when
	// 512 KiB wait) and its reader.
	loader.Ring
	// Linger keeps a file's probes attached this long after its last
	// known user exits, so that short-lived processes (curl in a loop)
	// are not missed while probes are attached again (default 1m).
	Linger time.Duration
	// Analyzer runs and caches the analysis of files (nil: each is
	// analysed where it is found, and nothing is cached across runs).
	Analyzer *symbols.Analyzer
}

func (c *Config) defaults() {
	c.Ring = c.Ring.WithDefaults(4<<20, 512<<10)
	if c.Linger <= 0 {
		c.Linger = time.Minute
	}
}

// candidate is what is known of a file: whether it defines the functions,
// where their probes go, and its path inside the namespace of the process
// it was found in.
type candidate struct {
	id    symbols.Identity // the file analysed (zero: it could not be read)
	funcs []string
	sites []site
	path  string
	err   error
}

// cacheKind names the schema of analysis in the symbol cache.
const cacheKind = "openssl/3"

// analysis is what the symbol cache keeps of a file: the probed functions
// it defines (none: not OpenSSL) and where their probes go.
type analysis struct {
	Funcs []string `json:"funcs"`
	Sites []site   `json:"sites,omitempty"`
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
	how := attach.How(c.multi, c.cfg.PerProcess, "once per file for all processes")
	return "uprobe+uretprobe on SSL_read/SSL_write(_ex) or the internal function they share, uprobes on SSL_free and SSL_do_handshake, on an emulated instruction, " + how +
		"; the agent's raw syscall pair maps SSL* to socket"
}

// SyscallHook implements syscalls.Hooker: the syscall side of the
// SSL*-to-socket binding (bpf/sslbind.bpf.h) runs in the agent's pair of
// syscall programs on this collector's maps and ring, once started.
func (c *Collector) SyscallHook() syscalls.Hook {
	return syscalls.Hook{Collector: Name, Syscalls: "read/write/readv/writev/recvfrom/sendto/recvmsg/sendmsg inside SSL_*, close",
		Maps: syscalls.Prefixed(Name, map[string]*ebpf.Map{
			"pending_bind": c.objs.PendingBind, "ssl_fd": c.objs.SslFd, "fd_ssl": c.objs.FdSsl, "ssl_fresh": c.objs.SslFresh,
			"events": c.objs.Events, "counters": c.objs.Counters,
		})}
}

// Start implements collectors.Collector.
func (c *Collector) Start(ctx context.Context) error {
	spec, err := loadOpenssl()
	if err != nil {
		return fmt.Errorf("load openssl spec: %w", err)
	}
	c.multi = attach.Multi()
	attach.PrepareSpec(spec, c.multi)
	if err := loader.Load(Name, spec, c.cfg.Ring, &c.objs, nil, c.log); err != nil {
		return err
	}
	c.progs.Own(&c.objs)
	if err := c.attachKernel(); err != nil {
		c.Close()
		return err
	}
	c.progs.Read(ctx, c.objs.Events, c.cfg.Ring, c.decode, c.log)
	c.log.Info("collector started", "path", c.AttachPath())
	return nil
}

// attachKernel attaches the process markers (the syscall side is the
// agent's pair's: SyscallHook).
func (c *Collector) attachKernel() error {
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
	if p.Selected && c.cfg.PerProcess && len(added) == len(p.Maps) && dynamic(p) {
		c.preattach(p)
	}
	for _, m := range added {
		sites := c.inspect(p, m)
		if len(sites) == 0 || !p.Selected {
			continue
		}
		key := attach.Key{File: m.File}
		if c.cfg.PerProcess {
			key.PID = p.PID
		}
		c.use(key, p, m, sites)
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
		if len(cand.sites) > 0 {
			files = append(files, known{id, cand})
		}
	}
	c.mu.Unlock()
	for _, f := range files {
		if id, err := symbols.Stat(p.HostPath(f.cand.path)); err != nil || id != f.id {
			continue
		}
		c.use(attach.Key{File: f.id, PID: p.PID}, p, discovery.Mapping{Path: f.cand.path, File: f.id}, f.cand.sites)
	}
}

// dynamic reports whether p runs a dynamically linked program: the kernel
// maps its ELF interpreter (ld-linux-*.so, ld-musl-*.so) at exec. A
// statically linked one (a Go program) never has libraries loaded for it,
// and preattaching them would only delay its own probes.
func dynamic(p discovery.Process) bool {
	for _, m := range p.Maps {
		if strings.HasPrefix(path.Base(m.Path), "ld-") {
			return true
		}
	}
	return false
}

// inspect says where the probes of the mapped file go (nowhere: it does
// not define the probed functions). Results are cached per file. Shared libraries must export the functions; the main
// executable may also define them in its full symbol table.
func (c *Collector) inspect(p discovery.Process, m discovery.Mapping) []site {
	c.mu.Lock()
	cand, ok := c.files[m.File]
	c.mu.Unlock()
	if ok && (cand.id == symbols.Identity{} || cand.id.Same(p.HostPath(m.Path))) {
		return cand.sites
	}
	cand = candidate{}
	isExe := m.Path == p.Exe
	base := path.Base(m.Path)
	if !isExe && !strings.HasPrefix(base, "lib") {
		return nil
	}
	if isExe && !p.Selected {
		// An executable is probed only for its own processes: reading
		// the full symbol table of every program on the node (a 100 MB
		// Go binary: ~10 MB and tens of ms) would only delay the
		// discovery of the processes that are selected. Libraries are
		// learnt from every process, for preattach.
		return nil
	}
	id, a, err := c.analyse(p.HostPath(m.Path), isExe)
	cand.id = id
	if errors.Is(err, os.ErrNotExist) {
		return nil // gone before it was read: the next process may show it again
	}
	if err != nil {
		c.m.Failed.Inc()
		c.log.Warn("cannot analyse", "file", m.Path, "pid", p.PID, "err", err)
	}
	cand.funcs, cand.sites = a.Funcs, a.Sites
	cand.err = err
	cand.path = m.Path
	c.mu.Lock()
	c.files[m.File] = cand
	c.mu.Unlock()
	return cand.sites
}

func (c *Collector) use(key attach.Key, p discovery.Process, m discovery.Mapping, sites []site) {
	began := time.Now()
	created, err := c.set.Use(key, m.Path, p.PID, func() ([]link.Link, error) {
		return c.attach(p.HostPath(m.Path), key.PID, sites)
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
		probed = append(probed, s.Desc)
		if !s.Cheap {
			expensive++
		}
	}
	c.log.Info("attached", "file", m.Path, "pid", p.PID, "exe", p.Exe, "probes", probed,
		"single_stepped", expensive, "per_process", key.PID != 0, "attach", time.Since(began).Round(time.Microsecond))
}

func (c *Collector) attach(hostPath string, pid uint32, sites []site) ([]link.Link, error) {
	entry := map[entryKind]*ebpf.Program{
		readPlain:  c.objs.SslReadEnter,
		writePlain: c.objs.SslWriteEnter,
		readEx:     c.objs.SslReadExEnter,
		writeEx:    c.objs.SslWriteExEnter,
	}
	var probes []attach.Probe
	for _, s := range sites {
		switch s.Kind {
		case free:
			probes = append(probes, attach.Probe{Name: s.Desc, Offset: s.Offset, Prog: c.objs.SslFree})
			continue
		case handshake:
			probes = append(probes, attach.Probe{Name: s.Desc, Offset: s.Offset, Prog: c.objs.SslHandshake})
			continue
		}
		probes = append(probes,
			attach.Probe{Name: s.Desc, Offset: s.Offset, Prog: entry[s.Kind]},
			attach.Probe{Name: s.Desc, Offset: s.Offset, Prog: c.objs.SslLeave, Return: true})
	}
	return attach.Uprobes(hostPath, pid, probes, c.multi)
}

// analyse finds which probed functions the file at path defines (an
// executable may define them in its full symbol table, a library must
// export them) and plans their probes: from the symbol cache when a file of
// the same identity was analysed before, else under the Analyzer's bounds.
func (c *Collector) analyse(path string, isExe bool) (symbols.Identity, analysis, error) {
	id, err := symbols.Identify(path)
	if err != nil {
		return id, analysis{}, err
	}
	var a analysis
	if c.cfg.Analyzer.Lookup(cacheKind, id, &a) {
		return id, a, nil
	}
	err = c.cfg.Analyzer.Run(path, func() error {
		funcs, err := definedFuncs(path, isExe)
		if err != nil || len(funcs) == 0 {
			a = analysis{}
			return err
		}
		sites, err := plan(path, funcs)
		if err != nil {
			return fmt.Errorf("plan probes for %s: %w", path, err)
		}
		a = analysis{Funcs: funcs, Sites: sites}
		return nil
	})
	if err != nil {
		return id, analysis{}, err
	}
	if err := c.cfg.Analyzer.Store(cacheKind, id, a); err != nil {
		c.log.Debug("cannot cache the analysis", "file", path, "err", err)
	}
	return id, a, nil
}

// definedFuncs lists the probed functions the file defines, or none when
// it lacks a read or a write function.
func definedFuncs(path string, isExe bool) ([]string, error) {
	lookup := symbols.Exported
	if isExe {
		lookup = symbols.Defined
	}
	defined, err := lookup(path, functions...)
	if err != nil {
		return nil, err
	}
	if !(defined["SSL_read"] && defined["SSL_write"]) && !(defined["SSL_read_ex"] && defined["SSL_write_ex"]) {
		return nil, nil
	}
	var funcs []string
	for _, f := range functions {
		if defined[f] {
			funcs = append(funcs, f)
		}
	}
	return funcs, nil
}

// Attachments implements collectors.Attacher.
func (c *Collector) Attachments() []collectors.Attachment { return c.set.Attachments() }
