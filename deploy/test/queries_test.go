package deploytest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = map[string]bool{"job": true, "instance": true}

func dashboards(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../grafana/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in deploy/grafana: %v", err)
	}
	return files
}

// checkNames parses expr and checks every metric and label name in it
// against series; it returns the metric names used.
func checkNames(expr string, series map[string]map[string]bool) ([]string, error) {
	node, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	var errs []string
	var used []string
	allowed := map[string]bool{} // labels of every metric of the query
	for k := range targetLabels {
		allowed[k] = true
	}
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			errs = append(errs, fmt.Sprintf("selector %s has no metric name", vs))
			return nil
		}
		labels, ok := series[name]
		if !ok {
			errs = append(errs, fmt.Sprintf("metric %s is not exported by the agent", name))
			return nil
		}
		used = append(used, name)
		for l := range labels {
			allowed[l] = true
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == "__name__" {
				continue
			}
			if !labels[m.Name] && !targetLabels[m.Name] {
				errs = append(errs, fmt.Sprintf("%s has no label %s", name, m.Name))
			}
		}
		return nil
	})
	// Grouping labels (by, without, on, ignoring) must exist on some metric
	// of the query.
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		var ls []string
		switch x := n.(type) {
		case *parser.AggregateExpr:
			ls = x.Grouping
		case *parser.BinaryExpr:
			if x.VectorMatching != nil {
				ls = append(append(ls, x.VectorMatching.MatchingLabels...), x.VectorMatching.Include...)
			}
		}
		for _, l := range ls {
			if !allowed[l] {
				errs = append(errs, fmt.Sprintf("grouping label %s is on none of the query's metrics", l))
			}
		}
		return nil
	})
	if len(errs) > 0 {
		return used, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return used, nil
}

var legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// TestDashboardQueries parses every panel query and variable of every
// dashboard and checks its metric and label names, and that the legend
// names only labels the query keeps.
func TestDashboardQueries(t *testing.T) {
	metrics, err := ReadMetrics("metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	series := Series(metrics)
	usedAll := map[string]bool{}
	for _, file := range dashboards(t) {
		d, err := ReadDashboard(file)
		if err != nil {
			t.Fatal(err)
		}
		qs, err := d.Queries(filepath.Base(file))
		if err != nil {
			t.Fatal(err)
		}
		if len(qs) == 0 {
			t.Errorf("%s has no queries", file)
		}
		for _, q := range qs {
			used, err := checkNames(Substitute(q.Expr, "1m", ".*"), series)
			if err != nil {
				t.Errorf("%s: %s\n  %v", q.Where, q.Expr, err)
			}
			for _, u := range used {
				usedAll[u] = true
			}
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				for _, m := range legendLabel.FindAllStringSubmatch(tg.LegendFormat, -1) {
					if !strings.Contains(tg.Expr, m[1]) {
						t.Errorf("%s panel %q: legend {{%s}} is not a label of %s", file, p.Title, m[1], tg.Expr)
					}
				}
			}
		}
	}
	t.Logf("dashboards use %d series names: %v", len(usedAll), sortedKeys(usedAll))
}

// TestDashboardStructure checks what Grafana needs to import a dashboard
// anywhere: a datasource variable that every panel and target uses, unique
// panel IDs, a UID and a title.
func TestDashboardStructure(t *testing.T) {
	uids := map[string]string{}
	for _, file := range dashboards(t) {
		d, err := ReadDashboard(file)
		if err != nil {
			t.Fatal(err)
		}
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: uid %q title %q", file, d.UID, d.Title)
		}
		if other, ok := uids[d.UID]; ok {
			t.Errorf("%s and %s share the uid %q", file, other, d.UID)
		}
		uids[d.UID] = file
		hasDS := false
		for _, v := range d.Templating.List {
			if v.Name == "datasource" && v.Type == "datasource" {
				hasDS = true
			}
			if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
				t.Errorf("%s: variable %s does not use ${datasource}", file, v.Name)
			}
		}
		if !hasDS {
			t.Errorf("%s: no datasource variable", file)
		}
		ids := map[int]bool{}
		for _, p := range d.Panels {
			if ids[p.ID] {
				t.Errorf("%s: duplicate panel id %d", file, p.ID)
			}
			ids[p.ID] = true
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: panel %q does not use ${datasource}", file, p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
					t.Errorf("%s: panel %q target %s does not use ${datasource}", file, p.Title, tg.RefID)
				}
			}
		}
	}
}

