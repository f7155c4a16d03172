package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/collectors/sockets"
	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// TestGoNetHTTPConnsLeftToGohttp: net/http connections that the gotls
// collector's per-connection marks miss are still left to gohttp, which
// records the socket of every request it sees: one request, one span.
//   - before: a Go HTTPS server and client with a keep-alive connection
//     opened (one request) before the agent starts; N requests on it once
//     both Go collectors are attached.
//   - dial-tls: a client whose transport dials TLS itself
//     (Transport.DialTLSContext).
//
// HTTP/1.1 and HTTP/2 each: exactly N SERVER and N CLIENT spans with the
// right paths and statuses, each server span the child of its client span,
// on one connection. gotls copies no byte of HTTP/1.1 ones; of HTTP/2 ones
// at most what goes before the first request gohttp sees: the payload of
// the frame whose header the server was blocked reading when the probes
// came (one record), the client's preface and settings over
// DialTLSContext. Those make no span.
func TestGoNetHTTPConnsLeftToGohttp(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := harness.GenerateCert(t, dir)
	bin := buildGoApp(t, dir, "", false)
	const n = 8
	for _, h2 := range []bool{false, true} {
		var flags []string
		if h2 {
			flags = []string{"-h2"}
		}
		t.Run(fmt.Sprintf("before/h2=%v", h2), func(t *testing.T) {
			port := harness.FreePort(t)
			srv := goServer(t, bin, port, append([]string{"-tls-cert", cert, "-tls-key", key}, flags...)...)
			cl := startProc(t, nil, bin, append([]string{"client", fmt.Sprintf("https://127.0.0.1:%d", port), strconv.Itoa(n),
				"-ca", ca, "-pre", "1"}, flags...)...)
			cl.expect("ready", 30*time.Second)
			e := startAgent(t, "--include-exe", "goapp-*")
			goInstrumented(t, e, srv.PID, cl.PID)
			cl.send("")
			checkOneConnection(t, e, srv, cl, n)
			if d, b := gotlsRecords(t, e); h2 && (d > 1 || b > 1) || !h2 && (d != 0 || b != 0) {
				t.Errorf("gotls read %v data and %v bind records of net/http's connection, want none (HTTP/2: at most 1)", d, b)
			}
		})
	}
	e := startAgent(t, "--include-exe", "goapp-*")
	for _, h2 := range []bool{false, true} {
		var flags []string
		if h2 {
			flags = []string{"-h2"}
		}
		t.Run(fmt.Sprintf("dial-tls/h2=%v", h2), func(t *testing.T) {
			data, bind := gotlsRecords(t, e)
			port := harness.FreePort(t)
			srv := goServer(t, bin, port, append([]string{"-tls-cert", cert, "-tls-key", key}, flags...)...)
			cl := startProc(t, nil, bin, append([]string{"client", fmt.Sprintf("https://127.0.0.1:%d", port), strconv.Itoa(n),
				"-ca", ca, "-dial-tls"}, flags...)...)
			goInstrumented(t, e, srv.PID, cl.PID)
			cl.send("")
			checkOneConnection(t, e, srv, cl, n)
			if d, b := gotlsRecords(t, e); !h2 && (d != data || b != bind) {
				t.Errorf("gotls read %v data and %v bind records of net/http's connection, want none", d-data, b-bind)
			}
		})
	}
}

// checkOneConnection waits for goapp client cl's sequence of n requests
// to srv, made over one connection, and checks their spans.
func checkOneConnection(t *testing.T, e *env, srv, cl *proc, n int) {
	t.Helper()
	if got := cl.expect("dials", 30*time.Second); got != "1" {
		t.Fatalf("client opened %s connections, want 1", got)
	}
	cl.mustSucceed(30 * time.Second)
	server := e.spans(t, n, byPIDs(kindServer, srv.PID))
	client := e.spans(t, n, byPIDs(kindClient, cl.PID))
	checkClientSequence(t, n, server, client)
	checkParents(t, server, client)
}

