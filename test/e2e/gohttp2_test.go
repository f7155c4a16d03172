package e2e

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// TestGoHTTP2: Go servers and clients speaking HTTP/2 over TLS (Go's
// default for HTTPS), built with each supported Go version, with symbols and
// stripped.
//   - sequential: N requests give exactly N SERVER and N CLIENT spans with
//     network.protocol.version "2", method, path, status and peer; each
//     server span is the child of its client span (the connection's
//     4-tuple: one request in flight at a time is unambiguous);
//   - parallel: N requests from 4 goroutines multiplexed on one connection
//     give exactly N spans on each side, and every server span that has a
//     local parent has the right one (same path): concurrent streams are
//     never paired by guess;
//   - traceparent: curl sends traceparent over HTTP/2; the server span
//     continues that trace;
//   - chain: a handler served over HTTP/2 calls its downstream over HTTP/2:
//     the downstream CLIENT span is the handler's child, the leaf's SERVER
//     span the CLIENT span's; one trace per request.
//
// Go 1.27, which moved HTTP/2 into net/http/internal/http2 with types of
// its own, is covered too.
func TestGoHTTP2(t *testing.T) {
	e := startAgent(t, "--include-exe", "goapp-*")
	dir := t.TempDir()
	cert, key, ca := harness.GenerateCert(t, dir)
	tlsArgs := []string{"-tls-cert", cert, "-tls-key", key, "-h2"}
	for _, tc := range append(goToolchains, "go1.27.4") {
		for _, stripped := range []bool{false, true} {
			bin := buildGoApp(t, dir, tc, stripped)
			base := fmt.Sprintf("%s/stripped=%v", tc, stripped)
			t.Run(base+"/sequential", func(t *testing.T) {
				const n = 8
				port := harness.FreePort(t)
				srv := goServer(t, bin, port, tlsArgs...)
				cl := runGoClient(t, e, bin, []int{srv.PID}, fmt.Sprintf("https://127.0.0.1:%d", port), strconv.Itoa(n), "-ca", ca, "-h2")

				server := e.spans(t, n, byPIDs(kindServer, srv.PID))
				client := e.spans(t, n, byPIDs(kindClient, cl.PID))
				checkClientSequence(t, n, server, client)
				clientByID := make(map[string]otlpreceiver.Span)
				for _, s := range client {
					clientByID[s.SpanID] = s
					checkH2(t, s, port)
				}
				for _, s := range server {
					checkH2(t, s, port)
					p, ok := clientByID[s.ParentSpanID]
					if !ok || p.TraceID != s.TraceID || attrStr(p, "url.path") != attrStr(s, "url.path") {
						t.Errorf("server span %q is not the child of its client span (parent %q)", s.Name, s.ParentSpanID)
					}
				}
			})
			t.Run(base+"/parallel", func(t *testing.T) {
				const n = 40
				port := harness.FreePort(t)
				srv := goServer(t, bin, port, tlsArgs...)
				cl := runGoClient(t, e, bin, []int{srv.PID}, fmt.Sprintf("https://127.0.0.1:%d", port), strconv.Itoa(n), "-ca", ca, "-h2", "-parallel", "4")

				server := e.spans(t, n, byPIDs(kindServer, srv.PID))
				client := e.spans(t, n, byPIDs(kindClient, cl.PID))
				for _, set := range [][]otlpreceiver.Span{server, client} {
					paths := counts(set, func(s otlpreceiver.Span) string { return attrStr(s, "url.path") })
					if len(paths) != n {
						t.Errorf("%d distinct paths in %d spans, want %d", len(paths), len(set), n)
					}
				}
				clientByID := make(map[string]otlpreceiver.Span)
				for _, s := range client {
					clientByID[s.SpanID] = s
					checkH2(t, s, port)
				}
				linked := 0
				for _, s := range server {
					checkH2(t, s, port)
					if s.ParentSpanID == "" {
						continue
					}
					p, ok := clientByID[s.ParentSpanID]
					if !ok || p.TraceID != s.TraceID || attrStr(p, "url.path") != attrStr(s, "url.path") {
						t.Errorf("server span %q has a wrong parent: %q (%q)", s.Name, s.ParentSpanID, attrStr(p, "url.path"))
						continue
					}
					linked++
				}
				t.Logf("%d of %d multiplexed server spans linked to their client span, none wrongly", linked, n)
			})
			t.Run(base+"/traceparent", func(t *testing.T) {
				// curl speaks HTTP/2 with a traceparent header; its
				// HPACK-decoded headers land in the same Request.Header
				// map the probe searches.
				port := harness.FreePort(t)
				srv := goServer(t, bin, port, tlsArgs...)
				goInstrumented(t, e, srv.PID)
				curl := harness.LookTool(t, "curl")
				sent := map[string]string{}
				for i := 0; i < 3; i++ {
					trace, parent := tpHex(t, 16), tpHex(t, 8)
					path := fmt.Sprintf("/item/tp-%d", i)
					sent[path] = trace + "-" + parent
					run(t, curl, "-sS", "-o", "/dev/null", "--http2", "--cacert", ca, "-H", "traceparent: 00-"+trace+"-"+parent+"-01",
						"-H", "X-Extra: "+strconv.Itoa(i), fmt.Sprintf("https://127.0.0.1:%d%s", port, path))
				}
				for _, s := range e.spans(t, len(sent), byPIDs(kindServer, srv.PID)) {
					checkH2(t, s, port)
					if want := sent[attrStr(s, "url.path")]; s.TraceID+"-"+s.ParentSpanID != want || !s.RemoteParent {
						t.Errorf("%s: trace %s parent %s remote %v, want %s", attrStr(s, "url.path"), s.TraceID, s.ParentSpanID, s.RemoteParent, want)
					}
				}
			})
			t.Run(base+"/chain", func(t *testing.T) {
				const n = 4
				leafPort, midPort := harness.FreePort(t), harness.FreePort(t)
				leaf := goServer(t, bin, leafPort, tlsArgs...)
				mid := goServer(t, bin, midPort, append(tlsArgs, "-ca", ca, "-downstream", fmt.Sprintf("https://127.0.0.1:%d", leafPort))...)
				cl := runGoClient(t, e, bin, []int{leaf.PID, mid.PID}, fmt.Sprintf("https://127.0.0.1:%d", midPort), strconv.Itoa(n), "-ca", ca, "-h2", "-path", "/chain")

				first := e.spans(t, n, byPIDs(kindClient, cl.PID))
				midServer := e.spans(t, n, byPIDs(kindServer, mid.PID))
				midClient := e.spans(t, n, byPIDs(kindClient, mid.PID))
				leafServer := e.spans(t, n, byPIDs(kindServer, leaf.PID))
				byID := make(map[string]otlpreceiver.Span)
				for _, set := range [][]otlpreceiver.Span{first, midServer, midClient, leafServer} {
					for _, s := range set {
						byID[s.SpanID] = s
					}
				}
				parentOf := func(s otlpreceiver.Span, kind int, path string) {
					t.Helper()
					p, ok := byID[s.ParentSpanID]
					if !ok || int(p.Kind) != kind || attrStr(p, "url.path") != path || p.TraceID != s.TraceID {
						t.Errorf("span %q (%s): parent %q is not the %s span", s.Name, attrStr(s, "url.path"), s.ParentSpanID, path)
					}
				}
				for _, s := range midServer {
					parentOf(s, kindClient, "/chain")
				}
				for _, s := range midClient {
					parentOf(s, kindServer, "/chain")
					if s.Name != "GET /leaf" || attrInt(s, "http.response.status_code") != 201 || attrStr(s, "network.protocol.version") != "2" {
						t.Errorf("downstream call %q status %d version %q", s.Name, attrInt(s, "http.response.status_code"), attrStr(s, "network.protocol.version"))
					}
				}
				for _, s := range leafServer {
					parentOf(s, kindClient, "/leaf")
				}
				traces := counts(append(append([]otlpreceiver.Span(nil), first...), leafServer...), func(s otlpreceiver.Span) string { return s.TraceID })
				if len(traces) != n {
					t.Errorf("%d traces for %d chains: %v", len(traces), n, traces)
				}
			})
		}
	}
}

