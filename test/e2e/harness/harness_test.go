package harness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func TestGenerateCert(t *testing.T) {
	cert, key, ca := GenerateCert(t, t.TempDir())
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		t.Fatalf("key pair: %v", err)
	}
	pool := TLSClientConfig(t, ca).RootCAs
	b, _ := os.ReadFile(cert)
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
}

func TestNginx(t *testing.T) {
	RequireRoot(t)
	n := StartNginx(t, NginxOptions{Files: map[string][]byte{"sub/hello.txt": []byte("hello\n")}})

	if len(n.WorkerPIDs) != 2 {
		t.Errorf("workers = %v, want 2", n.WorkerPIDs)
	}
	for _, pid := range n.PIDs() {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || exe != n.Exe {
			t.Errorf("pid %d: exe %q (%v), want %s", pid, exe, err, n.Exe)
		}
	}

	c := n.Client()
	var reused []bool
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) }}
	do := func(method, path string, body io.Reader, chunked bool) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, n.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if chunked {
			req.ContentLength = -1
			req.TransferEncoding = []string{"chunked"}
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: read body: %v", method, path, err)
		}
		return resp, b
	}

	resp, body := do("GET", "/", nil, false)
	if resp.StatusCode != 200 || string(body) != NginxIndex {
		t.Errorf("GET /: %d %q", resp.StatusCode, body)
	}
	if resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
		t.Errorf("GET /: TLS state %+v, want TLS 1.3", resp.TLS)
	}
	resp, body = do("GET", "/1m.bin", nil, false)
	if resp.StatusCode != 200 || len(body) != NginxBigFileSize {
		t.Errorf("GET /1m.bin: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, body = do("GET", "/sub/hello.txt", nil, false)
	if resp.StatusCode != 200 || string(body) != "hello\n" {
		t.Errorf("GET /sub/hello.txt: %d %q", resp.StatusCode, body)
	}
	resp, _ = do("GET", "/missing", nil, false)
	if resp.StatusCode != 404 {
		t.Errorf("GET /missing: %d, want 404", resp.StatusCode)
	}
	resp, body = do("GET", "/status/503", nil, false)
	if resp.StatusCode != 503 || string(body) != "status 503\n" {
		t.Errorf("GET /status/503: %d %q", resp.StatusCode, body)
	}
	// A chunked POST of 3 MiB, twice: the body is read and the connection stays usable.
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<16)
	for i := 0; i < 2; i++ {
		resp, body = do("POST", "/echo", bytes.NewReader(big), true)
		if resp.StatusCode != 200 || string(body) != "ok\n" {
			t.Errorf("chunked POST /echo: %d %q", resp.StatusCode, body)
		}
	}
	resp, body = do("PUT", "/echo", strings.NewReader("small"), false)
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("PUT /echo: %d %q", resp.StatusCode, body)
	}
	for i, r := range reused[1:] {
		if !r {
			t.Errorf("request %d did not reuse the keepalive connection (reused: %v)", i+2, reused)
			break
		}
	}

	// TLS 1.2 works too.
	cfg := n.TLSConfig()
	cfg.MaxVersion = tls.VersionTLS12
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.Port), cfg)
	if err != nil {
		t.Fatalf("TLS 1.2 dial: %v", err)
	}
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	r12, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || r12.StatusCode != 200 || conn.ConnectionState().Version != tls.VersionTLS12 {
		t.Errorf("TLS 1.2 GET /: %v %v version %x", err, r12, conn.ConnectionState().Version)
	}
	conn.Close()

	// The real curl, with the generated CA, on the name localhost.
	curl := LookTool(t, "curl")
	out, err := exec.Command(curl, "-sS", "--fail", "--cacert", n.CAFile,
		"-H", "Transfer-Encoding: chunked", "--data-binary", "x=1",
		fmt.Sprintf("https://localhost:%d/echo", n.Port)).CombinedOutput()
	if err != nil || string(out) != "ok\n" {
		t.Errorf("curl chunked POST: %v %q", err, out)
	}
	out, err = exec.Command(curl, "-sS", "--fail", "--cacert", n.CAFile, n.URL+"/").CombinedOutput()
	if err != nil || string(out) != NginxIndex {
		t.Errorf("curl GET: %v %q", err, out)
	}

	// nginx really read the chunked bodies: request_length counts them.
	log, _ := os.ReadFile(n.AccessLog)
	if got := strings.Count(string(log), "\n"); got < 9 {
		t.Errorf("access log has %d lines, want >= 9:\n%s", got, log)
	}
	chunkedPosts := 0
	for _, line := range strings.Split(string(log), "\n") {
		if !strings.Contains(line, `"POST /echo HTTP/1.1" 200`) || !strings.Contains(line, `te="chunked"`) {
			continue
		}
		var reqLen int
		if i := strings.Index(line, "req_len="); i >= 0 {
			fmt.Sscanf(line[i:], "req_len=%d", &reqLen)
		}
		if reqLen > len(big) {
			chunkedPosts++
		}
	}
	if chunkedPosts != 2 {
		t.Errorf("want 2 chunked POSTs of %d bytes in the access log, found %d:\n%s", len(big), chunkedPosts, log)
	}

	n.Stop()
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.Port), time.Second); err == nil {
		t.Errorf("port %d still accepts connections after Stop", n.Port)
	}
	for _, pid := range n.PIDs() {
		if processAlive(pid) && isChildOfNginx(pid, n.Exe) {
			t.Errorf("nginx pid %d still alive after Stop", pid)
		}
	}
}

