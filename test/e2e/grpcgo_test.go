package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// buildGRPCGo builds testdata/grpcgo (grpc-go, a module of its own so that
// the agent's module does not depend on it) into dir.
func buildGRPCGo(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "grpcgo")
	cmd := exec.Command(harness.GoTool(t), "build", "-o", out, ".")
	cmd.Dir = testdataPath(t, "grpcgo")
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOTOOLCHAIN=local")
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build grpcgo: %v\n%s", err, b)
	}
	t.Logf("built grpcgo in %v", time.Since(start).Round(time.Millisecond))
	return out
}

// startGRPCGo starts a grpcgo server, over TLS when tls is set, and returns
// it, its port and the CA file that signed its certificate ("" without TLS).
func startGRPCGo(t *testing.T, bin string, tls bool) (*proc, int, string) {
	t.Helper()
	args := []string{"-mode", "server"}
	var ca string
	if tls {
		var cert, key string
		cert, key, ca = harness.GenerateCert(t, filepath.Join(t.TempDir(), "tls"))
		args = append(args, "-cert", cert, "-key", key)
	}
	srv := startProc(t, []string{"OTEL_SERVICE_NAME=grpc-go-server"}, bin, args...)
	port, err := strconv.Atoi(srv.expect("listening", 30*time.Second))
	if err != nil {
		t.Fatalf("bad port from the server: %v", err)
	}
	return srv, port, ca
}

// startGRPCGoClient starts a grpcgo client of the server srv on port (over
// TLS when ca is set), to make unary+4 calls (and what extra flags add)
// when sent "go", and waits until the agent has probed both processes.
func startGRPCGoClient(t *testing.T, e *env, bin string, srv *proc, port int, ca string, unary int, extra ...string) *proc {
	t.Helper()
	args := append([]string{"-mode", "client", "-port", strconv.Itoa(port), "-n", strconv.Itoa(unary), "-wait"}, extra...)
	if ca != "" {
		args = append(args, "-ca", ca)
	}
	cli := startProc(t, []string{"OTEL_SERVICE_NAME=grpc-go-client"}, bin, args...)
	cli.expect("ready", 30*time.Second)
	if ca != "" {
		probedBy(t, e, "gotls", srv.PID, cli.PID)
	} else {
		e.instrumented(t, srv.PID, cli.PID)
	}
	return cli
}

// grpcGoTransports are the grpc-go tests' cases: over TLS (the gotls
// collector) and h2c (the sockets collector).
var grpcGoTransports = []struct {
	name string
	tls  bool
}{{"tls", true}, {"h2c", false}}

// grpcGoAuthority is the server host the grpcgo client calls, its
// :authority: the TLS server name it checks ("localhost") over TLS, the
// address it dials without.
func grpcGoAuthority(tls bool) string {
	if tls {
		return "localhost"
	}
	return "127.0.0.1"
}

// TestGoGRPC: a grpc-go server and client (grpc-go's own HTTP/2 on
// crypto/tls, or on plain TCP: neither goes through net/http), over TLS
// (the gotls collector) and plaintext h2c (the sockets collector): 6 unary
// calls, one failing with NOT_FOUND, and one call of each streaming kind
// give exactly 10 SERVER and 10 CLIENT spans with the right method, status
// and message counts, each server span the child of its client span, and
// 10 calls in the RPC duration histograms of each side on /metrics and over
// OTLP.
func TestGoGRPC(t *testing.T) {
	bin := buildGRPCGo(t, t.TempDir())
	for _, tc := range grpcGoTransports {
		t.Run(tc.name, func(t *testing.T) {
			e := startAgentOTLP(t, []string{"OTEL_METRIC_EXPORT_INTERVAL=500"}, "--include-exe", "grpcgo")
			srv, port, ca := startGRPCGo(t, bin, tc.tls)
			if tc.tls {
				probedBy(t, e, "gotls", srv.PID)
			} else {
				e.instrumented(t, srv.PID)
			}
			const unary = 6
			cli := startGRPCGoClient(t, e, bin, srv, port, ca, unary)
			cli.send("go")
			checkEchoCalls(t, e, srv, cli, grpcGoAuthority(tc.tls), port, unary)
			want := map[string]uint64{"grpc-go-server": unary + 4, "grpc-go-client": unary + 4}
			var got map[string]uint64
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
				got = latestCounts(e.recv.Metrics(), "rpc.server.call.duration", map[string]uint64{"grpc-go-server": 0})
				maps.Copy(got, latestCounts(e.recv.Metrics(), "rpc.client.call.duration", map[string]uint64{"grpc-go-client": 0}))
				if maps.Equal(got, want) {
					break
				}
			}
			if !maps.Equal(got, want) {
				t.Errorf("OTLP rpc.server/client.call.duration counts %v, want %v", got, want)
			}
		})
	}
}

