package gohttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/collectors"
	"github.com/periscope-apm/periscope/collectors/attach"
	"github.com/periscope-apm/periscope/collectors/loader"
	"github.com/periscope-apm/periscope/discovery"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/intern"
	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/symbols"
)

// Name is the collector's name.
const Name = "gohttp"

// The probed functions.
const (
	fnServeHTTP     = "net/http.serverHandler.ServeHTTP"
	fnFinishRequest = "net/http.(*response).finishRequest"
	fnRoundTrip     = "net/http.(*persistConn).roundTrip"
	// HTTP/2 as net/http bundles it (Go ≤ 1.26), and as Go 1.27 moved it
	// into net/http/internal/http2. Programs built with the
	// nethttpomithttp2 tag have neither.
	fnH2HandlerDone      = "net/http.(*http2responseWriter).handlerDone"
	fnH2HandlerDoneGo127 = "net/http/internal/http2.(*responseWriter).handlerDone"
	fnH2RoundTrip        = "net/http.(*http2ClientConn).RoundTrip"
	// From Go 1.24 RoundTrip wraps roundTrip and is inlined where the
	// transport calls it: the probes go on roundTrip (same arguments).
	fnH2RoundTripInner = "net/http.(*http2ClientConn).roundTrip"
	fnH2RoundTripGo127 = "net/http/internal/http2.(*ClientConn).roundTrip"
)

// probedFuncs are the functions inspect looks up.
var probedFuncs = []string{fnServeHTTP, fnFinishRequest, fnRoundTrip, fnH2HandlerDone, fnH2HandlerDoneGo127,
	fnH2RoundTrip, fnH2RoundTripInner, fnH2RoundTripGo127}

// maxBinaries is MAX_BINARIES in bpf/go.bpf.h: distinct Go executables
// whose offsets are loaded at once.
const maxBinaries = 256

// Config configures the collector.
type Config struct {
	// PerProcess attaches to each selected process instead of once per
	// executable for every process running it.
	PerProcess bool
	// Ring is the event ring (default 2 MiB, the reader woken when
	// 256 KiB wait) and its reader.
	loader.Ring
	// Linger keeps an executable's probes a while after its last process
	// exits (default 1m).
	Linger time.Duration
	// Analyzer runs and caches the analysis of executables (nil: each
	// is analysed where it is found, and nothing is cached across runs).
	Analyzer *symbols.Analyzer
	// Probed, if set, learns of each process whose requests the
	// collector sees whole from now on (so that another collector can
	// leave them alone: one request, one span).
	Probed func(pid uint32)
	// Watched, if set, is called for each process once its probes are
	// in place, before it is listed as attached (internal/preopen).
	Watched func(pid uint32)
	// NetHTTPConns receives the socket of every request's connection
	// (NewNetHTTPConns), for the collectors that leave net/http's
	// connections to this one (nil: a map of its own, read by none).
	NetHTTPConns *ebpf.Map
}

// NewNetHTTPConns makes the map in which the collector records net/http's
// sockets, to be shared through the NetHTTPConns fields of its Config and
// of the gotls and sockets collectors' Configs.
func NewNetHTTPConns() (*ebpf.Map, error) {
	spec, err := loadGohttp()
	if err != nil {
		return nil, fmt.Errorf("load gohttp spec: %w", err)
	}
	m, err := ebpf.NewMap(spec.Maps[loader.NetHTTPConns])
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", loader.NetHTTPConns, err)
	}
	return m, nil
}

func (c *Config) defaults() {
	c.Ring = c.Ring.WithDefaults(2<<20, 256<<10)
	if c.Linger <= 0 {
		c.Linger = time.Minute
	}
}

// plan is what the collector knows of one executable.
type plan struct {
	attach.GoPlan
	sites   []site
	goVer   string
	offsets symbols.Offsets
	source  string // where the offsets came from
	// headerMap is how the binary lays out Request.Header (mapNone:
	// incoming traceparent headers are not read, for headerErr).
	headerMap mapLayout
	headerErr error
	// h2Server and h2Client say whether HTTP/2 requests are traced.
	h2Server, h2Client bool
}

// site is one probe: an instruction's file offset and its program.
type site struct {
	Fn     string `json:"fn"`
	Offset uint64 `json:"offset"`
	Prog   string `json:"prog"` // a name of progNames
}

