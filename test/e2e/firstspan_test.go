package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// firstSpanDeadline is how soon after exec a new process's requests must
// be traced: every request answered later than this has its span.
const firstSpanDeadline = 50 * time.Millisecond

// requestGap spaces the requests of firstRequests: a few hundred in the
// window, each a few ms from the last, so that the moment tracing starts is
// pinned to within a few ms.
const requestGap = 4 * time.Millisecond

// answered is one request of firstRequests: its path and when its answer
// came, counted from the server's exec.
type answered struct {
	path  string
	after time.Duration
}

// firstRequests requests base+path<i> in a tight loop from the moment the
// server first answers until window after exec (t0): connection attempts
// every 2 ms until it listens, then a request every requestGap on a
// keep-alive connection. It returns the requests answered 200, in order.
func firstRequests(t *testing.T, t0 time.Time, base, path string, tlsConf *tls.Config, window time.Duration) []answered {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: tlsConf, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	var out []answered
	for i := 0; time.Since(t0) < window; i++ {
		p := fmt.Sprintf("%s%d", path, i)
		resp, err := client.Get(base + p)
		if err != nil {
			time.Sleep(2 * time.Millisecond) // not listening yet
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			out = append(out, answered{path: p, after: time.Since(t0)})
		}
		time.Sleep(requestGap)
	}
	return out
}

// checkFirstSpans asserts that every request answered later than
// firstSpanDeadline after exec has exactly one SERVER span of pid, and that
// no span names a path that was not requested.
func checkFirstSpans(t *testing.T, e *env, t0 time.Time, pid int, reqs []answered) {
	t.Helper()
	if len(reqs) == 0 {
		t.Fatal("the server answered no request")
	}
	late := map[string]time.Duration{}
	requested := map[string]bool{}
	for _, r := range reqs {
		requested[r.path] = true
		if r.after > firstSpanDeadline {
			late[r.path] = r.after
		}
	}
	t.Logf("%d requests answered, the first %v after exec (at %s), %d of them later than %v",
		len(reqs), reqs[0].after.Round(time.Millisecond), t0.UTC().Format("15:04:05.000"), len(late), firstSpanDeadline)
	if len(late) == 0 {
		t.Fatalf("no request answered later than %v after exec: the window is too short", firstSpanDeadline)
	}
	filter := func(s otlpreceiver.Span) bool {
		return int(s.Kind) == kindServer && s.Resource["process.pid"] == int64(pid) && late[attrStr(s, "url.path")] > 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.recv.WaitForSpans(ctx, len(late), filter); err != nil {
		got := filterSpans(e.recv.Spans(), filter)
		seen := map[string]bool{}
		for _, s := range got {
			seen[attrStr(s, "url.path")] = true
		}
		var missing []string
		for _, r := range reqs {
			if late[r.path] > 0 && !seen[r.path] {
				missing = append(missing, fmt.Sprintf("%s (answered %v after exec)", r.path, r.after.Round(time.Millisecond)))
			}
		}
		if len(missing) > 10 {
			missing = append(missing[:10], "...")
		}
		var attached []string
		for _, l := range strings.Split(e.agent.Logs(), "\n") {
			if strings.Contains(l, fmt.Sprintf("pid=%d ", pid)) || strings.Contains(l, "read late") {
				attached = append(attached, l)
			}
		}
		t.Fatalf("%d of %d requests answered later than %v after exec have no span: %s%s\nagent log of pid %d:\n%s",
			len(missing), len(late), firstSpanDeadline, strings.Join(missing, ", "), e.losses(t), pid, strings.Join(attached, "\n"))
	}
	time.Sleep(1500 * time.Millisecond) // let duplicates arrive, if any
	perPath := map[string]int{}
	for _, s := range e.recv.Spans() {
		if int(s.Kind) != kindServer || s.Resource["process.pid"] != int64(pid) {
			continue
		}
		p := attrStr(s, "url.path")
		perPath[p]++
		if !requested[p] {
			t.Errorf("span for %q, which was never requested", p)
		}
	}
	for p := range late {
		if perPath[p] != 1 {
			t.Errorf("%s has %d spans, want 1", p, perPath[p])
		}
	}
}

// TestFirstRequests: servers of every kind started while the agent runs,
// requested from their first answer: a Go server with DWARF and a stripped
// one (net/http probes), python (OpenSSL as a shared library, loaded by
// the program) and node (OpenSSL inside a ~100 MB executable). Every
// request answered later than 50 ms after the server's exec has its span.
func TestFirstRequests(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := harness.GenerateCert(t, dir)
	tlsConf := harness.TLSClientConfig(t, ca)
	// Names of their own: the agent selects only this test's programs, so
	// that Go programs other tests run on the machine do not queue before
	// them.
	withDWARF := harness.CopyExe(t, buildGoApp(t, dir, "", false), "firstspan-go-dwarf")
	stripped := harness.CopyExe(t, buildGoApp(t, dir, "", true), "firstspan-go-stripped")
	py := python(t)
	node := harness.LookTool(t, "node")
	e := startAgent(t, "--log-level", "debug", "--include-exe", "firstspan-go-*", "--include-exe", filepath.Base(mustEval(t, py)), "--include-exe", "node")

	const window = 1500 * time.Millisecond
	for _, bin := range []string{withDWARF, stripped} {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			port := harness.FreePort(t)
			t0 := time.Now()
			srv := startProc(t, nil, bin, "server", fmt.Sprintf("127.0.0.1:%d", port))
			reqs := firstRequests(t, t0, fmt.Sprintf("http://127.0.0.1:%d", port), "/item/", nil, window)
			checkFirstSpans(t, e, t0, srv.PID, reqs)
		})
	}
	t.Run("python-libssl", func(t *testing.T) {
		t0 := time.Now()
		srv := startProc(t, nil, py, testdataPath(t, "https_server.py"), cert, key)
		srv.expect("started", 10*time.Second)
		srv.send("go")
		port := srv.expect("listening", 10*time.Second)
		reqs := firstRequests(t, t0, "https://127.0.0.1:"+port, "/items/", tlsConf, time.Since(t0)+window)
		checkFirstSpans(t, e, t0, srv.PID, reqs)
	})
	t.Run("node-static-openssl", func(t *testing.T) {
		t0 := time.Now()
		srv := startProc(t, nil, node, testdataPath(t, "https_server.js"), cert, key)
		port := srv.expect("listening", 15*time.Second)
		reqs := firstRequests(t, t0, "https://127.0.0.1:"+port, "/items/", tlsConf, time.Since(t0)+window)
		checkFirstSpans(t, e, t0, srv.PID, reqs)
	})
}

// mustEval resolves symbolic links (python3 -> python3.11).
func mustEval(t *testing.T, path string) string {
	t.Helper()
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