// TestGoGRPCCancelGoAway: after checkEchoCalls' 10 calls, the grpc-go
// client cancels a Chat after one answer (RST_STREAM CANCEL), lets one
// pass its 300 ms deadline (a CANCEL too, at the deadline), and keeps a
// second Chat open while the server stops gracefully (GOAWAY, then it
// waits for the call), which then ends with a second message each way.
// Over TLS (gotls) and h2c (sockets): exactly 13 SERVER and 13 CLIENT
// spans, the 10 right, the cancelled Chat one span per side with
// rpc.response.status_code CANCELLED (an error on the client, none on the
// server: the conventions' tables) and its message counts, the late one
// DEADLINE_EXCEEDED (an error on both sides), the Chat across
// the GOAWAY OK with 2 messages each way (ended by its trailers, not left
// to the connection's end), each server span the child of its client's;
// CANCELLED in the RPC duration histograms, error.type on the client's
// series only.
func TestGoGRPCCancelGoAway(t *testing.T) {
	bin := buildGRPCGo(t, t.TempDir())
	for _, tc := range grpcGoTransports {
		t.Run(tc.name, func(t *testing.T) {
			e := startAgent(t, "--include-exe", "grpcgo")
			srv, port, ca := startGRPCGo(t, bin, tc.tls)
			const unary = 4
			cli := startGRPCGoClient(t, e, bin, srv, port, ca, unary, "-cancel-drain")
			cli.send("go")
			if got := cli.expect("done", 60*time.Second); got != strconv.Itoa(unary+4) {
				t.Fatalf("client made %s calls, want %d", got, unary+4)
			}
			cli.expect("cancelled", 30*time.Second)
			cli.expect("inflight", 30*time.Second)
			srv.send("graceful")
			cli.expect("drained", 30*time.Second)
			srv.expect("stopped", 30*time.Second)
			cli.mustSucceed(10 * time.Second)
			srv.mustSucceed(10 * time.Second)
			server := e.spans(t, unary+7, byPIDs(kindServer, srv.PID))
			client := e.spans(t, unary+7, byPIDs(kindClient, cli.PID))
			want := echoWant(unary)
			want[grpcCall{"test.Echo/Chat", "OK", 2, 2}]++
			want[grpcCall{"test.Echo/Chat", "CANCELLED", 1, 1}] = 1
			want[grpcCall{"test.Echo/Chat", "DEADLINE_EXCEEDED", 0, 0}] = 1
			checkGRPC(t, "server", server, want, grpcGoAuthority(tc.tls), port, false)
			checkGRPC(t, "client", client, want, grpcGoAuthority(tc.tls), port, true)
			checkGRPCLinks(t, client, server)
			cancelled := func(name string, labels map[string]string) {
				t.Helper()
				labels["rpc_method"], labels["rpc_response_status_code"] = "test.Echo/Chat", "CANCELLED"
				waitMetric(t, e.agent, name, labels, "= 1", equals(1))
			}
			cancelled("rpc_server_call_duration_seconds_count", map[string]string{"service_name": "grpc-go-server"})
			cancelled("rpc_client_call_duration_seconds_count", map[string]string{"service_name": "grpc-go-client", "error_type": "CANCELLED"})
			if n := e.agent.Metric(t, "rpc_server_call_duration_seconds_count", map[string]string{"service_name": "grpc-go-server", "error_type": "CANCELLED"}); n != 0 {
				t.Errorf("server CANCELLED recorded with error.type (%v): a server's CANCELLED is no error", n)
			}
		})
	}
}