// The programs of the probes, by name (as sites name them in the cache).
const (
	progServeHTTP       = "serve_http"
	progFinishRequest   = "finish_request"
	progH2HandlerDone   = "h2_handler_done"
	progRoundTrip       = "round_trip"
	progH2RoundTrip     = "h2_round_trip"
	progH2iRoundTrip    = "h2i_round_trip"
	progRoundTripReturn = "round_trip_return"
)

// program returns the program a site names (nil for an unknown name).
func (o *gohttpObjects) program(name string) *ebpf.Program {
	switch name {
	case progServeHTTP:
		return o.GoServeHttp
	case progFinishRequest:
		return o.GoFinishRequest
	case progH2HandlerDone:
		return o.GoH2HandlerDone
	case progRoundTrip:
		return o.GoRoundTrip
	case progH2RoundTrip:
		return o.GoH2RoundTrip
	case progH2iRoundTrip:
		return o.GoH2iRoundTrip
	case progRoundTripReturn:
		return o.GoRoundTripReturn
	}
	return nil
}

// Collector is the Go net/http collector.
type Collector struct {
	cfg   Config
	sink  events.Sink
	log   *slog.Logger
	clock ktime.Clock

	*attach.GoCollector[*plan]
	objs  gohttpObjects
	multi bool // uprobe_multi links

	m       *collectors.Metrics
	recs    collectors.Records
	lookups *prometheus.CounterVec // searches for Traceparent, by result
	// byLookup holds lookups' children by headerLookup, resolved once: a
	// label lookup per request cost ~5% of the agent's CPU under load.
	byLookup [headerFault + 1]prometheus.Counter
	// strings keeps the methods, paths and hosts of request ends, which
	// repeat (read by the ring's one reader goroutine).
	strings *intern.Table
}

// New returns a collector that sends its events to sink.
func New(cfg Config, sink events.Sink, log *slog.Logger, reg prometheus.Registerer) *Collector {
	cfg.defaults()
	c := &Collector{
		cfg:   cfg,
		sink:  sink,
		log:   log.With("collector", Name),
		clock: ktime.NewClock(),
		// Paths up to the record's capacity (256), 1,024 of them: at
		// most 256 KiB.
		strings: intern.New(1024, 256),
	}
	c.m = collectors.NewMetrics(Name, reg, func() string { return attach.PathName(c.multi) }, func() *ebpf.Map { return c.objs.Counters })
	an := attach.Analysis[*plan, analysis]{
		Analyzer: cfg.Analyzer, Kind: cacheKind, Log: c.log,
		Inspect: c.inspect, Failed: failed, Plan: analysis.plan, Cacheable: cacheable,
	}
	c.GoCollector = attach.NewGoCollector[*plan](c.log, cfg.PerProcess, cfg.Linger, c.m, maxBinaries, attach.GoHooks[*plan]{
		Analyse:  an.Analyse,
		Load:     c.loadOffsets,
		Expected: func(err error) bool { return errors.Is(err, errNoHTTP) },
		Attach:   c.attach,
		Watched:  cfg.Watched,
	})
	c.recs = collectors.Records{Sink: sink, Clock: c.clock, Read: c.m.Read}
	c.lookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "periscope_go_traceparent_lookups_total",
		Help: "Searches of incoming Go server requests' headers for traceparent, by result " +
			"(found, absent, bound: the header map was bigger than the probe searches, fault: a read failed).",
	}, []string{"result"})
	reg.MustRegister(c.lookups)
	for l := headerFound; l <= headerFault; l++ {
		c.byLookup[l] = c.lookups.WithLabelValues(l.String())
	}
	return c
}

// Name implements collectors.Collector.
func (c *Collector) Name() string { return Name }

// AttachPath implements collectors.Collector.
func (c *Collector) AttachPath() string {
	how := attach.How(c.multi, c.cfg.PerProcess, "once per executable for all processes")
	return "uprobes on the stack-check branch of net/http serverHandler.ServeHTTP, (*response).finishRequest, " +
		"HTTP/2's handlerDone, (*persistConn).roundTrip and HTTP/2's RoundTrip, and at the RETs of the " +
		"last two (no uretprobes), " + how
}

