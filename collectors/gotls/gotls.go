package gotls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
const Name = "gotls"

// The probed functions.
const (
	fnWrite   = "crypto/tls.(*Conn).Write"
	fnRead    = "crypto/tls.(*Conn).Read"
	fnMemmove = "runtime.memmove"
)

// handshakes are the functions net/http calls to run a connection's TLS
// handshake (HandshakeContext is usually inlined into a call of
// handshakeContext).
var handshakes = []string{"crypto/tls.(*Conn).HandshakeContext", "crypto/tls.(*Conn).handshakeContext",
	"crypto/tls.(*Conn).Handshake"}

// fnServe is net/http's server connection loop: its entry marks the
// connection.
const fnServe = "net/http.(*conn).serve"

// netHTTPHandshakers are the net/http functions that run the handshake of
// the client connections net/http owns: the transport's addTLS (in a
// closure whose name varies by version).
var netHTTPHandshakers = []string{"net/http.(*persistConn).addTLS",
	"net/http.(*persistConn).addTLS.func1", "net/http.(*persistConn).addTLS.func2",
	"net/http.(*persistConn).addTLS.func3"}

// maxBinaries is MAX_BINARIES in bpf/go.bpf.h.
const maxBinaries = 256

// Config configures the collector.
type Config struct {
	// PerProcess attaches to each selected process instead of once per
	// executable for every process running it.
	PerProcess bool
	// Ring is the event ring (default 4 MiB, the reader woken when
	// 512 KiB wait) and its reader.
	loader.Ring
	// Linger keeps an executable's probes a while after its last process
	// exits (default 1m).
	Linger time.Duration
	// Analyzer runs and caches the analysis of executables (nil: each is
	// analysed where it is found, and nothing is cached across runs).
	Analyzer *symbols.Analyzer
	// LeaveNetHTTP leaves the connections whose TLS handshake net/http
	// runs to the gohttp collector, which reports their requests whole.
	LeaveNetHTTP bool
	// NetHTTPConns is the gohttp collector's record of net/http's sockets
	// (gohttp.NewNetHTTPConns): connections found there are left to it
	// too, whatever opened them (nil: only the marks above).
	NetHTTPConns *ebpf.Map
	// Watched, if set, is called for each process once its probes are
	// in place, before it is listed as attached (internal/preopen).
	Watched func(pid uint32)
}

func (c *Config) defaults() {
	c.Ring = c.Ring.WithDefaults(4<<20, 512<<10)
	if c.Linger <= 0 {
		c.Linger = time.Minute
	}
}

// The programs of the probes, by name (as sites name them in the cache).
const (
	progWrite    = "write"
	progRead     = "read"
	progReadCopy = "read_copy"
	progNetHTTP  = "nethttp"
	progServe    = "nethttp_serve"
)

// site is one probe: an instruction's file offset and its program.
type site struct {
	Fn     string `json:"fn"`
	Offset uint64 `json:"offset"`
	Prog   string `json:"prog"`
}

// plan is what the collector knows of one executable.
type plan struct {
	attach.GoPlan
	sites   []site
	goVer   string
	offsets symbols.Offsets
	source  string
}

var errNoTLS = errors.New("does not use crypto/tls")

// errNetHTTPOnly is the plan of an executable whose only crypto/tls
// connections are net/http's, which the gohttp collector reports whole:
// probing crypto/tls there would cost the program hits on every Read and
// Write for no byte kept.
var errNetHTTPOnly = errors.New("crypto/tls used by net/http only")

// cacheKind names the schema of analysis in the symbol cache.
const cacheKind = "gotls/3"

// analysis is what the symbol cache keeps of an executable.
type analysis struct {
	Skip    string          `json:"skip,omitempty"` // "not_go", "no_tls" or "nethttp_only"
	GoVer   string          `json:"go_version,omitempty"`
	Sites   []site          `json:"sites,omitempty"`
	Offsets symbols.Offsets `json:"offsets"`
	Source  string          `json:"offsets_source,omitempty"`
}

