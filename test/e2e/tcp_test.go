package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// Names the TCP collector exports (README: "TCP retransmissions").
const (
	retransmitsMetric     = "periscope_tcp_retransmits_total"
	retransmitsOTLPMetric = "periscope.tcp.retransmits"
	retransmitsAttr       = "periscope.tcp.retransmits"
	retransmitEvent       = "periscope.tcp.retransmit"
	fellBackLog           = "retransmit hook fell back"
)

// startTCPAgent starts an agent exporting spans and metrics (every 500 ms)
// to an in-test OTLP receiver.
func startTCPAgent(t *testing.T, args ...string) *env {
	t.Helper()
	return startAgentOTLP(t, []string{"OTEL_METRIC_EXPORT_INTERVAL=500"}, args...)
}

// TestTCPRetransmitsDownload: a 20 MiB HTTPS download from nginx whose
// packets to the client are dropped at random (30 %, on the input hook of
// loopback) is counted for the nginx worker and that peer as the kernel
// counted it (/proc/net/snmp RetransSegs, within 10 %), no other process is
// charged for it, its span carries the retransmissions, and a request to
// another nginx made during the download, without loss, carries none. The
// counter also arrives over OTLP.
func TestTCPRetransmitsDownload(t *testing.T) {
	const size = 20 << 20
	lossy := harness.StartNginx(t, lossyNginx(size))
	clean := harness.StartNginx(t, harness.NginxOptions{Workers: 1})
	// Spans from these nginx only: a busy program elsewhere on the node (a
	// benchmark) must not fill the OpenSSL collector's ring. The TCP
	// collector counts every process whatever the selection.
	e := startTCPAgent(t, "--include-exe", lossy.Exe)
	e.instrumented(t, lossy.WorkerPIDs[0], clean.WorkerPIDs[0])
	worker, cleanWorker := lossy.WorkerPIDs[0], clean.WorkerPIDs[0]
	curl := harness.LookTool(t, "curl")

	// Only nginx's segments that carry data (over 200 bytes) are dropped:
	// its pure ACKs, SYN-ACK and bare FIN pass. A lost ACK would make curl
	// retransmit (charged to curl, rightly, but this test wants a single
	// sender), and a resent SYN-ACK is counted in RetransSegs but never
	// passes through tcp_retransmit_skb. curl's first data segments are
	// acknowledged at once (quick ACKs), not with nginx's data.
	dropPackets(t, fmt.Sprintf("tcp sport %d meta length > 200 numgen random mod 10 < 3", lossy.Port))

	before := retransmitSeries(t, e.agent)
	segs0 := snmpTCP(t, "RetransSegs")
	sampler := sampleRetrans(t, lossy.Port)
	nginxSocket := func(local, _ int) bool { return local == lossy.Port }
	curlSocket := func(_, remote int) bool { return remote == lossy.Port }
	cleanSampler := sampleRetrans(t, clean.Port)
	start := time.Now()
	download := make(chan error, 1)
	go func() {
		out, err := exec.Command(curl, append([]string{"-sS", "--max-time", "240", "--cacert", lossy.CAFile}, downloadArgs(lossy)...)...).CombinedOutput()
		if err == nil && strings.TrimSpace(string(out)) != fmt.Sprintf("%d %d", size, len(slowBody)) {
			err = fmt.Errorf("downloaded %s bytes, want %d", out, size)
		}
		if err != nil {
			err = fmt.Errorf("curl %s: %v: %s", lossy.URL, err, out)
		}
		download <- err
	}()
	// The clean request is small and on a new connection, so that the
	// kernel has no reason to retransmit anything of it: a long transfer
	// on a loaded loopback may see tail loss probes (retransmissions)
	// without any loss. It is made once the download's body is under way
	// (ten retransmissions: a TLS handshake has fewer segments to lose).
	for deadline := time.Now().Add(time.Minute); sampler.current(nginxSocket) < 10; {
		if time.Now().After(deadline) {
			t.Fatal("no retransmissions a minute into the lossy download")
		}
		time.Sleep(10 * time.Millisecond)
	}
	run(t, curl, "-sS", "--cacert", clean.CAFile, "-o", "/dev/null", clean.URL+"/index.html")
	if err := <-download; err != nil {
		t.Fatal(err)
	}
	t.Logf("download done in %v", time.Since(start).Round(time.Millisecond))

	// The slow request after the download was served once every lost
	// segment had been recovered: nothing is retransmitted any more. Wait
	// until the agent has read everything.
	segs := snmpTCP(t, "RetransSegs") - segs0
	waitStable(t, func() uint64 {
		return uint64(sumDelta(retransmitSeries(t, e.agent), before, func(map[string]string) bool { return true }))
	}, time.Second, 30*time.Second)
	// RetransSegs counts for the whole node, where other programs (other
	// tests, benchmarks) may retransmit at the same time; the kernel also
	// counts per socket (tcpi_total_retrans), which is what the agent is
	// held to.
	kernelNginx, kernelCurl := sampler.total(nginxSocket), sampler.total(curlSocket)
	kernelClean := cleanSampler.total(func(local, _ int) bool { return local == clean.Port })
	t.Logf("RetransSegs rose by %d on the node; the kernel counted %d for nginx's socket, %d for curl's, %d for the clean nginx's",
		segs, kernelNginx, kernelCurl, kernelClean)
	if kernelNginx < 20 {
		t.Fatalf("nginx's socket retransmitted %d segments only: the drop rule did not cause loss", kernelNginx)
	}

	// The nginx worker's series for that peer: within 10 % of the kernel's.
	mine := map[string]string{
		"process_pid":          strconv.Itoa(worker),
		"network_peer_address": "127.0.0.1",
		"network_local_port":   strconv.Itoa(lossy.Port),
	}
	after := retransmitSeries(t, e.agent)
	got := sumDelta(after, before, func(l map[string]string) bool { return matches(l, mine) })
	t.Logf("the nginx worker's series rose by %v; all series:\n%s", got, describeSeries(after, before))
	if !withinPct(got, float64(kernelNginx), 10) {
		t.Errorf("%s%v rose by %v, the kernel counted %d for that socket: more than 10 %% apart", retransmitsMetric, mine, got, kernelNginx)
	}
	if got > float64(segs) {
		t.Errorf("%s%v rose by %v, more than RetransSegs for the whole node (%d)", retransmitsMetric, mine, got, segs)
	}
	for key, s := range after {
		if matches(s.labels, mine) {
			if s.labels["process_executable_name"] != "nginx" || s.labels["service_name"] != "nginx" || s.labels["network_peer_port"] != "" {
				t.Errorf("nginx series has labels %v", s.labels)
			}
			continue
		}
		d := s.value - before[key].value
		if d == 0 {
			continue
		}
		// Nobody else is charged for nginx's socket (the nginx master,
		// the clean nginx).
		if s.labels["network_local_port"] == strconv.Itoa(lossy.Port) {
			t.Errorf("%s{%s} rose by %v: charged for nginx's socket", retransmitsMetric, key, d)
		}
	}
	// curl is charged exactly what its own socket retransmitted (usually
	// nothing: only nginx's data is dropped; a loaded machine may delay an
	// ACK past a timeout), and the clean nginx likewise.
	if c := sumDelta(after, before, func(l map[string]string) bool { return l["network_peer_port"] == strconv.Itoa(lossy.Port) }); c+1 < float64(kernelCurl) || c > float64(kernelCurl)+1 {
		t.Errorf("curl charged %v retransmitted segments, the kernel counted %d for its socket", c, kernelCurl)
	}
	if c := sumDelta(after, before, func(l map[string]string) bool { return l["process_pid"] == strconv.Itoa(cleanWorker) }); c != float64(kernelClean) {
		t.Errorf("the clean nginx charged %v retransmitted segments, the kernel counted %d", c, kernelClean)
	}

	// The span of the lossy download carries the retransmissions; the
	// clean one none.
	var lossySpan, tailSpan otlpreceiver.Span
	for _, s := range e.spans(t, 2, byPIDs(kindServer, worker)) {
		if attrStr(s, "url.path") == "/20m.bin" {
			lossySpan = s
		} else {
			tailSpan = s
		}
	}
	// The slow request that followed on the connection, after the loss
	// was recovered, carries none.
	if _, ok := tailSpan.Attributes[retransmitsAttr]; ok || len(tailSpan.Events) > 0 {
		t.Errorf("span %s after the download has %s = %v and %d events", attrStr(tailSpan, "url.path"), retransmitsAttr,
			tailSpan.Attributes[retransmitsAttr], len(tailSpan.Events))
	}
	cleanSpan := e.spans(t, 1, byPIDs(kindServer, cleanWorker))[0]
	n := attrInt(lossySpan, retransmitsAttr)
	var evs []otlpreceiver.Event
	for _, ev := range lossySpan.Events {
		if ev.Name == retransmitEvent {
			evs = append(evs, ev)
		}
	}
	t.Logf("lossy span: %s = %d, %d events, %v long", retransmitsAttr, n, len(evs), lossySpan.End.Sub(lossySpan.Start))
	if n <= 0 || len(evs) == 0 {
		t.Errorf("lossy span: %s = %d with %d events, want retransmissions", retransmitsAttr, n, len(evs))
	}
	if n > int64(got) {
		t.Errorf("lossy span counts %d retransmitted segments, more than the whole connection's %v", n, got)
	}
	for _, ev := range evs {
		if ev.Time.Before(lossySpan.Start) || ev.Time.After(lossySpan.End) {
			t.Errorf("retransmit event at %v outside the span [%v, %v]", ev.Time, lossySpan.Start, lossySpan.End)
		}
		if s, _ := ev.Attributes["network.connection.state"].(string); s == "" {
			t.Errorf("retransmit event without network.connection.state: %v", ev.Attributes)
		}
	}
	if kernelClean > 0 {
		t.Logf("note: the kernel retransmitted %d segments on the clean connection (not dropped: a delayed ACK on a loaded machine)", kernelClean)
	} else if _, ok := cleanSpan.Attributes[retransmitsAttr]; ok || len(cleanSpan.Events) > 0 {
		t.Errorf("clean span has %s = %v and %d events", retransmitsAttr, cleanSpan.Attributes[retransmitsAttr], len(cleanSpan.Events))
	}
	if cleanSpan.Start.Before(lossySpan.Start) || cleanSpan.End.After(lossySpan.End) {
		t.Errorf("the clean request (%v–%v) was not made during the lossy download (%v–%v)", cleanSpan.Start, cleanSpan.End, lossySpan.Start, lossySpan.End)
	}

	// Over OTLP: the same counter, with the OpenTelemetry attribute names.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	pts, err := e.recv.WaitForMetrics(ctx, 1, func(m otlpreceiver.Metric) bool {
		pid, _ := m.Attributes["process.pid"].(int64)
		return m.Name == retransmitsOTLPMetric && int(pid) == worker && m.Value >= got
	})
	if err != nil {
		var seen []string
		for _, m := range e.recv.Metrics() {
			if m.Name == retransmitsOTLPMetric {
				seen = append(seen, fmt.Sprintf("%v=%v", m.Attributes, m.Value))
			}
		}
		t.Fatalf("no %s data point for pid %d reaching %v over OTLP: %v; %d data points arrived:\n%s",
			retransmitsOTLPMetric, worker, got, err, len(seen), strings.Join(seen, "\n"))
	}
	p := pts[len(pts)-1]
	if p.Type != "sum" || !p.Monotonic || p.Temporality != "cumulative" || p.Unit != "{segment}" ||
		p.Attributes["network.peer.address"] != "127.0.0.1" || p.Attributes["network.local.port"] != int64(lossy.Port) ||
		p.Attributes["process.executable.name"] != "nginx" {
		t.Errorf("OTLP data point: %+v", p)
	}
}