// Start implements collectors.Collector.
func (c *Collector) Start(ctx context.Context) error {
	spec, err := loadGohttp()
	if err != nil {
		return fmt.Errorf("load gohttp spec: %w", err)
	}
	c.multi = attach.Multi()
	attach.PrepareSpec(spec, c.multi)
	if err := loader.Load(Name, spec, c.cfg.Ring, &c.objs, loader.Sharing(loader.NetHTTPConns, c.cfg.NetHTTPConns), c.log); err != nil {
		return err
	}
	c.Progs.Own(&c.objs)
	if err := c.Progs.ProcessMarkers(c.objs.GoProcessExit, c.objs.GoProcessExec); err != nil {
		c.Close()
		return err
	}
	c.Progs.Read(ctx, c.objs.Events, c.cfg.Ring, c.decode, c.log)
	c.log.Info("collector started", "path", c.AttachPath())
	return nil
}

// ProcessUpdated implements discovery.Observer: a selected process whose
// executable is a Go program with net/http gets probes.
func (c *Collector) ProcessUpdated(p discovery.Process, added []discovery.Mapping) {
	c.Update(p, added, func(a attach.Attached[*plan]) {
		if c.cfg.Probed != nil {
			c.cfg.Probed(a.Process.PID)
		}
		if !a.Created {
			return
		}
		pl, m := a.Plan, a.Mapping
		c.log.Info("attached", "exe", m.Path, "pid", a.Process.PID, "go", pl.goVer, "offsets", pl.source,
			"probes", len(pl.sites), "per_process", a.Key.PID != 0, "header_map", pl.headerMap,
			"http2_server", pl.h2Server, "http2_client", pl.h2Client,
			"analysis", a.Analysis.Round(time.Microsecond), "attach", a.Attach.Round(time.Microsecond))
		if pl.headerErr != nil {
			c.log.Warn("incoming traceparent headers will not be read", "exe", m.Path, "err", pl.headerErr)
		}
	})
}

var errNoHTTP = errors.New("does not use net/http")

// cacheKind names the schema of analysis in the symbol cache: change it
// when analysis or what inspect decides changes.
const cacheKind = "gohttp/1"

// analysis is what inspecting an executable found, as the symbol cache
// keeps it: the plan without its index in the kernel, or why the file is
// not traced (Skip), for the reasons that cannot change.
type analysis struct {
	Skip      string          `json:"skip,omitempty"` // "not_go" or "no_net_http"
	GoVer     string          `json:"go_version,omitempty"`
	Sites     []site          `json:"sites,omitempty"`
	Offsets   symbols.Offsets `json:"offsets"`
	Source    string          `json:"offsets_source,omitempty"`
	HeaderMap mapLayout       `json:"header_map"`
	HeaderErr string          `json:"header_err,omitempty"`
	H2Server  bool            `json:"h2_server,omitempty"`
	H2Client  bool            `json:"h2_client,omitempty"`
}

func (a analysis) plan() *plan {
	switch a.Skip {
	case "not_go":
		return failed(fmt.Errorf("cached: %w", symbols.ErrNotGo))
	case "no_net_http":
		return failed(errNoHTTP)
	}
	pl := &plan{sites: a.Sites, goVer: a.GoVer, offsets: a.Offsets, source: a.Source + ", cached",
		headerMap: a.HeaderMap, h2Server: a.H2Server, h2Client: a.H2Client}
	if a.HeaderErr != "" {
		pl.headerErr = errors.New(a.HeaderErr)
	}
	return pl
}

// cacheable returns what the symbol cache keeps of pl, and whether it
// keeps anything: not the failures that may pass (a file that could not
// be read).
// failed is the plan of an executable not probed, for err.
func failed(err error) *plan { return &plan{GoPlan: attach.GoPlan{Err: err}} }

func cacheable(pl *plan) (analysis, bool) {
	switch {
	case errors.Is(pl.Err, symbols.ErrNotGo):
		return analysis{Skip: "not_go"}, true
	case errors.Is(pl.Err, errNoHTTP):
		return analysis{Skip: "no_net_http"}, true
	case pl.Err != nil:
		return analysis{}, false
	}
	a := analysis{GoVer: pl.goVer, Sites: pl.sites, Offsets: pl.offsets, Source: pl.source,
		HeaderMap: pl.headerMap, H2Server: pl.h2Server, H2Client: pl.h2Client}
	if pl.headerErr != nil {
		a.HeaderErr = pl.headerErr.Error()
	}
	return a, true
}