// Collector is the Go crypto/tls collector.
type Collector struct {
	cfg   Config
	sink  events.Sink
	log   *slog.Logger
	clock ktime.Clock

	*attach.GoCollector[*plan]
	objs  gotlsObjects
	multi bool

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
	}
	c.m = collectors.NewMetrics(Name, reg, func() string { return attach.PathName(c.multi) }, func() *ebpf.Map { return c.objs.Counters })
	an := attach.Analysis[*plan, analysis]{
		Analyzer:  cfg.Analyzer,
		Kind:      c.cacheKind(),
		Log:       c.log,
		Inspect:   func(path string) *plan { return inspect(path, cfg.LeaveNetHTTP) },
		Failed:    failed,
		Plan:      analysis.plan,
		Cacheable: cacheable,
	}
	c.GoCollector = attach.NewGoCollector[*plan](c.log, cfg.PerProcess, cfg.Linger, c.m, maxBinaries, attach.GoHooks[*plan]{
		Analyse: func(path string) *plan {
			pl := an.Analyse(path)
			if errors.Is(pl.Err, errNetHTTPOnly) {
				c.log.Info("crypto/tls left to gohttp: net/http makes the executable's only TLS connections", "exe", path)
			}
			return pl
		},
		Load: c.loadOffsets,
		Expected: func(err error) bool {
			return errors.Is(err, errNoTLS) || errors.Is(err, errNetHTTPOnly)
		},
		Attach:  c.attach,
		Watched: cfg.Watched,
	})
	c.recs = collectors.Records{Sink: sink, Clock: c.clock, Read: c.m.Read}
	return c
}

// Name implements collectors.Collector.
func (c *Collector) Name() string { return Name }

// AttachPath implements collectors.Collector.
func (c *Collector) AttachPath() string {
	how := attach.How(c.multi, c.cfg.PerProcess, "once per executable for all processes")
	s := "uprobes on the stack-check branch of crypto/tls (*Conn).Write and (*Conn).Read and on Read's CALL runtime.memmove " +
		"(no RET probes, no uretprobes), " + how
	if c.cfg.LeaveNetHTTP {
		s += "; net/http's connections (uprobes on the entry of (*conn).serve and on addTLS's CALL of the handshake) left to gohttp, " +
			"and no probe on executables whose only TLS connections are net/http's"
	}
	return s
}

// Start implements collectors.Collector.
func (c *Collector) Start(ctx context.Context) error {
	spec, err := loadGotls()
	if err != nil {
		return fmt.Errorf("load gotls spec: %w", err)
	}
	c.multi = attach.Multi()
	attach.PrepareSpec(spec, c.multi)
	if err := loader.Load(Name, spec, c.cfg.Ring, &c.objs, loader.Sharing(loader.NetHTTPConns, c.cfg.NetHTTPConns), c.log); err != nil {
		return err
	}
	c.Progs.Own(&c.objs)
	if err := c.Progs.ProcessMarkers(c.objs.GoTlsProcessExit, c.objs.GoTlsProcessExec); err != nil {
		c.Close()
		return err
	}
	c.Progs.Read(ctx, c.objs.Events, c.cfg.Ring, c.decode, c.log)
	c.log.Info("collector started", "path", c.AttachPath())
	return nil
}

// SyscallHook implements syscalls.Hooker: the close of a connection's
// socket ends it, seen by the agent's pair of syscall programs
// (bpf/gotlsconn.bpf.h) on this collector's maps and ring, once started.
func (c *Collector) SyscallHook() syscalls.Hook {
	maps := syscalls.Prefixed(Name, map[string]*ebpf.Map{
		"conns": c.objs.Conns, "fd_conn": c.objs.FdConn, "plain_protos": c.objs.PlainProtos,
		"events": c.objs.Events, "counters": c.objs.Counters,
	})
	if c.cfg.NetHTTPConns != nil {
		maps[loader.NetHTTPConns] = c.cfg.NetHTTPConns
	}
	return syscalls.Hook{Collector: Name, Syscalls: "close", Maps: maps}
}

// ProcessUpdated implements discovery.Observer: a selected process whose
// executable is a Go program with crypto/tls gets probes.
func (c *Collector) ProcessUpdated(p discovery.Process, added []discovery.Mapping) {
	c.Update(p, added, func(a attach.Attached[*plan]) {
		if !a.Created {
			return
		}
		probes := make([]string, 0, len(a.Plan.sites))
		for _, s := range a.Plan.sites {
			probes = append(probes, s.Fn)
		}
		c.log.Info("attached", "exe", a.Mapping.Path, "pid", a.Process.PID, "go", a.Plan.goVer, "offsets", a.Plan.source,
			"probes", probes, "per_process", a.Key.PID != 0, "attach", a.Attach.Round(time.Microsecond))
	})
}