// TestGoGRPCBesideNetHTTP: plaintext gRPC (h2c) of grpc-go programs that
// also serve and call net/http, which the gohttp collector probes. The
// sockets collector traces the gRPC (grpc-go's own HTTP/2: gohttp does not
// see it) and leaves net/http's connections to gohttp: HTTP/1.1 from the
// start, h2c once gohttp records a request on the socket. The 10 calls of
// checkEchoCalls and M GETs over each of HTTP/1.1 and h2c are exactly 10 +
// 2M SERVER and CLIENT spans, gRPC ones right and linked, HTTP ones one per
// request, each version M times, linked.
func TestGoGRPCBesideNetHTTP(t *testing.T) {
	bin := buildGRPCGo(t, t.TempDir())
	e := startAgent(t, "--include-exe", "grpcgo")
	srv := startProc(t, []string{"OTEL_SERVICE_NAME=grpc-go-server"}, bin, "-mode", "server", "-http")
	httpPort := srv.expect("http", 30*time.Second) // printed first
	port, err := strconv.Atoi(srv.expect("listening", 30*time.Second))
	if err != nil {
		t.Fatalf("bad port from the server: %v", err)
	}
	const unary, gets = 6, 4
	cli := startProc(t, []string{"OTEL_SERVICE_NAME=grpc-go-client"}, bin, "-mode", "client", "-port", strconv.Itoa(port),
		"-n", strconv.Itoa(unary), "-wait", "-http-port", httpPort, "-http-n", strconv.Itoa(gets))
	cli.expect("ready", 30*time.Second)
	probedBy(t, e, "gohttp", srv.PID, cli.PID)
	e.instrumented(t, srv.PID, cli.PID)
	cli.send("go")
	if got := cli.expect("done", 60*time.Second); got != strconv.Itoa(unary+4) {
		t.Fatalf("client made %s calls, want %d", got, unary+4)
	}
	if got := cli.expect("http", 60*time.Second); got != strconv.Itoa(2*gets) {
		t.Fatalf("client made %s GETs, want %d", got, 2*gets)
	}
	cli.mustSucceed(10 * time.Second)
	n := unary + 4 + 2*gets
	server := e.spans(t, n, byPIDs(kindServer, srv.PID))
	client := e.spans(t, n, byPIDs(kindClient, cli.PID))
	rpcServer, httpServer := splitRPC(server)
	rpcClient, httpClient := splitRPC(client)
	checkEchoSpans(t, rpcServer, rpcClient, grpcGoAuthority(false), port, unary)
	for _, set := range [][]otlpreceiver.Span{httpServer, httpClient} {
		got := counts(set, func(s otlpreceiver.Span) string {
			return fmt.Sprintf("%s %s %d %s", attrStr(s, "http.request.method"), attrStr(s, "url.path"),
				attrInt(s, "http.response.status_code"), attrStr(s, "network.protocol.version"))
		})
		if want := map[string]int{"GET /hello 200 1.1": gets, "GET /hello 200 2": gets}; !maps.Equal(got, want) {
			t.Errorf("HTTP spans %v, want %v", got, want)
		}
	}
	checkParents(t, httpServer, httpClient)
}

