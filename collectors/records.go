package collectors

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/internal/wire"
)

// Records hands the ring records several collectors share (data, bind,
// write result, close, exec, exit: bpf/periscope.h) to a sink, counting
// them by type.
type Records struct {
	Sink  events.Sink
	Clock ktime.Clock
	Read  *prometheus.CounterVec // events read, by type

	// counters are Read's children by kind, resolved once: a label
	// lookup per record costs more than decoding it. data is the data
	// records' (most records), without the map lookup.
	counters map[string]prometheus.Counter
	data     prometheus.Counter
}

// Count counts one record of the given kind in Read.
func (r *Records) Count(kind string) {
	if kind == kindData && r.data != nil {
		r.data.Inc()
		return
	}
	c, ok := r.counters[kind]
	if !ok {
		if r.counters == nil {
			r.counters = make(map[string]prometheus.Counter)
		}
		c = r.Read.WithLabelValues(kind)
		r.counters[kind] = c
		if kind == kindData {
			r.data = c
		}
	}
	c.Inc()
}

// kindData is the data records' label value.
const kindData = "data"

// Decode handles one record. It returns the header and false, counting
// nothing, for a record of a type it does not know, for the caller to
// handle; a record too short for its type is counted as malformed.
func (r *Records) Decode(raw []byte) (wire.Header, bool) {
	h, ok := wire.ReadHeader(raw)
	if !ok {
		r.Read.WithLabelValues("malformed").Inc()
		return h, true
	}
	at := r.Clock.Time(h.TS)
	var kind string
	switch h.Type {
	case wire.EventData:
		var d events.Data
		if d, ok = wire.Data(raw); ok {
			d.Time = at
			kind = kindData
			r.Sink.Data(d)
		}
	case wire.EventBind:
		var b events.Bind
		if b, ok = wire.Bind(raw); ok {
			b.Time = at
			kind = "bind"
			r.Sink.Bind(b)
		}
	case wire.EventWriteResult:
		var w events.WriteResult
		if w, ok = wire.WriteResult(raw); ok {
			w.Time = at
			kind = "write_result"
			r.Sink.WriteResult(w)
		}
	case wire.EventClose:
		var c events.Close
		if c, ok = wire.Close(raw); ok {
			c.Time = at
			kind = "close"
			r.Sink.Close(c)
		}
	case wire.EventExit:
		kind = "exit"
		r.Sink.Exit(events.Exit{PID: h.PID, Time: at})
	case wire.EventExec:
		kind = "exec"
		r.Sink.Exec(events.Exec{PID: h.PID, Time: at, KTime: h.TS})
	default:
		return h, false
	}
	if !ok {
		kind = "malformed"
	}
	r.Count(kind)
	return h, true
}
