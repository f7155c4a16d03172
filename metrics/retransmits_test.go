package metrics

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

// fakeProcs names PID N "exe-N", service "svc-N"; PID 99 is unknown.
type fakeProcs struct{}

func (fakeProcs) Process(pid uint32) *span.Process {
	if pid == 99 {
		return &span.Process{PID: pid, ServiceName: "unknown_service"}
	}
	return &span.Process{PID: pid, ServiceName: fmt.Sprintf("svc-%d", pid), Attributes: []attribute.KeyValue{
		attribute.Int64("process.pid", int64(pid)),
		attribute.String("process.executable.name", fmt.Sprintf("exe-%d", pid)),
	}}
}

func rt(pid uint32, role events.SocketRole, local, remote string, state events.TCPState, segs int) events.Retransmit {
	return events.Retransmit{
		PID: pid, Comm: "comm", Role: role, State: state, Segments: segs,
		Tuple: events.Tuple{Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote)},
	}
}

func TestRetransmitsPrometheus(t *testing.T) {
	r := NewRetransmits(RetransmitsConfig{}, fakeProcs{})
	// A server (accepted): the client's ephemeral port is left out, the
	// server's own port kept.
	r.Add(rt(10, events.RoleAccepted, "10.0.0.1:443", "10.0.0.2:51000", events.TCPEstablished, 1))
	r.Add(rt(10, events.RoleAccepted, "10.0.0.1:443", "10.0.0.2:51001", events.TCPEstablished, 2))
	// A client (connected): the server's port is the peer's.
	r.Add(rt(20, events.RoleConnected, "10.0.0.2:40000", "10.0.0.9:5432", events.TCPSynSent, 1))
	// Unknown role: the lower port is the service's; IPv4-mapped peers are IPv4.
	r.Add(rt(30, events.RoleUnknown, "[::ffff:10.0.0.3]:8080", "[::ffff:10.0.0.4]:60000", events.TCPFinWait1, 1))
	// No owner, and an owner /proc could not name.
	r.Add(rt(0, events.RoleUnknown, "10.0.0.5:50000", "10.0.0.6:80", events.TCPEstablished, 1))
	r.Add(rt(99, events.RoleConnected, "10.0.0.5:50001", "10.0.0.6:80", events.TCPEstablished, 1))

	want := `
# HELP periscope_tcp_retransmits_total ` + retransmitsHelp + `
# TYPE periscope_tcp_retransmits_total counter
periscope_tcp_retransmits_total{container_id="",network_connection_state="established",network_local_port="443",network_peer_address="10.0.0.2",network_peer_port="",process_executable_name="exe-10",process_pid="10",service_name="svc-10"} 3
periscope_tcp_retransmits_total{container_id="",network_connection_state="syn_sent",network_local_port="",network_peer_address="10.0.0.9",network_peer_port="5432",process_executable_name="exe-20",process_pid="20",service_name="svc-20"} 1
periscope_tcp_retransmits_total{container_id="",network_connection_state="fin_wait_1",network_local_port="8080",network_peer_address="10.0.0.4",network_peer_port="",process_executable_name="exe-30",process_pid="30",service_name="svc-30"} 1
periscope_tcp_retransmits_total{container_id="",network_connection_state="established",network_local_port="",network_peer_address="10.0.0.6",network_peer_port="80",process_executable_name="comm",process_pid="0",service_name="comm"} 1
periscope_tcp_retransmits_total{container_id="",network_connection_state="established",network_local_port="",network_peer_address="10.0.0.6",network_peer_port="80",process_executable_name="comm",process_pid="99",service_name="comm"} 1
`
	if err := testutil.CollectAndCompare(r, strings.NewReader(want), RetransmitsPromName); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(overflowCollector{r}); got != 0 {
		t.Errorf("overflowed = %v, want 0", got)
	}
}

// overflowCollector exposes only the overflow counter, for ToFloat64.
type overflowCollector struct{ r *Retransmits }

func (o overflowCollector) Describe(ch chan<- *prometheus.Desc) { ch <- o.r.overflowDesc }
func (o overflowCollector) Collect(ch chan<- prometheus.Metric) {
	_, n := o.r.snapshot()
	ch <- prometheus.MustNewConstMetric(o.r.overflowDesc, prometheus.CounterValue, float64(n))
}