// TestTCPPreexistingConnection: a connection accepted before the agent
// started (so the kernel side never saw it open) is charged to its owner,
// found in /proc, with the port it listens on.
func TestTCPPreexistingConnection(t *testing.T) {
	const size = 20 << 20
	ngx := harness.StartNginx(t, lossyNginx(size))
	worker := ngx.WorkerPIDs[0]
	// Slow enough to outlast the agent's start: about 10 s without loss.
	dl := startProc(t, nil, harness.LookTool(t, "curl"), append([]string{"-sS", "--max-time", "240", "--limit-rate", "2M",
		"--cacert", ngx.CAFile}, downloadArgs(ngx)...)...)
	time.Sleep(500 * time.Millisecond)

	e := startTCPAgent(t, "--include-exe", ngx.Exe)
	before := retransmitSeries(t, e.agent)
	sampler := sampleRetrans(t, ngx.Port)
	dropPackets(t, fmt.Sprintf("tcp sport %d meta length > 200 numgen random mod 10 < 3", ngx.Port))
	dl.mustSucceed(4 * time.Minute)

	mine := map[string]string{
		"process_pid":          strconv.Itoa(worker),
		"network_peer_address": "127.0.0.1",
		"network_local_port":   strconv.Itoa(ngx.Port),
	}
	got := waitStable(t, func() uint64 {
		return uint64(sumDelta(retransmitSeries(t, e.agent), before, func(l map[string]string) bool { return matches(l, mine) }))
	}, 2*time.Second, time.Minute)
	after := retransmitSeries(t, e.agent)
	kernel := sampler.sinceFirst(func(local, _ int) bool { return local == ngx.Port })
	t.Logf("the nginx worker's series rose by %d, the kernel counted %d for its socket since the agent started:\n%s", got, kernel, describeSeries(after, before))
	if kernel < 10 {
		t.Fatalf("nginx's socket retransmitted %d segments only: the drop rule did not cause loss", kernel)
	}
	if !withinPct(float64(got), float64(kernel), 10) {
		t.Errorf("%s%v rose by %d, the kernel counted %d for that socket", retransmitsMetric, mine, got, kernel)
	}
	// The first retransmission may come before the drop rule (a tail loss
	// probe of the rate-limited transfer): count from the agent's start.
	if n := e.agent.Metric(t, "periscope_tcp_retransmit_owners_total", map[string]string{"source": "proc"}); n == 0 {
		t.Errorf("no retransmission had its owner found in /proc")
	}
}

