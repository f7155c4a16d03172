package e2e

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// plainServer is a plaintext HTTP server a test started.
type plainServer struct {
	name string
	port int
	pid  int
}

// startPlainServer starts a server on a free port (argv makes its command
// line) and waits until that process listens there (Java takes seconds to):
// on a shared machine another program may take the port meanwhile, and
// then the server is started again on another one. It is killed in
// t.Cleanup. It may run on another goroutine than the test's.
func startPlainServer(t *testing.T, name, dir string, argv func(port int) []string) (plainServer, error) {
	for attempt := 0; ; attempt++ {
		s, out, err := tryPlainServer(t, name, dir, argv)
		if err == nil {
			return s, nil
		}
		if attempt == 2 {
			return s, fmt.Errorf("%s: %w\n%s", name, err, out)
		}
		t.Logf("%s: %v; again on another port", name, err)
	}
}

func tryPlainServer(t *testing.T, name, dir string, argv func(port int) []string) (plainServer, string, error) {
	port := harness.FreePort(t)
	args := argv(port)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return plainServer{}, "", err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	want := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if addrs, err := harness.ListeningAddrs(cmd.Process.Pid); err == nil && slices.Contains(addrs, want) {
			return plainServer{name: name, port: port, pid: cmd.Process.Pid}, "", nil
		}
		select {
		case <-exited:
			return plainServer{}, out.String(), fmt.Errorf("exited before listening on %d", port)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return plainServer{}, out.String(), fmt.Errorf("not listening on %d after 60 s", port)
		}
	}
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runClient runs a client to completion and returns its PID.
func runClient(t *testing.T, argv ...string) int {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = plainDir(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return cmd.Process.Pid
}

func plainDir(t *testing.T) string {
	return filepath.Join(harness.RepoRoot(t), "test", "e2e", "testdata", "plaintext")
}

func resPID(s otlpreceiver.Span) int {
	v, _ := s.Resource["process.pid"].(int64)
	return int(v)
}

// expect is the spans one process makes on one server port.
type expect struct {
	what  string
	kind  int
	pid   int    // the process; 0: any process of pids, or of service
	pids  []int  // the processes (pre-fork workers), when pid is 0
	svc   string // when pid is 0
	port  int    // server.port
	paths map[string]int
}

func (x expect) match(s otlpreceiver.Span) bool {
	if int(s.Kind) != x.kind || attrInt(s, "server.port") != int64(x.port) {
		return false
	}
	if x.pid != 0 {
		return resPID(s) == x.pid
	}
	if len(x.pids) > 0 {
		return slices.Contains(x.pids, resPID(s))
	}
	return s.ServiceName() == x.svc
}

func (x expect) total() int {
	n := 0
	for _, c := range x.paths {
		n += c
	}
	return n
}

// statusOf is what the test servers answer on each path.
var statusOf = map[string]int64{"/ok": 200, "/missing": 404, "/fail": 500, "/big": 200, "/proxy/ok": 200}

var bodyOf = map[string]int64{"/ok": 3, "/missing": 3, "/fail": 4, "/big": 10 << 20}

// TestPlaintextRuntimes: plain HTTP/1.x servers and clients of every
// runtime, traced from syscall tracepoints: N requests give exactly N
// SERVER and N CLIENT spans with the right method, path, status and sizes,
// each server span the child of its client span. A server of every runtime
// started before the agent and one after (clients older than the agent:
// TestPlaintextShared), nginx as a reverse proxy over plain HTTP, a
// keep-alive connection with 1,000 requests, a pipelined burst, a 10 MiB
// response, a request written one byte at a time, Expect: 100-continue, a
// chunked request body and binary garbage (no span).
func TestPlaintextRuntimes(t *testing.T) {
	dir := plainDir(t)
	py := "/usr/bin/python3" // Debian's: python3-requests is installed for it
	for _, tool := range []string{py, "node", "ruby", "php", "java", "curl"} {
		harness.LookTool(t, tool)
	}
	// Private copies of curl and nginx, so that other tests' curl and
	// nginx on this machine do not count.
	curlBin := harness.CopyExe(t, "curl", "curl-plain")
	ngxBin := harness.CopyExe(t, "nginx", "nginx-plain")
	argv := map[string]func(port int) []string{
		"python": func(p int) []string { return []string{py, "server.py", fmt.Sprint(p)} },
		"java":   func(p int) []string { return []string{"java", "Srv.java", "serve", fmt.Sprint(p)} },
		"node":   func(p int) []string { return []string{"node", "server.js", fmt.Sprint(p)} },
		"ruby":   func(p int) []string { return []string{"ruby", "server.rb", fmt.Sprint(p)} },
		"php":    func(p int) []string { return []string{"php", "-S", fmt.Sprintf("127.0.0.1:%d", p), "router.php"} },
	}
	var (
		mu      sync.Mutex
		servers = map[string]plainServer{}
	)
	// startAll starts a server of each runtime, named runtime+suffix.
	startAll := func(suffix string, runtimes ...string) {
		var (
			wg   sync.WaitGroup
			errs []error
		)
		for _, rt := range runtimes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := startPlainServer(t, rt+suffix, dir, argv[rt])
				mu.Lock()
				defer mu.Unlock()
				servers[rt+suffix] = s
				if err != nil {
					errs = append(errs, err)
				}
			}()
		}
		wg.Wait()
		if len(errs) > 0 {
			t.Fatal(errors.Join(errs...))
		}
	}
	// Every runtime's server started before the agent (the python one's
	// connections are found already open) and after it.
	startAll("-early", "python", "java", "node", "ruby", "php")
	early := servers["python-early"]
	// The runtimes, nginx and curl selected: other programs on this
	// machine are not traced (a curl living a few milliseconds is still
	// named: TestPlaintextShared).
	var sel []string
	for _, exe := range []string{"python3*", "java", "node", "ruby*", "php*", "curl-plain", "nginx-plain"} {
		sel = append(sel, "--include-exe", exe)
	}
	e := startAgent(t, sel...)

	startAll("", "python", "java", "node", "ruby", "php")
	// The runtime clients and nginx use the python server started before
	// the agent, and the others started after it.
	servers["python-late"], servers["python"] = servers["python"], early
	ngxPort := harness.FreePort(t)
	ngx := harness.StartNginx(t, harness.NginxOptions{Exe: ngxBin, Workers: 1, ExtraHTTPConfig: fmt.Sprintf(`
    server {
        listen 127.0.0.1:%d;
        location = /ok { return 200 "ok\n"; }
        location = /fail { return 500; }
        location /proxy/ { proxy_pass http://127.0.0.1:%d/; }
    }`, ngxPort, early.port)})

	url := func(s plainServer, path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", s.port, path) }
	three := func(s plainServer) []string { return []string{url(s, "/ok"), url(s, "/missing"), url(s, "/fail")} }
	paths3 := map[string]int{"/ok": 1, "/missing": 1, "/fail": 1}
	var want []expect
	curl := func(s plainServer, paths ...string) {
		for _, p := range paths {
			run(t, curlBin, "-sS", "-o", "/dev/null", url(s, p))
		}
	}
	// curl against every server, one process per request.
	for _, name := range []string{"python", "java", "node", "ruby", "php"} {
		s := servers[name]
		curl(s, "/ok", "/missing", "/fail")
		want = append(want, expect{what: "curl -> " + name, kind: kindClient, svc: "curl-plain", port: s.port, paths: paths3})
	}
	// And against the servers of the other start (before or after the
	// agent) than the ones the runtime clients use.
	for _, name := range []string{"python-late", "java-early", "node-early", "ruby-early", "php-early"} {
		s := servers[name]
		curl(s, "/ok", "/missing", "/fail")
		want = append(want,
			expect{what: "curl -> " + name, kind: kindClient, svc: "curl-plain", port: s.port, paths: paths3},
			expect{what: name + " server", kind: kindServer, pid: s.pid, port: s.port, paths: paths3})
	}
	// Runtime clients.
	nodeCl := runClient(t, append([]string{"node", "client.js"}, three(servers["python"])...)...)
	urllibCl := runClient(t, append([]string{py, "client.py", "urllib"}, three(servers["node"])...)...)
	requestsCl := runClient(t, append([]string{py, "client.py", "requests"}, three(servers["ruby"])...)...)
	javaCl := runClient(t, append([]string{"java", "Srv.java", "get"}, three(servers["java"])...)...)
	const keepAlive = 1000
	torture := runClient(t, py, "client.py", "torture", "127.0.0.1", fmt.Sprint(servers["node"].port), fmt.Sprint(keepAlive))
	// nginx: its own answers, and a reverse proxy to the python server
	// (HTTP/1.0 upstream, a connection per request).
	ngxSrv := plainServer{name: "nginx", port: ngxPort, pid: ngx.WorkerPIDs[0]}
	curl(ngxSrv, "/ok", "/missing", "/fail", "/proxy/ok", "/proxy/ok", "/proxy/ok")

	want = append(want,
		expect{what: "node client -> python", kind: kindClient, pid: nodeCl, port: early.port, paths: paths3},
		expect{what: "urllib -> node", kind: kindClient, pid: urllibCl, port: servers["node"].port, paths: paths3},
		expect{what: "requests -> ruby", kind: kindClient, pid: requestsCl, port: servers["ruby"].port, paths: paths3},
		expect{what: "java client -> java", kind: kindClient, pid: javaCl, port: servers["java"].port, paths: paths3},
		expect{what: "torture -> node", kind: kindClient, pid: torture, port: servers["node"].port,
			paths: map[string]int{"/ok": keepAlive + 10 + 1, "/big": 1, "POST /ok": 2}},
		expect{what: "curl -> nginx", kind: kindClient, svc: "curl-plain", port: ngxPort,
			paths: map[string]int{"/ok": 1, "/missing": 1, "/fail": 1, "/proxy/ok": 3}},
		expect{what: "nginx -> python", kind: kindClient, pid: ngx.WorkerPIDs[0], port: early.port, paths: map[string]int{"/ok": 3}},
		expect{what: "nginx server", kind: kindServer, pid: ngx.WorkerPIDs[0], port: ngxPort,
			paths: map[string]int{"/ok": 1, "/missing": 1, "/fail": 1, "/proxy/ok": 3}},
		expect{what: "python server", kind: kindServer, pid: early.pid, port: early.port,
			paths: map[string]int{"/ok": 2 + 3, "/missing": 2, "/fail": 2}},
		expect{what: "node server", kind: kindServer, pid: servers["node"].pid, port: servers["node"].port,
			paths: map[string]int{"/ok": 2 + keepAlive + 10 + 1, "/missing": 2, "/fail": 2, "/big": 1, "POST /ok": 2}},
		expect{what: "ruby server", kind: kindServer, pid: servers["ruby"].pid, port: servers["ruby"].port,
			paths: map[string]int{"/ok": 2, "/missing": 2, "/fail": 2}},
		expect{what: "php server", kind: kindServer, pid: servers["php"].pid, port: servers["php"].port, paths: paths3},
		expect{what: "java server", kind: kindServer, pid: servers["java"].pid, port: servers["java"].port,
			paths: map[string]int{"/ok": 2, "/missing": 2, "/fail": 2}},
	)
	checkPlainSpans(t, e, want)
	if v := e.agent.Metric(t, "periscope_unparsed_calls_total", map[string]string{"collector": "sockets"}); v == 0 {
		t.Errorf("periscope_unparsed_calls_total{collector=sockets} = 0: the garbage connection was not counted")
	}
}

