package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	otlpexporter "github.com/periscope-apm/periscope/exporters/otlp"
	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// The fault tests select only their own python processes (a private copy
// of the interpreter, --include-exe its path), so that the agent's
// counters and gauges count nothing else that runs on this machine and can
// be asserted exactly.

// faultEnv is an agent that traces only a private python, and that
// python.
type faultEnv struct {
	*env
	py            string
	cert, key, ca string
}

func startFaultEnv(t *testing.T) *faultEnv {
	t.Helper()
	py := harness.CopyExe(t, python(t), "pyfault")
	f := &faultEnv{env: startAgent(t, "--include-exe", py), py: py}
	f.cert, f.key, f.ca = harness.GenerateCert(t, filepath.Join(t.TempDir(), "tls"))
	return f
}

// peer starts tls_peer.py MODE ARGS under the private python.
func (f *faultEnv) peer(t *testing.T, mode string, args ...string) *proc {
	t.Helper()
	return startProc(t, nil, f.py, append([]string{testdataPath(t, "tls_peer.py"), mode}, args...)...)
}

// server starts a tls_peer.py server mode and returns it and its port.
func (f *faultEnv) server(t *testing.T, mode string) (*proc, string) {
	t.Helper()
	p := f.peer(t, mode, f.cert, f.key)
	return p, p.expect("listening", 20*time.Second)
}

// noSpans fails if any span of the given processes reached the receiver.
func (f *faultEnv) noSpans(t *testing.T, pids ...int) {
	t.Helper()
	if got := filterSpans(f.recv.Spans(), func(s otlpreceiver.Span) bool {
		return byPIDs(kindServer, pids...)(s) || byPIDs(kindClient, pids...)(s)
	}); len(got) > 0 {
		t.Errorf("want no spans, got %d:\n%s", len(got), describe(got))
	}
}

// loudLogs returns the agent's WARN and ERROR log lines.
func loudLogs(t *testing.T, a *harness.Agent) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(readFile(t, a.StderrPath), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			out = append(out, line)
		}
	}
	return out
}

// TestFaultNotHTTP: binary bytes and a text line protocol over TLS (python
// echo server and client) produce no span, count each of the 4 connection
// ends (2 connections, traced at both ends) once in
// periscope_connections_not_http_total, are no HTTP parse error, and make
// the agent log no warning or error.
func TestFaultNotHTTP(t *testing.T) {
	f := startFaultEnv(t)
	srv, port := f.server(t, "echo-server")
	cli := f.peer(t, "garbage-client", port, f.ca)
	f.instrumented(t, srv.PID, cli.PID)
	if v := f.agent.Metric(t, "periscope_connections_not_http_total", nil); v != 0 {
		t.Fatalf("periscope_connections_not_http_total is %v before any traffic", v)
	}

	cli.send("go")
	cli.expect("done", 30*time.Second)
	cli.mustSucceed(10 * time.Second)

	waitMetric(t, f.agent, "periscope_connections_not_http_total", nil, ">= 4", func(v float64) bool { return v >= 4 })
	// Both connections are closed: their state is gone.
	waitMetric(t, f.agent, "periscope_connections_tracked", nil, "0", equals(0))
	// Let late events arrive, then check that nothing more was counted and
	// nothing was exported.
	time.Sleep(1500 * time.Millisecond)
	if v := f.agent.Metric(t, "periscope_connections_not_http_total", nil); v != 4 {
		t.Errorf("periscope_connections_not_http_total = %v, want 4", v)
	}
	for _, m := range []string{"periscope_http_parse_errors_total", "periscope_spans_total", "periscope_requests_incomplete_total"} {
		if v := f.agent.Metric(t, m, nil); v != 0 {
			t.Errorf("%s = %v, want 0", m, v)
		}
	}
	f.noSpans(t, srv.PID, cli.PID)
	if loud := loudLogs(t, f.agent); len(loud) > 0 {
		t.Errorf("the agent logged warnings or errors:\n%s", strings.Join(loud, "\n"))
	}
}

