package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// twoNodes are two network namespaces standing for two nodes: A and B
// joined by a veth pair (the traffic and the agents' lookups), each also
// joined to the test's own namespace by a veth pair of its own (the OTLP
// receivers and /metrics). Addresses are 10.N.x.y with N from the test's
// PID, in namespaces only this test creates. Both agents see the whole
// machine's kernel: each selects its node's processes by path, the copies
// in a directory of the node's own (srvDir, cliDir), not by name, which
// would select the copies of a linking test running at the same time (its
// requests looked up and counted no_owner).
type twoNodes struct {
	ip         string
	tlsEnv     []string // the agents' mutual TLS settings
	nsA, nsB   string
	a, b       string // the nodes' addresses on the A-B link
	rootA, inA string // the A-root link: the test's end, A's end
	rootB, inB string
	// srvDir holds B's executables, cliDir A's.
	srvDir, cliDir string
}

var twoNodesMade atomic.Int32

func newTwoNodes(t *testing.T) *twoNodes {
	t.Helper()
	harness.RequireRoot(t)
	// Names and addresses differ per call: the namespaces of a test that
	// ran before go away asynchronously, and their veth pairs with them.
	pid := os.Getpid()*10 + int(twoNodesMade.Add(1)%10)
	net := 100 + pid%100
	n := &twoNodes{
		ip:  harness.LookTool(t, "ip"),
		nsA: fmt.Sprintf("pslkA%d", pid), nsB: fmt.Sprintf("pslkB%d", pid),
		a: fmt.Sprintf("10.%d.3.1", net), b: fmt.Sprintf("10.%d.3.2", net),
		rootA: fmt.Sprintf("10.%d.1.1", net), inA: fmt.Sprintf("10.%d.1.2", net),
		rootB: fmt.Sprintf("10.%d.2.1", net), inB: fmt.Sprintf("10.%d.2.2", net),
		srvDir: t.TempDir(), cliDir: t.TempDir(),
	}
	t.Cleanup(func() {
		// Deleting a namespace deletes its veth ends, and so their peers.
		for _, ns := range []string{n.nsA, n.nsB} {
			_ = runQuiet(n.ip, "netns", "del", ns)
		}
	})
	ab, ba := fmt.Sprintf("lkab%d", pid), fmt.Sprintf("lkba%d", pid)
	ra, ar := fmt.Sprintf("lkra%d", pid), fmt.Sprintf("lkar%d", pid)
	rb, br := fmt.Sprintf("lkrb%d", pid), fmt.Sprintf("lkbr%d", pid)
	for _, args := range [][]string{
		{"netns", "add", n.nsA},
		{"netns", "add", n.nsB},
		{"link", "add", ab, "type", "veth", "peer", "name", ba},
		{"link", "set", ab, "netns", n.nsA},
		{"link", "set", ba, "netns", n.nsB},
		{"link", "add", ra, "type", "veth", "peer", "name", ar},
		{"link", "set", ar, "netns", n.nsA},
		{"link", "add", rb, "type", "veth", "peer", "name", br},
		{"link", "set", br, "netns", n.nsB},
		{"-n", n.nsA, "addr", "add", n.a + "/24", "dev", ab},
		{"-n", n.nsB, "addr", "add", n.b + "/24", "dev", ba},
		{"-n", n.nsA, "addr", "add", n.inA + "/24", "dev", ar},
		{"-n", n.nsB, "addr", "add", n.inB + "/24", "dev", br},
		{"addr", "add", n.rootA + "/24", "dev", ra},
		{"addr", "add", n.rootB + "/24", "dev", rb},
		{"-n", n.nsA, "link", "set", "lo", "up"},
		{"-n", n.nsB, "link", "set", "lo", "up"},
		{"-n", n.nsA, "link", "set", ab, "up"},
		{"-n", n.nsB, "link", "set", ba, "up"},
		{"-n", n.nsA, "link", "set", ar, "up"},
		{"-n", n.nsB, "link", "set", br, "up"},
		{"link", "set", ra, "up"},
		{"link", "set", rb, "up"},
	} {
		run(t, n.ip, args...)
	}
	return n
}

func runQuiet(name string, args ...string) error {
	return exec.Command(name, args...).Run()
}