// checkPlainSpans waits for every expected set, then checks each span and
// that each server span is the child of a client span.
func checkPlainSpans(t *testing.T, e *env, want []expect) {
	t.Helper()
	anyOf := func(s otlpreceiver.Span) bool {
		for _, x := range want {
			if x.match(s) {
				return true
			}
		}
		return false
	}
	total := 0
	for _, x := range want {
		total += x.total()
	}
	ports := map[int64]bool{}
	for _, x := range want {
		ports[int64(x.port)] = true
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// What else reached the servers' ports: misnamed or unexpected spans.
		for _, s := range e.recv.Spans() {
			if ports[attrInt(s, "server.port")] && !anyOf(s) {
				t.Logf("unexpected span: %s pid %d kind %d %q port %d", s.ServiceName(), resPID(s), s.Kind, s.Name, attrInt(s, "server.port"))
			}
		}
	})
	all := e.spans(t, total, anyOf)
	t.Logf("%d spans from %d processes and servers", len(all), len(want))
	clients := make(map[string]otlpreceiver.Span)
	for _, s := range all {
		if int(s.Kind) == kindClient {
			clients[s.SpanID] = s
		}
	}
	for _, x := range want {
		got := filterSpans(all, x.match)
		byPath := counts(got, func(s otlpreceiver.Span) string {
			if m := attrStr(s, "http.request.method"); m != "GET" {
				return m + " " + attrStr(s, "url.path")
			}
			return attrStr(s, "url.path")
		})
		for p, n := range x.paths {
			if byPath[p] != n {
				t.Errorf("%s: %d spans for %s, want %d; all: %v", x.what, byPath[p], p, n, byPath)
			}
		}
		for _, s := range got {
			checkPlainSpan(t, x, s, clients)
		}
	}
}

