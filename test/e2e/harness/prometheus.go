package harness

import (
	"context"
	"encoding/json"
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

	"github.com/prometheus/common/model"
)

// Prometheus is a Prometheus server (the Debian package's binary) started by
// RunPrometheus: it listens on a free loopback port, keeps its TSDB in a
// temporary directory and scrapes its targets every second.
type Prometheus struct {
	Bin string
	// URL is the base of the web UI and HTTP API, "http://127.0.0.1:PORT".
	URL         string
	ConfigFile  string
	TargetsFile string // file_sd targets, rewritten by SetTargets
	DataDir     string
	LogFile     string
	PID         int

	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{}
}

// PrometheusJob is the job name of the targets given to RunPrometheus.
const PrometheusJob = "periscope"

// prometheusConfig scrapes the targets listed in a file_sd file (so tests can add
// targets after the start) every second. %[1]s is the targets file.
const prometheusConfig = `global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: ` + PrometheusJob + `
    file_sd_configs:
      - files: ['%[1]s']
        refresh_interval: 1s
`

// RunPrometheus starts Prometheus on a free 127.0.0.1 port scraping the given
// targets ("127.0.0.1:9464": host:port of a /metrics endpoint) every second,
// waits until it is ready, and stops it in t.Cleanup. Every series it scrapes
// gets job="periscope" and instance=<target>.
func RunPrometheus(t testing.TB, targets ...string) *Prometheus {
	t.Helper()
	bin := LookTool(t, "prometheus")
	dir := t.TempDir()
	port := FreePort(t)
	p := &Prometheus{
		Bin:         bin,
		URL:         fmt.Sprintf("http://127.0.0.1:%d", port),
		ConfigFile:  filepath.Join(dir, "prometheus.yml"),
		TargetsFile: filepath.Join(dir, "targets.json"),
		DataDir:     filepath.Join(dir, "data"),
		LogFile:     filepath.Join(dir, "prometheus.log"),
		t:           t,
		done:        make(chan struct{}),
	}
	if err := p.writeTargets(targets); err != nil {
		t.Fatalf("RunPrometheus: %v", err)
	}
	if err := os.WriteFile(p.ConfigFile, []byte(fmt.Sprintf(prometheusConfig, p.TargetsFile)), 0o644); err != nil {
		t.Fatalf("RunPrometheus: %v", err)
	}
	logf, err := os.Create(p.LogFile)
	if err != nil {
		t.Fatalf("RunPrometheus: %v", err)
	}
	defer logf.Close()
	p.cmd = exec.Command(bin,
		"--config.file="+p.ConfigFile,
		"--storage.tsdb.path="+p.DataDir,
		"--storage.tsdb.retention.time=1d",
		"--web.listen-address="+strings.TrimPrefix(p.URL, "http://"),
		"--web.enable-admin-api",
	)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	dumpOnFailure(t, "prometheus", p.ConfigFile, p.TargetsFile, p.LogFile)
	start := time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("RunPrometheus: start %s: %v", bin, err)
	}
	p.PID = p.cmd.Process.Pid
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.Stop)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := waitHTTP200(ctx, p.URL+"/-/ready", p.done); err != nil {
		t.Fatalf("RunPrometheus: %v\nlog:\n%s", err, tail(p.LogFile, 8<<10))
	}
	t.Logf("prometheus ready in %v at %s, scraping %v every 1s", time.Since(start).Round(time.Millisecond), p.URL, targets)
	return p
}

// writeTargets writes the file_sd file atomically (Prometheus watches it).
func (p *Prometheus) writeTargets(targets []string) error {
	if targets == nil {
		targets = []string{}
	}
	b, err := json.Marshal([]map[string]any{{"targets": targets}})
	if err != nil {
		return err
	}
	tmp := p.TargetsFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p.TargetsFile)
}

// SetTargets replaces the scraped targets. Prometheus picks the change up within
// about a second; WaitUp waits for a target's first successful scrape.
func (p *Prometheus) SetTargets(targets ...string) {
	p.t.Helper()
	if err := p.writeTargets(targets); err != nil {
		p.t.Fatalf("Prometheus.SetTargets: %v", err)
	}
}

// Stop stops Prometheus (SIGTERM, SIGKILL after 15 s). Called in t.Cleanup.
func (p *Prometheus) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.t.Logf("prometheus pid %d ignored SIGTERM for 15 s: killing it", p.PID)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// apiResponse is the envelope of every /api/v1 answer.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