// listenIn listens on addr inside network namespace ns.
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatalf("setns %s: %v", ns, err)
	}
	ln, lerr := net.Listen("tcp", addr)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		panic(fmt.Sprintf("setns back: %v", err)) // this thread must not serve in ns
	}
	if lerr != nil {
		t.Fatal(lerr)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

const linkPort = "7071"

// nodeAgent starts the agent of node ns (run with `ip netns exec`),
// tracing the executables in dir, answering lookups on
// listen and asking peer, exporting to recv through the namespace's link
// to the test's (metrics on inAddr).
func (n *twoNodes) nodeAgent(t *testing.T, ns, dir, listen, peer, tokenFile, inAddr, rootAddr string, recv *otlpreceiver.Receiver) *env {
	t.Helper()
	bin := harness.BuildAgent(t)
	args := []string{"netns", "exec", ns, bin, "run", "--console=off", "--include-exe", filepath.Join(dir, "*"),
		"--metrics-addr", net.JoinHostPort(inAddr, strconv.Itoa(harness.FreePort(t)))}
	a := harness.StartAgent(t, n.ip, args, append([]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + net.JoinHostPort(rootAddr, strconv.Itoa(portOf(recv.Addr()))),
		"OTEL_EXPORTER_OTLP_INSECURE=true",
		"OTEL_BSP_SCHEDULE_DELAY=200",
		"PERISCOPE_SYMBOLS_CACHE_DIR=off",
		"PERISCOPE_TCP_ENABLED=false",
		"PERISCOPE_PROCESS_METRICS_ENABLED=false",
		"PERISCOPE_LINKING_LISTEN=" + net.JoinHostPort(listen, linkPort),
		"PERISCOPE_LINKING_PEERS=" + net.JoinHostPort(peer, linkPort),
		"PERISCOPE_LINKING_TOKEN_FILE=" + tokenFile,
		// Longer than the default 300 ms: this machine may be loaded
		// by other tests, and a lookup that times out leaves a span
		// unlinked (counted: the test would say which).
		"PERISCOPE_LINKING_WAIT=2s",
	}, n.tlsEnv...))
	// Two agents load their programs at once: on a loaded machine the
	// verifier alone took 32 s (3 busy loops and a load of 13 on 2 cores).
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatalf("agent in %s not ready: %v", ns, err)
	}
	return &env{agent: a, recv: recv}
}

// startIn starts name inside network namespace ns.
func (n *twoNodes) startIn(t *testing.T, ns, name string, args ...string) *proc {
	t.Helper()
	return startProc(t, nil, n.ip, append([]string{"netns", "exec", ns, name}, args...)...)
}

// waitCollector waits until e's agent has the collector on pid; "" waits
// for the process to be instrumented at all (the sockets collector, which
// selects processes in the kernel at their exec, is not listed).
func waitCollector(t *testing.T, e *env, pid int, collector string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := e.agent.Status(ctx)
		cancel()
		if err == nil && slices.ContainsFunc(st.Processes, func(p harness.AgentProcess) bool {
			return p.PID == pid && (collector == "" || slices.Contains(p.Collectors, collector))
		}) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never got the %s collector (status error %v)", pid, collector, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// curlIn runs curl in ns on urls over one connection; with e, once e's
// agent has collector on it (curl reads its URLs from stdin, so that
// nothing is sent before).
func (n *twoNodes) curlIn(t *testing.T, ns, curl string, e *env, collector string, insecure bool, urls []string) int {
	t.Helper()
	p := n.startIn(t, ns, curl, "-sS", "-K", "-")
	if e != nil {
		waitCollector(t, e, p.PID, collector)
	}
	var cfg strings.Builder
	if insecure {
		cfg.WriteString("insecure\n")
	}
	for _, u := range urls {
		fmt.Fprintf(&cfg, "url = %q\noutput = \"/dev/null\"\n", u)
	}
	if _, err := io.WriteString(p.stdin, cfg.String()); err != nil {
		t.Fatal(err)
	}
	p.stdin.Close()
	p.mustSucceed(30 * time.Second)
	return p.PID
}

func urlsOf(base, prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s/%s/%d", base, prefix, i)
	}
	return out
}

