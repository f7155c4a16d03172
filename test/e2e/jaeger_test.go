package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
)

// TestJaeger: the agent exports to a real Jaeger v2 over OTLP/gRPC; nginx
// serves 5 requests from one keep-alive curl and 3 from new curls. Through
// Jaeger's query API: the services nginx and curl exist, and each of the 8
// requests is one trace of exactly two spans, the curl CLIENT span and the
// nginx SERVER span as its child (CHILD_OF), with the right operation names,
// span kinds, HTTP tags, error tags and processes.
func TestJaeger(t *testing.T) {
	j := harness.RunJaeger(t)
	a := startAgentEnv(t, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + j.OTLPEndpoint,
		"OTEL_EXPORTER_OTLP_INSECURE=true",
	})
	e := &env{agent: a}
	ngx := harness.StartNginx(t, harness.NginxOptions{})
	e.instrumented(t, ngx.WorkerPIDs...)
	curl := harness.LookTool(t, "curl")

	type req struct {
		path, route string // the route names the operation
		code        int
	}
	keepAlive := []req{{"/index.html", "/index.html", 200}, {"/index.html", "/index.html", 200}, {"/missing", "/missing", 404},
		{"/status/500", "/status/{id}", 500}, {"/status/201", "/status/{id}", 201}}
	single := []req{{"/index.html", "/index.html", 200}, {"/nothing-here", "/nothing-here", 404}, {"/status/503", "/status/{id}", 503}}
	var args []string
	for _, r := range keepAlive {
		args = append(args, "-o", "/dev/null", ngx.URL+r.path)
	}
	curlPIDs := []int{runCurl(t, curl, append([]string{"-sS", "--cacert", ngx.CAFile}, args...)...)}
	for _, r := range single {
		curlPIDs = append(curlPIDs, runCurl(t, curl, "-sS", "--cacert", ngx.CAFile, "-o", "/dev/null", ngx.URL+r.path))
	}
	all := append(append([]req(nil), keepAlive...), single...)

	ours := func(s harness.JaegerSpan, service string, pids []int) bool {
		if s.Process.ServiceName != service {
			return false
		}
		for _, kv := range s.Process.Tags {
			if kv.Key == "process.pid" {
				pid, _ := kv.Value.(float64)
				return slices.Contains(pids, int(pid))
			}
		}
		return false
	}
	countOurs := func(trs []harness.JaegerTrace, service string, pids []int) int {
		n := 0
		for _, tr := range trs {
			for _, s := range tr.Spans {
				if ours(s, service, pids) {
					n++
				}
			}
		}
		return n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Traces of curl hold the nginx spans too; wait until both sides of
	// every request are there.
	traces, err := j.WaitTraces(ctx, "curl", func(trs []harness.JaegerTrace) bool {
		return countOurs(trs, "curl", curlPIDs) >= len(all) && countOurs(trs, "nginx", ngx.WorkerPIDs) >= len(all)
	})
	if err != nil {
		t.Fatalf("%v", err)
	}

	services, err := j.Services()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"nginx", "curl"} {
		if !slices.Contains(services, s) {
			t.Errorf("Jaeger services %v lack %q", services, s)
		}
	}

	got := make(map[string]int)
	for _, tr := range traces {
		var client, server []harness.JaegerSpan
		for _, s := range tr.Spans {
			switch {
			case ours(s, "curl", curlPIDs):
				client = append(client, s)
			case ours(s, "nginx", ngx.WorkerPIDs):
				server = append(server, s)
			}
		}
		if len(client) == 0 && len(server) == 0 {
			continue // another program's trace
		}
		if len(client) != 1 || len(server) != 1 || len(tr.Spans) != 2 {
			t.Errorf("trace %s: %d spans, %d of curl and %d of nginx; want one of each", tr.TraceID, len(tr.Spans), len(client), len(server))
			continue
		}
		c, s := client[0], server[0]
		if c.ParentSpanID() != "" || len(c.References) != 0 {
			t.Errorf("trace %s: the curl span has references %v, want a root span", tr.TraceID, c.References)
		}
		if s.ParentSpanID() != c.SpanID || s.References[0].TraceID != tr.TraceID {
			t.Errorf("trace %s: the nginx span's references %v, want CHILD_OF the curl span %s", tr.TraceID, s.References, c.SpanID)
		}
		if c.OperationName != s.OperationName || c.TagString("url.path") != s.TagString("url.path") ||
			c.TagString("http.response.status_code") != s.TagString("http.response.status_code") {
			t.Errorf("trace %s: curl %q %s %s and nginx %q %s %s differ", tr.TraceID,
				c.OperationName, c.TagString("url.path"), c.TagString("http.response.status_code"),
				s.OperationName, s.TagString("url.path"), s.TagString("http.response.status_code"))
		}
		// The query API has microseconds: allow for rounding.
		if c.StartTime > s.StartTime+1 || c.StartTime+c.Duration+2 < s.StartTime+s.Duration {
			t.Errorf("trace %s: the nginx span [%d +%d] is not inside the curl span [%d +%d]", tr.TraceID,
				s.StartTime, s.Duration, c.StartTime, c.Duration)
		}
		code := c.TagString("http.response.status_code")
		status, _ := strconv.Atoi(code)
		for _, x := range []struct {
			span harness.JaegerSpan
			kind string
			err  bool
		}{{c, "client", status >= 400}, {s, "server", status >= 500}} {
			sp := x.span
			route := sp.TagString("http.route") // servers
			if x.kind == "client" {
				route = sp.TagString("url.template")
			}
			if sp.OperationName != "GET "+route || sp.TagString("http.request.method") != "GET" ||
				sp.TagString("span.kind") != x.kind || sp.TagString("network.protocol.version") != "1.1" ||
				sp.TagString("server.port") != fmt.Sprint(ngx.Port) {
				t.Errorf("trace %s: %s span %q tags %v", tr.TraceID, x.kind, sp.OperationName, sp.Tags)
			}
			wantStatus, wantErrorType := "", ""
			if x.err {
				wantStatus, wantErrorType = "ERROR", code
			}
			if sp.TagString("otel.status_code") != wantStatus || sp.TagString("error.type") != wantErrorType ||
				(sp.TagString("error") == "true") != x.err {
				t.Errorf("trace %s: %s span %q code %s: otel.status_code %q error %q error.type %q, want error=%v", tr.TraceID,
					x.kind, sp.OperationName, code, sp.TagString("otel.status_code"), sp.TagString("error"), sp.TagString("error.type"), x.err)
			}
		}
		if s.TagString("http.route") != c.TagString("url.template") || s.TagString("client.address") != "127.0.0.1" {
			t.Errorf("trace %s: nginx span tags %v", tr.TraceID, s.Tags)
		}
		got[fmt.Sprintf("%s %s %s", c.OperationName, c.TagString("url.path"), code)]++
	}
	want := make(map[string]int)
	for _, r := range all {
		want[fmt.Sprintf("GET %s %s %d", r.route, r.path, r.code)]++
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("traces by operation and status: %v, want %v", got, want)
	}
}

// runCurl runs curl to completion and returns its PID.
func runCurl(t *testing.T, curl string, args ...string) int {
	t.Helper()
	p := startProc(t, nil, curl, args...)
	p.mustSucceed(30 * time.Second)
	return p.PID
}