// TestGoH2CHandler: h2c served through golang.org/x/net/http2/h2c — the
// connection accepted by net/http's HTTP/1 server (which gohttp probes),
// whose handler gets the prior-knowledge preface as a "PRI *" request,
// hijacks the connection and serves its streams with x/net/http2's server
// (no probe of gohttp's) — called by x/net/http2's client (AllowHTTP, one
// connection). gohttp reports no request for the preface (it used to send
// the start of one that never ended) and leaves the
// socket to the sockets collector, which decodes the HTTP/2: N GETs are
// exactly N SERVER and N CLIENT spans, one per stream, each server span
// the child of its client span.
func TestGoH2CHandler(t *testing.T) {
	bin := buildGRPCGo(t, t.TempDir())
	e := startAgent(t, "--include-exe", "grpcgo")
	srv := startProc(t, []string{"OTEL_SERVICE_NAME=h2c-server"}, bin, "-mode", "h2c-server")
	port := srv.expect("listening", 30*time.Second)
	const n = 6
	cli := startProc(t, []string{"OTEL_SERVICE_NAME=h2c-client"}, bin, "-mode", "h2c-client", "-port", port,
		"-n", strconv.Itoa(n), "-wait")
	cli.expect("ready", 30*time.Second)
	probedBy(t, e, "gohttp", srv.PID, cli.PID)
	e.instrumented(t, srv.PID, cli.PID)
	cli.send("go")
	if got := cli.expect("done", 60*time.Second); got != strconv.Itoa(n) {
		t.Fatalf("client made %s GETs, want %d", got, n)
	}
	cli.mustSucceed(10 * time.Second)
	server := e.spans(t, n, byPIDs(kindServer, srv.PID))
	client := e.spans(t, n, byPIDs(kindClient, cli.PID))
	for _, set := range [][]otlpreceiver.Span{server, client} {
		got := counts(set, func(s otlpreceiver.Span) string {
			return fmt.Sprintf("%s %d %s", attrStr(s, "http.request.method"), attrInt(s, "http.response.status_code"),
				attrStr(s, "network.protocol.version"))
		})
		if want := map[string]int{"GET 200 2": n}; !maps.Equal(got, want) {
			t.Errorf("spans %v, want %v", got, want)
		}
		paths := map[string]bool{}
		for _, s := range set {
			paths[attrStr(s, "url.path")] = true
		}
		for i := range n {
			if p := fmt.Sprintf("/h2c/%d", i); !paths[p] {
				t.Errorf("no span of %s (paths %v)", p, paths)
			}
		}
	}
	checkParents(t, server, client)
	// Neither side's requests go through net/http's server or client:
	// the preface is no request of gohttp's.
	if v := e.agent.Metric(t, "periscope_events_read_total", map[string]string{"collector": "gohttp", "type": "request_start"}); v != 0 {
		t.Errorf("gohttp read %v request starts, want none (the h2c preface is no request)", v)
	}
}

// splitRPC separates gRPC spans from the others.
func splitRPC(spans []otlpreceiver.Span) (rpc, other []otlpreceiver.Span) {
	for _, s := range spans {
		if attrStr(s, "rpc.method") != "" {
			rpc = append(rpc, s)
		} else {
			other = append(other, s)
		}
	}
	return rpc, other
}

// TestNodeGRPCClientGoServer: a Node @grpc/grpc-js client (OpenSSL in
// /usr/bin/node) against the grpc-go server over TLS (crypto/tls): 10
// CLIENT spans for node, 10 SERVER spans for Go, linked.
func TestNodeGRPCClientGoServer(t *testing.T) {
	bin := buildGRPCGo(t, t.TempDir())
	e := startAgent(t, "--include-exe", "grpcgo", "--include-exe", "node")
	srv, port, ca := startGRPCGo(t, bin, true)
	probedBy(t, e, "gotls", srv.PID)
	const unary = 6
	cli := startNodeClient(t, e, port, ca, unary)
	cli.send("go")
	checkEchoCalls(t, e, srv, cli, "localhost", port, unary)
}

// TestNodeGRPCClientGoServerLaggingRing: TestNodeGRPCClientGoServer with
// the OpenSSL collector's ring reader (node's side) stopped for 800 ms at a
// time while the calls run, as a reader starved under load lags (CI once
// saw 5 of 10 calls unlinked): grpc-go's server spans, read from the gotls
// collector's ring first, wait until the OpenSSL ring has been read past
// their end, and each is still the child of its client span.
func TestNodeGRPCClientGoServerLaggingRing(t *testing.T) {
	const opensslRing = 16 << 20 // a size no other ring of the agent has
	bin := buildGRPCGo(t, t.TempDir())
	e := startAgentOTLP(t, []string{"PERISCOPE_OPENSSL_RING_BYTES=" + strconv.Itoa(opensslRing)}, "--include-exe", "grpcgo", "--include-exe", "node")
	srv, port, ca := startGRPCGo(t, bin, true)
	probedBy(t, e, "gotls", srv.PID)
	const unary = 6
	cli := startNodeClient(t, e, port, ca, unary)
	ctx, cancel := context.WithCancel(context.Background())
	stalled := make(chan int, 1)
	go func() { stalled <- stallRing(ctx, t, e.agent.PID, opensslRing, 800*time.Millisecond) }()
	stop := sync.OnceValue(func() int { cancel(); return <-stalled })
	defer stop()
	time.Sleep(100 * time.Millisecond)
	cli.send("go")
	checkEchoCalls(t, e, srv, cli, "localhost", port, unary)
	n := stop()
	if n < 2 {
		t.Fatalf("the OpenSSL ring's reader was stopped %d times: the calls did not run against a lagging ring", n)
	}
	t.Logf("the OpenSSL ring's reader was stopped %d times for 800 ms", n)
}