// wantLinked checks that every server span is the child of the client
// span that sent its request: same trace, same path, in the same order.
func wantLinked(t *testing.T, what string, servers, clients []otlpreceiver.Span) {
	t.Helper()
	if len(servers) != len(clients) {
		t.Fatalf("%s: %d server spans, %d client spans", what, len(servers), len(clients))
	}
	byStart := func(s []otlpreceiver.Span) {
		sort.Slice(s, func(i, j int) bool { return s[i].Start.Before(s[j].Start) })
	}
	byStart(servers)
	byStart(clients)
	for i, sv := range servers {
		cl := clients[i]
		if sv.ParentSpanID != cl.SpanID || sv.TraceID != cl.TraceID || !sv.RemoteParent {
			t.Errorf("%s request %d (%s): server span parent %q trace %s remote %v, want the client span %s of trace %s",
				what, i, attrStr(sv, "url.path"), sv.ParentSpanID, sv.TraceID, sv.RemoteParent, cl.SpanID, cl.TraceID)
			continue
		}
		if attrStr(sv, "url.path") != attrStr(cl, "url.path") {
			t.Errorf("%s request %d: server %s linked to client %s", what, i, attrStr(sv, "url.path"), attrStr(cl, "url.path"))
		}
	}
}

func wantUnlinked(t *testing.T, what string, servers []otlpreceiver.Span) {
	t.Helper()
	for _, s := range servers {
		if s.ParentSpanID != "" {
			t.Errorf("%s: server span %s has parent %s", what, attrStr(s, "url.path"), s.ParentSpanID)
		}
	}
}

