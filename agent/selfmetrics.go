package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/collectors"
)

// instrumented exports, at each scrape, what each collector has attached
// to: periscope_instrumented_files{collector} and
// periscope_instrumented_processes{collector}.
type instrumented struct {
	cols         []collectors.Collector
	files, procs *prometheus.Desc
}

func newInstrumented(cols []collectors.Collector) *instrumented {
	return &instrumented{
		cols: cols,
		files: prometheus.NewDesc("periscope_instrumented_files",
			"Executables and libraries a collector has probes on.", []string{"collector"}, nil),
		procs: prometheus.NewDesc("periscope_instrumented_processes",
			"Processes mapping a file a collector has probes on.", []string{"collector"}, nil),
	}
}

func (m *instrumented) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.files
	ch <- m.procs
}

func (m *instrumented) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.cols {
		atts := collectors.AttachmentsOf(c)
		pids := make(map[uint32]bool)
		for _, a := range atts {
			for _, pid := range a.Users {
				pids[pid] = true
			}
		}
		ch <- prometheus.MustNewConstMetric(m.files, prometheus.GaugeValue, float64(len(atts)), c.Name())
		ch <- prometheus.MustNewConstMetric(m.procs, prometheus.GaugeValue, float64(len(pids)), c.Name())
	}
}
