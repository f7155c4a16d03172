//go:build !race

package redis

import (
	"testing"
	"time"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
)

// A pipelined command and its reply cost one allocation: the exchange
// (its name is interned, its query text carved from a shared buffer, its
// pending entry kept by value). The query-text buffers add one per
// textChunk bytes of text.
func TestCommandAllocations(t *testing.T) {
	rq, rs := []byte(cmd("GET", "key:000000012345")), []byte("$3\r\nxxx\r\n")
	d := New(&db.Stats{}).NewDecoder(protocol.Client, &nopHandler{})
	feed := func() {
		_ = d.Feed(protocol.Requests, protocol.Chunk{Bytes: rq, Size: len(rq), Time: time.Unix(1, 0)})
		_ = d.Feed(protocol.Responses, protocol.Chunk{Bytes: rs, Size: len(rs), Time: time.Unix(1, 0)})
	}
	feed()
	if n := testing.AllocsPerRun(1000, feed); n > 1.1 {
		t.Errorf("%v allocations per command, want 1 (+ the text buffers')", n)
	}
}
