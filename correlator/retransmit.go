package correlator

import (
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

// Span attribute and event names for TCP retransmissions. They are
// Periscope's own: OpenTelemetry has no convention for them.
const (
	// AttrRetransmits is the number of segments the process's socket
	// retransmitted on the span's connection between the span's start and
	// end.
	AttrRetransmits = "periscope.tcp.retransmits"
	// EventRetransmit is the span event of one retransmission, with
	// network.connection.state and AttrSegments.
	EventRetransmit = "periscope.tcp.retransmit"
	// AttrSegments is the number of segments one retransmission sent.
	AttrSegments = "periscope.tcp.segments"
)

const (
	// maxRetransmitEvents bounds the span events of one span (the
	// OpenTelemetry SDK's default event limit); AttrRetransmits still
	// counts them all.
	maxRetransmitEvents = 128
	// maxRetransmitLog bounds the retransmissions remembered per
	// connection.
	maxRetransmitLog = 4096
	// retransmitKeep is how long a retransmission is remembered when no
	// exchange in flight needs it: its span may not be known yet, because
	// the TLS data that starts it travels in another ring buffer.
	retransmitKeep = 2 * time.Second
)

// retransmitMark is one retransmission on a connection.
type retransmitMark struct {
	at    time.Time
	state events.TCPState
	segs  int
}

// Retransmit handles a TCP retransmission: when it happened on a
// connection whose TLS data the correlator follows (the same 4-tuple, from
// the same end), the spans in flight on it at that time get it.
func (c *Correlator) Retransmit(r events.Retransmit) {
	if !validTuple(r.Tuple) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cn := c.byTuple[r.Tuple]
	if cn == nil {
		return
	}
	cn.addRetransmit(retransmitMark{at: r.Time, state: r.State, segs: max(r.Segments, 1)})
}

// addRetransmit records a retransmission, forgetting those that no span
// can contain any more. Marks stay sorted by time (records from different
// CPUs may arrive slightly out of order).
func (cn *conn) addRetransmit(m retransmitMark) {
	oldest := m.at.Add(-retransmitKeep)
	for _, h := range cn.held {
		if h.x.start.Before(oldest) {
			oldest = h.x.start
		}
	}
	for _, x := range cn.pending {
		if x.start.Before(oldest) {
			oldest = x.start
		}
	}
	drop := 0
	for drop < len(cn.retrans) && cn.retrans[drop].at.Before(oldest) {
		drop++
	}
	if len(cn.retrans)-drop >= maxRetransmitLog {
		drop = len(cn.retrans) - maxRetransmitLog + 1
	}
	if drop > 0 {
		cn.retrans = slices.Delete(cn.retrans, 0, drop)
	}
	i := len(cn.retrans)
	for i > 0 && cn.retrans[i-1].at.After(m.at) {
		i--
	}
	cn.retrans = slices.Insert(cn.retrans, i, m)
}

// addRetransmits puts the retransmissions of the span's connection between
// its start and end on the span: the segment count as AttrRetransmits and
// one EventRetransmit per retransmission.
func addRetransmits(s *span.Span, cn *conn) {
	if len(cn.retrans) == 0 {
		return
	}
	i, _ := slices.BinarySearchFunc(cn.retrans, s.Start, func(m retransmitMark, t time.Time) int {
		return m.at.Compare(t)
	})
	segs := 0
	for ; i < len(cn.retrans) && !cn.retrans[i].at.After(s.End); i++ {
		m := cn.retrans[i]
		segs += m.segs
		if len(s.Events) < maxRetransmitEvents {
			s.Events = append(s.Events, span.Event{
				Name: EventRetransmit,
				Time: m.at,
				Attributes: []attribute.KeyValue{
					attribute.String("network.connection.state", m.state.String()),
					attribute.Int(AttrSegments, m.segs),
				},
			})
		}
	}
	if segs > 0 {
		s.Attributes = append(s.Attributes, attribute.Int(AttrRetransmits, segs))
	}
}
