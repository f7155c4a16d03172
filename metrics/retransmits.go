// Package metrics aggregates the metrics the agent derives from what the
// kernel sees about applications (as opposed to the agent's own health),
// and exposes them to Prometheus and to OpenTelemetry meters from one set
// of counters, so that both always agree.
package metrics

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

// Names of the retransmission metrics.
const (
	// RetransmitsName is the OpenTelemetry name of the counter of
	// retransmitted TCP segments. OpenTelemetry's semantic conventions
	// have no TCP retransmission metric, so it lives in Periscope's
	// namespace; its attributes are the conventions' own.
	RetransmitsName = "periscope.tcp.retransmits"
	// RetransmitsUnit counts segments, as /proc/net/snmp RetransSegs.
	RetransmitsUnit = "{segment}"
	// RetransmitsPromName is its Prometheus name (OpenTelemetry's
	// translation: dots to underscores, _total for a counter).
	RetransmitsPromName = "periscope_tcp_retransmits_total"
	// OverflowedPromName counts series folded into the overflow peer.
	OverflowedPromName = "periscope_tcp_retransmit_series_overflowed_total"
	// OverflowPeer is the network.peer.address of the series that hold
	// the peers beyond the cap.
	OverflowPeer = "_overflow"
)

const retransmitsHelp = "TCP segments retransmitted, by the process owning the socket, its container, the peer and the connection state."

// Attribute keys (OpenTelemetry semantic conventions) and their Prometheus
// label names.
var retransmitLabels = []struct{ otel, prom string }{
	{"process.pid", "process_pid"},
	{"process.executable.name", "process_executable_name"},
	{"service.name", "service_name"},
	{"container.id", "container_id"},
	{"network.peer.address", "network_peer_address"},
	{"network.peer.port", "network_peer_port"},
	{"network.local.port", "network_local_port"},
	{"network.connection.state", "network_connection_state"},
}

// ProcessResolver names the process behind a PID; metadata.Processes
// implements it.
type ProcessResolver interface {
	Process(pid uint32) *span.Process
}

// RetransmitsConfig configures Retransmits.
type RetransmitsConfig struct {
	// MaxPeers caps the distinct peers (address and port) with series of
	// their own; retransmissions to peers beyond it are counted under
	// network.peer.address="_overflow". Default 1024.
	MaxPeers int
	// Retention is how long the series of a process that has exited are
	// kept after their last retransmission. Default 5m.
	Retention time.Duration
	// ProcRoot is where the proc file system is mounted, to tell whether a
	// process still runs. Default /proc.
	ProcRoot string
	// Now returns the time (tests). Default time.Now.
	Now func() time.Time
}

