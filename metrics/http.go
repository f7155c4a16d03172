package metrics

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"

	"github.com/periscope-apm/periscope/span"
)

// Names of the request duration histograms (OpenTelemetry HTTP semantic
// conventions) and their Prometheus translations.
const (
	ServerDurationName     = "http.server.request.duration"
	ClientDurationName     = "http.client.request.duration"
	DurationUnit           = "s"
	ServerDurationPromName = "http_server_request_duration_seconds"
	ClientDurationPromName = "http_client_request_duration_seconds"
	// SeriesOverflowedPromName counts series folded into the overflow
	// series, by metric and service.name.
	SeriesOverflowedPromName = "periscope_metric_series_overflowed_total"
	// OverflowRoute is the http.route (database: db.collection.name; RPC:
	// rpc.method) of the series holding what is over a service's series cap.
	OverflowRoute = "_overflow"
)

// DurationBuckets are the semantic conventions' advised bucket boundaries
// for the HTTP request duration histograms, in seconds.
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// resourceKeys are the resource attributes that identify a workload on the
// request metrics: labels on Prometheus, the resource on OTLP. process.pid
// is left out on purpose: a client started per request (curl in a loop)
// would make a series per request, and the replicas of one workload a
// series each; the PID stays on spans.
var resourceKeys = []string{
	"service.name",
	"service.namespace",
	"process.executable.name",
	"container.id",
	"host.name",
	"k8s.namespace.name",
	"k8s.pod.name",
	"k8s.container.name",
	"k8s.deployment.name",
	"k8s.replicaset.name",
	"k8s.daemonset.name",
	"k8s.statefulset.name",
	"k8s.job.name",
	"k8s.cronjob.name",
	"k8s.node.name",
}

// Data point attributes, in label order.
const (
	attrMethod     = "http.request.method"
	attrStatus     = "http.response.status_code"
	attrRoute      = "http.route"
	attrError      = "error.type"
	attrServerAddr = "server.address"
	attrServerPort = "server.port"
)

// RPC data point attributes (OpenTelemetry RPC semantic conventions).
const (
	attrRPCSystem = "rpc.system.name"
	attrRPCMethod = "rpc.method"
	attrRPCStatus = "rpc.response.status_code"
)

// Database data point attributes (OpenTelemetry database semantic
// conventions). Never the query text or its summary: bounded values only.
const (
	attrDBSystem     = "db.system.name"
	attrDBOperation  = "db.operation.name"
	attrDBCollection = "db.collection.name"
	attrDBNamespace  = "db.namespace"
	attrDBStatus     = "db.response.status_code"
)

// Names of the database operation duration histograms and their Prometheus
// translations. The conventions name only the client's; the server's
// (operations a traced database server answered) has no convention yet and
// carries the agent's prefix.
const (
	DBClientDurationName     = "db.client.operation.duration"
	DBServerDurationName     = "periscope.db.server.operation.duration"
	DBClientDurationPromName = "db_client_operation_duration_seconds"
	DBServerDurationPromName = "periscope_db_server_operation_duration_seconds"
)

// DBDurationBuckets are the bucket boundaries the conventions advise for
// db.client.operation.duration, in seconds.
var DBDurationBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10}

// Names of the RPC call duration histograms and their Prometheus
// translations.
const (
	RPCServerDurationName     = "rpc.server.call.duration"
	RPCClientDurationName     = "rpc.client.call.duration"
	RPCServerDurationPromName = "rpc_server_call_duration_seconds"
	RPCClientDurationPromName = "rpc_client_call_duration_seconds"
)

// family is a pair of duration histograms (server and client) that spans
// of one kind of protocol record into.
type family uint8

const (
	familyHTTP family = iota
	familyRPC
	familyDB
	nFamilies
)

// histogram names one histogram of a family.
type histogram struct {
	name, prom, help, description string
	keys                          []string // point attributes, in label order
	buckets                       []float64
}