func writeToken(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLinkAcrossNodes: a client on node A calls a server on node B, each
// node with its own agent; B's agent asks A's which client span sent each
// request (mutual TLS and a token). Plain HTTP (sockets), HTTPS (OpenSSL), Go net/http, and 100
// requests on one keep-alive connection: every server span is the child of
// the right client span. Then A's agent with a wrong token, stopped, and
// replaced by a peer that never answers or answers garbage: B's spans go
// out unlinked, every lookup counted, and B's agent lives on.
func TestLinkAcrossNodes(t *testing.T) {
	n := newTwoNodes(t)
	// Mutual TLS and the token, as the Helm chart sets them up.
	cert, key, ca := harness.GenerateCert(t, t.TempDir())
	n.tlsEnv = []string{"PERISCOPE_LINKING_TLS_CERT_FILE=" + cert, "PERISCOPE_LINKING_TLS_KEY_FILE=" + key, "PERISCOPE_LINKING_TLS_CA_FILE=" + ca}
	// One receiver per node, each on the test's end of that node's link:
	// not on loopback, where other tests' agents export.
	recvA, recvB := otlpreceiver.StartOn(t, n.rootA+":0", n.rootA+":0"), otlpreceiver.StartOn(t, n.rootB+":0", n.rootB+":0")
	token := writeToken(t, "e2e-shared-token")
	envB := n.nodeAgent(t, n.nsB, n.srvDir, n.b, n.a, token, n.inB, n.rootB, recvB)
	envA := n.nodeAgent(t, n.nsA, n.cliDir, n.a, n.b, token, n.inA, n.rootA, recvA)
	// Each knows the other's addresses (B asks A every 2 s until A answers).
	waitMetric(t, envB.agent, "periscope_link_peer_addresses", nil, "A's addresses", func(v float64) bool { return v >= 2 })
	waitMetric(t, envA.agent, "periscope_link_peer_addresses", nil, "B's addresses", func(v float64) bool { return v >= 2 })

	py := harness.CopyExeTo(t, python(t), n.srvDir, "srv_py")
	curl := harness.CopyExeTo(t, "curl", n.cliDir, "cli_curl")
	goBin := buildGoApp(t, t.TempDir(), "", false)
	goSrv, goCli := harness.CopyExeTo(t, goBin, n.srvDir, "srv_go"), harness.CopyExeTo(t, goBin, n.cliDir, "cli_go")
	script := testdataPath(t, "link_server.py")

	plainPort, tlsPort, goPort := harness.FreePort(t), harness.FreePort(t), harness.FreePort(t)
	plain := n.startIn(t, n.nsB, py, script, n.b, strconv.Itoa(plainPort))
	plain.expect("listening", 10*time.Second)
	waitCollector(t, envB, plain.PID, "")
	tlsSrv := n.startIn(t, n.nsB, py, script, n.b, strconv.Itoa(tlsPort), cert, key)
	tlsSrv.expect("listening", 10*time.Second)
	waitCollector(t, envB, tlsSrv.PID, "openssl")
	gs := n.startIn(t, n.nsB, goSrv, "server", net.JoinHostPort(n.b, strconv.Itoa(goPort)))
	waitCollector(t, envB, gs.PID, "gohttp")

	plainURL := fmt.Sprintf("http://%s:%d", n.b, plainPort)
	// Plain HTTP: 100 requests on one keep-alive connection.
	start := time.Now()
	curlPlain := n.curlIn(t, n.nsA, curl, envA, "", false, urlsOf(plainURL, "ka", 100))
	// HTTPS through OpenSSL on both ends.
	curlTLS := n.curlIn(t, n.nsA, curl, envA, "openssl", true, urlsOf(fmt.Sprintf("https://%s:%d", n.b, tlsPort), "tls", 5))
	// Go net/http on both ends: 20 requests, one connection.
	gc := n.startIn(t, n.nsA, goCli, "client", fmt.Sprintf("http://%s:%d", n.b, goPort), "20", "-path", "/go")
	waitCollector(t, envA, gc.PID, "gohttp")
	gc.send("")
	gc.mustSucceed(30 * time.Second)

	wantLinked(t, "plain keep-alive", envB.spans(t, 100, byPIDs(kindServer, plain.PID)), envA.spans(t, 100, byPIDs(kindClient, curlPlain)))
	wantLinked(t, "https", envB.spans(t, 5, byPIDs(kindServer, tlsSrv.PID)), envA.spans(t, 5, byPIDs(kindClient, curlTLS)))
	wantLinked(t, "go", envB.spans(t, 20, byPIDs(kindServer, gs.PID)), envA.spans(t, 20, byPIDs(kindClient, gc.PID)))
	t.Logf("125 requests linked across the nodes, all spans received %v after the first request", time.Since(start).Round(time.Millisecond))
	lookups := func(result string) float64 {
		return envB.agent.Metric(t, "periscope_link_lookups_total", map[string]string{"result": result})
	}
	if got := lookups("linked"); got != 125 {
		t.Errorf("B counted %v linked lookups, want 125", got)
	}
	for _, r := range []string{"not_found", "no_owner", "timeout", "refused", "error", "dropped"} {
		if got := lookups(r); got != 0 {
			t.Errorf("B counted %v lookups %s, want 0", got, r)
		}
	}

	// A's agent with a wrong token: refused, counted on both ends.
	envA.agent.Stop()
	envA = n.nodeAgent(t, n.nsA, n.cliDir, n.a, n.b, writeToken(t, "not-the-token"), n.inA, n.rootA, recvA)
	n.curlIn(t, n.nsA, curl, nil, "", false, urlsOf(plainURL, "wrong", 3))
	wantUnlinked(t, "wrong token", envB.spans(t, 3, func(s otlpreceiver.Span) bool {
		return byPIDs(kindServer, plain.PID)(s) && strings.HasPrefix(attrStr(s, "url.path"), "/wrong/")
	}))
	waitMetric(t, envB.agent, "periscope_link_lookups_total", map[string]string{"result": "refused"}, "3", equals(3))
	waitMetric(t, envA.agent, "periscope_link_requests_served_total", map[string]string{"result": "refused"}, "at least 1", func(v float64) bool { return v >= 1 })

	// A's agent stopped: B's spans go out unlinked within the wait.
	envA.agent.Stop()
	n.curlIn(t, n.nsA, curl, nil, "", false, urlsOf(plainURL, "down", 3))
	wantUnlinked(t, "peer down", envB.spans(t, 3, func(s otlpreceiver.Span) bool {
		return byPIDs(kindServer, plain.PID)(s) && strings.HasPrefix(attrStr(s, "url.path"), "/down/")
	}))
	failed := func(want float64) func() (bool, string) {
		return func() (bool, string) {
			got := lookups("error") + lookups("timeout")
			return got == want, fmt.Sprintf("%v lookups failed or timed out, want %v", got, want)
		}
	}
	waitFor(t, 30*time.Second, "B's lookups fail with A's agent stopped", failed(3))

	// A peer that accepts and never answers, then one that answers garbage.
	for _, tc := range []struct {
		name   string
		serve  func(net.Conn)
		result string
	}{
		{"slow", func(c net.Conn) { time.Sleep(5 * time.Second); c.Close() }, "timeout"},
		{"garbage", func(c net.Conn) {
			defer c.Close()
			junk := []byte(strings.Repeat("\x00\x00\xff\x04garbage", 4096))
			for range 64 {
				if _, err := c.Write(junk); err != nil {
					return
				}
			}
		}, "error"},
	} {
		// A peer that fails mutual TLS's handshake (garbage, or a
		// connection closed in the middle of it) refuses nothing.
		refused := lookups("refused")
		before := lookups("timeout") + lookups("error")
		ln := listenIn(t, n.nsA, net.JoinHostPort(n.a, linkPort))
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go tc.serve(c)
			}
		}()
		n.curlIn(t, n.nsA, curl, nil, "", false, urlsOf(plainURL, tc.name, 20))
		wantUnlinked(t, tc.name+" peer", envB.spans(t, 20, func(s otlpreceiver.Span) bool {
			return byPIDs(kindServer, plain.PID)(s) && strings.HasPrefix(attrStr(s, "url.path"), "/"+tc.name+"/")
		}))
		waitFor(t, 30*time.Second, "B's lookups fail with a "+tc.name+" peer", failed(before+20))
		if got := lookups("refused"); got != refused {
			t.Errorf("B counted %v lookups refused with a %s peer, want 0", got-refused, tc.name)
		}
		ln.Close()
		select {
		case <-envB.agent.Done():
			t.Fatalf("B's agent exited with a %s peer", tc.name)
		default:
		}
	}
	if rss := rssKiB(t, envB.agent.PID); rss > 256<<10 {
		t.Errorf("B's agent uses %d KiB after the bad peers", rss)
	}
}