func (c *RetransmitsConfig) defaults() {
	if c.MaxPeers <= 0 {
		c.MaxPeers = 1024
	}
	if c.Retention <= 0 {
		c.Retention = 5 * time.Minute
	}
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// peer is the remote end of a series: the address, and the port when it
// names a service (the owner connected to it). The port of a client that
// connected to the owner is ephemeral and left out, or a busy server would
// make a series per connection.
type peer struct {
	addr netip.Addr // invalid: the overflow peer
	port uint16
}

type seriesKey struct {
	pid       uint32
	exe       string
	service   string
	container string
	peer      peer
	localPort uint16 // the owner's port when it accepted the connection
	state     events.TCPState
}

type series struct {
	segs uint64
	last time.Time
}

// Retransmits counts retransmitted TCP segments per process, container,
// peer and connection state, with a bounded number of peers. It is safe
// for concurrent use.
type Retransmits struct {
	cfg   RetransmitsConfig
	procs ProcessResolver

	desc, overflowDesc *prometheus.Desc

	mu         sync.Mutex
	series     map[seriesKey]*series
	peers      map[peer]int // series per peer
	folded     map[seriesKey]time.Time
	overflowed uint64
	lastSweep  time.Time
}

// maxFolded bounds the memory of which series were folded, used to count
// each one once.
const maxFolded = 1 << 16

// NewRetransmits returns an empty set of counters. procs may be nil (series
// then carry the PID and the command name the kernel reported).
func NewRetransmits(cfg RetransmitsConfig, procs ProcessResolver) *Retransmits {
	cfg.defaults()
	names := make([]string, len(retransmitLabels))
	for i, l := range retransmitLabels {
		names[i] = l.prom
	}
	return &Retransmits{
		cfg:          cfg,
		procs:        procs,
		desc:         prometheus.NewDesc(RetransmitsPromName, retransmitsHelp, names, nil),
		overflowDesc: prometheus.NewDesc(OverflowedPromName, "Retransmission series (process, peer, state) counted under network.peer.address=\"_overflow\" because tcp.max_peers peers already had series.", nil, nil),
		series:       make(map[seriesKey]*series),
		peers:        make(map[peer]int),
		folded:       make(map[seriesKey]time.Time),
	}
}

// Add counts a retransmission.
func (r *Retransmits) Add(ev events.Retransmit) {
	key := seriesKey{pid: ev.PID, state: ev.State}
	key.exe, key.service, key.container = r.identity(ev.PID, ev.Comm)
	key.peer, key.localPort = endpoints(ev)

	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.lastSweep) >= r.cfg.Retention/4 {
		r.sweepLocked(now)
	}
	s := r.series[key]
	if s == nil {
		if _, known := r.peers[key.peer]; !known && r.distinctPeersLocked() >= r.cfg.MaxPeers {
			if _, seen := r.folded[key]; !seen {
				r.overflowed++
				if len(r.folded) < maxFolded {
					r.folded[key] = now
				}
			} else {
				r.folded[key] = now
			}
			key.peer = peer{}
			s = r.series[key]
		}
	}
	if s == nil {
		s = &series{}
		r.series[key] = s
		r.peers[key.peer]++
	}
	s.segs += uint64(max(ev.Segments, 1))
	s.last = now
}

// distinctPeersLocked is the number of peers with series of their own.
func (r *Retransmits) distinctPeersLocked() int {
	n := len(r.peers)
	if _, ok := r.peers[peer{}]; ok {
		n-- // the overflow peer
	}
	return n
}

// identity returns the executable and service names of a process and the
// container it runs in ("" for a host process or when procs is nil).
func (r *Retransmits) identity(pid uint32, comm string) (exe, service, container string) {
	if pid != 0 && r.procs != nil {
		if p := r.procs.Process(pid); p != nil {
			for _, kv := range p.Attributes {
				if kv.Key == "process.executable.name" {
					exe = kv.Value.AsString()
				}
			}
			service = p.ServiceName
			container = p.ContainerID
		}
	}
	if exe == "" {
		exe = comm
	}
	if service == "" || (service == "unknown_service" && exe != "") {
		service = exe
	}
	if service == "" {
		service = "unknown_service"
	}
	return exe, service, container
}

// endpoints returns the peer and the owner's port of a series: the peer's
// port when the owner connected to it, the owner's own port when it
// accepted the connection. When the kernel did not see the connection
// open, the lower port is taken for the service's.
func endpoints(ev events.Retransmit) (peer, uint16) {
	p := peer{addr: ev.Tuple.Remote.Addr().Unmap()}
	lport, rport := ev.Tuple.Local.Port(), ev.Tuple.Remote.Port()
	accepted := ev.Role == events.RoleAccepted
	if ev.Role == events.RoleUnknown {
		accepted = lport < rport
	}
	if accepted {
		return p, lport
	}
	p.port = rport
	return p, 0
}

// sweepLocked forgets the series of processes that exited, once they have
// been idle for the retention period.
func (r *Retransmits) sweepLocked(now time.Time) {
	r.lastSweep = now
	gone := make(map[uint32]bool)
	for key, s := range r.series {
		if now.Sub(s.last) < r.cfg.Retention {
			continue
		}
		dead, ok := gone[key.pid]
		if !ok {
			dead = key.pid == 0 || !r.running(key.pid)
			gone[key.pid] = dead
		}
		if !dead {
			continue
		}
		delete(r.series, key)
		if r.peers[key.peer]--; r.peers[key.peer] <= 0 {
			delete(r.peers, key.peer)
		}
	}
	for key, t := range r.folded {
		if now.Sub(t) >= r.cfg.Retention {
			delete(r.folded, key)
		}
	}
}

