package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/periscope-apm/periscope/test/e2e/harness"
)

// exportedMetrics reads deploy/test/metrics.txt: the metric families the
// dashboards and alert rules may use, with their labels (deploy/test checks
// the queries against it).
func exportedMetrics(t *testing.T) map[string]map[string]bool {
	t.Helper()
	path := filepath.Join(harness.RepoRoot(t), "deploy", "test", "metrics.txt")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		labels := map[string]bool{}
		for _, l := range fields[2:] {
			labels[l] = true
		}
		out[fields[0]] = labels
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// dashboardQuery is one PromQL query of a dashboard, variables substituted.
type dashboardQuery struct {
	where string
	expr  string
}

var (
	grafanaInterval = regexp.MustCompile(`\$\{?__(rate_interval|interval|range)\}?`)
	grafanaVariable = regexp.MustCompile(`\$\{[a-zA-Z_]\w*\}|\$[a-zA-Z_]\w*`)
	labelValuesCall = regexp.MustCompile(`^label_values\((.*),\s*(\w+)\)$`)
)

// dashboardQueries returns every panel query of deploy/grafana/*.json, and
// each label_values variable as `count by (LABEL) (SELECTOR)`, with the
// interval variables set to 1m and every other variable to ".*" (all
// values, as Grafana's "All").
func dashboardQueries(t *testing.T) []dashboardQuery {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(harness.RepoRoot(t), "deploy", "grafana", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in deploy/grafana (%v)", err)
	}
	subst := func(s string) string {
		return grafanaVariable.ReplaceAllString(grafanaInterval.ReplaceAllString(s, "1m"), ".*")
	}
	var out []dashboardQuery
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				ID      int    `json:"id"`
				Title   string `json:"title"`
				Targets []struct {
					RefID string `json:"refId"`
					Expr  string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		// The datasource variable's query is a plain string, the others
		// objects: decode each variable by its type.
		var raw struct {
			Templating struct {
				List []json.RawMessage `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(b, &raw); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, v := range raw.Templating.List {
			var hdr struct{ Type string }
			_ = json.Unmarshal(v, &hdr)
			if hdr.Type != "query" {
				continue
			}
			var q struct {
				Name  string
				Query struct{ Query string }
			}
			if err := json.Unmarshal(v, &q); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			m := labelValuesCall.FindStringSubmatch(q.Query.Query)
			if m == nil {
				t.Fatalf("%s: variable %s: %q is not label_values(SELECTOR, LABEL)", file, q.Name, q.Query.Query)
			}
			out = append(out, dashboardQuery{
				where: fmt.Sprintf("%s variable %s", filepath.Base(file), q.Name),
				expr:  fmt.Sprintf("count by (%s) (%s)", m[2], subst(m[1])),
			})
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				out = append(out, dashboardQuery{
					where: fmt.Sprintf("%s panel %d %q target %s", filepath.Base(file), p.ID, p.Title, tg.RefID),
					expr:  subst(tg.Expr),
				})
			}
		}
	}
	return out
}

// TestDashboards drives HTTPS (nginx and curl, OpenSSL) and Go net/http
// traffic (with 404s and 503s), a TCP connection attempt whose SYNs are
// dropped (retransmissions) and OTLP exports to a closed port (export
// failures) and a series cap of 2 per service (overflow) with the agent running and a real Prometheus scraping it. Then:
// the agent's /metrics has every family of deploy/test/metrics.txt with no
// label that list lacks, and every panel query and variable of every
// dashboard in deploy/grafana returns data.
func TestDashboards(t *testing.T) {
	harness.RequireRoot(t)
	ngx := harness.StartNginx(t, harness.NginxOptions{Workers: 1})
	goBin := buildGoApp(t, t.TempDir(), "", false)
	a := startAgentEnv(t, []string{
		// Nothing listens there: export failures and dropped spans.
		fmt.Sprintf("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:%d", harness.FreePort(t)),
		"OTEL_EXPORTER_OTLP_INSECURE=true",
		// Fail fast: each export gives up after 2 s (the shutdown's flush
		// too, which TestFaultOTLPUnreachable holds to its own limits).
		"OTEL_EXPORTER_OTLP_TIMEOUT=2000",
		"OTEL_METRIC_EXPORT_TIMEOUT=2000",
		"OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_METRIC_EXPORT_INTERVAL=1000",
		// Two series per service: the Go server's third overflows.
		"PERISCOPE_METRICS_MAX_SERIES_PER_SERVICE=2",
		// Resource metrics read every second, not 15.
		"PERISCOPE_PROCESS_METRICS_INTERVAL=1s",
	}, "--console=off", "--include-exe", ngx.Exe, "--include-exe", "curl", "--include-exe", filepath.Base(goBin))
	prom := harness.RunPrometheus(t, a.MetricsAddr)

	port := harness.FreePort(t)
	srv := goServer(t, goBin, port)
	if _, err := a.WaitInstrumented(context.Background(), srv.PID); err != nil {
		t.Fatal(err)
	}
	curl := harness.LookTool(t, "curl")
	// A new series enters Prometheus with the count it has at its first
	// scrape, so rate() over it is 0 until it grows again: the traffic comes
	// in two waves, the second once Prometheus has scraped the first.
	wave := func() {
		// HTTPS: one curl, 30 requests on one keep-alive connection (200s and 404s).
		var urls []string
		for i := range 30 {
			if i%10 == 9 {
				urls = append(urls, ngx.URL+"/missing")
			} else {
				urls = append(urls, ngx.URL+"/index.html")
			}
		}
		run(t, curl, append([]string{"-sS", "--cacert", ngx.CAFile}, keepAliveArgs(urls)...)...)
		// Go: a client, 40 requests to the Go server (/hello, 404, 503).
		cl := startProc(t, nil, goBin, "client", fmt.Sprintf("http://127.0.0.1:%d", port), "40")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := a.WaitInstrumented(ctx, cl.PID); err != nil {
			t.Fatal(err)
		}
		cl.send("")
		cl.mustSucceed(30 * time.Second)
		// TCP retransmissions: SYNs to a port whose packets are dropped.
		synRetransmitsCounted(t, a)
	}
	wave()

	// The agent's families against the list the dashboards are checked with.
	exported := exportedMetrics(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		fams := a.MetricFamilies(t)
		var missing, extra []string
		for name := range exported {
			if _, ok := fams[name]; !ok {
				missing = append(missing, name)
			}
		}
		for name, f := range fams {
			want, listed := exported[name]
			if !listed {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, lp := range m.GetLabel() {
					if !want[lp.GetName()] {
						extra = append(extra, name+"{"+lp.GetName()+"}")
					}
				}
			}
		}
		sort.Strings(missing)
		extra = uniq(extra)
		if len(missing) == 0 && len(extra) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent's /metrics does not match deploy/test/metrics.txt:\n  families listed but not exported: %v\n  labels exported but not listed: %v\n  exported families: %v",
				missing, extra, harness.MetricNames(fams))
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Prometheus has the first wave once it has scraped the agent twice
	// more; then the second wave, scraped likewise.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := prom.WaitScraped(ctx, a.MetricsAddr); err != nil {
		t.Fatal(err)
	}
	wave()
	if err := prom.WaitScraped(ctx, a.MetricsAddr); err != nil {
		t.Fatal(err)
	}
	queries := dashboardQueries(t)
	empty := 0
	for _, q := range queries {
		qctx, qcancel := context.WithTimeout(context.Background(), 20*time.Second)
		vec, err := prom.WaitQuery(qctx, q.expr, func(v model.Vector) bool { return hasNumber(v) })
		qcancel()
		if err != nil {
			empty++
			t.Errorf("%s returns no data: %s\n  %v", q.where, q.expr, err)
			continue
		}
		t.Logf("%s: %d series, e.g. %s", q.where, len(vec), vec[0])
	}
	t.Logf("%d dashboard queries, %d without data", len(queries), empty)
}

// hasNumber reports whether a vector has a sample that is a number (a
// histogram_quantile over no traffic is NaN: a panel with no line).
func hasNumber(v model.Vector) bool {
	for _, s := range v {
		if !math.IsNaN(float64(s.Value)) {
			return true
		}
	}
	return false
}

func uniq(s []string) []string {
	sort.Strings(s)
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