func TestJaeger(t *testing.T) {
	j := RunJaeger(t)
	svcs, err := j.Services()
	if err != nil {
		t.Fatalf("Services: %v", err)
	}
	if len(svcs) != 0 {
		t.Errorf("services of a fresh Jaeger: %v, want none (self-tracing must be off)", svcs)
	}
	// Loopback only, and exactly the ports we chose.
	addrs, err := ListeningAddrs(j.PID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("jaeger listens on %v", addrs)
	if len(addrs) != 5 {
		t.Errorf("jaeger listens on %d sockets, want 5 (OTLP gRPC+HTTP, query HTTP+gRPC, health)", len(addrs))
	}
	for _, a := range addrs {
		if !strings.HasPrefix(a, "127.0.0.1:") {
			t.Errorf("jaeger listens on %s, not on loopback", a)
		}
	}
	for _, want := range []string{j.OTLPEndpoint, j.OTLPHTTPEndpoint, strings.TrimPrefix(j.QueryURL, "http://")} {
		if !contains(addrs, want) {
			t.Errorf("jaeger does not listen on %s (listens on %v)", want, addrs)
		}
	}

	// Send a parent and a child span through OTLP/HTTP JSON and read them back.
	now := time.Now()
	traceID := fmt.Sprintf("%032x", now.UnixNano()) // high half zero: the API shortens it
	const parent, child = "00000000000000a1", "00000000000000b2"
	payload := fmt.Sprintf(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"harness-test"}}]},
