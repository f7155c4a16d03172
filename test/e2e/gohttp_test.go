package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// goToolchains are the Go releases the Go collector is tested with, besides
// the local toolchain ("").
var goToolchains = []string{"go1.18.10", "go1.20.14", "go1.22.12", "go1.24.13", ""}

// buildGoApp builds testdata/goapp with a toolchain (GOTOOLCHAIN; "" for the
// local one), stripped (-s -w) or not, into dir.
func buildGoApp(t *testing.T, dir, toolchain string, stripped bool) string {
	t.Helper()
	args := []string{"build", "-o"}
	name := goAppName(toolchain, stripped)
	out := filepath.Join(dir, name)
	args = append(args, out)
	if stripped {
		args = append(args, "-ldflags=-s -w")
	}
	args = append(args, ".")
	cmd := exec.Command(harness.GoTool(t), args...)
	cmd.Dir = testdataPath(t, "goapp")
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if toolchain != "" {
		cmd.Env = append(cmd.Env, "GOTOOLCHAIN="+toolchain)
	} else {
		cmd.Env = append(cmd.Env, "GOTOOLCHAIN=local")
	}
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build goapp with %q: %v\n%s", toolchain, err, b)
	}
	t.Logf("built %s in %v", name, time.Since(start).Round(time.Millisecond))
	return out
}

// goAppName names the goapp built with toolchain ("" for the local one).
func goAppName(toolchain string, stripped bool) string {
	name := "goapp-" + toolchain
	if toolchain == "" {
		name = "goapp-local"
	}
	if stripped {
		name += "-stripped"
	}
	return name
}

// goServer starts a goapp server and waits until it listens.
func goServer(t *testing.T, bin string, port int, extra ...string) *proc {
	t.Helper()
	p := startProc(t, nil, bin, append([]string{"server", fmt.Sprintf("127.0.0.1:%d", port)}, extra...)...)
	waitListening(t, p, port)
	return p
}