// slowBody is served slowly (64 bytes/s, its headers included: about 4 s)
// after the download, on the same connection, so that the connection stays open, idle and without loss
// while the test reads what the kernel counted for its sockets (ss).
var slowBody = []byte("the end of the download, slowly\n")

// lossyNginx serves size bytes at /20m.bin and slowBody slowly.
func lossyNginx(size int) harness.NginxOptions {
	return harness.NginxOptions{
		Workers:           1,
		Files:             map[string][]byte{"20m.bin": bigBody(size), "slow.txt": slowBody},
		ExtraServerConfig: "location = /slow.txt { limit_rate 64; }",
	}
}

// downloadArgs are curl's arguments for the download and the slow request
// after it; curl prints both sizes.
func downloadArgs(ngx *harness.Nginx) []string {
	return []string{"-w", "%{size_download} ", "-o", "/dev/null", ngx.URL + "/20m.bin", "-o", "/dev/null", ngx.URL + "/slow.txt"}
}

// TestTCPSynRetransmits: a connection attempt to a port whose SYNs are
// dropped is counted for the process that made it, in state syn_sent.
func TestTCPSynRetransmits(t *testing.T) {
	e := startTCPAgent(t)
	synRetransmitsCounted(t, e.agent)
}

// TestTCPKprobeFallback: with the kprobe preferred and its attach made to
// fail by configuration (tcp.fail_hook), on any kernel, the agent says so in
// one log line, falls back to the tracepoint, and counts retransmissions as
// the kernel does.
func TestTCPKprobeFallback(t *testing.T) {
	e := startTCPAgent(t, "--config", tcpConfig(t, "hook: kprobe", "fail_hook: kprobe"))
	fellBackToTracepoint(t, e.agent, true)
}