// rssKiB returns a process's resident set size.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kib
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// connClient opens one keep-alive connection once a first line comes on
// stdin (so that an agent can attach first), sends the requests
// /PREFIX0/0..2 on it (argv[3]) and prints "ready"; then for each line
// "PREFIX N" on stdin it sends /PREFIX/0..N-1 on the same connection and
// prints "done". With a fourth argument "tls" it speaks HTTPS (OpenSSL,
// through python's ssl module), its TLS handshake with the first request.
const connClient = `
import http.client, ssl, sys
sys.stdin.readline()
if sys.argv[4:] == ["tls"]:
    c = http.client.HTTPSConnection(sys.argv[1], int(sys.argv[2]), context=ssl._create_unverified_context())
else:
    c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]))
def get(p):
    c.request("GET", p)
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
for i in range(3):
    get("/%s/%d" % (sys.argv[3], i))
print("ready", flush=True)
for line in sys.stdin:
    prefix, n = line.split()
    for i in range(int(n)):
        get("/%s/%d" % (prefix, i))
    print("done", flush=True)
`

// TestLinkMidConnection: a keep-alive connection opened and used before
// either agent started, A's agent then seeing 5 requests on it before B's
// starts: the two agents would count its requests from different points
// (A from the 4th, B from the 9th), so ordinals would link B's request k
// to A's request k, an older one. The requests are looked up by the TCP
// sequence number of the write and the read they began in instead: every
// one of the 20 requests sent once both run is linked to the client span
// that sent it, none to another; A reports its 25 client spans. A second
// connection, opened once A's agent runs (A numbers its requests from the
// first, B sees it mid-stream), has its 10 later requests linked the same
// way.
func TestLinkMidConnection(t *testing.T) {
	n := newTwoNodes(t)
	recvA, recvB := otlpreceiver.StartOn(t, n.rootA+":0", n.rootA+":0"), otlpreceiver.StartOn(t, n.rootB+":0", n.rootB+":0")
	token := writeToken(t, "e2e-shared-token")
	srvPy := harness.CopyExeTo(t, python(t), n.srvDir, "srv_py")
	cliPy := harness.CopyExeTo(t, python(t), n.cliDir, "cli_py")
	port := harness.FreePort(t)
	srv := n.startIn(t, n.nsB, srvPy, testdataPath(t, "link_server.py"), n.b, strconv.Itoa(port))
	srv.expect("listening", 10*time.Second)
	cli := n.startIn(t, n.nsA, cliPy, "-c", connClient, n.b, strconv.Itoa(port), "before")
	cli.send("")
	cli.expect("ready", 10*time.Second)

	envA := n.nodeAgent(t, n.nsA, n.cliDir, n.a, n.b, token, n.inA, n.rootA, recvA)
	waitCollector(t, envA, cli.PID, "")
	cli.send("mid 5")
	cli.expect("done", 30*time.Second)
	cli2 := n.startIn(t, n.nsA, cliPy, "-c", connClient, n.b, strconv.Itoa(port), "before")
	cli2.send("")
	cli2.expect("ready", 10*time.Second)
	envB := n.nodeAgent(t, n.nsB, n.srvDir, n.b, n.a, token, n.inB, n.rootB, recvB)
	waitMetric(t, envB.agent, "periscope_link_peer_addresses", nil, "A's addresses", func(v float64) bool { return v >= 2 })
	waitMetric(t, envA.agent, "periscope_link_peer_addresses", nil, "B's addresses", func(v float64) bool { return v >= 2 })
	waitCollector(t, envB, srv.PID, "")
	cli.send("after 20")
	cli.expect("done", 30*time.Second)
	cli2.send("second 10")
	cli2.expect("done", 30*time.Second)

	prefixed := func(prefix string, kind func(otlpreceiver.Span) bool) func(otlpreceiver.Span) bool {
		return func(s otlpreceiver.Span) bool { return kind(s) && strings.HasPrefix(attrStr(s, "url.path"), prefix) }
	}
	if clients := envA.spans(t, 25, func(s otlpreceiver.Span) bool {
		return prefixed("/mid/", byPIDs(kindClient, cli.PID))(s) || prefixed("/after/", byPIDs(kindClient, cli.PID))(s)
	}); len(clients) != 25 {
		t.Errorf("%d client spans of /mid/ and /after/ requests, want 25", len(clients))
	}
	wantLinked(t, "mid-connection", envB.spans(t, 20, prefixed("/after/", byPIDs(kindServer, srv.PID))),
		envA.spans(t, 20, prefixed("/after/", byPIDs(kindClient, cli.PID))))
	wantLinked(t, "second connection", envB.spans(t, 10, prefixed("/second/", byPIDs(kindServer, srv.PID))),
		envA.spans(t, 10, prefixed("/second/", byPIDs(kindClient, cli2.PID))))
	waitMetric(t, envB.agent, "periscope_link_lookups_total", map[string]string{"result": "linked"}, "30", equals(30))
	for _, r := range []string{"no_key", "not_found", "no_owner", "timeout", "refused", "error", "dropped"} {
		if got := envB.agent.Metric(t, "periscope_link_lookups_total", map[string]string{"result": r}); got != 0 {
			t.Errorf("B counted %v lookups %s, want 0", got, r)
		}
	}
}

