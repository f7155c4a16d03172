package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/exporters"
	"github.com/periscope-apm/periscope/span"
)

// Output modes accepted by New.
const (
	ModeText = "text"
	ModeJSON = "json"
)

// QueueSize is how many spans may wait for the writer before Export drops.
const QueueSize = 4096

// maxWrite bounds how many bytes the writer gathers before one Write call.
const maxWrite = 64 << 10

// Exporter writes spans to an io.Writer. Its zero value is not usable; call
// New.
type Exporter struct {
	w       io.Writer
	format  func([]byte, *span.Span) ([]byte, error)
	metrics *exporters.SpanMetrics

	queue    chan *span.Span
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	stopped  atomic.Bool
}

var _ span.Exporter = (*Exporter)(nil)

// New returns an exporter writing to w in mode ModeText or ModeJSON, with its
// self metrics (exporter="console") registered with reg (nil: none). It
// starts the writer goroutine, which Shutdown stops.
func New(mode string, w io.Writer, reg prometheus.Registerer) (*Exporter, error) {
	var format func([]byte, *span.Span) ([]byte, error)
	switch mode {
	case ModeText:
		format = appendText
	case ModeJSON:
		format = appendJSON
	default:
		return nil, fmt.Errorf("console exporter: unknown mode %q (want %q or %q)", mode, ModeText, ModeJSON)
	}
	if w == nil {
		return nil, errors.New("console exporter: nil writer")
	}
	e := &Exporter{
		w:      w,
		format: format,
		queue:  make(chan *span.Span, QueueSize),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	m, err := exporters.NewSpanMetrics(reg, "console", exporters.Gauges{QueueLen: func() int { return len(e.queue) }})
	if err != nil {
		return nil, fmt.Errorf("console exporter: %w", err)
	}
	e.metrics = m
	go e.run()
	return e, nil
}

// Export queues s for writing, or drops and counts it when the queue is
// full. It never blocks. Spans exported after Shutdown are ignored.
func (e *Exporter) Export(s *span.Span) {
	if s == nil || e.stopped.Load() {
		return
	}
	s.Hold() // released once formatted (run)
	select {
	case e.queue <- s:
	default:
		s.Release()
		e.metrics.QueueFull.Inc()
	}
}

// Shutdown writes what is queued and stops the writer goroutine. It returns
// ctx's error if that takes longer than ctx allows; the goroutine then
// finishes on its own.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.stopOnce.Do(func() {
		e.stopped.Store(true)
		close(e.stop)
	})
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("console exporter: shutdown: %w", ctx.Err())
	}
}

// run is the writer goroutine. It gathers the lines of all queued spans
// (up to maxWrite bytes) into one Write.
func (e *Exporter) run() {
	defer close(e.done)
	var (
		buf   []byte
		count int
	)
	flush := func() {
		if count == 0 {
			return
		}
		if _, err := e.w.Write(buf); err != nil {
			e.metrics.Failures.Inc()
			e.metrics.ExportFailed.Add(float64(count))
		} else {
			e.metrics.Exported.Add(float64(count))
		}
		buf, count = buf[:0], 0
	}
	add := func(s *span.Span) {
		n := len(buf)
		var err error
		buf, err = e.format(buf, s)
		s.Release()
		if err != nil {
			buf = buf[:n]
			e.metrics.Failures.Inc()
			e.metrics.ExportFailed.Inc()
			return
		}
		count++
		if len(buf) >= maxWrite || len(e.queue) == 0 {
			flush()
		}
	}
	for {
		select {
		case s := <-e.queue:
			add(s)
		case <-e.stop:
			for {
				select {
				case s := <-e.queue:
					add(s)
				default:
					flush()
					return
				}
			}
		}
	}
}