// TestTCPKprobeHook: `tcp.hook: kprobe`, nothing forced. What to expect is
// read from the kernel (kprobeSupport): with kprobes, the kprobe on
// tcp_retransmit_skb is the hook in use, with no fallback, and counts
// retransmissions as the kernel does (make test-kernels runs this on a
// kernel that has them); without, the documented behaviour: one fallback
// line with the kernel's own error, the tracepoint in use, and the same
// counts. PERISCOPE_E2E_EXPECT_KPROBES=yes|no makes a kernel that says
// otherwise fail the test.
func TestTCPKprobeHook(t *testing.T) {
	harness.RequireRoot(t)
	has, evidence := kprobeSupport(t)
	t.Logf("kprobes on this kernel: %v (%s)", has, evidence)
	checkKprobeRow(t, has)
	e := startTCPAgent(t, "--config", tcpConfig(t, "hook: kprobe"))
	if has {
		kprobeHookCounts(t, e.agent)
		return
	}
	t.Logf("no kprobes here: asserting the documented fallback (the kprobe path runs under make test-kernels)")
	fellBackToTracepoint(t, e.agent, false)
}

// fellBackToTracepoint checks an agent that preferred the kprobe and fell
// back: one log line naming both hooks, giving the forced failure as its
// reason (forced) or the kernel's own error, the tracepoint in /status, and
// retransmissions counted as the kernel counts them.
func fellBackToTracepoint(t *testing.T, a *harness.Agent, forced bool) {
	t.Helper()
	line := fellBack(t, a)
	if strings.Contains(line, forcedFailure) != forced {
		t.Errorf("the fallback line should give the forced failure (%q) as its reason: %v:\n%s", forcedFailure, forced, line)
	}
	wantAttachPath(t, a, "raw tracepoint tcp:tcp_retransmit_skb (kprobe tcp_retransmit_skb + __tcp_retransmit_skb failed)")
	synRetransmitsCounted(t, a)
}

// forcedFailure is the error tcp.fail_hook gives the hook it names.
const forcedFailure = "attach forced to fail by configuration (tcp.fail_hook)"

// TestTCPTracepointFallback: the tracepoint (the default hook) made to fail
// by configuration. With kprobes, the agent falls back to the kprobe and
// counts retransmissions as the kernel does; without, it has no hook left
// and refuses to start, naming both failures.
func TestTCPTracepointFallback(t *testing.T) {
	harness.RequireRoot(t)
	has, evidence := kprobeSupport(t)
	t.Logf("kprobes on this kernel: %v (%s)", has, evidence)
	cfg := tcpConfig(t, "fail_hook: tracepoint")
	if has {
		e := startTCPAgent(t, "--config", cfg)
		if n := countLines(e.agent.Logs(), fellBackLog); n != 1 {
			t.Fatalf("%d log lines say %q, want 1:\n%s", n, fellBackLog, e.agent.Logs())
		}
		wantAttachPath(t, e.agent, "kprobe tcp_retransmit_skb + __tcp_retransmit_skb (raw tracepoint tcp:tcp_retransmit_skb failed)")
		synRetransmitsCounted(t, e.agent)
		return
	}
	a := harness.StartAgent(t, harness.BuildAgent(t), []string{"run", "--console=off", "--config", cfg}, nil)
	select {
	case <-a.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the agent without any retransmit hook still runs after 30 s")
	}
	if code := a.Stop(); code == 0 {
		t.Errorf("the agent without any retransmit hook exited with code 0")
	}
	for _, want := range []string{"no way to hook tcp_retransmit_skb", "raw tracepoint tcp:tcp_retransmit_skb: attach: " + forcedFailure, "kprobe tcp_retransmit_skb + __tcp_retransmit_skb: attach:"} {
		if !strings.Contains(a.Logs(), want) {
			t.Errorf("the agent's logs do not say %q:\n%s", want, a.Logs())
		}
	}
}

// kprobeHookCounts checks an agent started with `tcp.hook: kprobe` on a
// kernel with kprobes: the kprobe is attached (no fallback line, /status
// names it) and counts each SYN retransmission of a connection attempt as
// the kernel does. It needs curl, nft and ss.
func kprobeHookCounts(t *testing.T, a *harness.Agent) {
	t.Helper()
	if n := countLines(a.Logs(), fellBackLog); n != 0 {
		t.Fatalf("%d log lines say %q on a kernel with kprobes:\n%s", n, fellBackLog, a.Logs())
	}
	wantAttachPath(t, a, "kprobe tcp_retransmit_skb + __tcp_retransmit_skb")
	synRetransmitsCounted(t, a)
}

