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
	"github.com/periscope-apm/periscope/metadata"
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

// The container of the process owning a socket labels its series, as
// metadata.Processes reads it from the process's cgroups (here from a fake
// /proc), also after the process exited.
func TestRetransmitsContainer(t *testing.T) {
	const (
		ctr = "3f2a9c0d5b7e41f8a6c2d9e0b1f4a7c3d8e5f6a0b9c2d1e4f7a8b3c6d9e0f1a2"
		pod = "5d3c2b1a-9e8f-4a7b-8c6d-1e2f3a4b5c6d"
	)
	root := t.TempDir()
	for pid, cgroup := range map[int]string{
		41: "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + strings.ReplaceAll(pod, "-", "_") + ".slice/cri-containerd-" + ctr + ".scope\n",
		42: "0::/system.slice/nginx.service\n",
	} {
		dir := filepath.Join(root, fmt.Sprint(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/usr/sbin/nginx", filepath.Join(dir, "exe")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	procs := metadata.NewProcesses(metadata.ProcessesConfig{ProcRoot: root, HostName: "h"})
	if _, err := procs.Observe(41); err != nil { // discovery saw it
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "41")); err != nil { // and it exited
		t.Fatal(err)
	}

	r := NewRetransmits(RetransmitsConfig{ProcRoot: root}, procs)
	r.Add(rt(41, events.RoleAccepted, "10.0.0.1:443", "10.0.0.2:51000", events.TCPEstablished, 2))
	r.Add(rt(42, events.RoleAccepted, "10.0.0.1:8443", "10.0.0.2:51001", events.TCPEstablished, 1))

	want := `
# HELP periscope_tcp_retransmits_total ` + retransmitsHelp + `
# TYPE periscope_tcp_retransmits_total counter
periscope_tcp_retransmits_total{container_id="` + ctr + `",network_connection_state="established",network_local_port="443",network_peer_address="10.0.0.2",network_peer_port="",process_executable_name="nginx",process_pid="41",service_name="nginx"} 2
periscope_tcp_retransmits_total{container_id="",network_connection_state="established",network_local_port="8443",network_peer_address="10.0.0.2",network_peer_port="",process_executable_name="nginx",process_pid="42",service_name="nginx"} 1
`
	if err := testutil.CollectAndCompare(r, strings.NewReader(want), RetransmitsPromName); err != nil {
		t.Error(err)
	}

	// Over OTLP, the container is container.id; the host process has none.
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
	got := map[int64]string{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != RetransmitsName {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				pid, _ := dp.Attributes.Value("process.pid")
				id, ok := dp.Attributes.Value("container.id")
				got[pid.AsInt64()] = fmt.Sprint(ok, " ", id.AsString())
			}
		}
	}
	if want := map[int64]string{41: "true " + ctr, 42: "false "}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("container.id by PID: got %v, want %v", got, want)
	}
}
