// Package deploytest checks the Grafana dashboards (deploy/grafana) and the
// Prometheus alert rules (deploy/prometheus) against the metrics the agent
// exports (metrics.txt): every query parses with Prometheus's own PromQL
// parser and uses only exported metric and label names.
//
// It is a module of its own so that the agent's module does not depend on
// github.com/prometheus/prometheus. The same package is imported by nothing:
// test/e2e/dashboards_test.go reads the same files to run every query
// against a real Prometheus.
package deploytest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

// Metric is one family of metrics.txt.
type Metric struct {
	Name   string
	Type   string // counter, gauge, histogram
	Labels map[string]bool
}

// ReadMetrics parses metrics.txt.
func ReadMetrics(path string) (map[string]Metric, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := make(map[string]Metric)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			return nil, fmt.Errorf("%s:%d: want NAME TYPE LABELS...", path, n)
		}
		m := Metric{Name: fields[0], Type: fields[1], Labels: make(map[string]bool)}
		switch m.Type {
		case "counter", "gauge", "histogram":
		default:
			return nil, fmt.Errorf("%s:%d: unknown type %q", path, n, m.Type)
		}
		for _, l := range fields[2:] {
			m.Labels[l] = true
		}
		out[m.Name] = m
	}
	return out, sc.Err()
}

// Series returns the series names a family has on /metrics: the name, or
// NAME_bucket, NAME_sum and NAME_count for a histogram, each with its labels
// (plus le on buckets).
func Series(metrics map[string]Metric) map[string]map[string]bool {
	out := make(map[string]map[string]bool)
	for _, m := range metrics {
		if m.Type != "histogram" {
			out[m.Name] = m.Labels
			continue
		}
		for _, s := range []string{"_sum", "_count", "_bucket"} {
			ls := make(map[string]bool, len(m.Labels)+1)
			for l := range m.Labels {
				ls[l] = true
			}
			if s == "_bucket" {
				ls["le"] = true
			}
			out[m.Name+s] = ls
		}
	}
	return out
}

// Query is one PromQL expression of a dashboard or rule file, and where it is.
type Query struct {
	Where string // "services.json: panel 3 "Error ratio" target B"
	Expr  string
}

// Dashboard is the part of a Grafana dashboard JSON the checks read.
type Dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// Variable is a dashboard template variable.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource *Datasource     `json:"datasource"`
}

// Datasource references a data source.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Panel is a dashboard panel.
type Panel struct {
	ID         int         `json:"id"`
	Title      string      `json:"title"`
	Type       string      `json:"type"`
	Datasource *Datasource `json:"datasource"`
	Targets    []struct {
		RefID        string      `json:"refId"`
		Expr         string      `json:"expr"`
		LegendFormat string      `json:"legendFormat"`
		Datasource   *Datasource `json:"datasource"`
	} `json:"targets"`
}

// ReadDashboard decodes a dashboard JSON file.
func ReadDashboard(path string) (*Dashboard, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &d, nil
}

var labelValues = regexp.MustCompile(`^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// VariableQuery returns the PromQL selector inside a label_values(SELECTOR,
// LABEL) variable query and its label; ok is false for other variables.
func (v Variable) VariableQuery() (selector, label string, ok bool, err error) {
	if v.Type != "query" {
		return "", "", false, nil
	}
	var q struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &q); err != nil {
		var s string
		if err2 := json.Unmarshal(v.Query, &s); err2 != nil {
			return "", "", false, fmt.Errorf("variable %s: query is neither an object nor a string", v.Name)
		}
		q.Query = s
	}
	m := labelValues.FindStringSubmatch(strings.TrimSpace(q.Query))
	if m == nil {
		return "", "", false, fmt.Errorf("variable %s: %q is not label_values(SELECTOR, LABEL)", v.Name, q.Query)
	}
	return m[1], m[2], true, nil
}

// Queries returns every PromQL expression of the dashboard: each panel
// target, and the selector of each label_values variable.
func (d *Dashboard) Queries(file string) ([]Query, error) {
	var out []Query
	for _, v := range d.Templating.List {
		sel, _, ok, err := v.VariableQuery()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if ok {
			out = append(out, Query{fmt.Sprintf("%s: variable %s", file, v.Name), sel})
		}
	}
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out = append(out, Query{fmt.Sprintf("%s: panel %d %q target %s", file, p.ID, p.Title, t.RefID), t.Expr})
		}
	}
	return out, nil
}

// Substitute replaces Grafana's variables in a query: the interval
// variables by interval ("1m"), every other $var and ${var} by value (".*",
// which matches every value, and absent labels, in a =~ matcher).
func Substitute(expr, interval, value string) string {
	for _, v := range []string{"$__rate_interval", "${__rate_interval}", "$__interval", "${__interval}", "$__range", "${__range}"} {
		expr = strings.ReplaceAll(expr, v, interval)
	}
	return grafanaVar.ReplaceAllString(expr, value)
}

var grafanaVar = regexp.MustCompile(`\$\{[a-zA-Z_][a-zA-Z0-9_]*\}|\$[a-zA-Z_][a-zA-Z0-9_]*`)

// sortedKeys returns the keys of a set, sorted.
func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
