package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Jaeger is a running Jaeger v2 all-in-one (in-memory storage) started by RunJaeger,
// listening on loopback only.
type Jaeger struct {
	Bin string
	// OTLPEndpoint is the OTLP/gRPC receiver, "127.0.0.1:PORT" (no scheme).
	OTLPEndpoint string
	// OTLPHTTPEndpoint is the OTLP/HTTP receiver, "127.0.0.1:PORT" (POST /v1/traces).
	OTLPHTTPEndpoint string
	// QueryURL is the query API/UI base, "http://127.0.0.1:PORT".
	QueryURL   string
	ConfigFile string
	LogFile    string
	PID        int

	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{}
}

// JaegerTrace is one trace from the query API (/api/traces).
type JaegerTrace struct {
	TraceID   string                   `json:"traceID"`
	Spans     []JaegerSpan             `json:"spans"`
	Processes map[string]JaegerProcess `json:"processes"`
	Warnings  []string                 `json:"warnings"`
}

// JaegerSpan is a span of a JaegerTrace. Process is filled in from the trace's
// processes by ProcessID.
type JaegerSpan struct {
	TraceID       string            `json:"traceID"`
	SpanID        string            `json:"spanID"`
	OperationName string            `json:"operationName"`
	References    []JaegerReference `json:"references"`
	StartTime     int64             `json:"startTime"` // µs since the epoch
	Duration      int64             `json:"duration"`  // µs
	Tags          []JaegerKeyValue  `json:"tags"`
	ProcessID     string            `json:"processID"`
	Warnings      []string          `json:"warnings"`
	Process       JaegerProcess     `json:"-"`
}

// JaegerReference links a span to another one. RefType is "CHILD_OF" or "FOLLOWS_FROM".
type JaegerReference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// JaegerKeyValue is a tag. Type is "string", "bool", "int64", "float64" or
// "binary"; Value is decoded from JSON (numbers as float64 or json.Number-free
// float64, strings as string).
type JaegerKeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// JaegerProcess is the process (resource) a span came from.
type JaegerProcess struct {
	ServiceName string           `json:"serviceName"`
	Tags        []JaegerKeyValue `json:"tags"`
}

// Tag returns the value of the tag key.
func (s JaegerSpan) Tag(key string) (any, bool) {
	for _, kv := range s.Tags {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// TagString returns the tag key formatted with %v ("" when absent).
func (s JaegerSpan) TagString(key string) string {
	v, ok := s.Tag(key)
	if !ok {
		return ""
	}
	if f, ok := v.(float64); ok && f == float64(int64(f)) {
		return fmt.Sprintf("%d", int64(f))
	}
	return fmt.Sprint(v)
}

// ParentSpanID returns the span ID of the CHILD_OF reference ("" for a root span).
func (s JaegerSpan) ParentSpanID() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Span returns the span with the given ID.
func (tr JaegerTrace) Span(spanID string) (JaegerSpan, bool) {
	for _, s := range tr.Spans {
		if s.SpanID == spanID {
			return s, true
		}
	}
	return JaegerSpan{}, false
}

// jaegerConfig is a complete Jaeger v2 configuration: OTLP receivers, in-memory
// storage, query API, health check, all on 127.0.0.1, no self-telemetry listener
// and no self-tracing (which would export to the default 127.0.0.1:4317).
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: info

extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:%[1]d
  jaeger_query:
    enable_tracing: false
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:%[2]d
    grpc:
      endpoint: 127.0.0.1:%[3]d
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 100000

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%[4]d
      http:
        endpoint: 127.0.0.1:%[5]d

processors:
  batch:
    timeout: 200ms

exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

// JaegerBinary returns the Jaeger binary, building it with `scripts/tools.sh jaeger`
// when the cache does not have it yet (several minutes the first time).
func JaegerBinary(t testing.TB) string {
	t.Helper()
	return ToolBinary(t, "jaeger")
}

// ToolBinary runs `scripts/tools.sh name` from the repository root and returns the
// path it prints. The build log goes to the test's stderr.
func ToolBinary(t testing.TB, name string) string {
	t.Helper()
	root := RepoRoot(t)
	script := filepath.Join(root, "scripts", "tools.sh")
	bash := LookTool(t, "bash")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bash, script, name)
	cmd.Dir = root
	cmd.Stdout = &stdout
	cmd.Stderr = io.MultiWriter(&stderr, os.Stderr)
	// tools.sh needs go: make sure it finds the same toolchain under sudo.
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(GoTool(t))+string(os.PathListSeparator)+os.Getenv("PATH"))
	if err := cmd.Run(); err != nil {
		t.Fatalf("scripts/tools.sh %s failed: %v\n%s", name, err, tail2(stderr.String(), 8<<10))
	}
	path := strings.TrimSpace(stdout.String())
	if fi, err := os.Stat(path); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("scripts/tools.sh %s printed %q, which is not an executable", name, path)
	}
	return path
}