// decode hands one ring record to the sink.
func (c *Collector) decode(raw []byte) {
	if _, ok := c.recs.Decode(raw); !ok {
		c.m.Read.WithLabelValues("malformed").Inc()
	}
}

// cacheKind distinguishes plans with and without the net/http probes.
func (c *Collector) cacheKind() string {
	if c.cfg.LeaveNetHTTP {
		return cacheKind + "+nethttp"
	}
	return cacheKind
}

func (a analysis) plan() *plan {
	switch a.Skip {
	case "not_go":
		return failed(fmt.Errorf("cached: %w", symbols.ErrNotGo))
	case "no_tls":
		return failed(errNoTLS)
	case "nethttp_only":
		return failed(fmt.Errorf("cached: %w", errNetHTTPOnly))
	}
	return &plan{sites: a.Sites, goVer: a.GoVer, offsets: a.Offsets, source: a.Source + ", cached"}
}

// failed is the plan of an executable not probed, for err.
func failed(err error) *plan { return &plan{GoPlan: attach.GoPlan{Err: err}} }

func cacheable(pl *plan) (analysis, bool) {
	switch {
	case errors.Is(pl.Err, symbols.ErrNotGo):
		return analysis{Skip: "not_go"}, true
	case errors.Is(pl.Err, errNoTLS):
		return analysis{Skip: "no_tls"}, true
	case errors.Is(pl.Err, errNetHTTPOnly):
		return analysis{Skip: "nethttp_only"}, true
	case pl.Err != nil:
		return analysis{}, false
	}
	return analysis{GoVer: pl.goVer, Sites: pl.sites, Offsets: pl.offsets, Source: pl.source}, true
}

// inspect plans the probes of the Go executable at path.
func inspect(path string, leaveNetHTTP bool) *plan {
	b, err := symbols.GoInfo(path)
	if err != nil {
		return failed(err)
	}
	defer b.Close()
	names := append([]string{fnWrite, fnRead, fnMemmove}, handshakes...)
	if leaveNetHTTP {
		names = append(append(names, fnServe), netHTTPHandshakers...)
	}
	if err := b.FindFuncs(names...); err != nil {
		return failed(err)
	}
	sites, err := tlsSites(b)
	if err != nil {
		return failed(err)
	}
	if leaveNetHTTP && netHTTPOnly(b) {
		return failed(errNetHTTPOnly)
	}
	pl := &plan{goVer: b.GoVersionRaw, sites: sites}
	if leaveNetHTTP {
		s, err := netHTTPSites(b)
		if err != nil {
			return failed(err)
		}
		pl.sites = append(pl.sites, s...)
	}
	o, source, err := b.OffsetsWithSource()
	if err != nil {
		return failed(err)
	}
	for name, off := range map[string]int64{"crypto/tls.Conn.conn": o.TLSConnConn, "net.TCPConn.conn": o.TCPConnConn,
		"net.conn.fd": o.NetConnFD, "net.netFD.pfd": o.NetFDPFD, "internal/poll.FD.Sysfd": o.PollFDSysfd} {
		if off == symbols.Absent {
			return failed(fmt.Errorf("no offset for %s", name))
		}
	}
	pl.offsets, pl.source = o, string(source)
	return pl
}

// netHTTPOnly tells whether every function that can make a crypto/tls
// connection in the executable is net/http's (its server's listener and
// h2c, its transport's dials). It errs towards no: any other user (a
// database driver, grpc-go, x/net/http2, a program's own dialer, even one
// only net/http calls, such as a Transport.DialTLSContext) or code it
// cannot read keeps the probes, whose marks and the gohttp claim map then
// leave net/http's connections to gohttp.
func netHTTPOnly(b *symbols.GoBinary) bool {
	users, err := b.TLSUsers()
	if err != nil {
		return false
	}
	for _, u := range users {
		if !strings.HasPrefix(u, "net/http.") && !strings.HasPrefix(u, "net/http/internal/http2.") {
			return false
		}
	}
	return true
}