// kprobeSupport tells whether the kernel can attach kprobes, from the
// kernel itself: the kprobe PMU (/sys/bus/event_source/devices/kprobe,
// which cilium/ebpf uses first) or tracefs's kprobe_events (its fallback).
// PERISCOPE_E2E_EXPECT_KPROBES=yes|no, when set, must agree.
func kprobeSupport(t *testing.T) (bool, string) {
	t.Helper()
	has, evidence := false, "no /sys/bus/event_source/devices/kprobe, no kprobe_events in tracefs"
	for _, p := range []string{"/sys/bus/event_source/devices/kprobe/type", "/sys/kernel/tracing/kprobe_events", "/sys/kernel/debug/tracing/kprobe_events"} {
		if _, err := os.Stat(p); err == nil {
			has, evidence = true, p
			break
		}
	}
	switch want := os.Getenv(expectKprobesEnv); want {
	case "":
	case "yes", "no":
		if has != (want == "yes") {
			t.Fatalf("%s=%s, but kprobes on this kernel: %v (%s)", expectKprobesEnv, want, has, evidence)
		}
	default:
		t.Fatalf("%s=%q: want yes or no", expectKprobesEnv, want)
	}
	return has, evidence
}

// expectKprobesEnv, when set, is what kprobeSupport must find.
const expectKprobesEnv = "PERISCOPE_E2E_EXPECT_KPROBES"

// checkKprobeRow checks that `periscope check` agrees with the kernel on
// kprobes.
func checkKprobeRow(t *testing.T, has bool) {
	t.Helper()
	out, err := exec.Command(harness.BuildAgent(t), "check").CombinedOutput()
	if err != nil {
		t.Fatalf("periscope check: %v\n%s", err, out)
	}
	want := "no"
	if has {
		want = "ok"
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "kprobes" {
			if f[1] != want {
				t.Errorf("periscope check says kprobes %q, the kernel %q:\n%s", f[1], want, out)
			}
			return
		}
	}
	t.Errorf("periscope check has no kprobes row:\n%s", out)
}

// tcpConfig writes a configuration file whose tcp section has the given
// "key: value" lines.
func tcpConfig(t *testing.T, lines ...string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "periscope.yaml")
	if err := os.WriteFile(cfg, []byte("tcp:\n  "+strings.Join(lines, "\n  ")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// fellBack returns the agent's only log line saying that the retransmit
// hook fell back from the kprobe to the tracepoint.
func fellBack(t *testing.T, a *harness.Agent) string {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(a.Logs(), "\n") {
		if strings.Contains(l, fellBackLog) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d log lines say %q, want 1:\n%s", len(lines), fellBackLog, a.Logs())
	}
	for _, want := range []string{"wanted=\"kprobe tcp_retransmit_skb + __tcp_retransmit_skb\"", "using=\"raw tracepoint tcp:tcp_retransmit_skb\""} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("fallback line does not say %s: %s", want, lines[0])
		}
	}
	return lines[0]
}