// TestLinkTLSMidConnection: TLS keep-alive connections (OpenSSL at both
// ends) that an agent saw only after their start have no request ordinal
// both agents would agree on, and their bytes no TCP sequence that lines
// up with the requests: their server spans are never linked to a wrong
// client span. B's agent runs first (A's not yet); connection 0 was
// opened before both, connection 1 after B's agent started and before A's
// (B sees its handshake and numbers its requests from the first, A sees
// it mid-stream: with ordinals counted from the first request it sees, A
// would answer B's request 4 with its request 4, the 7th). Then connection
// 2, opened with both running, is linked request by request. Counts at B:
// connection 1's 3 first requests no_owner (A's agent is down), its 5
// later ones not_found (A has no ordinal for them), connection 0's 4
// no_key (the read B's server was blocked in when B's agent started is
// not seen), connection 2's 13 linked, and nothing else.
func TestLinkTLSMidConnection(t *testing.T) {
	n := newTwoNodes(t)
	recvA, recvB := otlpreceiver.StartOn(t, n.rootA+":0", n.rootA+":0"), otlpreceiver.StartOn(t, n.rootB+":0", n.rootB+":0")
	token := writeToken(t, "e2e-shared-token")
	cert, key, _ := harness.GenerateCert(t, t.TempDir())
	srvPy := harness.CopyExeTo(t, python(t), n.srvDir, "srv_py")
	cliPy := harness.CopyExeTo(t, python(t), n.cliDir, "cli_py")
	port := strconv.Itoa(harness.FreePort(t))
	srv := n.startIn(t, n.nsB, srvPy, testdataPath(t, "link_server.py"), n.b, port, cert, key)
	srv.expect("listening", 10*time.Second)
	cli0 := n.startIn(t, n.nsA, cliPy, "-c", connClient, n.b, port, "zero", "tls")
	cli0.send("")
	cli0.expect("ready", 10*time.Second)

	envB := n.nodeAgent(t, n.nsB, n.srvDir, n.b, n.a, token, n.inB, n.rootB, recvB)
	waitCollector(t, envB, srv.PID, "openssl")
	cli1 := n.startIn(t, n.nsA, cliPy, "-c", connClient, n.b, port, "one", "tls")
	cli1.send("")
	cli1.expect("ready", 10*time.Second)

	envA := n.nodeAgent(t, n.nsA, n.cliDir, n.a, n.b, token, n.inA, n.rootA, recvA)
	waitMetric(t, envB.agent, "periscope_link_peer_addresses", nil, "A's addresses", func(v float64) bool { return v >= 2 })
	waitMetric(t, envA.agent, "periscope_link_peer_addresses", nil, "B's addresses", func(v float64) bool { return v >= 2 })
	waitCollector(t, envA, cli0.PID, "openssl")
	waitCollector(t, envA, cli1.PID, "openssl")
	cli0.send("old 5")
	cli0.expect("done", 30*time.Second)
	cli1.send("mid 5")
	cli1.expect("done", 30*time.Second)
	cli2 := n.startIn(t, n.nsA, cliPy, "-c", connClient, n.b, port, "two", "tls")
	waitCollector(t, envA, cli2.PID, "openssl")
	cli2.send("")
	cli2.expect("ready", 10*time.Second)
	cli2.send("new 10")
	cli2.expect("done", 30*time.Second)

	server := func(prefixes ...string) func(otlpreceiver.Span) bool { return serverPaths(srv.PID, "/", prefixes...) }
	// B's server thread was blocked in SSL_read on connection 0 when B's
	// agent attached: that read, /old/0, is not seen.
	wantUnlinked(t, "connection 0, open before both agents", envB.spans(t, 4, server("old")))
	wantUnlinked(t, "connection 1, open before A's agent", envB.spans(t, 8, server("one", "mid")))
	wantLinked(t, "connection 2", envB.spans(t, 13, server("two", "new")), envA.spans(t, 13, byPIDs(kindClient, cli2.PID)))
	if clients := envA.spans(t, 10, byPIDs(kindClient, cli0.PID, cli1.PID)); len(clients) != 10 {
		t.Errorf("A reported %d client spans of connections 0 and 1, want 10", len(clients))
	}
	wantLookups(t, envB, map[string]float64{"linked": 13, "no_key": 4, "not_found": 5, "no_owner": 3})
}

