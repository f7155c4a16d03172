// Package kernels boots the agent on other kernels than this machine's: the
// Debian kernels of kernels.txt, each under qemu (software emulation) with a
// root file system made by debootstrap (scripts/kernels.sh). The guest runs
// the test in guest/ as its first program and sends back a Result as JSON;
// the host test in this package asserts it, with exact counts.
package kernels

import (
	"fmt"
	"strings"

	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// ResultMarker starts the line of the guest's results serial port that holds
// the Result as JSON: what comes before it (line noise) is ignored.
const ResultMarker = "PERISCOPE-GUEST-RESULT "

// Result is what the guest observed: raw facts, no verdicts.
type Result struct {
	Kernel string // uname -r
	Check  Check
	Runs   []Run
	// Failed says the guest test itself failed (a target did not start, a
	// step timed out); its log on the console says why.
	Failed bool
}

// Check is `periscope check` run in the guest.
type Check struct {
	Output   string
	ExitCode int
}

// Run is one agent run: started, driven, stopped.
type Run struct {
	Hook       string // tcp.hook configured ("" for the default order)
	AttachPath map[string]string
	Logs       string // the agent's stderr
	// Links are the BPF links while the agent runs, by type (bpftool).
	Links map[string]int
	// Probes is periscope_probes_attached meanwhile, by "collector/path".
	Probes   map[string]float64
	HTTPS    *Traffic // nginx and curl
	Plain    *Traffic // nginx and curl over plain HTTP (the sockets collector)
	Go       *Traffic // goapp server and client
	TCP      TCP
	StopCode int
	// Before is the node before the agent started, After once it exited.
	Before, After Probes
}

// Traffic is one kind of request sent while the agent ran and every span
// the agent exported.
type Traffic struct {
	Port       int
	Requests   int
	ServerPIDs []int
	ClientPIDs []int
	Spans      []Span
}

// TCP is a transfer whose segments were dropped at random.
type TCP struct {
	Port      int   // the sender's port
	SenderPID int   // the process that sent the data and retransmitted
	Bytes     int64 // received by the other side
	// SocketRetrans is what the kernel counted for the sending socket
	// (tcpi_total_retrans) once the receiver had everything.
	SocketRetrans uint32
	// RetransSegs is how much the kernel's /proc/net/snmp RetransSegs rose
	// from before the transfer to after the agent's counter settled, for
	// the whole guest; Counters every Tcp: and TcpExt: counter that moved
	// meanwhile ("TcpExt:TCPSynRetrans").
	RetransSegs uint64
	Counters    map[string]uint64
	// EarlyRetrans is net.ipv4.tcp_early_retrans during the transfer (the
	// kernel's default 3: tail loss probes on).
	EarlyRetrans string
	// Series is how much each series of periscope_tcp_retransmits_total
	// rose meanwhile, keyed by its labels.
	Series map[string]float64
}

// Probes is what is attached on the node (the guest runs nothing else that
// uses BPF or tracing).
type Probes struct {
	UprobeEvents string // /sys/kernel/tracing/uprobe_events
	KprobeEvents string // /sys/kernel/tracing/kprobe_events
	Links        int    // bpftool link show
	Programs     int    // bpftool prog show
}

// Span is an exported span, flattened for JSON: attribute values as
// strings.
type Span struct {
	Service      string
	PID          int64
	Kind         int
	Name         string
	Status       string
	TraceID      string
	SpanID       string
	ParentSpanID string
	Attributes   map[string]string
}

// FromOTLP flattens a received span.
func FromOTLP(s otlpreceiver.Span) Span {
	pid, _ := s.Resource["process.pid"].(int64)
	attrs := make(map[string]string, len(s.Attributes))
	for k, v := range s.Attributes {
		attrs[k] = fmt.Sprint(v)
	}
	return Span{
		Service: s.ServiceName(), PID: pid, Kind: int(s.Kind), Name: s.Name, Status: s.Status,
		TraceID: s.TraceID, SpanID: s.SpanID, ParentSpanID: s.ParentSpanID, Attributes: attrs,
	}
}

// String is a one-line description for failure messages.
func (s Span) String() string {
	return fmt.Sprintf("%s pid=%d kind=%d %q status=%s code=%s trace=%s span=%s parent=%s", s.Service, s.PID, s.Kind, s.Name,
		s.Status, s.Attributes["http.response.status_code"], s.TraceID, s.SpanID, s.ParentSpanID)
}

// Describe lists spans one per line.
func Describe(spans []Span) string {
	var b strings.Builder
	for _, s := range spans {
		b.WriteString("  " + s.String() + "\n")
	}
	return b.String()
}
