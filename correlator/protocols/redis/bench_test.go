package redis

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
)

// nopHandler drops every exchange: the benchmark measures the decoder.
type nopHandler struct{ ended int }

func (*nopHandler) Begin(protocol.Exchange)                    {}
func (h *nopHandler) End(protocol.Exchange, time.Time, string) { h.ended++ }

// BenchmarkPipeline16 decodes what redis-benchmark -t get,set -P 16 sends
// and receives: one write of 16 commands, one read of their 16 replies.
// Reported per command, in wall time (ns/op) and CPU time (cpu-ns/op).
func BenchmarkPipeline16(b *testing.B) {
	const depth = 16
	var reqs, resps strings.Builder
	for i := 0; i < depth/2; i++ {
		reqs.WriteString(cmd("SET", "key:__rand_int__", "xxx"))
		resps.WriteString("+OK\r\n")
		reqs.WriteString(cmd("GET", "key:__rand_int__"))
		resps.WriteString("$3\r\nxxx\r\n")
	}
	rq, rs := []byte(reqs.String()), []byte(resps.String())
	h := &nopHandler{}
	d := New(&db.Stats{}).NewDecoder(protocol.Client, h)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for i := 0; i < b.N; i += depth {
		if err := d.Feed(protocol.Requests, protocol.Chunk{Bytes: rq, Size: len(rq), Time: now}); err != nil {
			b.Fatal(err)
		}
		if err := d.Feed(protocol.Responses, protocol.Chunk{Bytes: rs, Size: len(rs), Time: now}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
	if h.ended < b.N {
		b.Fatalf("%d exchanges ended, want %d", h.ended, b.N)
	}
}

// cpuTime is the process's CPU time (user + system, ns): on a shared
// machine it moves less with the load than ns/op, which is wall time.
func cpuTime(b *testing.B) int64 {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		b.Fatal(err)
	}
	return u.Utime.Nano() + u.Stime.Nano()
}