// checkParents checks that each server span is the child of a client span.
func checkParents(t *testing.T, server, client []otlpreceiver.Span) {
	t.Helper()
	ids := map[string]bool{}
	for _, s := range client {
		ids[s.SpanID] = true
	}
	for _, s := range server {
		if !ids[s.ParentSpanID] {
			t.Errorf("server span %q (%v) has parent %q, not a client span", s.Name, s.Attributes["url.path"], s.ParentSpanID)
		}
	}
}

// gotlsRecords reads how many data and bind records the gotls collector
// has read.
func gotlsRecords(t *testing.T, e *env) (data, bind float64) {
	t.Helper()
	data = e.agent.Metric(t, "periscope_events_read_total", map[string]string{"collector": "gotls", "type": "data"})
	bind = e.agent.Metric(t, "periscope_events_read_total", map[string]string{"collector": "gotls", "type": "bind"})
	return data, bind
}

// TestGoNetHTTPOnlyTLS: a Go program whose only crypto/tls connections are
// net/http's (testdata/gohttps: ListenAndServeTLS and http.Transport, no
// other TLS code) gets no gotls probe at all — on it, every crypto/tls
// Read and Write would cost a uprobe hit for no byte kept, gohttp
// reporting the requests whole — and each request is still exactly one
// span: N GETs over HTTP/1.1 and N over HTTP/2, N SERVER and N CLIENT
// spans each, every server span the child of its client span, no gotls
// record.
func TestGoNetHTTPOnlyTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := harness.GenerateCert(t, dir)
	bin := buildTestdataGo(t, "gohttps", dir)
	e := startAgent(t, "--include-exe", "gohttps")
	const n = 6
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			port := harness.FreePort(t)
			srv := startProc(t, nil, bin, "server", fmt.Sprintf("127.0.0.1:%d", port), cert, key)
			waitListening(t, srv, port)
			args := []string{"client", fmt.Sprintf("https://127.0.0.1:%d", port), strconv.Itoa(n), ca}
			if h2 {
				args = append(args, "-h2")
			}
			cl := startProc(t, nil, bin, args...)
			cl.expect("ready", 30*time.Second)
			probedBy(t, e, "gohttp", srv.PID, cl.PID)
			cl.send("")
			if got := cl.expect("done", 30*time.Second); got != strconv.Itoa(n) {
				t.Fatalf("client made %s GETs, want %d", got, n)
			}
			server := e.spans(t, n, byPIDs(kindServer, srv.PID))
			client := e.spans(t, n, byPIDs(kindClient, cl.PID))
			version := map[bool]string{false: "1.1", true: "2"}[h2]
			for _, set := range [][]otlpreceiver.Span{server, client} {
				for _, s := range set {
					if attrInt(s, "http.response.status_code") != 200 || attrStr(s, "network.protocol.version") != version {
						t.Errorf("span %s %s: status %d, version %s; want 200, %s", s.Name, attrStr(s, "url.path"),
							attrInt(s, "http.response.status_code"), attrStr(s, "network.protocol.version"), version)
					}
				}
			}
			checkParents(t, server, client)
			notProbedBy(t, e, "gotls", srv.PID, cl.PID)
		})
	}
	if d, b := gotlsRecords(t, e); d != 0 || b != 0 {
		t.Errorf("gotls read %v data and %v bind records, want none", d, b)
	}
}

// notProbedBy fails unless the agent's status shows each pid without
// collector's probes.
func notProbedBy(t *testing.T, e *env, collector string, pids ...int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := e.agent.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Processes {
		if slices.Contains(pids, p.PID) && slices.Contains(p.Collectors, collector) {
			t.Errorf("process %d is probed by %s (collectors %v)", p.PID, collector, p.Collectors)
		}
	}
}

// buildTestdataGo builds the Go program of testdata/name (a module of its
// own) with the local toolchain into dir.
func buildTestdataGo(t *testing.T, name, dir string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	cmd := exec.Command(harness.GoTool(t), "build", "-o", out, ".")
	cmd.Dir = testdataPath(t, name)
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOTOOLCHAIN=local")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, b)
	}
	return out
}