func (c *Collector) inspect(path string) *plan {
	b, err := symbols.GoInfo(path)
	if err != nil {
		return failed(err)
	}
	defer b.Close()
	pl := &plan{goVer: b.GoVersionRaw}
	// One pass over the symbol table for every function looked up below.
	if err := b.FindFuncs(probedFuncs...); err != nil {
		return failed(err)
	}
	entry := func(name, prog string) error {
		f, err := b.Func(name)
		if err != nil {
			return err
		}
		off, err := b.EntryProbe(f)
		if err != nil {
			return err
		}
		pl.sites = append(pl.sites, site{Fn: name, Offset: off, Prog: prog})
		return nil
	}
	// call probes a function's entry and every RET instruction.
	call := func(name, prog string) error {
		n := len(pl.sites)
		if err := entry(name, prog); err != nil {
			return err
		}
		f, _ := b.Func(name)
		rets, err := b.Returns(f)
		if err == nil && len(rets) == 0 {
			err = fmt.Errorf("%s: no RET instruction found", name)
		}
		if err != nil {
			pl.sites = pl.sites[:n]
			return err
		}
		for _, r := range rets {
			pl.sites = append(pl.sites, site{Fn: name + " RET", Offset: r, Prog: progRoundTripReturn})
		}
		return nil
	}
	serverErr := entry(fnServeHTTP, progServeHTTP)
	if serverErr == nil {
		serverErr = entry(fnFinishRequest, progFinishRequest)
	}
	if serverErr != nil {
		pl.sites = nil // both server probes or neither
	} else {
		done := progH2HandlerDone
		if err := entry(fnH2HandlerDone, done); errors.Is(err, symbols.ErrNoFunc) {
			err = entry(fnH2HandlerDoneGo127, done)
			pl.h2Server = err == nil
		} else {
			pl.h2Server = err == nil
		}
	}
	clientErr := call(fnRoundTrip, progRoundTrip)
	if clientErr == nil {
		// Go 1.27's net/http has a wrapper type named http2ClientConn
		// too, with a RoundTrip of another signature: look for the
		// internal package first.
		h2 := progH2RoundTrip
		err := call(fnH2RoundTripGo127, progH2iRoundTrip)
		if errors.Is(err, symbols.ErrNoFunc) {
			err = call(fnH2RoundTripInner, h2)
		}
		if errors.Is(err, symbols.ErrNoFunc) {
			err = call(fnH2RoundTrip, h2)
		}
		pl.h2Client = err == nil
	}
	if len(pl.sites) == 0 {
		if errors.Is(serverErr, symbols.ErrNoFunc) && errors.Is(clientErr, symbols.ErrNoFunc) {
			return failed(errNoHTTP)
		}
		return failed(fmt.Errorf("server: %v; client: %v", serverErr, clientErr))
	}
	o, source, err := b.OffsetsWithSource()
	if err != nil {
		return failed(err)
	}
	pl.source = string(source)
	pl.offsets = o
	pl.headerMap, pl.headerErr = headerMapLayout(b, o)
	if pl.h2Server && (either(o.H2ResponseWriterRws, o.H2iResponseWriterRws) == symbols.Absent ||
		either(o.H2RWStateStatus, o.H2iRWStateStatus) == symbols.Absent) {
		// Without them every HTTP/2 response would read as a 200.
		pl.sites = slices.DeleteFunc(pl.sites, func(s site) bool {
			return s.Fn == fnH2HandlerDone || s.Fn == fnH2HandlerDoneGo127
		})
		pl.h2Server = false
	}
	return pl
}