func countLines(text, substr string) int {
	n := 0
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// wantAttachPath checks the hook part of the tcp collector's attach path
// in /status (what comes before the owners).
func wantAttachPath(t *testing.T, a *harness.Agent, hook string) {
	t.Helper()
	path := tcpAttachPath(t, a)
	if got, _, _ := strings.Cut(path, "; "); got != hook {
		t.Errorf("/status attach path of the tcp collector: %q, want it to start with %q", path, hook)
	}
}

// synRetransmitsCounted drops every SYN to a free port, lets curl try to
// connect for 5 s (its SYN is retransmitted after 1 s and 3 s, or every
// second with Linux 6.5's tcp_syn_linear_timeouts), and checks that the
// agent charged curl exactly the SYN retransmissions the kernel sent for
// its socket: the kernel's own tcp:tcp_retransmit_skb events for the port,
// recorded in a tracefs instance of the test's (retransTrace), not what a
// sampler of ss saw: curl's 5 s timeout falls next to the fifth
// retransmission (every 1.02 s), which the kernel sends just before curl
// closes the socket, after ss last read it (the kernel 5, ss 4, the agent
// 5: a failure of the test's own count, seen twice in 19 runs). ss's count
// and the node's RetransSegs are logged beside it, and must not exceed it.
func synRetransmitsCounted(t *testing.T, a *harness.Agent) {
	t.Helper()
	port := harness.FreePort(t)
	dropPackets(t, fmt.Sprintf("tcp dport %d", port))
	syn0, segs0, fail0 := snmpTCPExt(t, "TCPSynRetrans"), snmpTCP(t, "RetransSegs"), snmpTCPExt(t, "TCPRetransFail")
	before := retransmitSeries(t, a)
	sampler := sampleRetrans(t, port)
	trace := traceRetransmits(t, port)
	hooks := startHookRuns(t, "tcp_retransmit")
	hooks0 := hooks.read(t)

	cmd := exec.Command(harness.LookTool(t, "curl"), "-sS", "--connect-timeout", "5", fmt.Sprintf("http://127.0.0.1:%d/", port))
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	err := cmd.Wait()
	if err == nil {
		t.Fatalf("curl connected to a port whose SYNs are dropped: %s", out)
	}
	sampled := sampler.total(func(_, remote int) bool { return remote == port })
	events := trace.read(t)
	kernel := sentRetransmits(events)
	syns := snmpTCPExt(t, "TCPSynRetrans") - syn0
	segs := snmpTCP(t, "RetransSegs") - segs0
	failed := snmpTCPExt(t, "TCPRetransFail") - fail0
	t.Logf("curl pid %d: %v (%s); the kernel sent %d retransmissions for its socket (%d tcp_retransmit_skb events), ss saw %d; on the node TCPSynRetrans rose by %d, RetransSegs by %d, TCPRetransFail by %d",
		pid, err, strings.TrimSpace(out.String()), kernel, len(events), sampled, syns, segs, failed)
	if kernel == 0 {
		t.Fatal("the kernel retransmitted no SYN")
	}
	if sampled > kernel || kernel > syns || kernel > segs {
		t.Fatalf("the kernel's events (%d) below ss's count (%d) or above the node's (TCPSynRetrans +%d, RetransSegs +%d): tracefs misread\n%s",
			kernel, sampled, syns, segs, strings.Join(eventLines(events), "\n"))
	}
	want := map[string]string{
		"process_pid":              strconv.Itoa(pid),
		"network_connection_state": "syn_sent",
		"network_peer_address":     "127.0.0.1",
		"network_peer_port":        strconv.Itoa(port),
	}
	var got float64
	var after map[string]series
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		after = retransmitSeries(t, a)
		got = sumDelta(after, before, func(l map[string]string) bool { return matches(l, want) })
		if got >= float64(kernel) || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(500 * time.Millisecond) // nothing more may come
	after = retransmitSeries(t, a)
	got = sumDelta(after, before, func(l map[string]string) bool { return matches(l, want) })
	if got != float64(kernel) {
		t.Fatalf("%s%v rose by %v; the kernel retransmitted %d SYNs of that socket:\n%s\nthe agent's tcp collector: %s\nthe kernel's counts of the hook's programs (all retransmissions): %s\n%s",
			retransmitsMetric, want, got, kernel, strings.Join(eventLines(events), "\n"), tcpCounters(t, a), hooks.describe(hooks0, hooks.read(t)), describeSeries(after, before))
	}
	if _, ok := a.MetricFamilies(t)["periscope_tcp_retransmit_hook_misses_total"]; !ok {
		t.Errorf("no periscope_tcp_retransmit_hook_misses_total on /metrics")
	}
	for _, s := range after {
		if matches(s.labels, want) && s.labels["process_executable_name"] != "curl" {
			t.Errorf("SYN retransmissions charged to %q, want curl: %v", s.labels["process_executable_name"], s.labels)
		}
	}
	if other := sumDelta(after, before, func(l map[string]string) bool {
		return l["network_peer_port"] == strconv.Itoa(port) && !matches(l, want)
	}); other != 0 {
		t.Errorf("%v retransmissions to port %d charged to others than curl:\n%s", other, port, describeSeries(after, before))
	}
}

// tcpCounters describes what the agent's tcp collector read, dropped and
// charged, for a failure's message.
func tcpCounters(t *testing.T, a *harness.Agent) string {
	t.Helper()
	var b strings.Builder
	for _, m := range []struct {
		name   string
		labels map[string]string
	}{
		{"periscope_events_read_total", map[string]string{"collector": "tcp"}},
		{"periscope_events_dropped_total", map[string]string{"collector": "tcp"}},
		{"periscope_tcp_retransmit_hook_misses_total", nil},
		{"periscope_tcp_retransmit_owners_total", map[string]string{"source": "kernel"}},
		{"periscope_tcp_retransmit_owners_total", map[string]string{"source": "proc"}},
		{"periscope_tcp_retransmit_owners_total", map[string]string{"source": "none"}},
	} {
		fmt.Fprintf(&b, "%s%v %v; ", m.name, m.labels, a.Metric(t, m.name, m.labels))
	}
	return b.String()
}

// retransTrace records the kernel's tcp:tcp_retransmit_skb events for one
// destination port in a tracefs instance of its own (its own buffer and
// filter: nothing else's tracing changes).
type retransTrace struct{ dir string }

// tracefsInstances is where tracefs instances are made.
const tracefsInstances = "/sys/kernel/tracing/instances"

var traceInstances atomic.Int32

// traceRetransmits starts recording the retransmissions to dport; the
// instance is removed when the test ends. It fails without tracefs.
func traceRetransmits(t *testing.T, dport int) *retransTrace {
	t.Helper()
	dir := filepath.Join(tracefsInstances, fmt.Sprintf("periscope_test_%d_%d", os.Getpid(), traceInstances.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("tracefs instance for the kernel's retransmissions: %v", err)
	}
	t.Cleanup(func() {
		_ = os.WriteFile(filepath.Join(dir, "events", "tcp", "tcp_retransmit_skb", "enable"), []byte("0"), 0o644)
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove tracefs instance: %v", err)
		}
	})
	ev := filepath.Join(dir, "events", "tcp", "tcp_retransmit_skb")
	for _, w := range []struct{ file, value string }{
		{filepath.Join(ev, "filter"), fmt.Sprintf("dport == %d", dport)},
		{filepath.Join(ev, "enable"), "1"},
		{filepath.Join(dir, "tracing_on"), "1"},
	} {
		if err := os.WriteFile(w.file, []byte(w.value), 0o644); err != nil {
			t.Fatalf("tracefs: write %q to %s: %v", w.value, w.file, err)
		}
	}
	return &retransTrace{dir: dir}
}

// retransEvent is one tcp:tcp_retransmit_skb event.
type retransEvent struct {
	line string
	// err is the attempt's result (recent kernels report the failed ones
	// too, older ones only those that sent); 0 without the field.
	err int
}

// read returns the events recorded so far.
func (r *retransTrace) read(t *testing.T) []retransEvent {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, "trace"))
	if err != nil {
		t.Fatalf("tracefs: %v", err)
	}
	var evs []retransEvent
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "#") || !strings.Contains(line, "tcp_retransmit_skb:") {
			continue
		}
		e := retransEvent{line: strings.TrimSpace(line)}
		if i := strings.LastIndex(line, " err="); i >= 0 {
			if e.err, err = strconv.Atoi(strings.TrimSpace(line[i+len(" err="):])); err != nil {
				t.Fatalf("tracefs: bad err in %q", line)
			}
		}
		evs = append(evs, e)
	}
	return evs
}

