package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
)

// TestPlaintextShared: sockets that more than one process uses, and
// connections older than the agent, traced from syscall tracepoints.
//   - gunicorn, started before the agent: its master listens and three
//     forked workers accept on the same socket (pre-fork).
//   - nginx with two workers (master -> workers).
//   - a server whose parent accepts and passes each socket to a child over
//     SCM_RIGHTS; the child answers in HTTP/1.0 and closes, one response
//     without Content-Length (its body ends at the close).
//   - a keep-alive connection opened before the agent started, from a
//     client that then sends more requests on it to a server blocked in
//     its read of that connection when the agent started (both roles
//     learned from the bytes); the client then closes the socket with
//     close_range and reuses the
//     descriptor number for a file it writes a request to and reads a
//     response from: no span.
//   - a C client speaking through sendmmsg/recvmmsg (one message a call).
//
// Every request gives exactly one SERVER span (from the process that
// served it) and one CLIENT span, the server span the child of the client
// span. The agent traces a selection of executables (--include-exe): each
// of the 30 curls, alive a few milliseconds, must carry its name.
func TestPlaintextShared(t *testing.T) {
	dir := plainDir(t)
	py := "/usr/bin/python3"
	for _, tool := range []string{py, "gunicorn", "curl", "nginx"} {
		harness.LookTool(t, tool)
	}
	curlBin := harness.CopyExe(t, "curl", "curl-shared")
	mmsgBin := filepath.Join(t.TempDir(), "mmsg-client")
	run(t, harness.LookTool(t, "gcc"), "-O2", "-o", mmsgBin, filepath.Join(dir, "mmsg.c"))
	ngxBin := harness.CopyExe(t, "nginx", "nginx-shared")

	// Before the agent: gunicorn, and a keep-alive connection to a
	// python server, idle (the server blocked reading it).
	gport := harness.FreePort(t)
	gun := startProc(t, nil, py, "/usr/bin/gunicorn", "--workers", "3", "--chdir", dir,
		"--bind", fmt.Sprintf("127.0.0.1:%d", gport), "wsgi:app")
	waitListening(t, gun, gport)
	workers := waitChildren(t, gun.PID, 3)
	pport := harness.FreePort(t)
	pysrv := startProc(t, nil, py, filepath.Join(dir, "server.py"), strconv.Itoa(pport))
	waitListening(t, pysrv, pport)
	const keepAlive = 20
	ka := startProc(t, nil, py, filepath.Join(dir, "keepalive.py"), "127.0.0.1", strconv.Itoa(pport), strconv.Itoa(keepAlive))
	ka.expect("ready", 10*time.Second)
	time.Sleep(200 * time.Millisecond) // the server thread back in its read

	// A process selection: each curl lives a few milliseconds, and must
	// still be named (its exec may be read by discovery after its span
	// ends).
	e := startAgent(t, "--include-exe", "python3*", "--include-exe", "curl-shared", "--include-exe", "nginx-shared", "--include-exe", "mmsg-client")

	hport := harness.FreePort(t)
	handoff := startProc(t, nil, py, filepath.Join(dir, "handoff.py"), strconv.Itoa(hport))
	child, err := strconv.Atoi(handoff.expect("", 10*time.Second))
	if err != nil {
		t.Fatalf("handoff.py child PID: %v", err)
	}
	waitListening(t, handoff, hport)
	nport := harness.FreePort(t)
	ngx := harness.StartNginx(t, harness.NginxOptions{Exe: ngxBin, Workers: 2, ExtraHTTPConfig: fmt.Sprintf(`
    server {
        listen 127.0.0.1:%d;
        location = /ok { return 200 "ok\n"; }
    }`, nport)})

	ka.send("go")
	ka.expect("done", 30*time.Second)
	const mmsgN = 3
	mmsg := startProc(t, nil, mmsgBin, strconv.Itoa(pport), strconv.Itoa(mmsgN))
	mmsg.mustSucceed(10 * time.Second)
	get := func(port int, path string, extra ...string) {
		run(t, curlBin, append(extra, "-sS", "-o", "/dev/null", fmt.Sprintf("http://127.0.0.1:%d%s", port, path))...)
	}
	const perPath = 5 // 30 curls
	for range perPath {
		for _, p := range []string{"/ok", "/missing", "/fail"} {
			get(gport, p)
		}
		get(hport, "/ok", "--http1.0")
		get(hport, "/eof", "--http1.0")
		get(nport, "/ok")
	}

	paths3 := map[string]int{"/ok": perPath, "/missing": perPath, "/fail": perPath}
	want := []expect{
		{what: "curl -> gunicorn", kind: kindClient, svc: "curl-shared", port: gport, paths: paths3},
		{what: "gunicorn workers", kind: kindServer, pids: workers, port: gport, paths: paths3},
		{what: "curl -> handoff", kind: kindClient, svc: "curl-shared", port: hport, paths: map[string]int{"/ok": perPath, "/eof": perPath}},
		{what: "handoff child (SCM_RIGHTS)", kind: kindServer, pid: child, port: hport, paths: map[string]int{"/ok": perPath, "/eof": perPath}},
		{what: "curl -> nginx", kind: kindClient, svc: "curl-shared", port: nport, paths: map[string]int{"/ok": perPath}},
		{what: "nginx workers", kind: kindServer, pids: ngx.WorkerPIDs, port: nport, paths: map[string]int{"/ok": perPath}},
		{what: "keep-alive client (older than the agent)", kind: kindClient, pid: ka.PID, port: pport, paths: map[string]int{"/ok": keepAlive}},
		{what: "mmsg client", kind: kindClient, pid: mmsg.PID, port: pport, paths: map[string]int{"/ok": mmsgN}},
		{what: "python server (keep-alive older than the agent, mmsg client)", kind: kindServer, pid: pysrv.PID, port: pport,
			paths: map[string]int{"/ok": keepAlive + mmsgN}},
	}
	checkPlainSpans(t, e, want)
	// Nothing else from the processes that shared sockets or reused a
	// descriptor (the accepting parent, the master, the phantom request).
	for _, s := range e.recv.Spans() {
		switch resPID(s) {
		case gun.PID, handoff.PID, ngx.MasterPID, ka.PID, mmsg.PID:
			if attrInt(s, "server.port") != int64(pport) || int(s.Kind) != kindClient {
				t.Errorf("unexpected span from pid %d: %s %q port %d", resPID(s), s.ServiceName(), s.Name, attrInt(s, "server.port"))
			}
		}
	}
}