"scopeSpans":[{"scope":{"name":"harness"},"spans":[
{"traceId":"%[1]s","spanId":"%[2]s","name":"GET /","kind":2,"startTimeUnixNano":"%[4]d","endTimeUnixNano":"%[5]d",
 "attributes":[{"key":"http.response.status_code","value":{"intValue":"200"}}]},
{"traceId":"%[1]s","spanId":"%[3]s","parentSpanId":"%[2]s","name":"child","kind":3,"startTimeUnixNano":"%[4]d","endTimeUnixNano":"%[5]d"}
]}]}]}`, traceID, parent, child, now.Add(-time.Millisecond).UnixNano(), now.UnixNano())
	resp, err := http.Post("http://"+j.OTLPHTTPEndpoint+"/v1/traces", "application/json", strings.NewReader(payload))
	if err != nil {
		t.Fatalf("OTLP/HTTP post: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("OTLP/HTTP post: %s %s", resp.Status, b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	trs, err := j.WaitTraces(ctx, "harness-test", func(trs []JaegerTrace) bool { return countSpans(trs) >= 2 })
	if err != nil {
		t.Fatal(err)
	}
	if len(trs) != 1 || trs[0].TraceID != traceID {
		t.Fatalf("traces: %+v, want one with ID %s", trs, traceID)
	}
	p, ok1 := trs[0].Span(parent)
	c, ok2 := trs[0].Span(child)
	if !ok1 || !ok2 {
		t.Fatalf("spans: %+v", trs[0].Spans)
	}
	if p.OperationName != "GET /" || p.ParentSpanID() != "" || p.TagString("http.response.status_code") != "200" {
		t.Errorf("parent span: %+v", p)
	}
	if c.ParentSpanID() != parent || c.Process.ServiceName != "harness-test" {
		t.Errorf("child span: %+v", c)
	}
	if svcs, err = j.Services(); err != nil || !contains(svcs, "harness-test") {
		t.Errorf("Services after export: %v %v", svcs, err)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestAgent(t *testing.T) {
	bin := BuildGo(t, "./test/e2e/harness/testdata/fakeagent", "fakeagent")
	if again := BuildGo(t, "./test/e2e/harness/testdata/fakeagent", "fakeagent"); again != bin {
		t.Errorf("second BuildGo = %s, want cached %s", again, bin)
	}
	a := StartAgent(t, bin, []string{"--pids", fmt.Sprint(os.Getpid())}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := a.WaitInstrumented(ctx, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Collectors) != 1 || p.Collectors[0] != "fake" || p.Exe == "" {
		t.Errorf("process entry: %+v", p)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"fake_requests_total", nil, 10},
		{"fake_requests_total", map[string]string{"method": "GET"}, 9},
		{"fake_requests_total", map[string]string{"method": "GET", "status": "404"}, 2},
		{"fake_requests_total", map[string]string{"method": "PUT"}, 0},
		{"fake_up", nil, 1},
		{"fake_duration_seconds_count", nil, 9},
		{"fake_duration_seconds_sum", map[string]string{"method": "GET"}, 4.5},
		{"fake_duration_seconds_bucket", map[string]string{"le": "1"}, 8},
		{"fake_duration_seconds_bucket", map[string]string{"le": "+Inf"}, 9},
		{"absent_metric", nil, 0},
	} {
		if got := a.Metric(t, c.name, c.labels); got != c.want {
			t.Errorf("Metric(%s, %v) = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if code := a.Stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if code := a.Stop(); code != 0 {
		t.Errorf("second Stop: %d", code)
	}

	// The exit code is reported.
	b := StartAgent(t, bin, []string{"--exit-code", "3", "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", FreePort(t))}, nil)
	if err := b.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if code := b.Stop(); code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}

	// An agent that dies is reported by WaitReady at once, not at the deadline.
	c := StartAgent(t, bin, []string{"--metrics-addr", "bad address"}, nil)
	start := time.Now()
	if err := c.WaitReady(ctx); err == nil || !strings.Contains(err.Error(), "exited with code 1") {
		t.Errorf("WaitReady on a dead agent: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("WaitReady took %v to notice the exit", time.Since(start))
	}
}

func TestSumMetricErrors(t *testing.T) {
	fams, err := ParseMetrics([]byte("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SumMetric(fams, "h", nil); err == nil {
		t.Error("histogram by its family name: want an error")
	}
	if _, err := SumMetric(fams, "h_bucket", nil); err == nil {
		t.Error("h_bucket without le: want an error")
	}
	if names := MetricNames(fams); len(names) != 1 || names[0] != "h" {
		t.Errorf("names %v", names)
	}
}

func TestDecodeProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:10E1":                         "127.0.0.1:4321",
		"00000000:0050":                         "0.0.0.0:80",
		"00000000000000000000000000000000:41EE": "[::]:16878",
		"00000000000000000000000001000000:0016": "[::1]:22",
		"0000000000000000FFFF00000100007F:1F90": "127.0.0.1:8080",
	} {
		got, err := decodeProcAddr(in)
		if err != nil || got != want {
			t.Errorf("decodeProcAddr(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
}