// checkH2 checks what every span of an HTTP/2 request over TLS to port says
// about its protocol and peer.
func checkH2(t *testing.T, s otlpreceiver.Span, port int) {
	t.Helper()
	if v := attrStr(s, "network.protocol.version"); v != "2" || attrStr(s, "url.scheme") != "https" {
		t.Errorf("span %q: network.protocol.version %q, url.scheme %q", s.Name, v, attrStr(s, "url.scheme"))
	}
	switch int(s.Kind) {
	case kindClient:
		if attrInt(s, "server.port") != int64(port) || attrInt(s, "network.peer.port") != int64(port) {
			t.Errorf("client span %q: server.port %d, network.peer.port %d", s.Name, attrInt(s, "server.port"), attrInt(s, "network.peer.port"))
		}
		if code := attrInt(s, "http.response.status_code"); (code >= 400) != (s.Status == "ERROR") {
			t.Errorf("client span %q code %d status %s", s.Name, code, s.Status)
		}
	case kindServer:
		if attrStr(s, "client.address") != "127.0.0.1" || attrInt(s, "client.port") == 0 {
			t.Errorf("server span %q: client %s:%d", s.Name, attrStr(s, "client.address"), attrInt(s, "client.port"))
		}
		if code := attrInt(s, "http.response.status_code"); (code >= 500) != (s.Status == "ERROR") {
			t.Errorf("server span %q code %d status %s", s.Name, code, s.Status)
		}
	}
}
