package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// redEnv is an agent exporting spans and metrics (every second) to an
// in-test OTLP receiver, scraped every second by a real Prometheus.
type redEnv struct {
	*env
	prom *harness.Prometheus
}

func startREDEnv(t *testing.T, args ...string) *redEnv {
	t.Helper()
	e := startAgentOTLP(t, []string{"OTEL_METRIC_EXPORT_INTERVAL=1000"}, args...)
	return &redEnv{env: e, prom: harness.RunPrometheus(t, e.agent.MetricsAddr)}
}

// vectorByService maps a PromQL result to service_name → value.
func vectorByService(v model.Vector) map[string]float64 {
	out := make(map[string]float64)
	for _, s := range v {
		out[string(s.Metric["service_name"])] = float64(s.Value)
	}
	return out
}

// waitPromQL waits until the query's result, by service, equals want.
func (e *redEnv) waitPromQL(t *testing.T, query string, want map[string]float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var last map[string]float64
	_, err := e.prom.WaitQuery(ctx, query, func(v model.Vector) bool {
		last = vectorByService(v)
		return fmt.Sprint(last) == fmt.Sprint(want)
	})
	if err != nil {
		t.Fatalf("PromQL %s = %v, want %v: %v", query, last, want, err)
	}
}

// TestREDMetrics: HTTPS traffic through nginx (OpenSSL) and HTTP traffic
// between a Go client and server, with the agent scraped by a real
// Prometheus: PromQL gives the exact request counts by service, the exact
// error ratio, a p99 within the buckets the requests fell into, and a rate;
// promtool accepts the endpoint; the same counts arrive over OTLP with the
// workload as the resource.
func TestREDMetrics(t *testing.T) {
	ngxExe := harness.CopyExe(t, "nginx", "ngx-red")
	curlExe := harness.CopyExe(t, "curl", "curl-red")
	goBin := filepath.Join(t.TempDir(), "goapp-red")
	if err := os.Rename(buildGoApp(t, t.TempDir(), "", false), goBin); err != nil {
		t.Fatal(err)
	}
	// Every process is traced (no --include-exe): per-process probes are
	// attached after a process starts, and curl can finish its 30
	// requests before that. The private copies' names keep other
	// programs out of the counts.
	e := startREDEnv(t)

	ngx := harness.StartNginx(t, harness.NginxOptions{Exe: ngxExe})
	e.instrumented(t, ngx.WorkerPIDs...)
	// nginx: 20 × 200, 6 × 404, 4 × 503 over one keep-alive connection.
	var urls []string
	for range 20 {
		urls = append(urls, ngx.URL+"/index.html")
	}
	for range 6 {
		urls = append(urls, ngx.URL+"/missing")
	}
	for range 4 {
		urls = append(urls, ngx.URL+"/status/503")
	}
	run(t, curlExe, append([]string{"-sS", "--cacert", ngx.CAFile}, keepAliveArgs(urls)...)...)

	// Go: 40 requests, a quarter 404 and a quarter 503 (goapp's client).
	port := harness.FreePort(t)
	srv := goServer(t, goBin, port)
	goInstrumented(t, e.env, srv.PID)
	cl := startProc(t, nil, goBin, "client", fmt.Sprintf("http://127.0.0.1:%d", port), "40")
	goInstrumented(t, e.env, cl.PID)
	cl.send("")
	cl.mustSucceed(30 * time.Second)

	// The spans themselves, exactly.
	e.spans(t, 30, byPort("ngx-red", kindServer, ngx.Port))
	e.spans(t, 30, byPort("curl-red", kindClient, ngx.Port))
	e.spans(t, 40, byPort("goapp-red", kindServer, port))
	e.spans(t, 40, byPort("goapp-red", kindClient, port))

	services := `service_name=~"ngx-red|goapp-red"`
	// Request counts by service.
	e.waitPromQL(t, `sum by (service_name) (http_server_request_duration_seconds_count{`+services+`})`,
		map[string]float64{"ngx-red": 30, "goapp-red": 40})
	e.waitPromQL(t, `sum by (service_name) (http_client_request_duration_seconds_count{service_name=~"curl-red|goapp-red"})`,
		map[string]float64{"curl-red": 30, "goapp-red": 40})
	// Per status code, as Grafana's "by status" panels split them.
	e.waitPromQL(t, `sum by (service_name) (http_server_request_duration_seconds_count{`+services+`,http_response_status_code="404"})`,
		map[string]float64{"ngx-red": 6, "goapp-red": 10})
	// Error ratio: 5xx over all, for the server side.
	e.waitPromQL(t, `sum by (service_name) (http_server_request_duration_seconds_count{`+services+`,http_response_status_code=~"5.."}) / sum by (service_name) (http_server_request_duration_seconds_count{`+services+`})`,
		map[string]float64{"ngx-red": 4.0 / 30, "goapp-red": 10.0 / 40})
	// error.type is the status code for server 5xx.
	e.waitPromQL(t, `sum by (service_name) (http_server_request_duration_seconds_count{`+services+`,error_type="503"})`,
		map[string]float64{"ngx-red": 4, "goapp-red": 10})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// p99 by service: loopback requests finish within the first buckets;
	// histogram_quantile interpolates inside the bucket holding the 99th
	// percentile, so the value lies in (0, that bucket's upper bound].
	p99, err := e.prom.QueryVector(ctx, `histogram_quantile(0.99, sum by (service_name, le) (http_server_request_duration_seconds_bucket{`+services+`}))`)
	if err != nil {
		t.Fatal(err)
	}
	got := vectorByService(p99)
	if len(got) != 2 {
		t.Errorf("p99 by service: %v, want ngx-red and goapp-red", got)
	}
	for svc, v := range got {
		if math.IsNaN(v) || v <= 0 || v > 10 {
			t.Errorf("p99 of %s = %v s, want within the buckets (0, 10]", svc, v)
		}
	}
	// Rate: Prometheus saw the first counts as the series' first samples
	// (no increase yet); 10 more requests make the rate positive and the
	// count exact again.
	run(t, curlExe, append([]string{"-sS", "--cacert", ngx.CAFile}, keepAliveArgs(urls[:10])...)...)
	e.waitPromQL(t, `sum by (service_name) (http_server_request_duration_seconds_count{service_name="ngx-red"})`,
		map[string]float64{"ngx-red": 40})
	e.waitPromQL(t, `sum by (service_name) (increase(http_server_request_duration_seconds_count{service_name="ngx-red"}[1m]) > bool 0)`,
		map[string]float64{"ngx-red": 1})
	rate, err := e.prom.QueryVector(ctx, `sum by (service_name) (rate(http_server_request_duration_seconds_count{service_name="ngx-red"}[1m]))`)
	if err != nil {
		t.Fatal(err)
	}
	if r := vectorByService(rate)["ngx-red"]; !(r > 0) {
		t.Errorf("request rate of ngx-red = %v, want > 0", r)
	}
	// Routes: the status code in /status/NNN is collapsed as an ID.
	routes, err := e.prom.QueryVector(ctx, `sum by (http_route, http_request_method) (http_server_request_duration_seconds_count{service_name="goapp-red"})`)
	if err != nil {
		t.Fatal(err)
	}
	byRoute := map[string]float64{}
	for _, s := range routes {
		byRoute[string(s.Metric["http_request_method"])+" "+string(s.Metric["http_route"])] = float64(s.Value)
	}
	if want := map[string]float64{"GET /hello": 20, "GET /status/{id}": 20}; fmt.Sprint(byRoute) != fmt.Sprint(want) {
		t.Errorf("goapp-red routes %v, want %v", byRoute, want)
	}

	// promtool accepts what the endpoint serves.
	checkPromtool(t, e.agent)

	// OTLP: the same counts, one resource per workload.
	e.waitOTLPCounts(t, "http.server.request.duration", map[string]uint64{"ngx-red": 40, "goapp-red": 40})
	e.waitOTLPCounts(t, "http.client.request.duration", map[string]uint64{"curl-red": 40, "goapp-red": 40})
}

