package e2e

import (
	"fmt"
	"testing"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// TestNginxCurlHTTP2: curl --http2 against nginx serving HTTP/2 over TLS
// (OpenSSL on both ends): 10 requests on one connection, 5 multiplexed on
// another (curl --parallel), 4 on connections of their own, one of them
// with a traceparent header, give exactly 19 SERVER spans for nginx and 19
// CLIENT spans for curl, HTTP/2 with the right methods, paths and status
// codes; each nginx span is the child of the curl span of its stream,
// except the one whose traceparent names its caller.
func TestNginxCurlHTTP2(t *testing.T) {
	e := startAgent(t)
	ngx := harness.StartNginx(t, harness.NginxOptions{HTTP2: true})
	e.instrumented(t, ngx.WorkerPIDs...)
	curl := harness.LookTool(t, "curl")
	base := []string{"-sS", "--http2", "--cacert", ngx.CAFile}

	var urls []string
	for i := 0; i < 9; i++ {
		urls = append(urls, ngx.URL+"/index.html")
	}
	urls = append(urls, ngx.URL+"/missing")
	run(t, curl, append(base, keepAliveArgs(urls)...)...)

	var par []string
	for i := 0; i < 5; i++ {
		par = append(par, fmt.Sprintf("%s/index.html?p=%d", ngx.URL, i))
	}
	run(t, curl, append(append(base, "--parallel", "--parallel-immediate", "--parallel-max", "5"), keepAliveArgs(par)...)...)

	for i := 0; i < 2; i++ {
		run(t, curl, append(base, "-o", "/dev/null", ngx.URL+"/index.html")...)
	}
	run(t, curl, append(base, "-o", "/dev/null", "--data-binary", "hello", ngx.URL+"/echo")...)
	const trace, caller = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	run(t, curl, append(base, "-o", "/dev/null", "-H", "traceparent: 00-"+trace+"-"+caller+"-01", ngx.URL+"/index.html")...)

	server := e.spans(t, 19, byPort("nginx", kindServer, ngx.Port))
	client := e.spans(t, 19, byPort("curl", kindClient, ngx.Port))
	for _, set := range []struct {
		name  string
		spans []otlpreceiver.Span
	}{{"nginx", server}, {"curl", client}} {
		got := counts(set.spans, func(s otlpreceiver.Span) string {
			return fmt.Sprintf("%s %s %d %s", s.Name, attrStr(s, "url.path"), attrInt(s, "http.response.status_code"), attrStr(s, "network.protocol.version"))
		})
		want := map[string]int{
			"GET /index.html /index.html 200 2": 17,
			"GET /missing /missing 404 2":       1,
			"POST /echo /echo 200 2":            1,
		}
		for k, n := range want {
			if got[k] != n {
				t.Errorf("%s: %d spans %q, want %d; all: %v", set.name, got[k], k, n, got)
			}
		}
		for _, s := range set.spans {
			if s.Attributes["periscope.http2.headers_incomplete"] != nil || attrInt(s, "network.peer.port") == 0 {
				t.Errorf("%s span %q: %v", set.name, s.Name, s.Attributes)
			}
		}
	}
	clientByID := make(map[string]otlpreceiver.Span)
	for _, s := range client {
		clientByID[s.SpanID] = s
	}
	for _, s := range server {
		if s.TraceID == trace {
			if s.ParentSpanID != caller {
				t.Errorf("nginx span with traceparent: parent %s, want %s", s.ParentSpanID, caller)
			}
			continue
		}
		parent, ok := clientByID[s.ParentSpanID]
		if !ok {
			t.Errorf("nginx span %q (trace %s) has parent %q, not a curl span", s.Name, s.TraceID, s.ParentSpanID)
			continue
		}
		if parent.TraceID != s.TraceID || attrStr(parent, "url.path") != attrStr(s, "url.path") {
			t.Errorf("nginx span %q linked to curl span %q", s.Name, parent.Name)
		}
	}
}