// sentRetransmits counts the events of retransmissions the kernel sent.
func sentRetransmits(evs []retransEvent) uint64 {
	n := uint64(0)
	for _, e := range evs {
		if e.err == 0 {
			n++
		}
	}
	return n
}

func eventLines(evs []retransEvent) []string {
	lines := make([]string, len(evs))
	for i, e := range evs {
		lines[i] = "  " + e.line
	}
	return lines
}

// tcpAttachPath returns the tcp collector's attach path from /status.
func tcpAttachPath(t *testing.T, a *harness.Agent) string {
	t.Helper()
	resp, err := httpGetJSON("http://" + a.MetricsAddr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	cols, _ := resp["collectors"].([]any)
	for _, c := range cols {
		m, _ := c.(map[string]any)
		if m["name"] == "tcp" {
			p, _ := m["attach_path"].(string)
			return p
		}
	}
	t.Fatalf("no tcp collector in /status: %v", resp)
	return ""
}

// dropTables numbers the nftables tables of this test process.
var dropTables atomic.Int64

// dropPackets adds an nftables rule on the input hook of loopback that
// drops the packets matching match, and removes it when the test ends,
// failed or not. Tables left by a test process that died are removed first.
func dropPackets(t *testing.T, match string) {
	t.Helper()
	nft := harness.LookTool(t, "nft")
	removeStaleTables(t, nft)
	table := fmt.Sprintf("periscope_test_%d_%d", os.Getpid(), dropTables.Add(1))
	rules := fmt.Sprintf("table inet %s {\n  chain input {\n    type filter hook input priority 0;\n    iifname \"lo\" %s drop\n  }\n}\n", table, match)
	f := filepath.Join(t.TempDir(), table+".nft")
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(nft, "delete", "table", "inet", table).CombinedOutput(); err != nil {
			t.Errorf("remove nftables table %s: %v: %s", table, err, out)
		}
	})
	if out, err := exec.Command(nft, "-f", f).CombinedOutput(); err != nil {
		t.Fatalf("nft -f %s: %v: %s\n%s", f, err, out, rules)
	}
	t.Logf("nftables: dropping %s", match)
}

func removeStaleTables(t *testing.T, nft string) {
	out, err := exec.Command(nft, "list", "tables", "inet").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "table inet periscope_test_")
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(name, "_")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		if exec.Command(nft, "delete", "table", "inet", "periscope_test_"+name).Run() == nil {
			t.Logf("removed the nftables table periscope_test_%s left by process %d", name, pid)
		}
	}
}

// snmpTCP reads a counter of the Tcp: lines of /proc/net/snmp.
func snmpTCP(t *testing.T, name string) uint64 {
	return procNetCounter(t, "/proc/net/snmp", "Tcp:", name)
}

// snmpTCPExt reads a counter of the TcpExt: lines of /proc/net/netstat.
func snmpTCPExt(t *testing.T, name string) uint64 {
	return procNetCounter(t, "/proc/net/netstat", "TcpExt:", name)
}

// procNetCounter reads a counter from a file of header/value line pairs.
func procNetCounter(t *testing.T, path, prefix, name string) uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var header []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != prefix {
			continue
		}
		if header == nil {
			header = fields
			continue
		}
		for i, h := range header {
			if h == name && i < len(fields) {
				v, err := strconv.ParseUint(fields[i], 10, 64)
				if err != nil {
					t.Fatalf("%s %s: %v", path, name, err)
				}
				return v
			}
		}
		break
	}
	t.Fatalf("%s has no %s %s", path, prefix, name)
	return 0
}

// waitStable polls read until its value has not changed for quiet, and
// returns it.
func waitStable(t *testing.T, read func() uint64, quiet, timeout time.Duration) uint64 {
	t.Helper()
	v := read()
	since := time.Now()
	deadline := time.Now().Add(timeout)
	for time.Since(since) < quiet {
		if time.Now().After(deadline) {
			t.Logf("value still moving after %v: %d", timeout, v)
			return v
		}
		time.Sleep(100 * time.Millisecond)
		if n := read(); n != v {
			v, since = n, time.Now()
		}
	}
	return v
}