func (r *Retransmits) running(pid uint32) bool {
	_, err := os.Stat(filepath.Join(r.cfg.ProcRoot, strconv.FormatUint(uint64(pid), 10)))
	return err == nil
}

// point is one series as exporters see it.
type point struct {
	key  seriesKey
	segs uint64
}

func (r *Retransmits) snapshot() ([]point, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.cfg.Now(); now.Sub(r.lastSweep) >= r.cfg.Retention/4 {
		r.sweepLocked(now)
	}
	pts := make([]point, 0, len(r.series))
	for k, s := range r.series {
		pts = append(pts, point{k, s.segs})
	}
	return pts, r.overflowed
}

// values returns the attribute values of a series in retransmitLabels
// order; "" for an attribute the series does not have.
func (k seriesKey) values() []string {
	addr := OverflowPeer
	if k.peer.addr.IsValid() {
		addr = k.peer.addr.String()
	}
	port := func(p uint16) string {
		if p == 0 {
			return ""
		}
		return strconv.Itoa(int(p))
	}
	return []string{
		strconv.FormatUint(uint64(k.pid), 10),
		k.exe,
		k.service,
		k.container,
		addr,
		port(k.peer.port),
		port(k.localPort),
		k.state.String(),
	}
}

// Describe implements prometheus.Collector.
func (r *Retransmits) Describe(ch chan<- *prometheus.Desc) {
	ch <- r.desc
	ch <- r.overflowDesc
}

// Collect implements prometheus.Collector.
func (r *Retransmits) Collect(ch chan<- prometheus.Metric) {
	pts, overflowed := r.snapshot()
	for _, p := range pts {
		ch <- prometheus.MustNewConstMetric(r.desc, prometheus.CounterValue, float64(p.segs), p.key.values()...)
	}
	ch <- prometheus.MustNewConstMetric(r.overflowDesc, prometheus.CounterValue, float64(overflowed))
}

// RegisterOTel creates the counters as observable instruments of meter.
// Attributes without a value are left out; ports are integers.
func (r *Retransmits) RegisterOTel(meter metric.Meter) (metric.Registration, error) {
	segs, err := meter.Int64ObservableCounter(RetransmitsName,
		metric.WithUnit(RetransmitsUnit), metric.WithDescription(retransmitsHelp))
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", RetransmitsName, err)
	}
	folded, err := meter.Int64ObservableCounter("periscope.tcp.retransmit.series_overflowed",
		metric.WithUnit("{series}"), metric.WithDescription("Retransmission series counted under the overflow peer."))
	if err != nil {
		return nil, fmt.Errorf("create periscope.tcp.retransmit.series_overflowed: %w", err)
	}
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		pts, overflowed := r.snapshot()
		for _, p := range pts {
			o.ObserveInt64(segs, int64(p.segs), metric.WithAttributeSet(p.key.otelAttributes()))
		}
		o.ObserveInt64(folded, int64(overflowed))
		return nil
	}, segs, folded)
	if err != nil {
		return nil, fmt.Errorf("register %s callback: %w", RetransmitsName, err)
	}
	return reg, nil
}

func (k seriesKey) otelAttributes() attribute.Set {
	vals := k.values()
	kvs := make([]attribute.KeyValue, 0, len(vals))
	for i, l := range retransmitLabels {
		v := vals[i]
		switch {
		case v == "":
		case l.otel == "process.pid":
			kvs = append(kvs, attribute.Int64(l.otel, int64(k.pid)))
		case l.otel == "network.peer.port":
			kvs = append(kvs, attribute.Int(l.otel, int(k.peer.port)))
		case l.otel == "network.local.port":
			kvs = append(kvs, attribute.Int(l.otel, int(k.localPort)))
		default:
			kvs = append(kvs, attribute.String(l.otel, v))
		}
	}
	return attribute.NewSet(kvs...)
}