// histograms are the histograms by family and kind (0 server, 1 client).
var histograms = [nFamilies][2]histogram{
	familyHTTP: {
		{ServerDurationName, ServerDurationPromName, "Duration of HTTP server requests seen by the agent, in seconds.", "Duration of HTTP server requests.",
			[]string{attrMethod, attrStatus, attrRoute, attrError}, DurationBuckets},
		{ClientDurationName, ClientDurationPromName, "Duration of HTTP client requests seen by the agent, in seconds.", "Duration of HTTP client requests.",
			[]string{attrMethod, attrStatus, attrRoute, attrError, attrServerAddr, attrServerPort}, DurationBuckets},
	},
	familyRPC: {
		{RPCServerDurationName, RPCServerDurationPromName, "Duration of RPC calls served, seen by the agent, in seconds.", "Duration of RPC calls served.",
			[]string{attrRPCSystem, attrRPCMethod, attrRPCStatus, attrError}, DurationBuckets},
		{RPCClientDurationName, RPCClientDurationPromName, "Duration of RPC calls made, seen by the agent, in seconds.", "Duration of RPC calls made.",
			[]string{attrRPCSystem, attrRPCMethod, attrRPCStatus, attrError, attrServerAddr, attrServerPort}, DurationBuckets},
	},
	familyDB: {
		{DBServerDurationName, DBServerDurationPromName, "Duration of database operations a traced database server answered, seen by the agent, in seconds.", "Duration of database operations served.",
			[]string{attrDBSystem, attrDBOperation, attrDBCollection, attrDBNamespace, attrDBStatus, attrError}, DBDurationBuckets},
		{DBClientDurationName, DBClientDurationPromName, "Duration of database client operations seen by the agent, in seconds.", "Duration of database client operations.",
			[]string{attrDBSystem, attrDBOperation, attrDBCollection, attrDBNamespace, attrDBStatus, attrError, attrServerAddr, attrServerPort}, DBDurationBuckets},
	},
}

// histogramOf returns the histogram of a family and span kind.
func histogramOf(f family, k span.Kind) *histogram {
	if k == span.Client {
		return &histograms[f][1]
	}
	return &histograms[f][0]
}

// promLabel translates an attribute key into a Prometheus label name.
func promLabel(key string) string { return strings.ReplaceAll(key, ".", "_") }

// HTTPConfig configures HTTP.
type HTTPConfig struct {
	// MaxSeriesPerService caps the series of one service.name (all
	// histograms together). A request that would make a series past it is
	// recorded in a series with http.route (RPC: rpc.method) "_overflow"
	// and no server.address or server.port. Default 2000.
	MaxSeriesPerService int
	// TTL drops a series that has recorded nothing for this long. Default
	// 5m.
	TTL time.Duration
	// Now returns the time (tests). Default time.Now.
	Now func() time.Time
}