func waitListening(t *testing.T, p *proc, port int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	want := fmt.Sprintf("127.0.0.1:%d", port)
	for time.Now().Before(deadline) {
		addrs, _ := harness.ListeningAddrs(p.PID)
		for _, a := range addrs {
			if a == want {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited: %s", p.name, p.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("%s does not listen on %s", p.name, want)
}

// TestGoVersions: a Go server and client built with each supported Go
// version, with symbols and stripped, over HTTP and HTTPS: N requests give
// exactly N SERVER and N CLIENT spans with the right method, path, status,
// scheme and peer, each server span the child of its client span. Each
// binary is built in its own subtest, so that -run selects what is built
// (a stress run of one binary builds only that one).
func TestGoVersions(t *testing.T) {
	e := startAgent(t, "--include-exe", "goapp-*")
	dir := t.TempDir()
	cert, key, ca := harness.GenerateCert(t, dir)
	for _, tc := range goToolchains {
		for _, stripped := range []bool{false, true} {
			t.Run(goAppName(tc, stripped), func(t *testing.T) {
				bin := buildGoApp(t, dir, tc, stripped)
				for _, scheme := range []string{"http", "https"} {
					t.Run(fmt.Sprintf("stripped=%v/%s", stripped, scheme), func(t *testing.T) {
						checkGoVersion(t, e, bin, scheme, cert, key, ca)
					})
				}
			})
		}
	}
}

// checkGoVersion runs bin's server and its client's n requests over scheme
// and checks their spans (TestGoVersions).
func checkGoVersion(t *testing.T, e *env, bin, scheme, cert, key, ca string) {
	const n = 8
	port := harness.FreePort(t)
	var extra, clientExtra []string
	if scheme == "https" {
		extra = []string{"-tls-cert", cert, "-tls-key", key}
		clientExtra = []string{"-ca", ca}
	}
	srv := goServer(t, bin, port, extra...)
	url := fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)
	cl := runGoClient(t, e, bin, []int{srv.PID}, append([]string{url, strconv.Itoa(n)}, clientExtra...)...)

	server := e.spans(t, n, byPIDs(kindServer, srv.PID))
	client := e.spans(t, n, byPIDs(kindClient, cl.PID))
	checkClientSequence(t, n, server, client)
	clientByID := make(map[string]otlpreceiver.Span)
	for _, s := range client {
		clientByID[s.SpanID] = s
		if attrStr(s, "url.scheme") != scheme || attrInt(s, "server.port") != int64(port) || attrInt(s, "network.peer.port") != int64(port) {
			t.Errorf("client span %q: scheme %q server.port %d peer %d", s.Name, attrStr(s, "url.scheme"), attrInt(s, "server.port"), attrInt(s, "network.peer.port"))
		}
		code := attrInt(s, "http.response.status_code")
		if (code >= 400) != (s.Status == "ERROR") {
			t.Errorf("client span %q code %d status %s", s.Name, code, s.Status)
		}
	}
	for _, s := range server {
		if attrStr(s, "url.scheme") != scheme || attrStr(s, "client.address") != "127.0.0.1" || attrInt(s, "client.port") == 0 {
			t.Errorf("server span %q: scheme %q client %s:%d", s.Name, attrStr(s, "url.scheme"), attrStr(s, "client.address"), attrInt(s, "client.port"))
		}
		code := attrInt(s, "http.response.status_code")
		if (code >= 500) != (s.Status == "ERROR") {
			t.Errorf("server span %q code %d status %s", s.Name, code, s.Status)
		}
		p, ok := clientByID[s.ParentSpanID]
		if !ok || p.TraceID != s.TraceID || attrStr(p, "url.path") != attrStr(s, "url.path") {
			t.Errorf("server span %q (trace %s) is not the child of its client span (parent %q)", s.Name, s.TraceID, s.ParentSpanID)
		}
	}
}

// TestGoChain: a handler calling a downstream service. The downstream
// CLIENT span is the child of the handler's SERVER span; the downstream
// server's SERVER span is the child of that CLIENT span (linked by the
// connection's 4-tuple: nothing is injected); one trace from the first
// client to the leaf.
func TestGoChain(t *testing.T) {
	e := startAgent(t, "--include-exe", "goapp-*")
	dir := t.TempDir()
	bin := buildGoApp(t, dir, "", false)
	leafPort, midPort := harness.FreePort(t), harness.FreePort(t)
	leaf := goServer(t, bin, leafPort)
	mid := goServer(t, bin, midPort, "-downstream", fmt.Sprintf("http://127.0.0.1:%d", leafPort))
	goInstrumented(t, e, leaf.PID, mid.PID)
	curl := harness.LookTool(t, "curl")
	const n = 5
	for i := 0; i < n; i++ {
		run(t, curl, "-sS", "-o", "/dev/null", fmt.Sprintf("http://127.0.0.1:%d/chain", midPort))
	}
	midServer := e.spans(t, n, byPIDs(kindServer, mid.PID))
	midClient := e.spans(t, n, byPIDs(kindClient, mid.PID))
	leafServer := e.spans(t, n, byPIDs(kindServer, leaf.PID))
	byID := make(map[string]otlpreceiver.Span)
	for _, s := range append(append(append([]otlpreceiver.Span(nil), midServer...), midClient...), leafServer...) {
		byID[s.SpanID] = s
	}
	for _, c := range midClient {
		p, ok := byID[c.ParentSpanID]
		if !ok || int(p.Kind) != kindServer || p.ServiceName() != c.ServiceName() || attrStr(p, "url.path") != "/chain" || p.TraceID != c.TraceID {
			t.Errorf("downstream call %q is not the child of the /chain handler's span (parent %q)", c.Name, c.ParentSpanID)
		}
		if c.Name != "GET /leaf" || attrInt(c, "http.response.status_code") != 201 {
			t.Errorf("downstream call %q status %d", c.Name, attrInt(c, "http.response.status_code"))
		}
	}
	for _, s := range leafServer {
		p, ok := byID[s.ParentSpanID]
		if !ok || int(p.Kind) != kindClient || p.TraceID != s.TraceID || !s.RemoteParent {
			t.Errorf("leaf span %q is not the remote child of the downstream call (parent %q)", s.Name, s.ParentSpanID)
		}
	}
	traces := counts(append(midServer, leafServer...), func(s otlpreceiver.Span) string { return s.TraceID })
	if len(traces) != n {
		t.Errorf("%d traces for %d chains: %v", len(traces), n, traces)
	}
}

// TestGoTorture: handlers that grow their goroutine stacks deeply (~1 MiB,
// several stack copies) and spawn goroutines, under hey -c 50 for 20 s with
// the agent attached: the server never crashes, every request is answered,
// and every request has its span.
func TestGoTorture(t *testing.T) {
	e := startAgent(t, "--include-exe", "goapp-*")
	bin := buildGoApp(t, t.TempDir(), "", false)
	port := harness.FreePort(t)
	srv := goServer(t, bin, port)
	goInstrumented(t, e, srv.PID)
	hey := harness.ToolBinary(t, "hey")
	out, err := exec.Command(hey, "-c", "50", "-z", "20s", fmt.Sprintf("http://127.0.0.1:%d/torture", port)).CombinedOutput()
	if err != nil {
		t.Fatalf("hey: %v\n%s", err, out)
	}
	select {
	case <-srv.done:
		t.Fatalf("the traced server died under load: %s", srv.Output())
	default:
	}
	total, ok200 := heyCounts(t, string(out))
	if total == 0 || ok200 != total {
		t.Fatalf("hey: %d responses, %d of them 200:\n%s", total, ok200, out)
	}
	t.Logf("hey: %d requests, all answered 200", total)
	// Every request has its span, and every span is complete.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = e.recv.WaitForSpans(ctx, total, byPIDs(kindServer, srv.PID))
	time.Sleep(time.Second)
	spans := filterSpans(e.recv.Spans(), byPIDs(kindServer, srv.PID))
	t.Logf("under torture: %d spans for %d requests", len(spans), total)
	if len(spans) != total {
		t.Errorf("%d spans for %d requests, want one each:%s", len(spans), total, e.losses(t))
	}
	for _, s := range spans {
		if attrInt(s, "http.response.status_code") != 200 || attrStr(s, "url.path") != "/torture" ||
			s.Status != "UNSET" || !s.End.After(s.Start) || attrInt(s, "client.port") == 0 {
			t.Fatalf("incomplete span %q: status %d path %q client port %d", s.Name,
				attrInt(s, "http.response.status_code"), attrStr(s, "url.path"), attrInt(s, "client.port"))
		}
	}
}

// runGoClient runs goapp's client with args once the agent has
// instrumented it and the servers, and waits for it to succeed.
func runGoClient(t *testing.T, e *env, bin string, servers []int, args ...string) *proc {
	t.Helper()
	cl := startProc(t, nil, bin, append([]string{"client"}, args...)...)
	goInstrumented(t, e, append(servers, cl.PID)...)
	cl.send("")
	cl.mustSucceed(30 * time.Second)
	return cl
}

// checkClientSequence checks that each set of spans has the requests of
// goapp's client sequence: n/2 GET /hello (200), n/4 GET /status/404 and
// n/4 GET /status/503.
func checkClientSequence(t *testing.T, n int, sets ...[]otlpreceiver.Span) {
	t.Helper()
	want := map[string]int{"GET /hello 200": n / 2, "GET /status/404 404": n / 4, "GET /status/503 503": n / 4}
	for _, set := range sets {
		got := counts(set, func(s otlpreceiver.Span) string {
			return fmt.Sprintf("%s %s %d", attrStr(s, "http.request.method"), attrStr(s, "url.path"), attrInt(s, "http.response.status_code"))
		})
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%d spans %q, want %d (all: %v)", got[k], k, v, got)
			}
		}
	}
}