// TestCurlGoTLSLaggingRing: HTTP/1 across two collectors' rings — curl
// (OpenSSL) calling a Go server over crypto/tls (gotls), 8 requests on one
// keep-alive connection and 4 on connections of their own — with the
// OpenSSL ring's reader stopped 800 ms at a time: each server span is still
// the child of its client span.
func TestCurlGoTLSLaggingRing(t *testing.T) {
	const opensslRing = 16 << 20 // a size no other ring of the agent has
	e := startAgentOTLP(t, []string{"PERISCOPE_OPENSSL_RING_BYTES=" + strconv.Itoa(opensslRing)})
	dir := t.TempDir()
	cert, key, ca := harness.GenerateCert(t, filepath.Join(dir, "tls"))
	bin := buildTLSRaw(t, dir, "", false)
	srv := startProc(t, nil, bin, "server", cert, key)
	port := srv.expect("listening", 30*time.Second)
	probedBy(t, e, "gotls", srv.PID)
	curl := harness.LookTool(t, "curl")
	base := "https://127.0.0.1:" + port
	p, _ := strconv.Atoi(port)
	// Every process is traced: libssl's probes are attached (once for
	// the file) when the first curl maps it, while that curl may already
	// be talking — a program's first TLS calls can beat the attach, and
	// this test is about a lagging ring, not that. Warm-up requests until
	// one has its client span: the calls below run on probes in place.
	warm := func(s otlpreceiver.Span) bool { return strings.HasPrefix(attrStr(s, "url.path"), "/warm/") }
	for i := 0; len(filterSpans(e.recv.Spans(), func(s otlpreceiver.Span) bool { return warm(s) && byPort("curl", kindClient, p)(s) })) == 0; i++ {
		if i == 20 {
			t.Fatal("no warm-up request of 20 has its curl span")
		}
		run(t, curl, "-sS", "--cacert", ca, "-o", "/dev/null", fmt.Sprintf("%s/warm/%d", base, i))
		time.Sleep(100 * time.Millisecond)
	}
	measured := func(f func(otlpreceiver.Span) bool) func(otlpreceiver.Span) bool {
		return func(s otlpreceiver.Span) bool { return f(s) && !warm(s) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	stalled := make(chan int, 1)
	go func() { stalled <- stallRing(ctx, t, e.agent.PID, opensslRing, 800*time.Millisecond) }()
	stop := sync.OnceValue(func() int { cancel(); return <-stalled })
	defer stop()
	var urls []string
	for i := range 8 {
		urls = append(urls, fmt.Sprintf("%s/item/%d", base, i))
	}
	run(t, curl, append([]string{"-sS", "--cacert", ca}, keepAliveArgs(urls)...)...)
	for i := range 4 {
		run(t, curl, "-sS", "--cacert", ca, "-o", "/dev/null", fmt.Sprintf("%s/single/%d", base, i))
	}
	const n = 12
	server := e.spans(t, n, measured(byPIDs(kindServer, srv.PID)))
	client := e.spans(t, n, measured(byPort("curl", kindClient, p)))
	if k := stop(); k < 2 {
		t.Fatalf("the OpenSSL ring's reader was stopped %d times: the calls did not run against a lagging ring", k)
	} else {
		t.Logf("the OpenSSL ring's reader was stopped %d times for 800 ms", k)
	}
	paths := map[string]string{}
	for _, s := range client {
		paths[s.SpanID] = attrStr(s, "url.path")
	}
	for _, s := range server {
		if got, ok := paths[s.ParentSpanID]; !ok || got != attrStr(s, "url.path") {
			t.Errorf("server span %s parent %q (%s): not its client span", attrStr(s, "url.path"), s.ParentSpanID, got)
		}
	}
}

// TestGoNetHTTPLeftToGohttp: a Go net/http server and client over HTTPS,
// HTTP/1.1 and HTTP/2, probed by both Go collectors: the gotls collector
// leaves net/http's connections to gohttp, which reports their requests
// whole, so N requests are exactly N SERVER and N CLIENT spans, and gotls
// copies no byte of them.
func TestGoNetHTTPLeftToGohttp(t *testing.T) {
	e := startAgent(t, "--include-exe", "goapp-*")
	dir := t.TempDir()
	cert, key, ca := harness.GenerateCert(t, dir)
	bin := buildGoApp(t, dir, "", false)
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			const n = 8
			var flags []string
			if h2 {
				flags = []string{"-h2"}
			}
			port := harness.FreePort(t)
			srv := goServer(t, bin, port, append([]string{"-tls-cert", cert, "-tls-key", key}, flags...)...)
			probedBy(t, e, "gotls", srv.PID)
			cl := runGoClient(t, e, bin, []int{srv.PID}, append([]string{fmt.Sprintf("https://127.0.0.1:%d", port), strconv.Itoa(n), "-ca", ca}, flags...)...)
			server := e.spans(t, n, byPIDs(kindServer, srv.PID))
			client := e.spans(t, n, byPIDs(kindClient, cl.PID))
			checkClientSequence(t, n, server, client)
		})
	}
	for _, typ := range []string{"data", "bind"} {
		if v := e.agent.Metric(t, "periscope_events_read_total", map[string]string{"collector": "gotls", "type": typ}); v != 0 {
			t.Errorf("gotls read %v %s records of net/http connections, want none", v, typ)
		}
	}
}