// series is one series of the retransmission counter.
type series struct {
	labels map[string]string
	value  float64
}

// retransmitSeries scrapes the retransmission counter, by label set.
func retransmitSeries(t *testing.T, a *harness.Agent) map[string]series {
	t.Helper()
	out := make(map[string]series)
	fam := a.MetricFamilies(t)[retransmitsMetric]
	if fam == nil {
		return out
	}
	for _, m := range fam.GetMetric() {
		out[labelKey(m)] = series{labels: labelMap(m), value: m.GetCounter().GetValue()}
	}
	return out
}

func labelMap(m *dto.Metric) map[string]string {
	l := make(map[string]string)
	for _, lp := range m.GetLabel() {
		l[lp.GetName()] = lp.GetValue()
	}
	return l
}

func labelKey(m *dto.Metric) string {
	var parts []string
	for _, lp := range m.GetLabel() {
		if lp.GetValue() != "" {
			parts = append(parts, lp.GetName()+"="+strconv.Quote(lp.GetValue()))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func matches(labels, want map[string]string) bool {
	for k, v := range want {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// sumDelta adds how much the series selected by keep rose.
func sumDelta(after, before map[string]series, keep func(map[string]string) bool) float64 {
	var sum float64
	for k, s := range after {
		if keep(s.labels) {
			sum += s.value - before[k].value
		}
	}
	return sum
}

func describeSeries(after, before map[string]series) string {
	var b strings.Builder
	keys := make([]string, 0, len(after))
	for k := range after {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if d := after[k].value - before[k].value; d != 0 {
			fmt.Fprintf(&b, "  +%v {%s}\n", d, k)
		}
	}
	return b.String()
}

func withinPct(got, want, pct float64) bool {
	return want > 0 && got >= want*(1-pct/100) && got <= want*(1+pct/100)
}

// bigBody is n bytes that TLS cannot compress away.
func bigBody(n int) []byte {
	b := make([]byte, n)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// httpGetJSON fetches and decodes a JSON object.
func httpGetJSON(u string) (map[string]any, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return v, nil
}

// retransSampler samples the kernel's own count of segments each TCP
// socket retransmitted (tcpi_total_retrans, `ss -ti` "retrans:N/TOTAL": what
// /proc/net/snmp RetransSegs sums over the node) for the sockets with a
// given port at either end, so that a test can compare the agent with the
// kernel for one connection on a node where other programs retransmit too.
type retransSampler struct {
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	max   map[string]uint64 // "local remote" -> highest total seen
	first map[string]uint64 // "local remote" -> total at the first sample
}

func sampleRetrans(t *testing.T, port int) *retransSampler {
	t.Helper()
	ss := harness.LookTool(t, "ss")
	s := &retransSampler{stop: make(chan struct{}), done: make(chan struct{}), max: make(map[string]uint64), first: make(map[string]uint64)}
	filter := fmt.Sprintf("( sport = :%d or dport = :%d )", port, port)
	go func() {
		defer close(s.done)
		for {
			out, err := exec.Command(ss, "-tinH", "state", "connected", filter).Output()
			if err == nil {
				s.mu.Lock()
				for sock, n := range parseSSRetrans(string(out)) {
					if _, ok := s.first[sock]; !ok {
						s.first[sock] = n
					}
					s.max[sock] = max(s.max[sock], n)
				}
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(s.finish)
	return s
}

// finish stops sampling (idempotent).
func (s *retransSampler) finish() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// total stops sampling and sums the highest counts of the sockets keep
// selects; keep gets the local and remote ports.
func (s *retransSampler) total(keep func(local, remote int) bool) uint64 {
	s.finish()
	return s.current(keep)
}

// sinceFirst is total less what each socket had retransmitted when it was
// first sampled (a socket older than the sampler).
func (s *retransSampler) sinceFirst(keep func(local, remote int) bool) uint64 {
	s.finish()
	return s.current(keep) - s.sum(s.first, keep)
}

// current is total while sampling goes on.
func (s *retransSampler) current(keep func(local, remote int) bool) uint64 {
	return s.sum(s.max, keep)
}

func (s *retransSampler) sum(m map[string]uint64, keep func(local, remote int) bool) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n uint64
	for sock, v := range m {
		l, r, _ := strings.Cut(sock, " ")
		if keep(portOf(l), portOf(r)) {
			n += v
		}
	}
	return n
}

func portOf(addrPort string) int {
	i := strings.LastIndexByte(addrPort, ':')
	p, _ := strconv.Atoi(addrPort[i+1:])
	return p
}

// parseSSRetrans reads `ss -tinH` output: a line per socket (state,
// queues, local, peer), then an indented line of TCP info that has
// "retrans:N/TOTAL" once the socket has retransmitted.
func parseSSRetrans(out string) map[string]uint64 {
	res := make(map[string]uint64)
	var sock string
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			f := strings.Fields(line)
			if len(f) >= 5 {
				sock = f[3] + " " + f[4]
				res[sock] += 0
			}
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "retrans:"); ok {
				if _, total, ok := strings.Cut(v, "/"); ok {
					n, _ := strconv.ParseUint(total, 10, 64)
					res[sock] = n
				}
			}
		}
	}
	return res
}