// heyCounts reads the number of responses and of 200 responses from hey's
// summary.
func heyCounts(t *testing.T, out string) (total, ok int) {
	t.Helper()
	for _, m := range regexp.MustCompile(`\[(\d{3})\]\s+(\d+) responses`).FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[2])
		total += n
		if m[1] == "200" {
			ok += n
		}
	}
	if strings.Contains(out, "Error distribution") {
		t.Errorf("hey saw errors:\n%s", out)
	}
	return total, ok
}

// TestGoAgentStopUnderLoad: the agent starts after the Go server is
// already serving, attaches to it under load, and is stopped while the load
// goes on: the server answers every request throughout, and the agent
// leaves no program, link or probe event behind.
func TestGoAgentStopUnderLoad(t *testing.T) {
	harness.RequireRoot(t)
	bin := buildGoApp(t, t.TempDir(), "", true)
	port := harness.FreePort(t)
	srv := goServer(t, bin, port)
	hey := harness.ToolBinary(t, "hey")
	load := exec.Command(hey, "-c", "20", "-z", "12s", fmt.Sprintf("http://127.0.0.1:%d/torture", port))
	var out strings.Builder
	load.Stdout, load.Stderr = &out, &out
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the server is busy before the agent comes

	events := probeEvents(t)
	e := startAgent(t, "--include-exe", "goapp-*")
	goInstrumented(t, e, srv.PID)
	// Spans flow while the load goes on.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := e.recv.WaitForSpans(ctx, 100, byPIDs(kindServer, srv.PID)); err != nil {
		t.Fatalf("no spans from the loaded server: %v", err)
	}
	progs, links := bpfIDs(t, e.agent.PID)
	if len(links) == 0 {
		t.Fatal("the agent holds no links")
	}
	time.Sleep(2 * time.Second)
	stopAndCheck(t, e.agent, agentBPF{progs: progs, links: links, events: events})

	if err := load.Wait(); err != nil {
		t.Fatalf("hey: %v\n%s", err, out.String())
	}
	select {
	case <-srv.done:
		t.Fatalf("the server died: %s", srv.Output())
	default:
	}
	total, ok := heyCounts(t, out.String())
	if total == 0 || ok != total {
		t.Fatalf("hey: %d responses, %d of them 200:\n%s", total, ok, out.String())
	}
	t.Logf("%d requests, all answered 200, across the agent's start and stop", total)
}
