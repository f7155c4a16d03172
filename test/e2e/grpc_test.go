package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// grpcCall is what one gRPC call's span must say.
type grpcCall struct {
	method, status string
	reqs, resps    int64
}

// TestPythonGRPC: a python3-grpcio server and client over TLS (grpcio of
// Debian links the system's libssl.so.3, which the openssl collector
// probes): 6 unary calls, one failing with NOT_FOUND, and one call of each
// streaming kind give exactly 10 SERVER and 10 CLIENT spans, named per the
// RPC conventions with the right status and message counts, each server
// span the child of its client span; grpc-message never leaves the agent.
func TestPythonGRPC(t *testing.T) {
	// The test's programs only: another program on the machine (a
	// benchmark at saturation) would crowd out their spans.
	e := startAgent(t, "--include-exe", "python3*")
	py := python(t)
	srv, port, ca := startPythonGRPC(t, py)
	e.instrumented(t, srv.PID)
	const unary = 6
	cli := startProc(t, []string{"OTEL_SERVICE_NAME=grpc-py-client"}, py, testdataPath(t, "grpc_client.py"), strconv.Itoa(port), ca, strconv.Itoa(unary))
	checkEchoCalls(t, e, srv, cli, "localhost", port, unary)
}

// TestNodeGRPCClient: a Node @grpc/grpc-js client (node's http2 over the
// OpenSSL linked into /usr/bin/node) against the python server over TLS:
// the same 10 calls give exactly 10 CLIENT spans for node and 10 SERVER
// spans for python, linked.
func TestNodeGRPCClient(t *testing.T) {
	e := startAgent(t, "--include-exe", "python3*", "--include-exe", "node")
	srv, port, ca := startPythonGRPC(t, python(t))
	e.instrumented(t, srv.PID)
	const unary = 6
	cli := startNodeClient(t, e, port, ca, unary)
	cli.send("go")
	checkEchoCalls(t, e, srv, cli, "localhost", port, unary)
}

// startNodeClient starts testdata/grpc_client.js (@grpc/grpc-js) against
// the server on port, to make unary+4 calls when sent "go", and waits until
// the agent has probed it.
func startNodeClient(t *testing.T, e *env, port int, ca string, unary int) *proc {
	t.Helper()
	node := harness.LookTool(t, "node")
	nodeModules := harness.ToolBinary(t, "grpc-js")
	cli := startProc(t, []string{"OTEL_SERVICE_NAME=grpc-node-client"}, node, testdataPath(t, "grpc_client.js"), nodeModules, strconv.Itoa(port), ca, strconv.Itoa(unary))
	cli.expect("ready", 30*time.Second)
	e.instrumented(t, cli.PID)
	return cli
}

// checkEchoCalls waits for the client's calls (grpc_client.py's or .js's)
// to end and checks that they are exactly unary+4 SERVER and CLIENT spans,
// right and linked; host is the server's name the client called (its
// :authority, server.address).
func checkEchoCalls(t *testing.T, e *env, srv, cli *proc, host string, port, unary int) {
	t.Helper()
	if got := cli.expect("done", 60*time.Second); got != strconv.Itoa(unary+4) {
		t.Fatalf("client made %s calls, want %d", got, unary+4)
	}
	cli.mustSucceed(10 * time.Second)
	server := e.spans(t, unary+4, byPIDs(kindServer, srv.PID))
	client := e.spans(t, unary+4, byPIDs(kindClient, cli.PID))
	checkEchoSpans(t, server, client, host, port, unary)
	checkEchoMetrics(t, e, server[0].ServiceName(), client[0].ServiceName(), port, unary)
}