// TestDashboardsCover checks that the four dashboards the issue asks for
// exist and show what they should.
func TestDashboardsCover(t *testing.T) {
	want := map[string][]string{
		"services.json":  {"http_server_request_duration_seconds_count", "http_server_request_duration_seconds_bucket", "histogram_quantile(0.5", "histogram_quantile(0.95", "histogram_quantile(0.99", "error_type", "http_route"},
		"workloads.json": {"k8s_namespace_name=~\"$namespace\"", "k8s_deployment_name=~\"$deployment\"", "k8s_pod_name=~\"$pod\""},
		"network.json":   {"periscope_tcp_retransmits_total", "network_peer_address", "k8s_deployment_name"},
		"agent.json":     {"periscope_events_dropped_total", "periscope_export_failures_total", "periscope_probes_attached"},
	}
	for file, needles := range want {
		b, err := os.ReadFile(filepath.Join("../grafana", file))
		if err != nil {
			t.Error(err)
			continue
		}
		for _, n := range needles {
			if !strings.Contains(string(b), strings.ReplaceAll(n, `"`, `\"`)) {
				t.Errorf("%s does not use %s", file, n)
			}
		}
	}
}

// ruleFile is the part of a Prometheus rule file the checks read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert  string `yaml:"alert"`
			Record string `yaml:"record"`
			Expr   string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestAlertQueries checks the alert rules' expressions like the dashboards',
// and that every alert has a promtool unit test that names it.
func TestAlertQueries(t *testing.T) {
	metrics, err := ReadMetrics("metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	tests, _ := filepath.Glob("../prometheus/tests/*.yaml")
	var testText strings.Builder
	for _, f := range tests {
		tb, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		testText.Write(tb)
	}
	var alerts []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if _, err := checkNames(r.Expr, Series(metrics)); err != nil {
				t.Errorf("alert %s: %v", r.Alert, err)
			}
			if r.Alert != "" {
				alerts = append(alerts, r.Alert)
				if !strings.Contains(testText.String(), "alertname: "+r.Alert+"\n") {
					t.Errorf("alert %s has no unit test in deploy/prometheus/tests", r.Alert)
				}
			}
		}
	}
	sort.Strings(alerts)
	want := []string{"PeriscopeDroppingEvents", "PeriscopeFileDescriptorLeak", "PeriscopeHighErrorRatio", "PeriscopeHighLatencyP99", "PeriscopeTCPRetransmitBurst"}
	if strings.Join(alerts, ",") != strings.Join(want, ",") {
		t.Errorf("alerts %v, want %v", alerts, want)
	}
}

// TestCheckNamesRejects makes sure the checker catches what it should.
func TestCheckNamesRejects(t *testing.T) {
	series := Series(map[string]Metric{
		"h": {Name: "h", Type: "histogram", Labels: map[string]bool{"service_name": true}},
		"c": {Name: "c", Type: "counter", Labels: map[string]bool{"collector": true}},
	})
	tests := []struct {
		expr string
		want string // "" = valid
	}{
		{`sum by (service_name, le) (rate(h_bucket{service_name=~".*"}[1m]))`, ""},
		{`sum by (instance) (rate(c[1m]))`, ""},
		{`rate(h[1m])`, "metric h is not exported"},
		{`rate(nope_total[1m])`, "metric nope_total is not exported"},
		{`rate(c{colector="x"}[1m])`, "c has no label colector"},
		{`sum by (pod) (rate(c[1m]))`, "grouping label pod"},
		{`c / on (servce_name) h_count`, "grouping label servce_name"},
		{`{__name__=~"c.*"}`, "no metric name"},
		{`sum(rate(c[1m])`, "parse"},
	}
	for _, tt := range tests {
		_, err := checkNames(tt.expr, series)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.expr, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: got %v, want an error with %q", tt.expr, err, tt.want)
		}
	}
}

func TestSubstitute(t *testing.T) {
	got := Substitute(`rate(x{a=~"$ns", b=~"${pod}"}[$__rate_interval])`, "1m", ".*")
	if want := `rate(x{a=~".*", b=~".*"}[1m])`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
