//go:build !race

package postgres

import (
	"fmt"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
)

// recycler ends exchanges as the correlator does: one its decoder let go
// of and that ended complete goes back to its pool. It counts the
// complete ones named as the test's queries are.
type recycler struct{ complete int }

func (*recycler) Begin(protocol.Exchange) {}

func (r *recycler) End(x protocol.Exchange, _ time.Time, reason string) {
	e := x.(*db.Exchange)
	if reason == "" && e.Summary == "SELECT pgbench_accounts" && e.Rows == 1 && e.Namespace == "pgbench" {
		r.complete++
	}
	if reason == "" && e.Pooled() {
		e.Recycle()
	}
}

// A query run again costs at most one allocation (its text, copied out of
// the framer's buffer): its statement is read once (sqltext.Cache), its
// exchange comes from a pool, its queue entry is reused, and the framer
// hands messages over without allocating; a prepared statement executed
// again costs none. pgbench -S (simple protocol, a literal that changes
// every time) and -M prepared.
func TestQueryAllocations(t *testing.T) {
	row := msg('D', "\x00\x01\x00\x00\x00\x010") + msg('C', "SELECT 1\x00") + msg('Z', "I")
	for _, c := range []struct {
		name   string
		setup  string // requests before, answered by ParseComplete and ReadyForQuery
		query  func(i int) string
		reply  string
		allocs float64
	}{
		{"simple", "", func(i int) string {
			return msg('Q', fmt.Sprintf("SELECT abalance FROM pgbench_accounts WHERE aid = %d;\x00", 10000+i%10000))
		}, msg('T', "\x00\x01abalance\x00\x00\x00\x40\x06\x00\x03\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00") + row, 1},
		{"prepared", msg('P', "P0_1\x00SELECT abalance FROM pgbench_accounts WHERE aid = $1;\x00\x00\x01\x00\x00\x00\x17") + msg('S', ""),
			func(int) string {
				return msg('B', "\x00P0_1\x00\x00\x00\x00\x01\x00\x00\x00\x0512345\x00\x00") + msg('E', "\x00\x00\x00\x00\x00") + msg('S', "")
			}, msg('2', "") + row, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := &recycler{}
			d := New(&db.Stats{}).NewDecoder(protocol.Server, h)
			feed := func(side protocol.Side, s string) {
				b := []byte(s)
				if err := d.Feed(side, protocol.Chunk{Bytes: b, Size: len(b), Time: time.Unix(1, 0)}); err != nil {
					t.Fatal(err)
				}
			}
			feed(protocol.Requests, startup(cstr("database"), cstr("pgbench")))
			feed(protocol.Responses, msg('R', "\x00\x00\x00\x00")+msg('Z', "I"))
			if c.setup != "" {
				feed(protocol.Requests, c.setup)
				feed(protocol.Responses, msg('1', "")+msg('Z', "I"))
			}
			queries := make([][]byte, 100)
			for i := range queries {
				queries[i] = []byte(c.query(i))
			}
			rb, i := []byte(c.reply), 0
			run := func() {
				q := queries[i%len(queries)]
				i++
				_ = d.Feed(protocol.Requests, protocol.Chunk{Bytes: q, Size: len(q), Time: time.Unix(1, 0)})
				_ = d.Feed(protocol.Responses, protocol.Chunk{Bytes: rb, Size: len(rb), Time: time.Unix(1, 0)})
			}
			run()
			if n := testing.AllocsPerRun(1000, run); n > c.allocs {
				t.Errorf("%v allocations per query, want %v", n, c.allocs)
			}
			if h.complete != i {
				t.Errorf("%d queries made %d complete exchanges", i, h.complete)
			}
		})
	}
}
