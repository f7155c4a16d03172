package collectors

import (
	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/periscope-apm/periscope/internal/ring"
	"github.com/periscope-apm/periscope/internal/wire"
)

// Metrics are the self-metrics of a uprobe collector, labelled with its
// name.
type Metrics struct {
	Read   *prometheus.CounterVec // events read, by type
	Probes prometheus.Gauge       // probe links attached
	Failed prometheus.Counter     // files that could not be attached to
}

// NewMetrics makes and registers a collector's self-metrics. path names
// the attach path taken (a label of periscope_probes_attached). counters
// returns the collector's per-CPU counter map (nil until it is loaded),
// whose entries COUNTER_RINGBUF_DROPS and COUNTER_CALLS_LOST
// (bpf/periscope.h) are exported as periscope_events_dropped_total and
// periscope_calls_unmatched_total.
func NewMetrics(name string, reg prometheus.Registerer, path func() string, counters func() *ebpf.Map) *Metrics {
	labels := prometheus.Labels{"collector": name}
	m := &Metrics{
		Read: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "periscope_events_read_total",
			Help:        "Events read from the kernel, by collector and type.",
			ConstLabels: labels,
		}, []string{"type"}),
		Probes: NewProbeGauge(reg, name, path),
		Failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "periscope_attach_failures_total",
			Help:        "Files the collector could not attach to, by collector.",
			ConstLabels: labels,
		}),
	}
	reg.MustRegister(m.Read, m.Failed,
		NewDropCounter(name, counters),
		NewCounterFunc(name, "periscope_calls_unmatched_total", "Return probes that fired without their entry (the entry was evicted or attached mid-call), by collector.", counters, wire.CounterCallsLost),
		NewCounterFunc(name, "periscope_truncated_calls_total", "Calls on database connections larger than the 16 records of 4 KiB a call is copied in (bpf/chunks.bpf.h): the bytes between the copy and the call's last 128 are not copied, by collector.", counters, wire.CounterTruncatedCalls),
	)
	return m
}

// NewCounterFunc returns metric, labelled with the collector's name, whose
// value is entry idx of the per-CPU counter map counters returns (nil
// until it is loaded: 0).
func NewCounterFunc(collector, metric, help string, counters func() *ebpf.Map, idx uint32) prometheus.Collector {
	opts := prometheus.CounterOpts{Name: metric, Help: help, ConstLabels: prometheus.Labels{"collector": collector}}
	return prometheus.NewCounterFunc(opts, func() float64 {
		cm := counters()
		if cm == nil {
			return 0
		}
		v, _ := ring.Counter(cm, idx)
		return float64(v)
	})
}

// NewDropCounter returns periscope_events_dropped_total of a collector
// whose programs count their ring buffer's drops in counters.
func NewDropCounter(collector string, counters func() *ebpf.Map) prometheus.Collector {
	return NewCounterFunc(collector, "periscope_events_dropped_total",
		"Events the kernel could not queue because the ring buffer was full, by collector.", counters, wire.CounterRingbufDrops)
}

// NewProbeGauge returns the gauge of the probes a collector has attached,
// registered with reg as periscope_probes_attached{collector, path}, path
// being read at each scrape (the attach path is chosen when the collector
// starts).
func NewProbeGauge(reg prometheus.Registerer, collector string, path func() string) prometheus.Gauge {
	g := probeGauge{
		Gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "periscope_probes_attached"}),
		desc: prometheus.NewDesc("periscope_probes_attached", "eBPF probes attached, by collector and attach path.",
			[]string{"path"}, prometheus.Labels{"collector": collector}),
		path: path,
	}
	reg.MustRegister(g)
	return g.Gauge
}

type probeGauge struct {
	prometheus.Gauge // not registered itself: its value is exported with the path
	desc             *prometheus.Desc
	path             func() string
}

func (g probeGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g probeGauge) Collect(ch chan<- prometheus.Metric) {
	var m dto.Metric
	if err := g.Gauge.Write(&m); err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, m.GetGauge().GetValue(), g.path())
}