func (c *HTTPConfig) defaults() {
	if c.MaxSeriesPerService <= 0 {
		c.MaxSeriesPerService = 2000
	}
	if c.TTL <= 0 {
		c.TTL = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// HTTP derives the request duration histograms (RED metrics) from finished
// spans: HTTP requests, RPC calls (spans with rpc.system.name) and database
// operations (spans with db.system.name). It is a span.Exporter, so it sits
// beside the span exporters, and a prometheus.Collector; ResourceMetrics gives the same data to OTLP. It is
// safe for concurrent use.
type HTTP struct {
	cfg        HTTPConfig
	labelNames map[histKey][]string // Prometheus label names by position
	overflowed *prometheus.CounterVec

	mu         sync.Mutex
	byProc     map[*span.Process]*workload  // identities seen, by pointer
	byKey      map[string]*workload         // the same, by label values
	perService map[string]int               // series per service.name
	descs      map[descKey]*prometheus.Desc // by the labels present
	folded     map[httpFoldKey]struct{}     // series folded, counted once
	lastSweep  time.Time
	// now is the clock read last for a span (clock).
	now time.Time
}

// workload is one resource identity and its series.
type workload struct {
	key     string
	values  []string // resourceKeys' values
	service string
	series  map[httpKey]*durations
	host    []attribute.KeyValue // hostKeys, on the OTLP resource only
	// recent are the series looked up last: a service's spans mostly come
	// in runs over a few series (an HTTP route; a Redis client's SET and
	// GET in turn), whose key (seven strings) is then compared, not hashed,
	// per span.
	recent [nRecent]recentSeries
	next   uint8 // the entry of recent replaced next
}

// nRecent is how many series a workload's lookup compares before hashing.
const nRecent = 4

type recentSeries struct {
	key httpKey
	d   *durations
}

// lookup returns the series of key, nil when there is none yet.
func (w *workload) lookup(key httpKey) *durations {
	for i := range w.recent {
		if r := &w.recent[i]; r.d != nil && r.key == key {
			return r.d
		}
	}
	x := w.series[key]
	if x != nil {
		w.recent[w.next] = recentSeries{key, x}
		w.next = (w.next + 1) % nRecent
	}
	return x
}

// forget drops x from the series looked up last (x is deleted).
func (w *workload) forget(x *durations) {
	for i := range w.recent {
		if w.recent[i].d == x {
			w.recent[i] = recentSeries{}
		}
	}
}

type histKey struct {
	family family
	kind   span.Kind
}

type httpKey struct {
	family     family
	kind       span.Kind
	method     string // http.request.method, rpc.method, db.operation.name
	status     int
	code       string // rpc.response.status_code, db.response.status_code
	system     string // rpc.system.name, db.system.name
	route      string // http.route, db.collection.name
	namespace  string // db.namespace
	errorType  string
	serverAddr string
	serverPort int
}

type httpFoldKey struct {
	workload string
	series   httpKey
}

// maxFoldedKeys bounds the memory of which series were folded.
const maxFoldedKeys = 1 << 16

// durations is one series: explicit-bucket counts plus what OTLP wants.
type durations struct {
	start, last time.Time
	bounds      []float64 // the histogram's bucket boundaries
	counts      []uint64  // len(bounds)+1, not cumulative
	count       uint64
	sum         float64
	min, max    float64
	exported    *durations // the values at the last delta export
}

// NewHTTP returns the request metrics; reg receives
// periscope_metric_series_overflowed_total (nil registers nothing). Register
// the HTTP itself with the Prometheus registry that serves /metrics.
func NewHTTP(cfg HTTPConfig, reg prometheus.Registerer) (*HTTP, error) {
	cfg.defaults()
	labels := func(point []string) []string {
		var l []string
		for _, k := range resourceKeys {
			l = append(l, promLabel(k))
		}
		for _, k := range point {
			l = append(l, promLabel(k))
		}
		return l
	}
	names := make(map[histKey][]string)
	for f := range nFamilies {
		for _, k := range []span.Kind{span.Server, span.Client} {
			names[histKey{f, k}] = labels(histogramOf(f, k).keys)
		}
	}
	h := &HTTP{
		cfg:        cfg,
		labelNames: names,
		descs:      make(map[descKey]*prometheus.Desc),
		overflowed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: SeriesOverflowedPromName,
			Help: "Series recorded into an overflow series because their service had reached its series cap, by metric and service.",
		}, []string{"metric", "service_name"}),
		byProc:     make(map[*span.Process]*workload),
		byKey:      make(map[string]*workload),
		perService: make(map[string]int),
		folded:     make(map[httpFoldKey]struct{}),
	}
	if reg != nil {
		if err := reg.Register(h.overflowed); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Export records a finished span. It never blocks on I/O.
func (h *HTTP) Export(s *span.Span) {
	if s.Kind != span.Server && s.Kind != span.Client {
		return
	}
	key := httpKey{kind: s.Kind}
	var template string
	for _, a := range s.Attributes {
		switch a.Key {
		case attrMethod, attrRPCMethod, attrDBOperation:
			key.method = a.Value.AsString()
		case attrRPCSystem:
			key.family, key.system = familyRPC, a.Value.AsString()
		case attrDBSystem:
			key.family, key.system = familyDB, a.Value.AsString()
		case attrRPCStatus, attrDBStatus:
			key.code = a.Value.AsString()
		case attrDBCollection:
			key.route = a.Value.AsString()
		case attrDBNamespace:
			key.namespace = a.Value.AsString()
		case attrStatus:
			key.status = int(a.Value.AsInt64())
		case attrRoute:
			key.route = a.Value.AsString()
		case "url.template":
			template = a.Value.AsString()
		case attrError:
			key.errorType = a.Value.AsString()
		case attrServerAddr:
			if s.Kind == span.Client {
				key.serverAddr = a.Value.AsString()
			}
		case attrServerPort:
			if s.Kind == span.Client {
				key.serverPort = int(a.Value.AsInt64())
			}
		}
	}
	if key.route == "" && key.family == familyHTTP {
		key.route = template
	}
	d := s.End.Sub(s.Start).Seconds()
	if d < 0 {
		d = 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.clock(s.End)
	h.sweep(now)
	w := h.workload(s.Process)
	hist := w.lookup(key)
	if hist == nil {
		if h.perService[w.service] >= h.cfg.MaxSeriesPerService {
			h.fold(w, key)
			key.route, key.serverAddr, key.serverPort = OverflowRoute, "", 0
			if key.family == familyRPC {
				key.route, key.method = "", OverflowRoute
			}
			hist = w.series[key]
		}
		if hist == nil {
			bounds := histogramOf(key.family, key.kind).buckets
			hist = &durations{start: now, bounds: bounds, counts: make([]uint64, len(bounds)+1), min: d, max: d}
			w.series[key] = hist
			h.perService[w.service]++
		}
	}
	hist.record(d, now)
}

// clock returns the time for recording a span that ended at end: the
// clock read last, unless end is after it. Spans reach Export within
// seconds of their end (the correlator holds one at most maxHold), so the
// time returned is at most that late, for a TTL of minutes; reading the
// clock for every span cost as much as recording it. h.mu is held.
func (h *HTTP) clock(end time.Time) time.Time {
	if !end.Before(h.now) {
		h.now = h.cfg.Now()
	}
	return h.now
}

// Shutdown implements span.Exporter; there is nothing to flush.
func (h *HTTP) Shutdown(context.Context) error { return nil }

func (x *durations) record(d float64, now time.Time) {
	i := 0
	for i < len(x.bounds) && d > x.bounds[i] {
		i++
	}
	x.counts[i]++
	x.count++
	x.sum += d
	x.min = min(x.min, d)
	x.max = max(x.max, d)
	x.last = now
}

// fold counts a series folded into the overflow series, once per series.
func (h *HTTP) fold(w *workload, key httpKey) {
	fk := httpFoldKey{w.key, key}
	if _, seen := h.folded[fk]; seen {
		return
	}
	if len(h.folded) < maxFoldedKeys {
		h.folded[fk] = struct{}{}
	}
	h.overflowed.WithLabelValues(histogramOf(key.family, key.kind).name, w.service).Inc()
}

// workload returns the workload of a process identity; h.mu is held.
func (h *HTTP) workload(p *span.Process) *workload {
	if w := h.byProc[p]; w != nil {
		return w
	}
	key, values := workloadOf(p)
	w := h.byKey[key]
	if w == nil {
		w = &workload{key: key, values: values, service: values[0], series: make(map[httpKey]*durations), host: hostAttributes(p)}
		h.byKey[key] = w
	}
	h.byProc[p] = w
	return w
}

// workloadOf returns the workload identity of a process: the values of
// resourceKeys ("" for absent; service.name "unknown_service" when the
// process has none) and a key made of them.
func workloadOf(p *span.Process) (string, []string) {
	values := make([]string, len(resourceKeys))
	values[0] = "unknown_service"
	if p != nil {
		if p.ServiceName != "" {
			values[0] = p.ServiceName
		}
		for _, a := range p.Attributes {
			for i, k := range resourceKeys[1:] {
				if string(a.Key) == k {
					values[i+1] = a.Value.Emit()
				}
			}
		}
	}
	return strings.Join(values, "\xff"), values
}

// hostKeys are host resource attributes that go on the OTLP resource of a
// workload but are not Prometheus labels: they are the same for every
// series of an agent (Prometheus has them once, on target_info).
var hostKeys = []attribute.Key{"host.id", "host.arch", "os.type", "os.description"}

// hostAttributes returns the hostKeys attributes of a process.
func hostAttributes(p *span.Process) []attribute.KeyValue {
	if p == nil {
		return nil
	}
	var out []attribute.KeyValue
	for _, a := range p.Attributes {
		if slices.Contains(hostKeys, a.Key) {
			out = append(out, a)
		}
	}
	return out
}

// sweep drops series idle for longer than the TTL, at most once a second
// of the TTL's tenth; h.mu is held.
func (h *HTTP) sweep(now time.Time) {
	if now.Sub(h.lastSweep) < h.cfg.TTL/10 {
		return
	}
	h.lastSweep = now
	for key, w := range h.byKey {
		for k, x := range w.series {
			if now.Sub(x.last) > h.cfg.TTL {
				w.forget(x)
				delete(w.series, k)
				h.perService[w.service]--
			}
		}
		if len(w.series) == 0 {
			delete(h.byKey, key)
			if h.perService[w.service] <= 0 {
				delete(h.perService, w.service)
			}
		}
	}
	for p, w := range h.byProc {
		if h.byKey[w.key] != w {
			delete(h.byProc, p)
		}
	}
	if len(h.folded) >= maxFoldedKeys {
		clear(h.folded)
	}
}

// Describe implements prometheus.Collector. It describes nothing: the
// label names of a series are the attributes it has (an absent attribute
// is an absent label, not an empty one), so the collector is unchecked.
func (h *HTTP) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (h *HTTP) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sweep(h.cfg.Now())
	values := make([]string, 0, len(resourceKeys)+8)
	for _, w := range h.byKey {
		for k, x := range w.series {
			values = append(values[:0], w.values...)
			switch k.family {
			case familyRPC:
				values = append(values, k.system, k.method, k.code, k.errorType)
			case familyDB:
				values = append(values, k.system, k.method, k.route, k.namespace, k.code, k.errorType)
			default:
				values = append(values, k.method, statusLabel(k.status), k.route, k.errorType)
			}
			if k.kind == span.Client {
				port := ""
				if k.serverPort > 0 {
					port = strconv.Itoa(k.serverPort)
				}
				values = append(values, k.serverAddr, port)
			}
			desc, present := h.desc(histKey{k.family, k.kind}, values)
			buckets := make(map[float64]uint64, len(x.bounds))
			var cum uint64
			for i, b := range x.bounds {
				cum += x.counts[i]
				buckets[b] = cum
			}
			ch <- prometheus.MustNewConstHistogramWithCreatedTimestamp(desc, x.count, x.sum, buckets, x.start, present...)
		}
	}
}

// desc returns the description of a series whose label values (resource
// labels, then point labels, "" for absent) are values, and the values of
// the labels present; h.mu is held.
func (h *HTTP) desc(hk histKey, values []string) (*prometheus.Desc, []string) {
	var mask uint64
	present := make([]string, 0, len(values))
	for i, v := range values {
		if v != "" {
			mask |= 1 << i
			present = append(present, v)
		}
	}
	dk := descKey{hk, mask}
	if d := h.descs[dk]; d != nil {
		return d, present
	}
	names := h.labelNames[hk]
	labels := make([]string, 0, len(present))
	for i := range values {
		if mask&(1<<i) != 0 {
			labels = append(labels, names[i])
		}
	}
	hist := histogramOf(hk.family, hk.kind)
	d := prometheus.NewDesc(hist.prom, hist.help, labels, nil)
	h.descs[dk] = d
	return d, present
}

type descKey struct {
	histKey
	mask uint64
}

func statusLabel(code int) string {
	if code == 0 {
		return ""
	}
	return strconv.Itoa(code)
}

// pointAttributes are the data point attributes of a series.
func (k httpKey) pointAttributes() attribute.Set {
	kv := make([]attribute.KeyValue, 0, 8)
	str := func(key, v string) {
		if v != "" {
			kv = append(kv, attribute.String(key, v))
		}
	}
	switch k.family {
	case familyRPC:
		kv = append(kv, attribute.String(attrRPCSystem, k.system))
		str(attrRPCMethod, k.method)
		str(attrRPCStatus, k.code)
	case familyDB:
		kv = append(kv, attribute.String(attrDBSystem, k.system))
		str(attrDBOperation, k.method)
		str(attrDBCollection, k.route)
		str(attrDBNamespace, k.namespace)
		str(attrDBStatus, k.code)
	default:
		str(attrMethod, k.method)
		if k.status != 0 {
			kv = append(kv, attribute.Int(attrStatus, k.status))
		}
		str(attrRoute, k.route)
	}
	if k.errorType != "" {
		kv = append(kv, attribute.String(attrError, k.errorType))
	}
	if k.serverAddr != "" {
		kv = append(kv, attribute.String(attrServerAddr, k.serverAddr))
	}
	if k.serverPort != 0 {
		kv = append(kv, attribute.Int(attrServerPort, k.serverPort))
	}
	return attribute.NewSet(kv...)
}