func tail2(s string, max int) string {
	if len(s) > max {
		return "...\n" + s[len(s)-max:]
	}
	return s
}

// RunJaeger starts Jaeger v2 with in-memory storage on free loopback ports, waits
// until its health check and query API answer, and stops it in t.Cleanup.
//
// FreePort only knows that a port was free a moment ago: another process may
// bind it before Jaeger does. When Jaeger exits saying an address is in use,
// it is started again on new ports (at most three attempts in all).
func RunJaeger(t testing.TB) *Jaeger {
	t.Helper()
	bin := JaegerBinary(t)
	const attempts = 3
	for i := 1; ; i++ {
		j, err := startJaeger(t, bin)
		if err == nil {
			return j
		}
		if i == attempts || !errors.Is(err, errAddrInUse) {
			t.Fatalf("RunJaeger: %v", err)
		}
		t.Logf("RunJaeger: attempt %d: %v; starting again on new ports", i, err)
	}
}

// errAddrInUse marks a start that failed because a port was taken.
var errAddrInUse = errors.New("address already in use")

// startJaeger makes one attempt to start Jaeger on fresh ports.
func startJaeger(t testing.TB, bin string) (*Jaeger, error) {
	dir := t.TempDir()
	health, qhttp, qgrpc, ogrpc, ohttp := FreePort(t), FreePort(t), FreePort(t), FreePort(t), FreePort(t)
	j := &Jaeger{
		Bin:              bin,
		OTLPEndpoint:     fmt.Sprintf("127.0.0.1:%d", ogrpc),
		OTLPHTTPEndpoint: fmt.Sprintf("127.0.0.1:%d", ohttp),
		QueryURL:         fmt.Sprintf("http://127.0.0.1:%d", qhttp),
		ConfigFile:       filepath.Join(dir, "jaeger.yaml"),
		LogFile:          filepath.Join(dir, "jaeger.log"),
		t:                t,
		done:             make(chan struct{}),
	}
	cfg := fmt.Sprintf(jaegerConfig, health, qhttp, qgrpc, ogrpc, ohttp)
	if err := os.WriteFile(j.ConfigFile, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(j.LogFile)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	j.cmd = exec.Command(bin, "--config", j.ConfigFile)
	j.cmd.Dir = dir
	j.cmd.Stdout, j.cmd.Stderr = logf, logf
	j.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	dumpOnFailure(t, "jaeger", j.ConfigFile, j.LogFile)
	start := time.Now()
	if err := j.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	j.PID = j.cmd.Process.Pid
	go func() {
		_ = j.cmd.Wait()
		close(j.done)
	}()
	t.Cleanup(j.Stop)
	if err := j.waitReady(health); err != nil {
		j.Stop()
		log := tail(j.LogFile, 8<<10)
		if strings.Contains(log, "address already in use") {
			return nil, fmt.Errorf("%w: %v", errAddrInUse, err)
		}
		return nil, fmt.Errorf("%v\nlog:\n%s", err, log)
	}
	t.Logf("jaeger ready in %v: OTLP gRPC %s, OTLP HTTP %s, query %s", time.Since(start).Round(time.Millisecond),
		j.OTLPEndpoint, j.OTLPHTTPEndpoint, j.QueryURL)
	return j, nil
}

// waitReady waits until the health check, the query API and the OTLP gRPC
// receiver answer, or Jaeger exits, or a minute has passed.
func (j *Jaeger) waitReady(health int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	healthURL := fmt.Sprintf("http://127.0.0.1:%d/status", health)
	for _, u := range []string{healthURL, j.QueryURL + "/api/services"} {
		if err := waitHTTP200(ctx, u, j.done); err != nil {
			return err
		}
	}
	if err := waitTCP(ctx, j.OTLPEndpoint, j.done); err != nil {
		return fmt.Errorf("OTLP gRPC: %w", err)
	}
	return nil
}

func waitHTTP200(ctx context.Context, u string, exited <-chan struct{}) error {
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("GET %s: not 200 in time (last: %s)", u, last)
		case <-exited:
			return fmt.Errorf("process exited while waiting for GET %s (last: %s)", u, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops Jaeger (SIGTERM, SIGKILL after 15 s). Called in t.Cleanup.
func (j *Jaeger) Stop() {
	select {
	case <-j.done:
		return
	default:
	}
	_ = j.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-j.done:
	case <-time.After(15 * time.Second):
		j.t.Logf("jaeger pid %d ignored SIGTERM for 15 s: killing it", j.PID)
		_ = j.cmd.Process.Kill()
		<-j.done
	}
}

func (j *Jaeger) getJSON(path string, q url.Values, v any) error {
	u := j.QueryURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, tail2(string(body), 2048))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: decode: %w: %s", u, err, tail2(string(body), 2048))
	}
	return nil
}

