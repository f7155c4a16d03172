// Package exporters holds what all span exporters share: the fan-out that
// hands each span to several exporters, and the agent's self metrics about
// exporting. The exporters themselves live in the sub-packages (console,
// otlp); they know nothing about eBPF or HTTP parsing.
package exporters

import (
	"context"
	"errors"
	"sync"

	"github.com/periscope-apm/periscope/span"
)

// Multi sends each span to several exporters. Spans are shared, not copied:
// exporters must treat them as read-only.
type Multi struct {
	exporters []span.Exporter
}

var _ span.Exporter = (*Multi)(nil)

// NewMulti returns an exporter that forwards to each non-nil exporter in
// exps, in order.
func NewMulti(exps ...span.Exporter) *Multi {
	m := &Multi{}
	for _, e := range exps {
		if e != nil {
			m.exporters = append(m.exporters, e)
		}
	}
	return m
}

// Len reports how many exporters m forwards to.
func (m *Multi) Len() int { return len(m.exporters) }

// Export hands s to every exporter. Each exporter is non-blocking, so Export
// is too.
func (m *Multi) Export(s *span.Span) {
	for _, e := range m.exporters {
		e.Export(s)
	}
}

// Shutdown shuts all exporters down concurrently, so that each gets the
// whole of ctx to flush, and returns their errors joined.
func (m *Multi) Shutdown(ctx context.Context) error {
	errs := make([]error, len(m.exporters))
	var wg sync.WaitGroup
	for i, e := range m.exporters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.Shutdown(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
