//go:build !race

package agent

import (
	"context"
	"testing"
)

// A loopback redis-server's spans, all held until the rings are read past
// them and released in batches, cost no allocation of their own: the
// decoder's exchange is pooled, and a connection's held spans are kept in
// the same array from one release to the next (a new one per release
// cost an allocation or more per span). What is left is the query texts'
// shared buffers and the exporter's batches.
func TestRedisHeldAllocations(t *testing.T) {
	client := newSockClient()
	p := newSockPipeline(t, client, "redis-getset-held")
	i := 0
	rounds := func() {
		for range batchRounds {
			p.round(i)
			i++
		}
	}
	for range 100 {
		rounds() // the pools and arrays at their working size
	}
	if n := testing.AllocsPerRun(100, rounds) / batchRounds; n > 0.1 {
		t.Errorf("%.2f allocations per span, want none (but the text buffers' and the exporter's)", n)
	}
	p.drain()
	if err := p.exp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