// tlsSites are the probes on Write's and Read's entries and on Read's
// copy of the plaintext.
func tlsSites(b *symbols.GoBinary) ([]site, error) {
	var sites []site
	for _, fn := range []struct{ name, prog string }{{fnWrite, progWrite}, {fnRead, progRead}} {
		f, err := b.Func(fn.name)
		if errors.Is(err, symbols.ErrNoFunc) {
			return nil, errNoTLS
		}
		if err != nil {
			return nil, err
		}
		off, err := b.EntryProbe(f)
		if err != nil {
			return nil, err
		}
		sites = append(sites, site{Fn: fn.name, Offset: off, Prog: fn.prog})
	}
	read, _ := b.Func(fnRead)
	memmove, err := b.Func(fnMemmove)
	if err != nil {
		return nil, err
	}
	copies, err := b.CallSites(read, memmove.Addr)
	if err != nil {
		return nil, err
	}
	if len(copies) != 1 {
		// One copy of the decrypted record into the caller's buffer in
		// every Go release seen (1.17 to 1.27); anything else is a Read
		// this collector does not understand.
		return nil, fmt.Errorf("%s: %d calls of %s, want 1", fnRead, len(copies), fnMemmove)
	}
	return append(sites, site{Fn: fnRead + " CALL " + fnMemmove, Offset: copies[0], Prog: progReadCopy}), nil
}

// netHTTPSites are the probes that mark net/http's connections: the entry
// of the server's connection loop and the client's calls to the TLS
// handshake.
func netHTTPSites(b *symbols.GoBinary) ([]site, error) {
	var sites []site
	if f, err := b.Func(fnServe); err == nil {
		off, err := b.EntryProbe(f)
		if err != nil {
			return nil, err
		}
		sites = append(sites, site{Fn: fnServe, Offset: off, Prog: progServe})
	} else if !errors.Is(err, symbols.ErrNoFunc) {
		return nil, err
	}
	var targets []uint64
	for _, name := range handshakes {
		if f, err := b.Func(name); err == nil {
			targets = append(targets, f.Addr)
		}
	}
	for _, name := range netHTTPHandshakers {
		f, err := b.Func(name)
		if errors.Is(err, symbols.ErrNoFunc) {
			continue
		}
		if err != nil {
			return nil, err
		}
		calls, err := b.CallSites(f, targets...)
		if err != nil {
			return nil, err
		}
		for _, off := range calls {
			sites = append(sites, site{Fn: name + " CALL handshake", Offset: off, Prog: progNetHTTP})
		}
	}
	return sites, nil
}

// loadOffsets stores the plan's field offsets at its index in the kernel.
func (c *Collector) loadOffsets(pl *plan) error {
	if c.objs.Offsets == nil {
		return errors.New("collector not started")
	}
	o := pl.offsets
	v := gotlsGoOffsets{
		TlsConnConn: o.TLSConnConn,
		TcpConnConn: o.TCPConnConn,
		NetConnFd:   o.NetConnFD,
		NetfdPfd:    o.NetFDPFD,
		PollfdSysfd: o.PollFDSysfd,
		ConnRwc:     o.ConnRWC,
	}
	if err := c.objs.Offsets.Put(pl.Index, &v); err != nil {
		return fmt.Errorf("store offsets: %w", err)
	}
	return nil
}

func (c *Collector) program(name string) *ebpf.Program {
	switch name {
	case progWrite:
		return c.objs.GoTlsWrite
	case progRead:
		return c.objs.GoTlsRead
	case progReadCopy:
		return c.objs.GoTlsReadCopy
	case progNetHTTP:
		return c.objs.GoTlsNethttp
	case progServe:
		return c.objs.GoTlsNethttpServe
	}
	return nil
}

func (c *Collector) attach(hostPath string, pid uint32, pl *plan) ([]link.Link, error) {
	probes := make([]attach.Probe, 0, len(pl.sites))
	for _, s := range pl.sites {
		prog := c.program(s.Prog)
		if prog == nil {
			return nil, fmt.Errorf("%s: no program %q", s.Fn, s.Prog)
		}
		probes = append(probes, attach.Probe{Name: s.Fn, Offset: s.Offset, Prog: prog, Cookie: uint64(pl.Index)})
	}
	return attach.Uprobes(hostPath, pid, probes, c.multi)
}