// TestFaultTruncatedResponse: a server answers "Content-Length: 1000" with
// 10 body bytes and closes. Its span and the client's span both end, as soon
// as the connection closes (not at the idle timeout), with status ERROR and
// error.type "connection_closed", status code 200 and 10 response body
// bytes; both are counted as incomplete ("closed") and no connection state
// is left.
func TestFaultTruncatedResponse(t *testing.T) {
	f := startFaultEnv(t)
	srv, port := f.server(t, "truncating-server")
	cli := f.peer(t, "get-client", port, f.ca, "/big")
	f.instrumented(t, srv.PID, cli.PID)

	cli.send("go")
	if got := cli.expect("", 30*time.Second); got != "incomplete 10" {
		t.Fatalf("client: %q, want \"incomplete 10\"", got)
	}
	srv.expect("truncated", 10*time.Second)
	cli.mustSucceed(10 * time.Second)

	server := f.spans(t, 1, byPIDs(kindServer, srv.PID))
	client := f.spans(t, 1, byPIDs(kindClient, cli.PID))
	for _, s := range []otlpreceiver.Span{server[0], client[0]} {
		if s.Name != "GET /big" || attrStr(s, "url.path") != "/big" || attrInt(s, "http.response.status_code") != 200 {
			t.Errorf("span %q: %v", s.Name, s.Attributes)
		}
		if s.Status != "ERROR" || attrStr(s, "error.type") != "connection_closed" ||
			s.StatusMessage != "connection closed before the response completed" {
			t.Errorf("span %q: status %s %q error.type %q, want ERROR, error.type connection_closed",
				s.Name, s.Status, s.StatusMessage, attrStr(s, "error.type"))
		}
		if got := attrInt(s, "http.response.body.size"); got != 10 {
			t.Errorf("span %q: http.response.body.size %d, want 10", s.Name, got)
		}
	}
	if server[0].ParentSpanID != client[0].SpanID || server[0].TraceID != client[0].TraceID {
		t.Errorf("server span not the child of the client span: %s", describe(append(server, client...)))
	}
	if v := f.agent.Metric(t, "periscope_requests_incomplete_total", map[string]string{"reason": "closed"}); v != 2 {
		t.Errorf("periscope_requests_incomplete_total{reason=closed} = %v, want 2", v)
	}
	if v := f.agent.Metric(t, "periscope_requests_incomplete_total", nil); v != 2 {
		t.Errorf("periscope_requests_incomplete_total = %v, want 2 (all closed)", v)
	}
	waitMetric(t, f.agent, "periscope_connections_tracked", nil, "0", equals(0))
}

// TestFaultClientExits: a client sends a request and exits (os._exit)
// before the response. Its span ends at once as an ERROR with error.type
// "process_exited"; the server, which answers afterwards, has a complete
// span. Afterwards the agent holds no state for either: no tracked
// connection, the client's per-process probes detached, the client gone
// from /status, and all probes gone once the server exits too.
func TestFaultClientExits(t *testing.T) {
	f := startFaultEnv(t)
	srv, port := f.server(t, "slow-server")
	cli := f.peer(t, "exit-client", port, f.ca)
	f.instrumented(t, srv.PID, cli.PID)
	probes := f.agent.Metric(t, "periscope_probes_attached", map[string]string{"collector": "openssl"})
	if probes == 0 || int(probes)%2 != 0 {
		t.Fatalf("periscope_probes_attached = %v with two processes", probes)
	}

	cli.send("go")
	cli.expect("sent", 20*time.Second)
	srv.expect("request", 20*time.Second)
	// Both ends of the connection are tracked, the request is in flight.
	waitMetric(t, f.agent, "periscope_connections_tracked", nil, "2", equals(2))

	cli.send("exit")
	if code := cli.wait(10 * time.Second); code != 0 {
		t.Fatalf("client exited with %d", code)
	}
	client := f.spans(t, 1, byPIDs(kindClient, cli.PID))[0]
	if client.Name != "GET /slow" || client.Status != "ERROR" || attrStr(client, "error.type") != "process_exited" ||
		client.StatusMessage != "process exited before the response completed" {
		t.Errorf("client span %q status %s %q error.type %q, want GET /slow, ERROR, process_exited",
			client.Name, client.Status, client.StatusMessage, attrStr(client, "error.type"))
	}
	if _, ok := client.Attributes["http.response.status_code"]; ok {
		t.Errorf("client span has a status code: %v", client.Attributes)
	}
	if v := f.agent.Metric(t, "periscope_requests_incomplete_total", map[string]string{"reason": "exit"}); v != 1 {
		t.Errorf("periscope_requests_incomplete_total{reason=exit} = %v, want 1", v)
	}
	// The client's connection state and probes are gone; the server's
	// connection is still open.
	waitMetric(t, f.agent, "periscope_connections_tracked", nil, "1", equals(1))
	waitMetric(t, f.agent, "periscope_probes_attached", map[string]string{"collector": "openssl"}, fmt.Sprint(probes/2), equals(probes/2))
	f.waitNotInStatus(t, cli.PID)

	srv.send("respond")
	srv.expect("closed", 20*time.Second)
	server := f.spans(t, 1, byPIDs(kindServer, srv.PID))[0]
	if server.Name != "GET /slow" || server.Status != "UNSET" || attrInt(server, "http.response.status_code") != 200 ||
		attrStr(server, "user_agent.original") != "exit-client" {
		t.Errorf("server span: %s %v", describe([]otlpreceiver.Span{server}), server.Attributes)
	}
	if server.ParentSpanID != client.SpanID {
		t.Errorf("server span parent %q, want the client span %s", server.ParentSpanID, client.SpanID)
	}
	waitMetric(t, f.agent, "periscope_connections_tracked", nil, "0", equals(0))
	if code := srv.wait(10 * time.Second); code != 0 {
		t.Fatalf("server exited with %d", code)
	}
	waitMetric(t, f.agent, "periscope_probes_attached", map[string]string{"collector": "openssl"}, "0", equals(0))
	f.waitNotInStatus(t, srv.PID)
	if v := f.agent.Metric(t, "periscope_requests_incomplete_total", nil); v != 1 {
		t.Errorf("periscope_requests_incomplete_total = %v, want 1", v)
	}
}

