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
	// OverflowRoute is the http.route of the series holding what is over a
	// service's series cap.
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

var (
	serverPointKeys = []string{attrMethod, attrStatus, attrRoute, attrError}
	clientPointKeys = []string{attrMethod, attrStatus, attrRoute, attrError, attrServerAddr, attrServerPort}
)

// promLabel translates an attribute key into a Prometheus label name.
func promLabel(key string) string { return strings.ReplaceAll(key, ".", "_") }

// HTTPConfig configures HTTP.
type HTTPConfig struct {
	// MaxSeriesPerService caps the series of one service.name (both
	// histograms together). A request that would make a series past it is
	// recorded in a series with http.route "_overflow" and no
	// server.address or server.port. Default 2000.
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
// spans. It is a span.Exporter, so it sits beside the span exporters, and a
// prometheus.Collector; ResourceMetrics gives the same data to OTLP. It is
// safe for concurrent use.
type HTTP struct {
	cfg        HTTPConfig
	labelNames map[span.Kind][]string // Prometheus label names by position
	overflowed *prometheus.CounterVec

	mu         sync.Mutex
	byProc     map[*span.Process]*workload  // identities seen, by pointer
	byKey      map[string]*workload         // the same, by label values
	perService map[string]int               // series per service.name
	descs      map[descKey]*prometheus.Desc // by the labels present
	folded     map[httpFoldKey]struct{}     // series folded, counted once
	lastSweep  time.Time
}

// workload is one resource identity and its series.
type workload struct {
	key     string
	values  []string // resourceKeys' values
	service string
	series  map[httpKey]*durations
	host    []attribute.KeyValue // hostKeys, on the OTLP resource only
}

type httpKey struct {
	kind       span.Kind
	method     string
	status     int
	route      string
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
	counts      []uint64 // len(DurationBuckets)+1, not cumulative
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
	h := &HTTP{
		cfg:        cfg,
		labelNames: map[span.Kind][]string{span.Server: labels(serverPointKeys), span.Client: labels(clientPointKeys)},
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
		case attrMethod:
			key.method = a.Value.AsString()
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
	if key.route == "" {
		key.route = template
	}
	d := s.End.Sub(s.Start).Seconds()
	if d < 0 {
		d = 0
	}
	now := h.cfg.Now()

	h.mu.Lock()
	defer h.mu.Unlock()
	h.sweep(now)
	w := h.workload(s.Process)
	hist := w.series[key]
	if hist == nil {
		if h.perService[w.service] >= h.cfg.MaxSeriesPerService {
			h.fold(w, key)
			key.route, key.serverAddr, key.serverPort = OverflowRoute, "", 0
			hist = w.series[key]
		}
		if hist == nil {
			hist = &durations{start: now, counts: make([]uint64, len(DurationBuckets)+1), min: d, max: d}
			w.series[key] = hist
			h.perService[w.service]++
		}
	}
	hist.record(d, now)
}

// Shutdown implements span.Exporter; there is nothing to flush.
func (h *HTTP) Shutdown(context.Context) error { return nil }

func (x *durations) record(d float64, now time.Time) {
	i := 0
	for i < len(DurationBuckets) && d > DurationBuckets[i] {
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
	name := ServerDurationName
	if key.kind == span.Client {
		name = ClientDurationName
	}
	h.overflowed.WithLabelValues(name, w.service).Inc()
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
	values := make([]string, 0, len(resourceKeys)+len(clientPointKeys))
	for _, w := range h.byKey {
		for k, x := range w.series {
			values = append(append(values[:0], w.values...), k.method, statusLabel(k.status), k.route, k.errorType)
			if k.kind == span.Client {
				port := ""
				if k.serverPort > 0 {
					port = strconv.Itoa(k.serverPort)
				}
				values = append(values, k.serverAddr, port)
			}
			desc, present := h.desc(k.kind, values)
			buckets := make(map[float64]uint64, len(DurationBuckets))
			var cum uint64
			for i, b := range DurationBuckets {
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
func (h *HTTP) desc(kind span.Kind, values []string) (*prometheus.Desc, []string) {
	var mask uint64
	present := make([]string, 0, len(values))
	for i, v := range values {
		if v != "" {
			mask |= 1 << i
			present = append(present, v)
		}
	}
	dk := descKey{kind, mask}
	if d := h.descs[dk]; d != nil {
		return d, present
	}
	names := h.labelNames[kind]
	labels := make([]string, 0, len(present))
	for i := range values {
		if mask&(1<<i) != 0 {
			labels = append(labels, names[i])
		}
	}
	name, help := ServerDurationPromName, "Duration of HTTP server requests seen by the agent, in seconds."
	if kind == span.Client {
		name, help = ClientDurationPromName, "Duration of HTTP client requests seen by the agent, in seconds."
	}
	d := prometheus.NewDesc(name, help, labels, nil)
	h.descs[dk] = d
	return d, present
}

type descKey struct {
	kind span.Kind
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
	kv := make([]attribute.KeyValue, 0, 6)
	if k.method != "" {
		kv = append(kv, attribute.String(attrMethod, k.method))
	}
	if k.status != 0 {
		kv = append(kv, attribute.Int(attrStatus, k.status))
	}
	if k.route != "" {
		kv = append(kv, attribute.String(attrRoute, k.route))
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