// loadOffsets stores the plan's field offsets at its index in the kernel,
// where every probe of the executable finds them through its cookie.
func (c *Collector) loadOffsets(pl *plan) error {
	o := pl.offsets
	v := gohttpGoOffsets{
		RequestMethod:               o.RequestMethod,
		RequestUrl:                  o.RequestURL,
		RequestHost:                 o.RequestHost,
		RequestContentLength:        o.RequestContentLength,
		UrlPath:                     o.URLPath,
		UrlRawQuery:                 o.URLRawQuery,
		UrlHost:                     o.URLHost,
		ResponseConn:                o.ResponseConn,
		ResponseReq:                 o.ResponseReq,
		ResponseWritten:             o.ResponseWritten,
		ResponseStatus:              o.ResponseStatus,
		ConnRwc:                     o.ConnRWC,
		ConnTlsState:                o.ConnTLSState,
		ClientResponseStatusCode:    o.ClientResponseStatusCode,
		ClientResponseContentLength: o.ClientResponseContentLength,
		PersistConnConn:             o.PersistConnConn,
		PersistConnTlsState:         o.PersistConnTLSState,
		TransportRequestRequest:     o.TransportRequestRequest,
		TlsConnConn:                 o.TLSConnConn,
		TcpConnConn:                 o.TCPConnConn,
		NetConnFd:                   o.NetConnFD,
		NetfdPfd:                    o.NetFDPFD,
		PollfdSysfd:                 o.PollFDSysfd,
		RequestHeader:               o.RequestHeader,
		HeaderMap:                   int64(pl.headerMap),
		HmapFlags:                   o.HmapFlags,
		HmapB:                       o.HmapB,
		HmapBuckets:                 o.HmapBuckets,
		HmapOldbuckets:              o.HmapOldbuckets,
		BucketTophash:               o.BucketTophash,
		BucketKeys:                  o.BucketKeys,
		BucketValues:                o.BucketValues,
		BucketOverflow:              o.BucketOverflow,
		BucketSize:                  o.BucketSize,
		SwissDirPtr:                 o.SwissMapDirPtr,
		SwissDirLen:                 o.SwissMapDirLen,
		SwissTableGroups:            o.SwissTableGroups,
		SwissGroupsData:             o.SwissGroupsData,
		SwissGroupsLengthMask:       o.SwissGroupsLengthMask,
		SwissGroupCtrl:              o.SwissGroupCtrl,
		SwissGroupSlots:             o.SwissGroupSlots,
		SwissGroupSize:              o.SwissGroupSize,
		RequestProtoMajor:           o.RequestProtoMajor,
		RequestProtoMinor:           o.RequestProtoMinor,
		RequestTls:                  o.RequestTLS,
		H2RwRws:                     either(o.H2ResponseWriterRws, o.H2iResponseWriterRws),
		H2RwsConn:                   either(o.H2RWStateConn, o.H2iRWStateConn),
		H2RwsStatus:                 either(o.H2RWStateStatus, o.H2iRWStateStatus),
		H2RwsWroteBytes:             either(o.H2RWStateWroteBytes, o.H2iRWStateWroteBytes),
		H2ServerConnConn:            either(o.H2ServerConnConn, o.H2iServerConnConn),
		H2ClientConnTconn:           o.H2ClientConnTconn,
		H2ClientConnTlsState:        o.H2ClientConnTLSState,
		H2iClientConnTconn:          o.H2iClientConnTconn,
		H2iClientConnTlsState:       o.H2iClientConnTLSState,
		H2iRequestMethod:            o.H2iClientRequestMethod,
		H2iRequestUrl:               o.H2iClientRequestURL,
		H2iRequestHost:              o.H2iClientRequestHost,
		H2iRequestContentLength:     o.H2iClientRequestContentLength,
		H2iResponseStatusCode:       o.H2iClientResponseStatusCode,
		H2iResponseContentLength:    o.H2iClientResponseContentLength,
	}
	for _, f := range []struct {
		name string
		off  int64
	}{
		{"net/http.Request.Method", v.RequestMethod}, {"net/http.Request.URL", v.RequestUrl},
		{"net/url.URL.Path", v.UrlPath}, {"net/http.response.req", v.ResponseReq},
		{"net/http.response.status", v.ResponseStatus}, {"net/http.Response.StatusCode", v.ClientResponseStatusCode},
	} {
		if f.off == symbols.Absent {
			return fmt.Errorf("no offset for %s", f.name)
		}
	}
	if c.objs.Offsets == nil {
		return errors.New("collector not started")
	}
	if err := c.objs.Offsets.Put(pl.Index, &v); err != nil {
		return fmt.Errorf("store offsets: %w", err)
	}
	return nil
}

// either returns the offset of a field in net/http's bundled HTTP/2 when
// the binary has it, else in net/http/internal/http2.
func either(bundled, internal int64) int64 {
	if bundled != symbols.Absent {
		return bundled
	}
	return internal
}

func (c *Collector) attach(hostPath string, pid uint32, pl *plan) ([]link.Link, error) {
	probes := make([]attach.Probe, 0, len(pl.sites))
	for _, s := range pl.sites {
		prog := c.objs.program(s.Prog)
		if prog == nil {
			return nil, fmt.Errorf("%s: no program %q", s.Fn, s.Prog)
		}
		probes = append(probes, attach.Probe{Name: s.Fn, Offset: s.Offset, Prog: prog, Cookie: uint64(pl.Index)})
	}
	return attach.Uprobes(hostPath, pid, probes, c.multi)
}