// serverPaths selects the server spans of process pid whose path is
// base + one of prefixes + "/...".
func serverPaths(pid int, base string, prefixes ...string) func(otlpreceiver.Span) bool {
	return func(s otlpreceiver.Span) bool {
		return byPIDs(kindServer, pid)(s) && slices.ContainsFunc(prefixes, func(p string) bool {
			return strings.HasPrefix(attrStr(s, "url.path"), base+p+"/")
		})
	}
}

// wantLookups checks e's lookup counts: want of each result (0 unless
// given), once the linked ones are all in.
func wantLookups(t *testing.T, e *env, want map[string]float64) {
	t.Helper()
	linked := want["linked"]
	waitMetric(t, e.agent, "periscope_link_lookups_total", map[string]string{"result": "linked"}, fmt.Sprint(linked), equals(linked))
	for _, r := range []string{"linked", "no_key", "not_found", "no_owner", "timeout", "refused", "error", "dropped"} {
		if got := e.agent.Metric(t, "periscope_link_lookups_total", map[string]string{"result": r}); got != want[r] {
			t.Errorf("counted %v lookups %s, want %v", got, r, want[r])
		}
	}
}

// TestLinkGoMidConnection: a Go server (net/http, seen whole by gohttp)
// whose keep-alive connection was open before its agent started. A's
// agent runs first and sees the python client's connection 0 from its
// start (3 + 4 requests); then B's agent starts, and connection 0 carries
// 5 more. B's uprobes report nothing of how the connection began: counted
// from the first request B sees, B's request 1 would be A's request 8,
// and A would answer with its request 1, a wrong parent. B's agent
// recorded the connections of the server once its probes were in place
// (internal/preopen): connection 0's 5 requests have no key (no_key,
// unlinked); connection 1, opened with both agents running, has its 10
// requests linked one by one. Counts at B: 5 no_key, 10 linked, nothing
// else.
func TestLinkGoMidConnection(t *testing.T) {
	n := newTwoNodes(t)
	recvA, recvB := otlpreceiver.StartOn(t, n.rootA+":0", n.rootA+":0"), otlpreceiver.StartOn(t, n.rootB+":0", n.rootB+":0")
	token := writeToken(t, "e2e-shared-token")
	goSrv := harness.CopyExeTo(t, buildGoApp(t, t.TempDir(), "", false), n.srvDir, "srv_go")
	cliPy := harness.CopyExeTo(t, python(t), n.cliDir, "cli_py")
	port := harness.FreePort(t)
	addr := net.JoinHostPort(n.b, strconv.Itoa(port))
	srv := n.startIn(t, n.nsB, goSrv, "server", addr)
	waitListeningOn(t, srv, addr)

	envA := n.nodeAgent(t, n.nsA, n.cliDir, n.a, n.b, token, n.inA, n.rootA, recvA)
	cli0 := n.startIn(t, n.nsA, cliPy, "-c", connClient, n.b, strconv.Itoa(port), "item/zero")
	waitCollector(t, envA, cli0.PID, "")
	cli0.send("")
	cli0.expect("ready", 10*time.Second)
	cli0.send("item/mid 4")
	cli0.expect("done", 30*time.Second)

	envB := n.nodeAgent(t, n.nsB, n.srvDir, n.b, n.a, token, n.inB, n.rootB, recvB)
	waitMetric(t, envB.agent, "periscope_link_peer_addresses", nil, "A's addresses", func(v float64) bool { return v >= 2 })
	waitMetric(t, envA.agent, "periscope_link_peer_addresses", nil, "B's addresses", func(v float64) bool { return v >= 2 })
	waitCollector(t, envB, srv.PID, "gohttp")
	cli0.send("item/old 5")
	cli0.expect("done", 30*time.Second)
	cli1 := n.startIn(t, n.nsA, cliPy, "-c", connClient, n.b, strconv.Itoa(port), "item/new")
	waitCollector(t, envA, cli1.PID, "")
	cli1.send("")
	cli1.expect("ready", 10*time.Second)
	cli1.send("item/more 7")
	cli1.expect("done", 30*time.Second)

	server := func(prefixes ...string) func(otlpreceiver.Span) bool {
		return serverPaths(srv.PID, "/item/", prefixes...)
	}
	wantUnlinked(t, "connection 0, open before B's agent", envB.spans(t, 5, server("old")))
	wantLinked(t, "connection 1", envB.spans(t, 10, server("new", "more")), envA.spans(t, 10, byPIDs(kindClient, cli1.PID)))
	if clients := envA.spans(t, 12, byPIDs(kindClient, cli0.PID)); len(clients) != 12 {
		t.Errorf("A reported %d client spans of connection 0, want 12", len(clients))
	}
	wantLookups(t, envB, map[string]float64{"linked": 10, "no_key": 5})
}

// waitListeningOn waits until p listens on addr (in its own network
// namespace).
func waitListeningOn(t *testing.T, p *proc, addr string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		addrs, _ := harness.ListeningAddrs(p.PID)
		if slices.Contains(addrs, addr) {
			return
		}
	}
	t.Fatalf("%s does not listen on %s: %s", p.name, addr, p.Output())
}