func checkPlainSpan(t *testing.T, x expect, s otlpreceiver.Span, clients map[string]otlpreceiver.Span) {
	t.Helper()
	path := attrStr(s, "url.path")
	method := attrStr(s, "http.request.method")
	if !strings.HasPrefix(s.Name, method+" ") || method != "GET" && method != "POST" {
		t.Errorf("%s: span %q method %q", x.what, s.Name, method)
	}
	if code, ok := statusOf[path]; ok && x.port != 0 && attrInt(s, "http.response.status_code") != code {
		t.Errorf("%s %s: status %d, want %d", x.what, path, attrInt(s, "http.response.status_code"), code)
	}
	if size, ok := bodyOf[path]; ok && !strings.Contains(x.what, "nginx") && attrInt(s, "http.response.body.size") != size {
		t.Errorf("%s %s: http.response.body.size %d, want %d", x.what, path, attrInt(s, "http.response.body.size"), size)
	}
	if attrStr(s, "url.scheme") != "http" || attrStr(s, "network.peer.address") != "127.0.0.1" {
		t.Errorf("%s %s: url.scheme %q network.peer.address %q", x.what, path, attrStr(s, "url.scheme"), attrStr(s, "network.peer.address"))
	}
	if x.kind != kindServer {
		return
	}
	parent, ok := clients[s.ParentSpanID]
	if !ok || parent.TraceID != s.TraceID {
		t.Errorf("%s %s: parent %q is not a client span of its trace", x.what, path, s.ParentSpanID)
	}
}
