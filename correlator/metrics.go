package correlator

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/linking"
)

// Reasons a request ends without a complete response (error.type and the
// reason label of periscope_requests_incomplete_total).
const (
	reasonClosed     = protocol.ReasonClosed
	reasonExit       = protocol.ReasonExit
	reasonTimeout    = protocol.ReasonTimeout
	reasonEvicted    = protocol.ReasonEvicted
	reasonParseError = protocol.ReasonParseError
	reasonRequestErr = protocol.ReasonRequestErr
	reasonDataLost   = protocol.ReasonDataLost
)

// metrics are the correlator's own counters.
type metrics struct {
	spansServer, spansClient prometheus.Counter
	notHTTP                  prometheus.Counter
	parseErrors              prometheus.Counter
	incomplete               map[string]prometheus.Counter // by reason
	tracked                  prometheus.Gauge
	unmatchedEnds            prometheus.Counter
	noEnd                    prometheus.Counter
	superseded               prometheus.Counter
	waitsCut                 prometheus.Counter
	peeked                   prometheus.Counter
	gaps                     prometheus.Counter
	lostBytes                prometheus.Counter
	// links counts lookups by linking.Result (indexed by it): one
	// counter per span without hashing its label.
	links []prometheus.Counter
}

// countLink counts the outcome of a lookup.
func (m *metrics) countLink(r linking.Result) {
	if int(r) < len(m.links) && m.links[r] != nil {
		m.links[r].Inc()
	}
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	spans := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "periscope_spans_total",
		Help: "Spans built by the correlator, by kind.",
	}, []string{"kind"})
	notHTTP := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "periscope_connections_not_http_total",
		Help: "Connections given up on because their bytes are no protocol the agent decodes (HTTP/1.x, HTTP/2).",
	})
	parseErrors := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "periscope_http_parse_errors_total",
		Help: "Connections given up on because they broke the HTTP/1.x protocol.",
	})
	incomplete := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "periscope_requests_incomplete_total",
		Help: "Requests that ended without a complete response, by reason.",
	}, []string{"reason"})
	tracked := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "periscope_connections_tracked",
		Help: "Connections the correlator keeps state for.",
	})
	unmatched := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "periscope_request_ends_unmatched_total",
		Help: "Ends of requests seen whole whose start was not seen (the probes were attached mid-request).",
	})
	noEnd := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "periscope_requests_without_end_total",
		Help: "Requests seen whole (Go) whose end was never seen (HTTP/2 streams, hijacked connections), dropped without a span.",
	})
	superseded := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "periscope_connections_superseded_total",
		Help: "Connections whose socket bytes were dropped because another collector reports them (TLS plaintext, Go requests seen whole): one request, one span.",
	})
	waitsCut := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "periscope_span_waits_cut_total",
		Help: "Spans that left before their wait for the other end of their connection was over, because the connection held too many finished requests: they may lack their parent or child.",
	})
	peeked := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "periscope_reads_peeked_total",
		Help: "Plaintext reads that repeated bytes already read (MSG_PEEK), not decoded again.",
	})
	gaps := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "periscope_data_gaps_total",
		Help: "Plaintext records that started past the end of the last one of their connection and direction: bytes lost (ring buffer full); the requests in flight on an HTTP/1, Redis or PostgreSQL connection end as data_lost and decoding restarts at the first call after a reply, if it starts a request; a MySQL connection is no longer decoded.",
	})
	lostBytes := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "periscope_data_lost_bytes_total",
		Help: "Bytes of plaintext connections not decoded because records before them were lost (ring buffer full): the bytes lost, and those of the calls after them until decoding restarts (periscope_data_gaps_total).",
	})
	links := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "periscope_link_lookups_total",
		Help: "Lookups of the client spans of server requests from other nodes (linking), by result: linked, not_found, no_owner, timeout, refused, error, dropped.",
	}, []string{"result"})
	var byResult []prometheus.Counter
	for _, r := range linking.Results {
		if int(r) >= len(byResult) {
			byResult = append(byResult, make([]prometheus.Counter, int(r)+1-len(byResult))...)
		}
		byResult[r] = links.WithLabelValues(r.String())
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{spans, notHTTP, parseErrors, incomplete, tracked, unmatched, noEnd, superseded, waitsCut, peeked, gaps, lostBytes, links} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register correlator metrics: %w", err)
			}
		}
	}
	m := &metrics{
		spansServer:   spans.WithLabelValues("server"),
		spansClient:   spans.WithLabelValues("client"),
		notHTTP:       notHTTP,
		parseErrors:   parseErrors,
		incomplete:    make(map[string]prometheus.Counter),
		tracked:       tracked,
		unmatchedEnds: unmatched,
		noEnd:         noEnd,
		superseded:    superseded,
		waitsCut:      waitsCut,
		peeked:        peeked,
		gaps:          gaps,
		lostBytes:     lostBytes,
		links:         byResult,
	}
	for reason, label := range map[string]string{
		reasonClosed:         "closed",
		reasonExit:           "exit",
		reasonTimeout:        "timeout",
		reasonEvicted:        "evicted",
		reasonParseError:     "parse_error",
		reasonRequestErr:     "request_failed",
		protocol.ReasonReset: "stream_reset",
		reasonDataLost:       "data_lost",
	} {
		m.incomplete[reason] = incomplete.WithLabelValues(label)
	}
	return m, nil
}
