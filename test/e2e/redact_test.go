package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// (curl blanks the arguments of -u and --proxy-user in its own memory,
// so /proc shows spaces there: those are tested in internal/redact.)

// redactClient is a python HTTPS client that ignores its arguments after
// the first two: they only carry the planted secrets.
const redactClient = `import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
urllib.request.urlopen(sys.argv[1] + "/index.html", context=ctx).read()
print("done 1", flush=True)`

// TestCommandLineRedaction: credentials planted on the command lines of a
// curl (headers, URL userinfo and query) and of a python client (flags,
// NAME=value, a DSN) appear nowhere the agent sends or shows anything: OTLP
// traces and metrics, Prometheus /metrics, /status, the console and the
// agent's logs; the rest of each command line is still there.
func TestCommandLineRedaction(t *testing.T) {
	e := startAgentOTLP(t, []string{"OTEL_METRIC_EXPORT_INTERVAL=500"}, "--log-level=debug")
	ngx := harness.StartNginx(t, harness.NginxOptions{})
	e.instrumented(t, ngx.WorkerPIDs...)
	curl := harness.LookTool(t, "curl")
	secret := plantSecrets(t, "bearer", "cookie", "apikey", "urlpass", "query", "flag", "env", "next", "dsn", "dsnquery")

	host := strings.TrimPrefix(ngx.URL, "https://")
	curlURL := fmt.Sprintf("https://app:%s@%s/index.html?token=%s", secret["urlpass"], host, secret["query"])
	run(t, curl, "-sS", "-o", "/dev/null", "--cacert", ngx.CAFile,
		"-H", "Authorization: Bearer "+secret["bearer"],
		"-H", "Cookie: session="+secret["cookie"],
		"-H", "X-Api-Key: "+secret["apikey"], curlURL)

	py := python(t)
	cli := startProc(t, nil, py, "-c", redactClient, ngx.URL, ngx.CAFile,
		"--password="+secret["flag"], "DB_TOKEN="+secret["env"], "--api-key", secret["next"],
		fmt.Sprintf("postgres://app:%s@db:5432/app?sslpassword=%s", secret["dsn"], secret["dsnquery"]), "--verbose")
	if got := cli.expect("done", 30*time.Second); got != "1" {
		t.Fatalf("python client: %q", got)
	}
	cli.mustSucceed(10 * time.Second)

	curlSpan := e.spans(t, 1, byPort("curl", kindClient, ngx.Port))[0]
	pySpan := e.spans(t, 1, byPIDs(kindClient, cli.PID))[0]
	e.spans(t, 2, byPort("nginx", kindServer, ngx.Port))
	wantArgs(t, curlSpan, curl, []string{"-sS", "-o", "/dev/null", "--cacert", ngx.CAFile,
		"-H", "Authorization: REDACTED", "-H", "Cookie: REDACTED", "-H", "X-Api-Key: REDACTED",
		"https://REDACTED@" + host + "/index.html?token=REDACTED"})
	wantArgs(t, pySpan, py, []string{"-c", redactClient, ngx.URL, ngx.CAFile,
		"--password=REDACTED", "DB_TOKEN=REDACTED", "--api-key", "REDACTED",
		"postgres://REDACTED@db:5432/app?sslpassword=REDACTED", "--verbose"})

	// The OTLP request metrics of both clients have arrived.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.recv.WaitForMetrics(ctx, 1, func(m otlpreceiver.Metric) bool {
		return m.Name == "http.client.request.duration" && m.Resource["process.executable.name"] == "curl"
	}); err != nil {
		t.Fatalf("no OTLP client metrics from curl: %v", err)
	}

	places := map[string]string{
		"OTLP traces":  fmt.Sprintf("%#v", e.recv.Spans()),
		"OTLP metrics": fmt.Sprintf("%#v", e.recv.Metrics()),
		"/metrics":     agentGet(t, e.agent, "/metrics"),
		"/status":      agentGet(t, e.agent, "/status"),
	}
	if code := e.agent.Stop(); code != 0 {
		t.Errorf("agent exited with %d", code)
	}
	places["console and logs"] = e.agent.Logs()
	if !strings.Contains(places["console and logs"], "Authorization: REDACTED") {
		t.Errorf("the console does not show curl's redacted command line")
	}
	for where, text := range places {
		for what, s := range secret {
			if strings.Contains(text, s) {
				t.Errorf("the %s secret %s appears in %s", what, s, where)
			}
		}
	}
}

// TestCommandArgsOff: processes.command_args=off leaves the arguments out;
// the command stays.
func TestCommandArgsOff(t *testing.T) {
	e := startAgentOTLP(t, []string{"PERISCOPE_PROCESSES_COMMAND_ARGS=off"})
	ngx := harness.StartNginx(t, harness.NginxOptions{})
	e.instrumented(t, ngx.WorkerPIDs...)
	curl := harness.LookTool(t, "curl")
	run(t, curl, "-sS", "-o", "/dev/null", "--cacert", ngx.CAFile, ngx.URL+"/index.html")
	s := e.spans(t, 1, byPort("curl", kindClient, ngx.Port))[0]
	if args, ok := s.Resource["process.command_args"]; ok {
		t.Errorf("process.command_args %v with command_args=off", args)
	}
	if got := s.Resource["process.command"]; got != curl {
		t.Errorf("process.command %v, want %s", got, curl)
	}
}

// plantSecrets returns a distinct random secret per name.
func plantSecrets(t *testing.T, names ...string) map[string]string {
	t.Helper()
	out := make(map[string]string, len(names))
	for _, n := range names {
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		out[n] = "S3CRET" + hex.EncodeToString(b)
	}
	return out
}

// wantArgs checks a span's process.command and process.command_args.
func wantArgs(t *testing.T, s otlpreceiver.Span, command string, args []string) {
	t.Helper()
	if got := s.Resource["process.command"]; got != command {
		t.Errorf("process.command %v, want %s", got, command)
	}
	raw, _ := s.Resource["process.command_args"].([]any)
	got := make([]string, len(raw))
	for i, a := range raw {
		got[i], _ = a.(string)
	}
	if !slices.Equal(got, args) {
		t.Errorf("process.command_args\n got %q\nwant %q", got, args)
	}
}

// agentGet returns the body of GET path on the agent's metrics address.
func agentGet(t *testing.T, a *harness.Agent, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + a.MetricsAddr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", path, resp.Status, err)
	}
	return string(b)
}
