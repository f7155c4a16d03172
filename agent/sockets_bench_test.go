package agent

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/internal/wire"
)

// The sockets collector's byte path alone, as the benches drive it: a
// traced server's reads and writes as sockets data records (with their
// TCP sequence numbers) → correlator → decoder → spans → RED histograms and
// OTLP bytes. Two workloads:
//   - plain: nginx under wrk, one HTTP/1.1 GET and its response per read
//     and write on each of wrk's keep-alive connections;
//   - redis1: redis-server under redis-benchmark -t get,set -c 50 (no
//     pipelining: the case most users hit), one read of one command and
//     one write of its reply, the 50 connections taking turns;
//   - redis-getset: the same as redis-benchmark -t get,set -n 20000 runs
//     it, each connection sending SETs for the first redisRun commands
//     of all connections, then GETs, and so on (BenchmarkPipeline's
//     fake-redis: redis-getset-held);
//   - redis16: redis-server under redis-benchmark -t get,set -P 16 -c 50,
//     one read of 16 commands and one write of their 16 replies;
//   - redis16-held: the same with a ring whose progress lags one batch of
//     64 reads and writes, as the agent's reader's does: each span waits
//     for the client end a loopback server's may have in another ring;
//   - postgres: a PostgreSQL backend under pgbench -S -c 10 (simple
//     protocol): one read of a Query ("SELECT abalance FROM
//     pgbench_accounts WHERE aid = N;", N different per connection) and
//     one write of its RowDescription, DataRow, CommandComplete and
//     ReadyForQuery.

const (
	pidNginx, pidRedis, pidPostgres = 2001, 2002, 2003
	dataSeqFlag                     = 1 // DATA_SEQ
	bindStreamStart                 = 2 // BIND_STREAM_START
	redisDepth                      = 16
)

// sockConn is one traced connection: its read and write records, replayed
// with their sequence numbers advanced.
type sockConn struct {
	read, write         []byte
	readSeq, writeSeq   uint32
	readSize, writeSize uint32
	// alt, when set, is a second request and response replayed in turn
	// with the first, redisRun rounds of each (redis-getset).
	alt *sockConn
}

// redisRun is redis-benchmark's -n at depth 1: the commands of one test
// (SET, then GET) over all connections.
const redisRun = 20000

// sockPipeline is the user-space pipeline fed with one workload's records.
type sockPipeline struct {
	wiring
	conns []sockConn
	spans int // spans per round of records (one read and one write)
	ts    uint64
	// ring, in the -held workloads, is the sockets ring's progress, moved
	// as the agent's reader moves it: to the time before each batch of
	// records (batch), so that loopback servers' spans are held until
	// then, waiting for their client end (the redis bench's case).
	ring  *ktime.Progress
	batch uint64
	setup int // data records decoded before the rounds
}

// Offsets in a data record (dataRecord).
const (
	offRecSeq   = 56
	offRecFlags = 60
)

func sockData(pid uint32, conn uint64, dir events.Direction, payload []byte) []byte {
	rec := dataRec(pid, conn, dir, string(payload))
	binary.NativeEndian.PutUint32(rec[offRecFlags:], dataSeqFlag)
	return rec
}