// waitChildren waits until process pid has n children and returns them.
func waitChildren(t *testing.T, pid, n int) []int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		kids := harness.ChildPIDs(pid)
		if len(kids) >= n {
			return kids
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d has children %v after 20 s, want %d", pid, kids, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPlaintextEventLoop: node serves every request on one thread. A client
// call made while exactly one server request is in flight there is that
// request's child; made while several are, it has no parent (no guess),
// and the upstream server's span is still the child of the client span
// (4-tuple).
func TestPlaintextEventLoop(t *testing.T) {
	dir := plainDir(t)
	py := "/usr/bin/python3"
	harness.LookTool(t, "node")
	curlBin := harness.CopyExe(t, "curl", "curl-loop")
	e := startAgent(t, "--include-exe", "python3*", "--include-exe", "node", "--include-exe", "curl-loop")

	uport := harness.FreePort(t)
	up := startProc(t, nil, py, filepath.Join(dir, "server.py"), strconv.Itoa(uport))
	waitListening(t, up, uport)
	fport := harness.FreePort(t)
	fan := startProc(t, nil, "node", filepath.Join(dir, "fanout.js"), strconv.Itoa(fport), strconv.Itoa(uport))
	waitListening(t, fan, fport)

	const one, many = 3, 4
	for range one {
		run(t, curlBin, "-sS", "-o", "/dev/null", fmt.Sprintf("http://127.0.0.1:%d/one", fport))
	}
	var curls []*proc
	for range many {
		curls = append(curls, startProc(t, nil, curlBin, "-sS", "-o", "/dev/null", fmt.Sprintf("http://127.0.0.1:%d/many?k=%d", fport, many)))
	}
	for _, c := range curls {
		c.mustSucceed(20 * time.Second)
	}

	want := []expect{
		{what: "curl -> node", kind: kindClient, svc: "curl-loop", port: fport, paths: map[string]int{"/one": one, "/many": many}},
		{what: "node server", kind: kindServer, pid: fan.PID, port: fport, paths: map[string]int{"/one": one, "/many": many}},
		{what: "node -> python", kind: kindClient, pid: fan.PID, port: uport, paths: map[string]int{"/ok": one + many}},
		{what: "python server", kind: kindServer, pid: up.PID, port: uport, paths: map[string]int{"/ok": one + many}},
	}
	checkPlainSpans(t, e, want)

	all := e.recv.Spans()
	servers := map[string]string{} // node server span ID -> path
	for _, s := range filterSpans(all, want[1].match) {
		servers[s.SpanID] = attrStr(s, "url.path")
	}
	parents := map[string]int{}
	for _, s := range filterSpans(all, want[2].match) {
		switch p, ok := servers[s.ParentSpanID]; {
		case ok && p == "/one":
			parents["/one"]++
		case s.ParentSpanID == "":
			parents["none"]++
		default:
			t.Errorf("node client span %s: parent %q is not a /one server span", s.SpanID, s.ParentSpanID)
		}
	}
	if parents["/one"] != one || parents["none"] != many {
		t.Errorf("node client spans: %d children of /one, %d without parent; want %d and %d", parents["/one"], parents["none"], one, many)
	}
}
