package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// TestNginxCurl: 20 requests over one keep-alive connection and 20 over new
// connections give exactly 40 SERVER spans for nginx and 40 CLIENT spans for
// curl, with the right methods, paths and status codes, and each curl span
// and the nginx span it caused in one trace.
func TestNginxCurl(t *testing.T) {
	e := startAgent(t)
	ngx := harness.StartNginx(t, harness.NginxOptions{})
	e.instrumented(t, ngx.WorkerPIDs...)
	curl := harness.LookTool(t, "curl")

	// Keep-alive: one curl, 20 URLs, one connection.
	var urls []string
	for i := 0; i < 18; i++ {
		urls = append(urls, ngx.URL+"/index.html")
	}
	urls = append(urls, ngx.URL+"/missing", ngx.URL+"/1m.bin")
	run(t, curl, append([]string{"-sS", "--cacert", ngx.CAFile}, keepAliveArgs(urls)...)...)

	// New connections: 20 curls, one request each: 17 GETs, a 404, a
	// POST with a chunked body and the 1 MiB file.
	body := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(body, bytes.Repeat([]byte("x"), 100_000), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 17; i++ {
		run(t, curl, "-sS", "--cacert", ngx.CAFile, "-o", "/dev/null", ngx.URL+"/index.html")
	}
	run(t, curl, "-sS", "--cacert", ngx.CAFile, "-o", "/dev/null", ngx.URL+"/nothing-here")
	run(t, curl, "-sS", "--cacert", ngx.CAFile, "-o", "/dev/null", "-H", "Transfer-Encoding: chunked", "--data-binary", "@"+body, ngx.URL+"/echo")
	run(t, curl, "-sS", "--cacert", ngx.CAFile, "-o", "/dev/null", ngx.URL+"/1m.bin")

	server := e.spans(t, 40, byPort("nginx", kindServer, ngx.Port))
	client := e.spans(t, 40, byPort("curl", kindClient, ngx.Port))

	for _, set := range []struct {
		name  string
		spans []otlpreceiver.Span
	}{{"nginx", server}, {"curl", client}} {
		byName := counts(set.spans, func(s otlpreceiver.Span) string {
			return fmt.Sprintf("%s %s %d", s.Name, attrStr(s, "url.path"), attrInt(s, "http.response.status_code"))
		})
		want := map[string]int{
			"GET /index.html /index.html 200":     35,
			"GET /missing /missing 404":           1,
			"GET /nothing-here /nothing-here 404": 1,
			"GET /1m.bin /1m.bin 200":             2,
			"POST /echo /echo 200":                1,
		}
		for k, n := range want {
			if byName[k] != n {
				t.Errorf("%s: %d spans %q, want %d; all: %v", set.name, byName[k], k, n, byName)
			}
		}
		for _, s := range set.spans {
			if s.Attributes["http.request.method"] == nil || s.Attributes["network.protocol.version"] != "1.1" {
				t.Errorf("%s span %q lacks method or protocol version: %v", set.name, s.Name, s.Attributes)
			}
			if got := attrInt(s, "network.peer.port"); got == 0 {
				t.Errorf("%s span %q has no network.peer.port: %v", set.name, s.Name, s.Attributes)
			}
			if s.Resource["process.pid"] == nil || s.Resource["process.executable.name"] == nil || s.Resource["host.name"] == nil {
				t.Errorf("%s span lacks resource attributes: %v", set.name, s.Resource)
			}
			if !s.End.After(s.Start) {
				t.Errorf("%s span %q: end %v not after start %v", set.name, s.Name, s.End, s.Start)
			}
		}
	}
	// Status: a 404 is an error for the client, not for the server.
	for _, s := range server {
		if want := "UNSET"; s.Status != want {
			t.Errorf("nginx span %q status %s, want %s", s.Name, s.Status, want)
		}
	}
	for _, s := range client {
		want := "UNSET"
		if attrInt(s, "http.response.status_code") >= 400 {
			want = "ERROR"
		}
		if s.Status != want {
			t.Errorf("curl span %q code %d status %s, want %s", s.Name, attrInt(s, "http.response.status_code"), s.Status, want)
		}
		if attrStr(s, "server.address") == "" || attrInt(s, "server.port") != int64(ngx.Port) {
			t.Errorf("curl span lacks server.address/port %d: %v", ngx.Port, s.Attributes)
		}
	}
	// The 1 MiB body was counted, not captured.
	for _, s := range append(append([]otlpreceiver.Span(nil), server...), client...) {
		if attrStr(s, "url.path") == "/1m.bin" && attrInt(s, "http.response.body.size") != harness.NginxBigFileSize {
			t.Errorf("%s /1m.bin: http.response.body.size %d, want %d", s.ServiceName(), attrInt(s, "http.response.body.size"), harness.NginxBigFileSize)
		}
	}
	// curl -> nginx on one node is one trace: each nginx span is the child
	// of a curl span.
	clientByID := make(map[string]otlpreceiver.Span)
	for _, s := range client {
		clientByID[s.SpanID] = s
	}
	for _, s := range server {
		parent, ok := clientByID[s.ParentSpanID]
		if !ok {
			t.Errorf("nginx span %q (trace %s) has parent %q, not a curl span", s.Name, s.TraceID, s.ParentSpanID)
			continue
		}
		if parent.TraceID != s.TraceID || attrStr(parent, "url.path") != attrStr(s, "url.path") {
			t.Errorf("nginx span %q linked to curl span %q in trace %s (own trace %s)", s.Name, parent.Name, parent.TraceID, s.TraceID)
		}
	}
}

// keepAliveArgs sends every URL over curl's one reused connection, each
// response discarded.
func keepAliveArgs(urls []string) []string {
	var args []string
	for _, u := range urls {
		args = append(args, "-o", "/dev/null", u)
	}
	return args
}