// checkPromtool runs `promtool check metrics` on the agent's /metrics.
func checkPromtool(t *testing.T, a *harness.Agent) {
	t.Helper()
	promtool := harness.LookTool(t, "promtool")
	body := scrape(t, a)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// scrape returns the text of the agent's /metrics.
func scrape(t *testing.T, a *harness.Agent) string {
	t.Helper()
	return run(t, harness.LookTool(t, "curl"), "-sS", "http://"+a.MetricsAddr+"/metrics")
}

// waitOTLPCounts waits until the latest cumulative data points of metric
// received over OTLP sum, per service.name resource attribute, to want.
func (e *redEnv) waitOTLPCounts(t *testing.T, metric string, want map[string]uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got map[string]uint64
	for time.Now().Before(deadline) {
		got = latestCounts(e.recv.Metrics(), metric, want)
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("OTLP %s counts by service %v, want %v", metric, got, want)
}

// latestCounts sums the counts of the newest point of each series (resource
// and attributes) of metric, by service.name, for the services in want.
func latestCounts(ms []otlpreceiver.Metric, metric string, want map[string]uint64) map[string]uint64 {
	latest := map[string]otlpreceiver.Metric{}
	for _, m := range ms {
		svc, _ := m.Resource["service.name"].(string)
		if m.Name != metric || m.Type != "histogram" || m.Temporality != "cumulative" {
			continue
		}
		if _, ok := want[svc]; !ok {
			continue
		}
		key := fmt.Sprint(m.Resource, m.Attributes)
		if prev, ok := latest[key]; !ok || m.Time.After(prev.Time) {
			latest[key] = m
		}
	}
	out := map[string]uint64{}
	for _, m := range latest {
		out[m.Resource["service.name"].(string)] += m.Count
	}
	return out
}

// TestRouteCardinality: 10,000 distinct numeric paths make one route
// series; past a service's series cap, new series fold into
// http.route="_overflow" and the overflow is counted.
func TestRouteCardinality(t *testing.T) {
	ngxExe := harness.CopyExe(t, "nginx", "ngx-card")
	curlExe := harness.CopyExe(t, "curl", "curl-card")
	cfg := filepath.Join(t.TempDir(), "periscope.yaml")
	if err := os.WriteFile(cfg, []byte("metrics:\n  max_series_per_service: 3\n  route_patterns: [\"/shop/{item}\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := startREDEnv(t, "--config", cfg)
	ngx := harness.StartNginx(t, harness.NginxOptions{Exe: ngxExe})
	e.instrumented(t, ngx.WorkerPIDs...)

	// 10,000 numeric IDs over one connection (curl's URL globbing).
	run(t, curlExe, "-sS", "--cacert", ngx.CAFile, "-o", "/dev/null", ngx.URL+"/items/[1-10000]")
	// A configured pattern: 5 paths, one series.
	run(t, curlExe, "-sS", "--cacert", ngx.CAFile, "-o", "/dev/null", ngx.URL+"/shop/{apple,pear,plum,fig,kiwi}")
	// Series 3 of 3, then 4 more words that are routes of their own:
	// folded into the overflow series.
	run(t, curlExe, "-sS", "--cacert", ngx.CAFile, "-o", "/dev/null", ngx.URL+"/{alpha,bravo,charlie,delta,echo}")

	e.waitPromQL(t, `sum by (service_name) (http_server_request_duration_seconds_count{service_name="ngx-card"})`,
		map[string]float64{"ngx-card": 10010})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := e.prom.QueryVector(ctx, `sum by (http_route) (http_server_request_duration_seconds_count{service_name="ngx-card"})`)
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]float64{}
	for _, s := range v {
		routes[string(s.Metric["http_route"])] = float64(s.Value)
	}
	want := map[string]float64{"/items/{id}": 10000, "/shop/{item}": 5, "/alpha": 1, "_overflow": 4}
	if fmt.Sprint(routes) != fmt.Sprint(want) {
		t.Errorf("routes %v, want %v", routes, want)
	}
	// The client side (curl) is its own service with its own cap.
	waitMetric(t, e.agent, "periscope_metric_series_overflowed_total", map[string]string{"metric": "http.server.request.duration", "service_name": "ngx-card"}, "4", equals(4))
}