// TestGoNetHTTPConnCallsLeaveEarly: once gohttp has recorded a net/http
// connection (at its first request), the sockets collector's syscall
// programs leave its reads and writes at the fd_other bitmap, before the
// descriptor's lookup, so they are no longer counted as unparsed calls
// (periscope_unparsed_calls_total{collector="sockets"}). A Go HTTPS client
// makes N requests over one keep-alive connection to a Go HTTPS server,
// both probed: every request is at least a write and a read on each side,
// so calls that all took the traced path count at least 4N; with the
// bitmap only those of the handshake and the first request count, far
// below N (~120 in all here, with calls that are not the connection's:
// the span exports', on an ignored port), against ~6 per request without it. On kernels without BPF compare-and-exchange (before 5.12) the
// bitmap is off (sockets.AtomicsCmpxchg: fd_cache) and every call counts.
// "high descriptors": the server starts holding descriptors 3..202 open,
// so that its sockets are numbered above 160, where the bitmap once ended
// (a server with many connections).
func TestGoNetHTTPConnCallsLeaveEarly(t *testing.T) {
	for _, tc := range []struct {
		name string
		held int // descriptors 3..held+2 open in the server before it starts
	}{
		{"low descriptors", 0},
		{"high descriptors", 200},
	} {
		t.Run(tc.name, func(t *testing.T) { connCallsLeaveEarly(t, tc.held) })
	}
}

func connCallsLeaveEarly(t *testing.T, held int) {
	dir := t.TempDir()
	cert, key, ca := harness.GenerateCert(t, dir)
	bin := buildGoApp(t, dir, "", false)
	const n = 500
	e := startAgent(t, "--include-exe", "goapp-*")
	port := harness.FreePort(t)
	args := []string{"-tls-cert", cert, "-tls-key", key}
	var srv *proc
	if held == 0 {
		srv = goServer(t, bin, port, args...)
	} else {
		// bash holds the descriptors and execs the server (same PID).
		script := fmt.Sprintf(`for i in $(seq 3 %d); do eval "exec $i</dev/null"; done; exec "$0" "$@"`, held+2)
		srv = startProc(t, nil, "bash", append([]string{"-c", script, bin, "server", fmt.Sprintf("127.0.0.1:%d", port)}, args...)...)
		waitListening(t, srv, port)
	}
	cl := startProc(t, nil, bin, "client", fmt.Sprintf("https://127.0.0.1:%d", port), strconv.Itoa(n), "-ca", ca)
	goInstrumented(t, e, srv.PID, cl.PID)
	unparsed := func() float64 {
		return e.agent.Metric(t, "periscope_unparsed_calls_total", map[string]string{"collector": "sockets"})
	}
	before := unparsed()
	cl.send("")
	checkOneConnection(t, e, srv, cl, n)
	got := unparsed() - before
	if held > 0 {
		if low := lowestSocketFD(t, srv.PID); low < held {
			t.Fatalf("the server's lowest socket descriptor is %d, want at least %d", low, held)
		}
	}
	if sockets.AtomicsCmpxchg() {
		if got >= n {
			t.Errorf("%v unparsed calls for %d requests on one net/http connection, want fewer than %d: its calls did not leave at the bitmap once gohttp recorded it", got, n, n)
		}
	} else if got < 4*n {
		t.Errorf("%v unparsed calls for %d requests on one net/http connection, want at least %d without the bitmap (kernel before 5.12)", got, n, 4*n)
	}
	t.Logf("unparsed calls: %v for %d requests", got, n)
}

// lowestSocketFD returns the lowest descriptor of process pid that names a
// socket.
func lowestSocketFD(t *testing.T, pid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	low := -1
	for _, d := range ents {
		fd, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(filepath.Join(dir, d.Name())); err == nil && strings.HasPrefix(l, "socket:") && (low < 0 || fd < low) {
			low = fd
		}
	}
	if low < 0 {
		t.Fatalf("process %d has no socket", pid)
	}
	return low
}