func respCmd(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// newSockPipeline builds the pipeline for one of BenchmarkSockets' workloads.
func newSockPipeline(tb testing.TB, client *countingClient, workload string) *sockPipeline {
	tb.Helper()
	resolver := procs{pidNginx: process(pidNginx, "nginx"), pidRedis: process(pidRedis, "redis-server"),
		pidPostgres: process(pidPostgres, "postgres")}
	p := &sockPipeline{wiring: newWiring(tb, client, resolver), ts: 1e12}
	if held, ok := strings.CutSuffix(workload, "-held"); ok {
		workload = held
		p.ring = p.corr.Ring()
	}
	var pid uint32
	var nconns int
	var req, resp string
	var setup [][2]string // per connection: a read and its write before the rounds
	var alt [2]string     // a second request and response, taking turns with the first
	perConn := func(string, int) string { return req }
	switch workload {
	case "plain":
		pid, nconns, p.spans = pidNginx, 16, 1
		req = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
		resp = "HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Mon, 07 Dec 2026 01:00:00 GMT\r\nContent-Type: text/html\r\nContent-Length: 615\r\nLast-Modified: Mon, 07 Dec 2026 00:00:00 GMT\r\nConnection: keep-alive\r\nETag: \"6571a2b0-267\"\r\nAccept-Ranges: bytes\r\n\r\n" + strings.Repeat("x", 615)
	case "redis1":
		pid, nconns, p.spans = pidRedis, 50, 1
		req, resp = respCmd("GET", "key:__rand_int__"), "$3\r\nxxx\r\n"
	case "redis-getset":
		pid, nconns, p.spans = pidRedis, 50, 1
		req, resp = respCmd("SET", "key:__rand_int__", "xxx"), "+OK\r\n"
		alt = [2]string{respCmd("GET", "key:__rand_int__"), "$3\r\nxxx\r\n"}
	case "redis16":
		pid, nconns, p.spans = pidRedis, 50, redisDepth
		var rq, rs strings.Builder
		for range redisDepth / 2 {
			rq.WriteString(respCmd("SET", "key:__rand_int__", "xxx"))
			rs.WriteString("+OK\r\n")
			rq.WriteString(respCmd("GET", "key:__rand_int__"))
			rs.WriteString("$3\r\nxxx\r\n")
		}
		req, resp = rq.String(), rs.String()
	case "postgres":
		pid, nconns, p.spans = pidPostgres, 10, 1
		setup = [][2]string{{pgStartup("pgbench", "pgbench"), pgMsg('R', "\x00\x00\x00\x00") + pgMsg('Z', "I")}}
		perConn = func(_ string, i int) string {
			return pgMsg('Q', fmt.Sprintf("SELECT abalance FROM pgbench_accounts WHERE aid = %d;\x00", 31337+7919*i))
		}
		resp = pgMsg('T', "\x00\x01abalance\x00\x00\x00\x40\x06\x00\x03\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00") +
			pgMsg('D', "\x00\x01\x00\x00\x00\x010") + pgMsg('C', "SELECT 1\x00") + pgMsg('Z', "I")
	default:
		tb.Fatalf("unknown workload %q", workload)
	}
	port := map[uint32]uint16{pidNginx: 8080, pidRedis: 6379, pidPostgres: 5432}[pid]
	for i := range nconns {
		key := uint64(0x9f0000 + i)
		t := tupleOf(fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", 40000+i))
		rec := bindRec(pid, key, bindPlaintext|bindStreamStart, t)
		p.stamp(rec)
		p.records.Decode(rec)
		req := perConn(req, i)
		c := sockConn{readSeq: uint32(i) * 1e6, writeSeq: uint32(i)*1e6 + 5e5}
		for _, rw := range setup {
			c.set(pid, key, rw[0], rw[1])
			p.replay(&c)
			p.setup += 2
		}
		c.set(pid, key, req, resp)
		if alt[0] != "" {
			c.alt = &sockConn{}
			c.alt.set(pid, key, alt[0], alt[1])
		}
		p.conns = append(p.conns, c)
	}
	return p
}

// set makes c's read and write records carry req and resp.
func (c *sockConn) set(pid uint32, key uint64, req, resp string) {
	capped := func(s string) []byte {
		return []byte(s[:min(len(s), wire.DataCap)])
	}
	c.read, c.write = sockData(pid, key, events.Read, capped(req)), sockData(pid, key, events.Write, capped(resp))
	c.readSize, c.writeSize = uint32(len(req)), uint32(len(resp))
	binary.NativeEndian.PutUint32(c.read[offRecSize:], c.readSize)
	binary.NativeEndian.PutUint32(c.write[offRecSize:], c.writeSize)
}

// pgMsg is a PostgreSQL message: its type, length and body.
func pgMsg(typ byte, body string) string {
	return string(binary.BigEndian.AppendUint32([]byte{typ}, uint32(4+len(body)))) + body
}

// pgStartup is a StartupMessage (protocol 3.0) for user and database.
func pgStartup(user, database string) string {
	body := "\x00\x03\x00\x00user\x00" + user + "\x00database\x00" + database + "\x00\x00"
	return string(binary.BigEndian.AppendUint32(nil, uint32(4+len(body)))) + body
}

// offRecSize is where a data record holds the call's size.
const offRecSize = 36

func (p *sockPipeline) stamp(rec []byte) {
	p.ts += 1000
	binary.NativeEndian.PutUint64(rec, p.ts)
}

// batchRounds is how many rounds the -held workloads' ring lags.
const batchRounds = 64

// round replays one read and one write on connection i; with a ring,
// every batchRounds rounds it moves the ring's progress and releases the
// held spans, as the reader and Correlator.Run do.
func (p *sockPipeline) round(i int) {
	if p.ring != nil && i%batchRounds == 0 {
		p.ring.Advance(p.batch)
		p.corr.ReleaseHeld(p.records.Clock.Time(p.ts))
		p.batch = p.ts
	}
	c := &p.conns[i%len(p.conns)]
	if c.alt != nil && (i/redisRun)%2 == 1 {
		c.alt.readSeq, c.alt.writeSeq = c.readSeq, c.writeSeq
		p.replay(c.alt)
		c.readSeq, c.writeSeq = c.alt.readSeq, c.alt.writeSeq
		return
	}
	p.replay(c)
}

// replay decodes c's read and write records once, sequence numbers moved on.
func (p *sockPipeline) replay(c *sockConn) {
	binary.NativeEndian.PutUint32(c.read[offRecSeq:], c.readSeq)
	c.readSeq += c.readSize
	p.stamp(c.read)
	p.records.Decode(c.read)
	binary.NativeEndian.PutUint32(c.write[offRecSeq:], c.writeSeq)
	c.writeSeq += c.writeSize
	p.stamp(c.write)
	p.records.Decode(c.write)
}

// drain lets every held span out: the ring has been read to its end.
func (p *sockPipeline) drain() {
	if p.ring != nil {
		p.ring.Done()
		p.corr.ReleaseHeld(p.records.Clock.Time(p.ts))
	}
}

// BenchmarkSockets measures the sockets byte path per span (ns/op and
// cpu-ns/span, all goroutines, export to an in-process transport that
// marshals what the gRPC client would send).
func BenchmarkSockets(b *testing.B) {
	for _, w := range []string{"plain", "redis1", "redis16", "redis16-held", "postgres"} {
		b.Run(w, func(b *testing.B) { runSockets(b, newSockClient(), w) })
	}
}

func newSockClient() *countingClient { return &countingClient{codec: encoding.GetCodecV2("proto")} }

// runSockets replays b.N spans of workload w's records, exported to
// client, and reports them per span.
func runSockets(b *testing.B, client *countingClient, w string) {
	p := newSockPipeline(b, client, w)
	rounds := (b.N + p.spans - 1) / p.spans
	n := rounds * p.spans
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := range rounds {
		p.round(i)
		if i%64 == 63 {
			for int64((i+1-2*batchRounds)*p.spans)-client.spans.Load() > maxBacklog {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}
	p.drain()
	if err := p.exp.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	if got := client.spans.Load(); got != int64(n) {
		b.Fatalf("%d spans delivered, want %d", got, n)
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/span")
	b.ReportMetric(float64(client.bytes.Load())/float64(n), "bytes/span")
}

// TestSocketsPipeline checks that the benchmark's records make the spans
// it claims to measure: each request or command one span, all exported,
// none incomplete or evicted.
func TestSocketsPipeline(t *testing.T) {
	for _, w := range []string{"plain", "redis1", "redis16", "redis16-held", "postgres"} {
		t.Run(w, func(t *testing.T) {
			client := &countingClient{codec: encoding.GetCodecV2("proto"), keep: true}
			p := newSockPipeline(t, client, w)
			const rounds = 200
			for i := range rounds {
				p.round(i)
			}
			if p.ring != nil {
				// The last batch's spans wait for the ring.
				if built, want := spansBuilt(t, p.reg), float64(rounds-batchRounds)*float64(p.spans); built > want {
					t.Fatalf("%v spans built before the ring caught up, want at most %v", built, want)
				}
			}
			p.drain()
			if err := p.exp.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got, want := client.spans.Load(), int64(rounds*p.spans); got != want {
				t.Fatalf("%d spans exported, want %d", got, want)
			}
			if n := testutil.ToFloat64(p.records.Read.WithLabelValues("data")); n != float64(2*rounds+p.setup) {
				t.Errorf("%v data records decoded, want %d", n, 2*rounds+p.setup)
			}
			if w == "postgres" {
				checkPostgresSpans(t, client.last)
			}
		})
	}
}

// checkPostgresSpans checks the last export of the postgres workload: each
// span named by its query's summary, with the sanitised text.
func checkPostgresSpans(t *testing.T, last []byte) {
	t.Helper()
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(last, &req); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				n++
				got := map[string]string{}
				for _, kv := range s.Attributes {
					got[kv.Key] = kv.Value.GetStringValue()
				}
				if s.Name != "SELECT pgbench_accounts" || got["db.query.text"] != "SELECT abalance FROM pgbench_accounts WHERE aid = ?" ||
					got["db.operation.name"] != "SELECT" || got["db.collection.name"] != "pgbench_accounts" || got["db.namespace"] != "pgbench" {
					t.Fatalf("span %q %v", s.Name, got)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no span in the last export")
	}
}

// spansBuilt is periscope_spans_total, all kinds.
func spansBuilt(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "periscope_spans_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}
