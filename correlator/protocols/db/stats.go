package db

import (
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats counts what the database decoders of one protocol could not keep.
// One Stats is shared by all connections of a protocol; NewStats exports it.
type Stats struct {
	// Overflowed counts requests that found the pending queue full: they
	// get no span, and their responses are skipped in order.
	Overflowed atomic.Int64
	// LostSync counts the times message boundaries were lost (bytes not
	// captured where a header should have been, or an invalid header).
	LostSync atomic.Int64
	// Encrypted counts connections that switched to TLS (PostgreSQL
	// SSLRequest/GSSENCRequest accepted, MySQL SSL request): their
	// plaintext, if any, comes from a TLS collector.
	Encrypted atomic.Int64
	// Forgotten counts prepared statements evicted from a connection's
	// table (too many open at once): their executions are named without
	// their text.
	Forgotten atomic.Int64
}

// NewStats returns the Stats of protocol (db.system.name) and registers
// them on reg (if not nil) as periscope_db_decoder_events_total{protocol,
// event}.
func NewStats(reg prometheus.Registerer, protocol string) (*Stats, error) {
	s := &Stats{}
	if reg != nil {
		desc := prometheus.NewDesc("periscope_db_decoder_events_total", statsHelp, []string{"event"},
			prometheus.Labels{"protocol": protocol})
		if err := reg.Register(&statsCollector{s: s, desc: desc}); err != nil {
			return nil, fmt.Errorf("register %s decoder counters: %w", protocol, err)
		}
	}
	return s, nil
}

const statsHelp = "Events of the database protocol decoders that lose data: requests over the pending cap " +
	"(overflowed), message boundaries lost (lost_sync), connections switched to TLS (encrypted), prepared " +
	"statements forgotten (forgotten)."

// statsCollector exports a Stats.
type statsCollector struct {
	s    *Stats
	desc *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, e := range [...]struct {
		name string
		v    *atomic.Int64
	}{{"overflowed", &c.s.Overflowed}, {"lost_sync", &c.s.LostSync}, {"encrypted", &c.s.Encrypted}, {"forgotten", &c.s.Forgotten}} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(e.v.Load()), e.name)
	}
}