// TestGoTLSVersions: HTTP/1.1 written by hand over crypto/tls (no
// net/http: only the gotls collector sees it), built with Go 1.18, 1.22
// and the local toolchain, with symbols and stripped: N requests on one
// connection are exactly N SERVER and N CLIENT spans with the right status,
// each server span the child of its client span.
func TestGoTLSVersions(t *testing.T) {
	e := startAgent(t, "--include-exe", "tlsraw-*")
	dir := t.TempDir()
	cert, key, ca := harness.GenerateCert(t, filepath.Join(dir, "tls"))
	for _, tc := range []string{"go1.18.10", "go1.22.12", ""} {
		for _, stripped := range []bool{false, true} {
			name := fmt.Sprintf("tlsraw-%s-stripped=%v", tc, stripped)
			t.Run(name, func(t *testing.T) {
				bin := buildTLSRaw(t, dir, tc, stripped)
				srv := startProc(t, nil, bin, "server", cert, key)
				port := srv.expect("listening", 30*time.Second)
				const n = 8
				cli := startProc(t, nil, bin, "client", port, ca, strconv.Itoa(n))
				probedBy(t, e, "gotls", srv.PID, cli.PID)
				cli.send("go")
				if got := cli.expect("done", 30*time.Second); got != strconv.Itoa(n) {
					t.Fatalf("client made %s requests, want %d", got, n)
				}
				server := e.spans(t, n, byPIDs(kindServer, srv.PID))
				client := e.spans(t, n, byPIDs(kindClient, cli.PID))
				byID := map[string]string{}
				for _, s := range client {
					byID[s.SpanID] = s.Name
				}
				for _, set := range [][]otlpreceiver.Span{server, client} {
					codes := map[int64]int{}
					for _, s := range set {
						codes[attrInt(s, "http.response.status_code")]++
					}
					if codes[200] != 6 || codes[404] != 2 {
						t.Errorf("status codes %v, want 6×200 and 2×404", codes)
					}
				}
				for _, s := range server {
					if p, ok := byID[s.ParentSpanID]; !ok || p != s.Name {
						t.Errorf("server span %q parent %q: not its client span", s.Name, s.ParentSpanID)
					}
				}
			})
		}
	}
}

// buildTLSRaw builds testdata/tlsraw with toolchain ("" for the local one).
func buildTLSRaw(t *testing.T, dir, toolchain string, stripped bool) string {
	t.Helper()
	name := "tlsraw-" + toolchain
	if toolchain == "" {
		name, toolchain = "tlsraw-local", "local"
	}
	if stripped {
		name += "-stripped"
	}
	out := filepath.Join(dir, name)
	args := []string{"build", "-o", out}
	if stripped {
		args = append(args, "-ldflags=-s -w")
	}
	cmd := exec.Command(harness.GoTool(t), append(args, ".")...)
	cmd.Dir = testdataPath(t, "tlsraw")
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOTOOLCHAIN="+toolchain)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build tlsraw with %s: %v\n%s", toolchain, err, b)
	}
	return out
}