func (p *Prometheus) api(ctx context.Context, path string, q url.Values, v any) error {
	u := p.URL + path + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, tail2(string(body), 2048))
	}
	if r.Status != "success" {
		return fmt.Errorf("GET %s: %s: %s: %s", u, resp.Status, r.ErrorType, r.Error)
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		return fmt.Errorf("GET %s: decode data: %w: %s", u, err, tail2(string(r.Data), 2048))
	}
	return nil
}

// Query evaluates an instant PromQL query now (GET /api/v1/query) and returns
// its result: a model.Vector, model.Matrix, *model.Scalar or *model.String.
func (p *Prometheus) Query(ctx context.Context, promql string) (model.Value, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	q := url.Values{"query": {promql}, "time": {fmt.Sprintf("%.3f", float64(time.Now().UnixMilli())/1000)}}
	if err := p.api(ctx, "/api/v1/query", q, &data); err != nil {
		return nil, err
	}
	var v model.Value
	switch data.ResultType {
	case "vector":
		v = &model.Vector{}
	case "matrix":
		v = &model.Matrix{}
	case "scalar":
		v = &model.Scalar{}
	case "string":
		v = &model.String{}
	default:
		return nil, fmt.Errorf("query %q: unknown result type %q", promql, data.ResultType)
	}
	if err := json.Unmarshal(data.Result, v); err != nil {
		return nil, fmt.Errorf("query %q: decode %s: %w", promql, data.ResultType, err)
	}
	switch x := v.(type) {
	case *model.Vector:
		return *x, nil
	case *model.Matrix:
		return *x, nil
	}
	return v, nil
}

// QueryVector evaluates promql, which must give an instant vector, and returns
// its samples (empty when nothing matched).
func (p *Prometheus) QueryVector(ctx context.Context, promql string) (model.Vector, error) {
	v, err := p.Query(ctx, promql)
	if err != nil {
		return nil, err
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("query %q gave a %s, not a vector", promql, v.Type())
	}
	return vec, nil
}

// WaitQuery evaluates promql every 500 ms until done accepts the vector it
// returns, and returns that vector. On timeout the error holds the last result.
func (p *Prometheus) WaitQuery(ctx context.Context, promql string, done func(model.Vector) bool) (model.Vector, error) {
	var last model.Vector
	var lastErr error
	for {
		vec, err := p.QueryVector(ctx, promql)
		if err == nil {
			last, lastErr = vec, nil
			if done(vec) {
				return vec, nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return last, fmt.Errorf("waiting for %q: %w (last error: %v)", promql, ctx.Err(), lastErr)
			}
			return last, fmt.Errorf("waiting for %q: %w (last result: %v)", promql, ctx.Err(), last)
		case <-p.done:
			return last, fmt.Errorf("prometheus exited while waiting for %q; log:\n%s", promql, tail(p.LogFile, 4<<10))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// WaitScraped waits until target (as given to RunPrometheus or SetTargets) has
// been scraped successfully at least twice since this call: then every sample
// the target exposed when WaitScraped was called is in the TSDB, and rate() over
// those series has two points.
func (p *Prometheus) WaitScraped(ctx context.Context, target string) error {
	since := time.Now()
	for {
		var data struct {
			ActiveTargets []struct {
				ScrapeURL  string                    `json:"scrapeUrl"`
				Labels     struct{ Instance string } `json:"labels"`
				Health     string                    `json:"health"`
				LastError  string                    `json:"lastError"`
				LastScrape time.Time                 `json:"lastScrape"`
			} `json:"activeTargets"`
		}
		err := p.api(ctx, "/api/v1/targets", url.Values{"state": {"active"}}, &data)
		status := "not among the active targets"
		if err == nil {
			for _, tg := range data.ActiveTargets {
				if tg.Labels.Instance != target {
					continue
				}
				status = fmt.Sprintf("health %q, last scrape %v, last error %q", tg.Health, tg.LastScrape, tg.LastError)
				// One scrape that started after since, plus 1 s: the next one.
				if tg.Health == "up" && tg.LastScrape.After(since.Add(time.Second)) {
					return nil
				}
			}
		} else {
			status = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for prometheus to scrape %s: %w (%s)", target, ctx.Err(), status)
		case <-p.done:
			return fmt.Errorf("prometheus exited while waiting to scrape %s; log:\n%s", target, tail(p.LogFile, 4<<10))
		case <-time.After(250 * time.Millisecond):
		}
	}
}
