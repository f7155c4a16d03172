package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// resMetric is one of the Prometheus resource metrics.
type resMetric uint8

const (
	resCPU resMetric = iota
	resMemory
	resVirtual
	resThreads
	resFDs
	resSwitches
)

var resMetricInfo = [...]struct {
	name, help string
	typ        prometheus.ValueType
	point      string // the data point label, "" for none
}{
	resCPU:      {CPUTimePromName, "CPU time of the workload's traced processes, by mode (user, system), in seconds; exited processes included.", prometheus.CounterValue, promLabel(attrCPUMode)},
	resMemory:   {MemoryUsagePromName, "Resident memory (RSS) of the workload's running traced processes, in bytes.", prometheus.GaugeValue, ""},
	resVirtual:  {MemoryVirtualPromName, "Virtual memory of the workload's running traced processes, in bytes.", prometheus.GaugeValue, ""},
	resThreads:  {ThreadCountPromName, "Threads of the workload's running traced processes.", prometheus.GaugeValue, ""},
	resFDs:      {FDCountPromName, "Open file descriptors of the workload's running traced processes.", prometheus.GaugeValue, ""},
	resSwitches: {ContextSwitchesPromName, "Context switches of the workload's traced processes (each process's main thread), by type (voluntary, involuntary); exited processes included.", prometheus.CounterValue, promLabel(attrContextSwitchType)},
}

type resDescKey struct {
	metric resMetric
	mask   uint64
}

// workloadSum is the sum of a workload's readings at a scrape.
type workloadSum struct {
	counters
	rss, virtual, threads, fds float64
}

// Describe implements prometheus.Collector. Like HTTP it is unchecked:
// a label a workload does not have is absent, not empty.
func (m *ProcessMetrics) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector: one series set per workload,
// from the last readings (a scrape reads nothing from /proc).
func (m *ProcessMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(m.cfg.Now())
	sums := make(map[*resWorkload]*workloadSum, len(m.workloads))
	for _, w := range m.workloads {
		sums[w] = &workloadSum{counters: w.gone}
	}
	for _, ps := range m.live {
		s := sums[ps.w]
		if s == nil {
			continue
		}
		s.add(ps.usage.counters())
		s.rss += float64(ps.usage.RSS)
		s.virtual += float64(ps.usage.Virtual)
		s.threads += float64(ps.usage.Threads)
		s.fds += float64(ps.usage.FDs)
	}
	for w, s := range sums {
		emit := func(metric resMetric, v float64, point string) {
			desc, values := m.desc(metric, w.values, point)
			if resMetricInfo[metric].typ == prometheus.CounterValue {
				ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(desc, prometheus.CounterValue, v, w.start, values...)
				return
			}
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, values...)
		}
		emit(resCPU, s.user, "user")
		emit(resCPU, s.system, "system")
		emit(resSwitches, float64(s.voluntary), "voluntary")
		emit(resSwitches, float64(s.involuntary), "involuntary")
		if w.live == 0 {
			continue // gauges of a workload with no process: absent
		}
		emit(resMemory, s.rss, "")
		emit(resVirtual, s.virtual, "")
		emit(resThreads, s.threads, "")
		emit(resFDs, s.fds, "")
	}
}

// desc returns the description of a metric for a workload with resource
// label values (resourceKeys' order, "" for absent) and a data point label
// value, and the values of the labels present; m.mu is held.
func (m *ProcessMetrics) desc(metric resMetric, resValues []string, point string) (*prometheus.Desc, []string) {
	info := resMetricInfo[metric]
	var mask uint64
	present := make([]string, 0, len(resValues)+1)
	for i, v := range resValues {
		if v != "" {
			mask |= 1 << i
			present = append(present, v)
		}
	}
	if info.point != "" {
		present = append(present, point)
	}
	dk := resDescKey{metric, mask}
	if d := m.descs[dk]; d != nil {
		return d, present
	}
	labels := make([]string, 0, len(present))
	for i, k := range resourceKeys {
		if mask&(1<<i) != 0 {
			labels = append(labels, promLabel(k))
		}
	}
	if info.point != "" {
		labels = append(labels, info.point)
	}
	d := prometheus.NewDesc(info.name, info.help, labels, nil)
	m.descs[dk] = d
	return d, present
}