// Services returns the service names Jaeger has seen (GET /api/services).
func (j *Jaeger) Services() ([]string, error) {
	var r struct {
		Data []string `json:"data"`
	}
	if err := j.getJSON("/api/services", nil, &r); err != nil {
		return nil, err
	}
	return r.Data, nil
}

// Traces returns the traces that have spans of service (GET /api/traces, the last
// 24 hours, up to 100000 traces). Each span's Process is filled in, and trace IDs
// (32) and span IDs (16) are zero-padded to full-length lowercase hex, as in OTLP.
func (j *Jaeger) Traces(service string) ([]JaegerTrace, error) {
	now := time.Now()
	q := url.Values{
		"service": {service},
		"start":   {fmt.Sprint(now.Add(-24 * time.Hour).UnixMicro())},
		"end":     {fmt.Sprint(now.Add(time.Hour).UnixMicro())},
		"limit":   {"100000"},
	}
	var r struct {
		Data   []JaegerTrace `json:"data"`
		Errors []struct {
			Code int    `json:"code"`
			Msg  string `json:"msg"`
		} `json:"errors"`
	}
	if err := j.getJSON("/api/traces", q, &r); err != nil {
		return nil, err
	}
	if len(r.Errors) > 0 {
		return nil, fmt.Errorf("/api/traces: %v", r.Errors)
	}
	for i := range r.Data {
		tr := &r.Data[i]
		tr.TraceID = padID(tr.TraceID, 32)
		for k := range tr.Spans {
			s := &tr.Spans[k]
			s.Process = tr.Processes[s.ProcessID]
			s.TraceID = padID(s.TraceID, 32)
			s.SpanID = padID(s.SpanID, 16)
			for m := range s.References {
				s.References[m].TraceID = padID(s.References[m].TraceID, 32)
				s.References[m].SpanID = padID(s.References[m].SpanID, 16)
			}
		}
	}
	return r.Data, nil
}

// padID left-pads a hex ID with zeros: the query API drops the zero high half of a
// trace ID ("18ea0f9be5d43577" for 000000000000000018ea0f9be5d43577).
func padID(id string, n int) string {
	if len(id) >= n {
		return id
	}
	return strings.Repeat("0", n-len(id)) + id
}

// WaitTraces polls Traces(service) every 200 ms until done returns true for the
// result, and returns that result. On timeout the error holds the last result's size.
func (j *Jaeger) WaitTraces(ctx context.Context, service string, done func([]JaegerTrace) bool) ([]JaegerTrace, error) {
	var last []JaegerTrace
	var lastErr error
	for {
		trs, err := j.Traces(service)
		if err == nil {
			last, lastErr = trs, nil
			if done(trs) {
				return trs, nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return last, fmt.Errorf("waiting for traces of %q: %w (last error: %v)", service, ctx.Err(), lastErr)
			}
			return last, fmt.Errorf("waiting for traces of %q: %w (last result: %d traces, %d spans)",
				service, ctx.Err(), len(last), countSpans(last))
		case <-j.done:
			return last, fmt.Errorf("jaeger exited while waiting for traces of %q", service)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func countSpans(trs []JaegerTrace) int {
	n := 0
	for _, tr := range trs {
		n += len(tr.Spans)
	}
	return n
}