// checkEchoMetrics checks the RPC duration histograms of the calls of
// checkEchoCalls on /metrics: one sample per call, in series labelled by
// the RPC attributes (status and error.type per side, as on the spans).
func checkEchoMetrics(t *testing.T, e *env, server, client string, port, unary int) {
	t.Helper()
	want := func(name string, labels map[string]string, n int) {
		t.Helper()
		labels["rpc_system_name"] = "grpc"
		waitMetric(t, e.agent, name+"_count", labels, fmt.Sprintf("= %d", n), func(v float64) bool { return v == float64(n) })
	}
	srvLabels := func(method, status string) map[string]string {
		return map[string]string{"service_name": server, "rpc_method": method, "rpc_response_status_code": status}
	}
	want("rpc_server_call_duration_seconds", srvLabels("test.Echo/Echo", "OK"), unary)
	want("rpc_server_call_duration_seconds", srvLabels("test.Echo/Get", "NOT_FOUND"), 1)
	want("rpc_server_call_duration_seconds", map[string]string{"service_name": server}, unary+4)
	want("rpc_client_call_duration_seconds", map[string]string{"service_name": client, "rpc_method": "test.Echo/Get",
		"rpc_response_status_code": "NOT_FOUND", "error_type": "NOT_FOUND", "server_port": strconv.Itoa(port)}, 1)
	want("rpc_client_call_duration_seconds", map[string]string{"service_name": client, "rpc_method": "test.Echo/Chat", "rpc_response_status_code": "OK"}, 1)
	want("rpc_client_call_duration_seconds", map[string]string{"service_name": client}, unary+4)
	for _, f := range e.agent.MetricFamilies(t) {
		if !strings.HasPrefix(f.GetName(), "rpc_") {
			continue
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if strings.Contains(l.GetValue(), "secret-key") || strings.Contains(l.GetName(), "message") {
					t.Errorf("%s series label %s=%q: grpc-message or a request leaks into metrics", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
	if n := e.agent.Metric(t, "rpc_server_call_duration_seconds_count", map[string]string{"service_name": server, "error_type": "NOT_FOUND"}); n != 0 {
		t.Errorf("server NOT_FOUND recorded with error.type (%v): a server's NOT_FOUND is no error", n)
	}
}

// checkEchoSpans checks the server and client spans of the calls of
// checkEchoCalls.
func checkEchoSpans(t *testing.T, server, client []otlpreceiver.Span, host string, port, unary int) {
	t.Helper()
	want := echoWant(unary)
	checkGRPC(t, "server", server, want, host, port, false)
	checkGRPC(t, "client", client, want, host, port, true)
	checkGRPCLinks(t, client, server)
}

// echoWant is what the calls of checkEchoCalls are, by count.
func echoWant(unary int) map[grpcCall]int {
	return map[grpcCall]int{
		{"test.Echo/Echo", "OK", 1, 1}:       unary,
		{"test.Echo/Get", "NOT_FOUND", 1, 0}: 1,
		{"test.Echo/List", "OK", 1, 3}:       1,
		{"test.Echo/Sum", "OK", 4, 1}:        1,
		{"test.Echo/Chat", "OK", 2, 2}:       1,
	}
}

// startPythonGRPC starts testdata/grpc_server.py with a new certificate
// and returns it, its port and the CA file that signed its certificate.
func startPythonGRPC(t *testing.T, py string) (*proc, int, string) {
	t.Helper()
	cert, key, ca := harness.GenerateCert(t, filepath.Join(t.TempDir(), "tls"))
	srv := startProc(t, []string{"OTEL_SERVICE_NAME=grpc-py-server"}, py, testdataPath(t, "grpc_server.py"), cert, key)
	port, err := strconv.Atoi(srv.expect("listening", 30*time.Second))
	if err != nil {
		t.Fatalf("bad port from the server: %v", err)
	}
	return srv, port, ca
}

// checkGRPC checks the spans of one side of gRPC calls against want, to
// the server host:port (server.address is the host the client called, as
// the conventions say: the :authority it sent, a name or an address).
func checkGRPC(t *testing.T, side string, spans []otlpreceiver.Span, want map[grpcCall]int, host string, port int, client bool) {
	t.Helper()
	got := make(map[grpcCall]int)
	for _, s := range spans {
		c := grpcCall{attrStr(s, "rpc.method"), attrStr(s, "rpc.response.status_code"),
			attrInt(s, "periscope.rpc.request.message_count"), attrInt(s, "periscope.rpc.response.message_count")}
		got[c]++
		if s.Name != c.method || attrStr(s, "rpc.system.name") != "grpc" || attrInt(s, "server.port") != int64(port) || attrStr(s, "server.address") != host ||
			attrStr(s, "network.protocol.version") != "2" || s.Attributes["periscope.http2.headers_incomplete"] != nil {
			t.Errorf("%s span %q: %v", side, s.Name, s.Attributes)
		}
		// The conventions' tables: every status but OK is an error on
		// clients, only those that say the server failed on servers.
		wantErr := c.status != "OK" && (client || map[string]bool{"UNKNOWN": true, "DEADLINE_EXCEEDED": true,
			"UNIMPLEMENTED": true, "INTERNAL": true, "UNAVAILABLE": true, "DATA_LOSS": true}[c.status])
		if (s.Status == "ERROR") != wantErr || wantErr && attrStr(s, "error.type") != c.status {
			t.Errorf("%s span %q status %s error.type %q, want error %v", side, s.Name, s.Status, attrStr(s, "error.type"), wantErr)
		}
		for k, v := range s.Attributes {
			if strings.Contains(fmt.Sprint(v), "secret-key") || strings.Contains(k, "grpc.message") {
				t.Errorf("%s span %q leaks grpc-message or the request: %s=%v", side, s.Name, k, v)
			}
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s spans %v, want %v", side, got, want)
	}
}

// checkGRPCLinks checks that every server span is the child of the client
// span of the same call.
func checkGRPCLinks(t *testing.T, client, server []otlpreceiver.Span) {
	t.Helper()
	byID := make(map[string]otlpreceiver.Span)
	for _, s := range client {
		byID[s.SpanID] = s
	}
	for _, s := range server {
		p, ok := byID[s.ParentSpanID]
		if !ok || p.TraceID != s.TraceID || p.Name != s.Name {
			t.Errorf("server span %q (trace %s) parent %s: not its client span", s.Name, s.TraceID, s.ParentSpanID)
		}
	}
}

// TestGRPCAttachMidConnection: the agent starts while a gRPC client is
// busy on a connection it opened before (Echo calls). HPACK tables filled
// before the agent came cannot be read, so spans keep coming, each either
// complete and right or marked periscope.http2.headers_incomplete with
// only what is known (never a wrong method or status), every marked span
// counted in periscope_http2_headers_incomplete_spans_total; a new
// connection after that (List calls, which the old one never makes) gives
// exactly its 5 calls, complete, on each side.
func TestGRPCAttachMidConnection(t *testing.T) {
	py := python(t)
	srv, port, ca := startPythonGRPC(t, py)
	cli := startProc(t, []string{"OTEL_SERVICE_NAME=grpc-py-client"}, py, testdataPath(t, "grpc_client.py"), strconv.Itoa(port), ca, "loop")
	cli.expect("started", 30*time.Second)

	e := startAgent(t, "--include-exe", "python3*")
	e.instrumented(t, srv.PID, cli.PID)
	waitMetric(t, e.agent, "periscope_http2_headers_incomplete_spans_total", nil, "> 10", func(v float64) bool { return v > 10 })
	cli.send("reconnect")
	cli.expect("reconnected", 30*time.Second)
	cli.send("stop")
	cli.expect("done", 30*time.Second)
	cli.mustSucceed(10 * time.Second)
	// The new connection's calls, exactly; then the last spans of the
	// old one have come too (they ended before).
	const fresh = 5
	isFresh := func(s otlpreceiver.Span) bool { return attrStr(s, "rpc.method") == "test.Echo/List" }
	e.spans(t, fresh, func(s otlpreceiver.Span) bool { return isFresh(s) && byPIDs(kindServer, srv.PID)(s) })
	e.spans(t, fresh, func(s otlpreceiver.Span) bool { return isFresh(s) && byPIDs(kindClient, cli.PID)(s) })
	marked := 0
	for _, kind := range []int{kindServer, kindClient} {
		pid := srv.PID
		if kind == kindClient {
			pid = cli.PID
		}
		var complete, incomplete, old int
		for _, s := range filterSpans(e.recv.Spans(), byPIDs(kind, pid)) {
			if s.Attributes["periscope.http2.headers_incomplete"] == true {
				incomplete++
				// What is there is right: the old connection's Echo.
				m, st := attrStr(s, "rpc.method"), attrStr(s, "rpc.response.status_code")
				hm := attrStr(s, "http.request.method")
				if m != "" && m != "test.Echo/Echo" && m != "_OTHER" || st != "" && st != "OK" ||
					hm != "" && hm != "POST" && hm != "_OTHER" || s.Attributes["url.path"] != nil && attrStr(s, "url.path") != "/test.Echo/Echo" {
					t.Errorf("kind %d: incomplete span %q says something wrong: %v", kind, s.Name, s.Attributes)
				}
				continue
			}
			c := grpcCall{attrStr(s, "rpc.method"), attrStr(s, "rpc.response.status_code"),
				attrInt(s, "periscope.rpc.request.message_count"), attrInt(s, "periscope.rpc.response.message_count")}
			switch c {
			case grpcCall{"test.Echo/List", "OK", 1, 3}:
				complete++
			case grpcCall{"test.Echo/Echo", "OK", 1, 1}:
				old++ // after a table reset, or fields all literal
			default:
				t.Errorf("kind %d: complete span %q: %v", kind, s.Name, s.Attributes)
			}
		}
		if incomplete == 0 || complete != fresh {
			t.Errorf("kind %d: %d spans marked incomplete, %d complete List; want some marked and exactly the %d of the new connection complete",
				kind, incomplete, complete, fresh)
		}
		marked += incomplete
		t.Logf("kind %d: %d spans marked incomplete, %d complete on the new connection, %d complete on the old", kind, incomplete, complete, old)
	}
	// Every marked span is counted, and only those (the agent traces the
	// test's python processes only).
	waitMetric(t, e.agent, "periscope_http2_headers_incomplete_spans_total", nil, fmt.Sprintf("= %d (the marked spans)", marked), equals(float64(marked)))
}
