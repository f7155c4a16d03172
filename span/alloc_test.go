//go:build !race

// The race detector makes sync.Pool drop a share of what is put back on
// purpose, so allocation counts are only meaningful without it.

package span

import (
	"testing"

	"go.opentelemetry.io/otel/attribute"
)

// A span from the pool, used and released, costs no allocation.
func TestPoolNoAllocations(t *testing.T) {
	var p Pool
	p.Get().Release()
	if n := testing.AllocsPerRun(100, func() {
		s := p.Get()
		s.Attributes = append(s.Attributes, attribute.String("k", "v"))
		s.Release()
	}); n > 0 {
		t.Errorf("%v allocations per pooled span, want 0", n)
	}
}