// waitNotInStatus waits until pid is no longer listed in /status.
func (f *faultEnv) waitNotInStatus(t *testing.T, pid int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		st, err := f.agent.Status(ctx)
		if err != nil {
			t.Fatalf("/status: %v", err)
		}
		found := false
		for _, p := range st.Processes {
			found = found || p.PID == pid
		}
		if !found {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pid %d still in /status after it exited", pid)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// consoleSpan is the part of a --console=json line the tests read.
type consoleSpan struct {
	TraceID    string         `json:"trace_id"`
	SpanID     string         `json:"span_id"`
	ParentID   string         `json:"parent_span_id"`
	Kind       string         `json:"kind"`
	Name       string         `json:"name"`
	Status     string         `json:"status"`
	Attributes map[string]any `json:"attributes"`
	Resource   map[string]any `json:"resource"`
}

// consoleSpans parses the agent's stdout (--console=json); a line that is
// not a span fails the test.
func consoleSpans(t *testing.T, a *harness.Agent) []consoleSpan {
	t.Helper()
	var out []consoleSpan
	for _, line := range strings.Split(readFile(t, a.StdoutPath), "\n") {
		if line == "" {
			continue
		}
		var s consoleSpan
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			// The last line may be half written.
			continue
		}
		out = append(out, s)
	}
	return out
}

// countConsole counts the console spans of kind from the given pids, by
// "name status-code".
func countConsole(spans []consoleSpan, kind string, pids ...int) (int, map[string]int) {
	n, by := 0, make(map[string]int)
	for _, s := range spans {
		pid, _ := s.Resource["process.pid"].(float64)
		if s.Kind != kind || !slices.Contains(pids, int(pid)) {
			continue
		}
		n++
		by[fmt.Sprintf("%s %v", s.Name, s.Attributes["http.response.status_code"])]++
	}
	return n, by
}

func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	for _, line := range strings.Split(readFile(t, fmt.Sprintf("/proc/%d/status", pid)), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// TestFaultOTLPUnreachable: with OTEL_EXPORTER_OTLP_ENDPOINT on a closed
// port, rounds of nginx+curl traffic (each 8000 requests over one
// keep-alive connection at 2000/s, 16000 spans; the OTLP queue is full
// after the third or fourth) all reach the console exporter promptly (the
// pipeline never waits for the backend); the OTLP exporter exports
// nothing, accounts for every span (dropped for a full queue or a failed
// export, queued, or in flight), keeps its queue and its exports in flight
// at their bounds, and logs the failures a few times, not once per batch;
// the agent's RSS stays under a bound and stops growing once the queue is
// full; and it still exits 0 on SIGINT.
func TestFaultOTLPUnreachable(t *testing.T) {
	const requests = 8000
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", harness.FreePort(t)) // nobody listens there
	ngx := harness.StartNginx(t, harness.NginxOptions{Workers: 1})
	// Only nginx and curl: the spans of whatever else runs on the machine
	// would fill the queue and the console, and blur the accounting.
	a := startAgentEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint, "OTEL_EXPORTER_OTLP_INSECURE=true"},
		"--include-exe", ngx.Exe, "--include-exe", "curl")
	e := &env{agent: a}
	e.instrumented(t, ngx.WorkerPIDs...)

	otlpLabels := map[string]string{"exporter": "otlp"}
	var curls []int
	var rss []int64
	full := 0 // the first round that ended with the queue full
	const rounds = 6
	for round := 1; round <= rounds; round++ {
		start := time.Now()
		// At most 2000 requests/s: a backend outage, not a burst larger
		// than the ring buffer, is what this test is about.
		c := e.curlWhenProbed(t, fmt.Sprintf("%s/index.html?round=%d&n=[1-%d]", ngx.URL, round, requests),
			"-sS", "--fail-with-body", "--rate", "2000/s", "--cacert", ngx.CAFile, "-o", "/dev/null")
		c.mustSucceed(2 * time.Minute)
		curls = append(curls, c.PID)
		// Every span reaches the console, OTLP backend or not: printed,
		// or (on a machine so loaded that the console writer falls
		// behind) counted as dropped by the console exporter. Nothing is
		// lost silently, and nearly everything is printed.
		want := round * requests
		deadline := time.Now().Add(30 * time.Second)
		for {
			spans := consoleSpans(t, a)
			ns, _ := countConsole(spans, "SERVER", ngx.WorkerPIDs...)
			nc, byName := countConsole(spans, "CLIENT", curls...)
			if byName["GET /index.html 200"] != nc {
				t.Fatalf("curl spans: %v", byName)
			}
			dropped := int(a.Metric(t, "periscope_spans_dropped_total", map[string]string{"exporter": "console"}))
			if ns == want && nc == want || ns <= want && nc <= want && ns+nc+dropped >= 2*want {
				if ns+nc < 2*want*95/100 {
					t.Fatalf("round %d: console printed only %d nginx and %d curl spans of %d each (%d dropped)%s",
						round, ns, nc, want, dropped, e.losses(t))
				}
				if dropped > 0 {
					t.Logf("round %d: the console exporter dropped %d spans (machine overloaded)", round, dropped)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: console has %d nginx and %d curl spans after 30 s, want %d each%s", round, ns, nc, want, e.losses(t))
			}
			time.Sleep(200 * time.Millisecond)
		}
		select {
		case <-a.Done():
			t.Fatalf("the agent exited during round %d", round)
		default:
		}
		rss = append(rss, rssBytes(t, a.PID))
		dropped := a.Metric(t, "periscope_spans_dropped_total", map[string]string{"exporter": "otlp", "reason": "queue_full"})
		if full == 0 && dropped > 0 {
			full = round
		}
		t.Logf("round %d: %d requests, their spans on the console after %v; agent RSS %.1f MiB; otlp queue_full %v, queued %v spans in %.1f MiB",
			round, requests, time.Since(start).Round(time.Millisecond), float64(rss[round-1])/(1<<20), dropped,
			a.Metric(t, "periscope_exporter_queue_length", otlpLabels), a.Metric(t, "periscope_exporter_queue_bytes", otlpLabels)/(1<<20))
	}

	waitMetric(t, a, "periscope_export_failures_total", otlpLabels, "> 0", func(v float64) bool { return v > 0 })
	// Every span given to the exporter is dropped and counted, queued,
	// or in an export in flight (exported: none). One scrape reads the
	// gauges and counters while batches move from one state to the next,
	// and the spans of the test's own scrapes are on their way: scrape
	// until one accounts for every span built exactly. A span lost
	// anywhere in the exporter makes every scrape fall short.
	var built, exported, queueFull, failed, queued, queuedBytes, inFlight float64
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		fams := a.MetricFamilies(t)
		metric := func(name string, labels map[string]string) float64 {
			v, err := harness.SumMetric(fams, name, labels)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		built = metric("periscope_spans_total", nil)
		exported = metric("periscope_spans_exported_total", otlpLabels)
		queueFull = metric("periscope_spans_dropped_total", map[string]string{"exporter": "otlp", "reason": "queue_full"})
		failed = metric("periscope_spans_dropped_total", map[string]string{"exporter": "otlp", "reason": "export_failed"})
		queued = metric("periscope_exporter_queue_length", otlpLabels)
		inFlight = metric("periscope_exporter_spans_in_flight", otlpLabels)
		queuedBytes = metric("periscope_exporter_queue_bytes", otlpLabels)
		if exported+queueFull+failed+queued+inFlight == built {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("otlp: %v exported + %v dropped (queue full) + %v dropped (failed) + %v queued + %v in flight does not account for %v spans built",
				exported, queueFull, failed, queued, inFlight, built)
		}
	}
	t.Logf("spans built %v; otlp: exported %v, dropped queue_full %v, export_failed %v, queued %v, in flight %v, failed exports %v",
		built, exported, queueFull, failed, queued, inFlight, a.Metric(t, "periscope_export_failures_total", otlpLabels))
	if exported != 0 {
		t.Errorf("otlp exported %v spans to a closed port", exported)
	}
	if built < 2*rounds*requests {
		t.Errorf("periscope_spans_total = %v, want at least %d", built, 2*rounds*requests)
	}
	if queued > otlpexporter.DefaultQueueSize || inFlight > otlpexporter.DefaultMaxInFlight*otlpexporter.DefaultBatchSize {
		t.Errorf("otlp holds %v spans queued and %v in flight, more than its bounds %d and %d",
			queued, inFlight, otlpexporter.DefaultQueueSize, otlpexporter.DefaultMaxInFlight*otlpexporter.DefaultBatchSize)
	}
	// A span is queued while the queue holds less than its bytes bound:
	// past it by at most one span.
	if queuedBytes > otlpexporter.DefaultQueueBytes+64<<10 {
		t.Errorf("otlp queue holds %v bytes, more than its bound %d", queuedBytes, otlpexporter.DefaultQueueBytes)
	}
	// The queue filled (by its span count or its encoded bytes) and
	// stayed full: everything beyond it was dropped.
	if full == 0 || full > rounds-2 {
		t.Fatalf("the otlp queue was first full after round %d of %d, want at least 2 rounds before the end", full, rounds)
	}
	// Once the queue is full every span is dropped: memory must stop
	// growing. Two more rounds are 32000 spans (~10 MiB encoded if they
	// were kept); the Go heap's own breathing stays well under 32 MiB.
	const maxRSS = 192 << 20
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	var rssMiB []float64
	for _, r := range rss {
		rssMiB = append(rssMiB, mib(r))
	}
	if slices.Max(rss) > maxRSS || slices.Max(rss[full:]) > rss[full-1]+32<<20 {
		t.Errorf("agent RSS by round %.1f MiB: want under %d MiB and no growth over 32 MiB after round %d (queue full)",
			rssMiB, maxRSS>>20, full)
	}
	// Failed exports are logged (just after they are counted), but not
	// once per batch.
	warns := func() int {
		n := 0
		for _, l := range loudLogs(t, a) {
			if strings.Contains(l, "OTLP export failed") {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(5 * time.Second); warns() == 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if n := warns(); n == 0 || n > 3 {
		t.Errorf("%d warnings about failed exports, want 1 to 3 (rate-limited):\n%s", n, strings.Join(loudLogs(t, a), "\n"))
	}
	if code := a.Stop(); code != 0 {
		t.Errorf("agent exited with %d, want 0", code)
	}
}

// curlWhenProbed starts curl with args and has it fetch url once the agent
// has probes on it: curl reads the URL from stdin, given when it is
// instrumented. A test that selects curl by name (--include-exe) sees its
// every request, although the agent attaches to a selected process only
// after it has started.
func (e *env) curlWhenProbed(t *testing.T, url string, args ...string) *proc {
	t.Helper()
	c := startProc(t, nil, harness.LookTool(t, "curl"), append([]string{"-K", "-"}, args...)...)
	e.instrumented(t, c.PID)
	if _, err := fmt.Fprintf(c.stdin, "url = %q\n", url); err != nil {
		t.Fatalf("curl: give its URL: %v", err)
	}
	if err := c.stdin.Close(); err != nil {
		t.Fatalf("curl: close its stdin: %v", err)
	}
	return c
}