func TestRetransmitsOverflow(t *testing.T) {
	r := NewRetransmits(RetransmitsConfig{MaxPeers: 2}, fakeProcs{})
	add := func(pid uint32, peer string) {
		r.Add(rt(pid, events.RoleConnected, "10.0.0.1:40000", peer, events.TCPEstablished, 1))
	}
	add(1, "10.1.0.1:80")
	add(1, "10.1.0.2:80")
	add(1, "10.1.0.3:80") // third peer: folded
	add(1, "10.1.0.3:80") // the same folded series again: counted once
	add(2, "10.1.0.4:80") // another process, another peer: folded
	add(2, "10.1.0.1:80") // a known peer keeps its own series
	add(1, "10.1.0.1:443")

	pts, overflowed := r.snapshot()
	if overflowed != 3 {
		t.Errorf("overflowed series = %d, want 3", overflowed)
	}
	got := map[string]uint64{}
	for _, p := range pts {
		v := p.key.values()
		got[fmt.Sprintf("%s %s:%s", v[0], v[4], v[5])] = p.segs
	}
	want := map[string]uint64{
		"1 10.1.0.1:80": 1,
		"1 10.1.0.2:80": 1,
		"1 _overflow:":  3,
		"2 _overflow:":  1,
		"2 10.1.0.1:80": 1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("series:\n got %v\nwant %v", got, want)
	}
}

func TestRetransmitsRetention(t *testing.T) {
	proc := t.TempDir()
	if err := os.Mkdir(filepath.Join(proc, "10"), 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	r := NewRetransmits(RetransmitsConfig{MaxPeers: 1, Retention: time.Minute, ProcRoot: proc, Now: func() time.Time { return now }}, fakeProcs{})
	r.Add(rt(10, events.RoleConnected, "10.0.0.1:40000", "10.1.0.1:80", events.TCPEstablished, 1)) // runs
	r.Add(rt(11, events.RoleConnected, "10.0.0.1:40001", "10.1.0.2:80", events.TCPEstablished, 1)) // exited; folded (cap 1)
	now = now.Add(30 * time.Second)
	if pts, _ := r.snapshot(); len(pts) != 2 {
		t.Fatalf("%d series before the retention passed, want 2", len(pts))
	}
	now = now.Add(31 * time.Second)
	pts, _ := r.snapshot()
	if len(pts) != 1 || pts[0].key.pid != 10 {
		t.Fatalf("after the retention: %+v, want only the running process's series", pts)
	}
	// The exited process's peer slot is free again.
	r.Add(rt(12, events.RoleConnected, "10.0.0.1:40002", "10.1.0.3:80", events.TCPEstablished, 1))
	if pts, _ := r.snapshot(); len(pts) != 2 {
		t.Errorf("%d series, want 2 (the cap counts 10.1.0.1 only)", len(pts))
	}
}

func TestRetransmitsOTel(t *testing.T) {
	r := NewRetransmits(RetransmitsConfig{}, fakeProcs{})
	r.Add(rt(10, events.RoleAccepted, "10.0.0.1:443", "10.0.0.2:51000", events.TCPEstablished, 2))
	r.Add(rt(20, events.RoleConnected, "10.0.0.2:40000", "10.0.0.9:5432", events.TCPSynSent, 1))

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	if _, err := r.RegisterOTel(mp.Meter("test")); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var sum metricdata.Sum[int64]
	found := false
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == RetransmitsName {
				sum, found = m.Data.(metricdata.Sum[int64])
				if m.Unit != RetransmitsUnit {
					t.Errorf("unit %q", m.Unit)
				}
			}
		}
	}
	if !found || !sum.IsMonotonic || sum.Temporality != metricdata.CumulativeTemporality {
		t.Fatalf("no monotonic cumulative %s: %+v", RetransmitsName, rm)
	}
	got := map[string]int64{}
	for _, dp := range sum.DataPoints {
		var parts []string
		for _, kv := range dp.Attributes.ToSlice() {
			parts = append(parts, fmt.Sprintf("%s=%v", kv.Key, kv.Value.AsInterface()))
		}
		got[strings.Join(parts, ",")] = dp.Value
	}
	want := map[string]int64{
		"network.connection.state=established,network.local.port=443,network.peer.address=10.0.0.2,process.executable.name=exe-10,process.pid=10,service.name=svc-10": 2,
		"network.connection.state=syn_sent,network.peer.address=10.0.0.9,network.peer.port=5432,process.executable.name=exe-20,process.pid=20,service.name=svc-20":    1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("data points:\n got %v\nwant %v", got, want)
	}
}
