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

// TestPythonLateSSL: a python3 HTTPS server (http.server wrapped in ssl)
// that loads libssl only after the agent is ready, and a python client
// (urllib for 8 requests on new connections, http.client for 4 on one
// keep-alive connection) give exactly 12 SERVER spans for the server and
// 12 CLIENT spans for the client, with the right method, path, route,
// status, sizes and service names, and every server span the child of the
// client span that sent its request.
func TestPythonLateSSL(t *testing.T) {
	e := startAgent(t)
	py := python(t)
	cert, key, ca := harness.GenerateCert(t, filepath.Join(t.TempDir(), "tls"))

	const serverService = "periscope-e2e-python-server"
	srv := startProc(t, []string{"OTEL_SERVICE_NAME=" + serverService}, py, testdataPath(t, "https_server.py"), cert, key)
	srv.expect("started", 20*time.Second)
	// The precondition of this test: libssl is not mapped yet, so the
	// agent can only find it when python loads it.
	if maps := readFile(t, fmt.Sprintf("/proc/%d/maps", srv.PID)); strings.Contains(maps, "libssl") {
		t.Fatalf("python mapped libssl before importing ssl; the test would not exercise a late load:\n%s", maps)
	}
	srv.send("go")
	port, err := strconv.Atoi(srv.expect("listening", 20*time.Second))
	if err != nil {
		t.Fatalf("bad port from the server: %v", err)
	}
	e.instrumented(t, srv.PID)

	cli := startProc(t, nil, py, testdataPath(t, "https_client.py"), fmt.Sprintf("https://127.0.0.1:%d", port), ca)
	if got := cli.expect("done", 60*time.Second); got != "12" {
		t.Fatalf("client made %s requests, want 12", got)
	}
	cli.mustSucceed(10 * time.Second)

	server := e.spans(t, 12, byPIDs(kindServer, srv.PID))
	client := e.spans(t, 12, byPIDs(kindClient, cli.PID))

	want := map[string]int{
		"GET /hello /hello 200":        5,
		"GET /missing /missing 404":    2,
		"POST /submit /submit 201":     1,
		"GET /items/{id} /items/1 200": 1,
		"GET /items/{id} /items/2 200": 1,
		"GET /items/{id} /items/3 200": 1,
		"GET /nope /nope 404":          1,
	}
	clientService := exeBase(t, py)
	for _, set := range []struct {
		name, service string
		spans         []otlpreceiver.Span
	}{{"server", serverService, server}, {"client", clientService, client}} {
		got := counts(set.spans, func(s otlpreceiver.Span) string {
			return fmt.Sprintf("%s %s %d", s.Name, attrStr(s, "url.path"), attrInt(s, "http.response.status_code"))
		})
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s spans: %v, want %v", set.name, got, want)
		}
		for _, s := range set.spans {
			if s.ServiceName() != set.service {
				t.Errorf("%s span %q: service.name %q, want %q", set.name, s.Name, s.ServiceName(), set.service)
			}
			method := strings.Fields(s.Name)[0]
			if attrStr(s, "http.request.method") != method || attrStr(s, "network.protocol.version") != "1.1" ||
				attrStr(s, "url.scheme") != "https" {
				t.Errorf("%s span %q: method/protocol/scheme wrong: %v", set.name, s.Name, s.Attributes)
			}
			if attrStr(s, "server.address") != "127.0.0.1" || attrInt(s, "server.port") != int64(port) {
				t.Errorf("%s span %q: server.address/port not 127.0.0.1:%d: %v", set.name, s.Name, port, s.Attributes)
			}
			if attrStr(s, "network.peer.address") != "127.0.0.1" || attrInt(s, "network.peer.port") == 0 {
				t.Errorf("%s span %q: no network.peer address/port: %v", set.name, s.Name, s.Attributes)
			}
			if !s.End.After(s.Start) {
				t.Errorf("%s span %q: end %v not after start %v", set.name, s.Name, s.End, s.Start)
			}
			wantReq, wantResp := int64(0), int64(len("hello\n"))
			switch {
			case method == "POST":
				wantReq, wantResp = 300, int64(len("got 300 bytes\n"))
			case attrInt(s, "http.response.status_code") == 404:
				wantResp = int64(len("not found\n"))
			}
			if attrInt(s, "http.request.body.size") != wantReq || attrInt(s, "http.response.body.size") != wantResp {
				t.Errorf("%s span %q: body sizes request %v response %v, want %d and %d", set.name, s.Name,
					s.Attributes["http.request.body.size"], s.Attributes["http.response.body.size"], wantReq, wantResp)
			}
			// urllib names itself; http.client sends no User-Agent.
			ua := attrStr(s, "user_agent.original")
			if strings.HasPrefix(attrStr(s, "url.path"), "/items/") || attrStr(s, "url.path") == "/nope" {
				if ua != "" {
					t.Errorf("%s span %q: user_agent.original %q, want none (http.client)", set.name, s.Name, ua)
				}
			} else if !strings.HasPrefix(ua, "Python-urllib/") {
				t.Errorf("%s span %q: user_agent.original %q, want Python-urllib/...", set.name, s.Name, ua)
			}
		}
	}

	for _, s := range server {
		if s.Status != "UNSET" {
			t.Errorf("server span %q code %d: status %s, want UNSET", s.Name, attrInt(s, "http.response.status_code"), s.Status)
		}
		if r := attrStr(s, "http.route"); r != strings.SplitN(s.Name, " ", 2)[1] {
			t.Errorf("server span %q: http.route %q", s.Name, r)
		}
		if attrStr(s, "client.address") != "127.0.0.1" || attrInt(s, "client.port") != attrInt(s, "network.peer.port") {
			t.Errorf("server span %q: client.address/port: %v", s.Name, s.Attributes)
		}
	}
	for _, s := range client {
		code := attrInt(s, "http.response.status_code")
		wantStatus, wantErr := "UNSET", ""
		if code >= 400 {
			wantStatus, wantErr = "ERROR", strconv.Itoa(int(code))
		}
		if s.Status != wantStatus || attrStr(s, "error.type") != wantErr {
			t.Errorf("client span %q code %d: status %s error.type %q, want %s %q", s.Name, code, s.Status, attrStr(s, "error.type"), wantStatus, wantErr)
		}
		if u := fmt.Sprintf("https://127.0.0.1:%d%s", port, attrStr(s, "url.path")); attrStr(s, "url.full") != u {
			t.Errorf("client span %q: url.full %q, want %q", s.Name, attrStr(s, "url.full"), u)
		}
	}

	// New connections and keep-alive: the 8 urllib requests came from 8
	// client ports, the 4 http.client requests from one.
	ports := counts(server, func(s otlpreceiver.Span) string {
		if attrStr(s, "user_agent.original") == "" {
			return "keepalive " + strconv.Itoa(int(attrInt(s, "client.port")))
		}
		return "new " + strconv.Itoa(int(attrInt(s, "client.port")))
	})
	var newConns, keepAlive []int
	for k, n := range ports {
		if strings.HasPrefix(k, "new ") {
			newConns = append(newConns, n)
		} else {
			keepAlive = append(keepAlive, n)
		}
	}
	if len(newConns) != 8 || fmt.Sprint(keepAlive) != "[4]" {
		t.Errorf("connections by client port: %v; want 8 new connections with one request each and one with 4", ports)
	}

	// One trace per request: the server span is the child of the client
	// span, and the pairing is one to one.
	clientByID := make(map[string]otlpreceiver.Span)
	for _, s := range client {
		clientByID[s.SpanID] = s
	}
	used := make(map[string]bool)
	for _, s := range server {
		parent, ok := clientByID[s.ParentSpanID]
		switch {
		case !ok:
			t.Errorf("server span %q (trace %s) has parent %q, not a client span", s.Name, s.TraceID, s.ParentSpanID)
		case used[parent.SpanID]:
			t.Errorf("client span %s is the parent of two server spans", parent.SpanID)
		case parent.TraceID != s.TraceID || attrStr(parent, "url.path") != attrStr(s, "url.path") ||
			attrInt(parent, "network.peer.port") != int64(port) || attrInt(s, "client.port") == 0:
			t.Errorf("server span %q (trace %s) linked to client span %q (trace %s)", s.Name, s.TraceID, parent.Name, parent.TraceID)
		}
		used[s.ParentSpanID] = true
		if parent.ParentSpanID != "" {
			t.Errorf("client span %q has a parent %s; want a root span", parent.Name, parent.ParentSpanID)
		}
	}
}
