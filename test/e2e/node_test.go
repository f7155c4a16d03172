package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// TestNodeHTTPS: node's built-in https server and client (OpenSSL linked
// into /usr/bin/node, which writes TLS records into a memory BIO and names
// the socket only after SSL_write returns). 6 requests over one keep-alive
// connection and 4 over new connections give exactly 10 SERVER spans for
// the server and 10 CLIENT spans for the client, with the right method,
// path, route, status, sizes and service names; every span, the first of
// each connection included, has the peer's address, and every server span
// is the child of the client span that sent its request.
func TestNodeHTTPS(t *testing.T) {
	e := startAgent(t)
	node := harness.LookTool(t, "node")
	cert, key, ca := harness.GenerateCert(t, filepath.Join(t.TempDir(), "tls"))

	const serverService = "periscope-e2e-node-server"
	srv := startProc(t, []string{"OTEL_SERVICE_NAME=" + serverService}, node, testdataPath(t, "https_server.js"), cert, key)
	port, err := strconv.Atoi(srv.expect("listening", 20*time.Second))
	if err != nil {
		t.Fatalf("bad port from the server: %v", err)
	}
	e.instrumented(t, srv.PID)
	if st, err := e.agent.WaitInstrumented(t.Context(), srv.PID); err != nil || st.Exe != node {
		t.Fatalf("node instrumented as %+v (%v), want its executable %s", st, err, node)
	}

	cli := startProc(t, nil, node, testdataPath(t, "https_client.js"), fmt.Sprintf("https://127.0.0.1:%d", port), ca)
	if got := cli.expect("done", 60*time.Second); got != "10" {
		t.Fatalf("client made %s requests, want 10", got)
	}
	if got := cli.expect("ports", 10*time.Second); got != "5" {
		t.Fatalf("client used %s local ports, want 5 (one keep-alive connection and 4 new ones)", got)
	}
	cli.mustSucceed(10 * time.Second)

	server := e.spans(t, 10, byPIDs(kindServer, srv.PID))
	client := e.spans(t, 10, byPIDs(kindClient, cli.PID))

	want := map[string]int{
		"GET /hello /hello 200":        5,
		"GET /items/{id} /items/7 200": 1,
		"GET /missing /missing 404":    1,
		"GET /nope /nope 404":          1,
		"POST /submit /submit 201":     2,
	}
	for _, set := range []struct {
		name, service string
		spans         []otlpreceiver.Span
	}{{"server", serverService, server}, {"client", "node", client}} {
		got := counts(set.spans, func(s otlpreceiver.Span) string {
			return fmt.Sprintf("%s %s %d", s.Name, attrStr(s, "url.path"), attrInt(s, "http.response.status_code"))
		})
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s spans: %v, want %v", set.name, got, want)
		}
		for _, s := range set.spans {
			if s.ServiceName() != set.service || s.Resource["process.executable.name"] != "node" {
				t.Errorf("%s span %q: service.name %q executable %v, want %q and node", set.name, s.Name,
					s.ServiceName(), s.Resource["process.executable.name"], set.service)
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
		}
	}
	for _, s := range server {
		if s.Status != "UNSET" || attrStr(s, "http.route") != strings.SplitN(s.Name, " ", 2)[1] {
			t.Errorf("server span %q: status %s http.route %q", s.Name, s.Status, attrStr(s, "http.route"))
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
	// 6 requests on the keep-alive connection, one on each of 4 others.
	perPort := counts(server, func(s otlpreceiver.Span) string { return strconv.Itoa(int(attrInt(s, "client.port"))) })
	var sizes []int
	for _, k := range sortedKeys(perPort) {
		sizes = append(sizes, perPort[k])
	}
	slices.Sort(sizes)
	if fmt.Sprint(sizes) != "[1 1 1 1 6]" {
		t.Errorf("server spans by client port: %v, want one port with 6 and four with 1", perPort)
	}

	// One trace per request: each server span is the child of the client
	// span that sent it, one to one.
	clientByID := make(map[string]otlpreceiver.Span)
	for _, s := range client {
		clientByID[s.SpanID] = s
	}
	used := make(map[string]bool)
	for _, s := range server {
		parent, ok := clientByID[s.ParentSpanID]
		switch {
		case !ok:
			t.Errorf("server span %q (client port %d, trace %s) has parent %q, not a client span", s.Name,
				attrInt(s, "client.port"), s.TraceID, s.ParentSpanID)
		case used[parent.SpanID]:
			t.Errorf("client span %s is the parent of two server spans", parent.SpanID)
		case parent.TraceID != s.TraceID || attrStr(parent, "url.path") != attrStr(s, "url.path"):
			t.Errorf("server span %q (trace %s) linked to client span %q (trace %s)", s.Name, s.TraceID, parent.Name, parent.TraceID)
		}
		used[s.ParentSpanID] = true
	}
}
