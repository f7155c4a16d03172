package kernels

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
)

// Bounds: a cold cache (debootstrap, two kernels) took ~4.5 min here; a
// boot with the guest's work 1.5-5.5 min under software emulation on this
// shared machine. Each bound fails the test loudly when passed.
const (
	prepareTimeout = 20 * time.Minute
	buildTimeout   = 10 * time.Minute
	bootTimeout    = 12 * time.Minute
	// guestTimeout is the guest test's own -test.timeout: shorter than
	// bootTimeout, so that a stuck guest still reports.
	guestTimeout = "10m"
)

// TestKernels boots every kernel of kernels.txt with the freshly built agent
// and asserts what the guest saw: `periscope check`'s verdicts, an HTTPS
// span pair through OpenSSL, plain HTTP span pairs through the sockets
// collector's syscall tracepoints, a Go net/http span pair (once: the
// sockets collector leaves Go to gohttp), TCP retransmissions
// counted through the tracepoint and through the kprobe, each exactly the
// kernel's RetransSegs, and nothing left attached once the agent stopped.
func TestKernels(t *testing.T) {
	harness.RequireRoot(t)
	harness.LookTool(t, "qemu-system-x86_64")
	repo := harness.RepoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), prepareTimeout)
	defer cancel()
	start := time.Now()
	ks, err := Prepare(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernels ready in %v", time.Since(start).Round(time.Second))
	work := t.TempDir()
	in := guestDisk(t, repo, work)
	for _, k := range ks {
		t.Run(k.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
			defer cancel()
			b, err := BootGuest(ctx, k, in, work)
			t.Logf("%s (%s, %s): qemu ran %v", k.Name, k.Package, k.Release, b.Duration.Round(time.Second))
			defer func() {
				if t.Failed() {
					t.Logf("---- guest console ----\n%s", tailString(b.Console, 64<<10))
				}
			}()
			if err != nil {
				t.Fatal(err)
			}
			assertGuest(t, k, b.Result)
		})
	}
}

// guestDisk builds the agent, the guest test and goapp (static: they run on
// the guest's libc or none) and writes them with the guest's init into an
// ext4 image.
func guestDisk(t *testing.T, repo, work string) string {
	dir := filepath.Join(work, "in")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	goTool := harness.GoTool(t)
	env := append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	for _, b := range []struct {
		dir  string
		args []string
		env  []string
	}{
		{repo, []string{"build", "-o", filepath.Join(dir, "periscope"), "./cmd/periscope"}, env},
		{repo, []string{"test", "-c", "-tags", "kernelguest", "-o", filepath.Join(dir, "guest.test"), "./test/kernels/guest"}, env},
		{filepath.Join(repo, "test", "e2e", "testdata", "goapp"), []string{"build", "-o", filepath.Join(dir, "goapp"), "."},
			append(env, "GOWORK=off", "GOTOOLCHAIN=local")},
	} {
		cmd := exec.CommandContext(ctx, goTool, b.args...)
		cmd.Dir, cmd.Env = b.dir, b.env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(b.args, " "), err, out)
		}
	}
	initScript, err := os.ReadFile(filepath.Join(repo, "test", "kernels", "guest", "init.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{"init": initScript, "timeout": []byte(guestTimeout + "\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(work, "in.img")
	if err := MakeDisk(ctx, dir, img); err != nil {
		t.Fatal(err)
	}
	return img
}

// assertGuest checks one guest's result.
func assertGuest(t *testing.T, k Kernel, r *Result) {
	t.Helper()
	if r.Failed {
		t.Errorf("the guest test failed (its log is on the console)")
	}
	if r.Kernel != k.Release {
		t.Fatalf("the guest ran kernel %q, want %q", r.Kernel, k.Release)
	}
	multi := hasUprobeMulti(t, r.Kernel)
	links, path := "perf-event uprobes", "uprobe"
	if multi {
		links, path = "uprobe_multi links", "uprobe_multi"
	}
	assertCheck(t, r.Check, multi, links)
	if len(r.Runs) != 2 {
		t.Fatalf("%d agent runs, want 2 (default hook, then kprobe)", len(r.Runs))
	}
	def, kp := r.Runs[0], r.Runs[1]
	for _, c := range []string{"openssl", "gohttp"} {
		if !strings.Contains(def.AttachPath[c], "as "+links+";") {
			t.Errorf("/status: %s attach path %q, want %s", c, def.AttachPath[c], links)
		}
		if def.Probes[c+"/"+path] == 0 {
			t.Errorf("periscope_probes_attached: no %s probe with path=%q: %v", c, path, def.Probes)
		}
	}
	// Every probe is a link of its own on a kernel without uprobe_multi.
	if n := def.Probes["openssl/uprobe"] + def.Probes["gohttp/uprobe"]; !multi && float64(def.Links["perf_event"]) < n {
		t.Errorf("%d perf_event links for %v uprobes: %v", def.Links["perf_event"], n, def.Links)
	}
	assertHTTPS(t, def.HTTPS)
	assertPlain(t, def.Plain)
	// One syscall program pair, as tp_btf programs (every kernel with BTF
	// since 5.5 loads them).
	if !strings.HasPrefix(def.AttachPath["sockets"], "tp_btf raw_syscalls:sys_enter/sys_exit ") || def.Probes["sockets/tracepoint"] == 0 {
		t.Errorf("the sockets collector is not attached: /status %q, probes %v", def.AttachPath["sockets"], def.Probes)
	}
	assertGo(t, def.Go)
	if !strings.HasPrefix(def.AttachPath["tcp"], "raw tracepoint tcp:tcp_retransmit_skb;") {
		t.Errorf("default hook: tcp attach path %q, want the raw tracepoint", def.AttachPath["tcp"])
	}
	if !strings.HasPrefix(kp.AttachPath["tcp"], "kprobe tcp_retransmit_skb + __tcp_retransmit_skb;") {
		t.Errorf("tcp.hook kprobe: tcp attach path %q, want the kprobe without fallback", kp.AttachPath["tcp"])
	}
	if strings.Contains(kp.Logs, "retransmit hook fell back") {
		t.Errorf("tcp.hook kprobe: the agent fell back:\n%s", kp.Logs)
	}
	for _, run := range r.Runs {
		assertTCP(t, run)
		assertDetached(t, run)
	}
}

// hasUprobeMulti says whether a kernel release has uprobe_multi links (6.6+).
func hasUprobeMulti(t *testing.T, release string) bool {
	m := regexp.MustCompile(`^(\d+)\.(\d+)`).FindStringSubmatch(release)
	if m == nil {
		t.Fatalf("kernel release %q has no version", release)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return major > 6 || major == 6 && minor >= 6
}

// assertCheck: check exits 0, kprobes ok, uprobe_multi as the kernel has
// it, and each collector's path follows.
func assertCheck(t *testing.T, c Check, multi bool, links string) {
	t.Helper()
	if c.ExitCode != 0 {
		t.Errorf("periscope check exited %d:\n%s", c.ExitCode, c.Output)
	}
	status := map[string]string{}
	path := map[string]string{}
	cols := regexp.MustCompile(`\s{2,}`)
	for _, line := range strings.Split(c.Output, "\n") {
		f := cols.Split(strings.TrimSpace(line), 3)
		if len(f) >= 2 {
			status[f[0]] = f[1]
		}
		if len(f) == 3 {
			path[f[0]] = f[2]
		}
	}
	wantMulti := "no"
	if multi {
		wantMulti = "ok"
	}
	for feature, want := range map[string]string{"BTF": "ok", "uprobes": "ok", "raw tracepoints": "ok", "raw syscall tracepoints": "ok",
		"kprobes": "ok", "uprobe_multi links": wantMulti, "discovery": "ok", "openssl": "ok", "gohttp": "ok", "sockets": "ok", "tcp": "ok"} {
		if status[feature] != want {
			t.Errorf("periscope check: %s is %q, want %q:\n%s", feature, status[feature], want, c.Output)
		}
	}
	for _, col := range []string{"openssl", "gohttp"} {
		if !strings.Contains(path[col], "as "+links) {
			t.Errorf("periscope check: %s attach path %q does not say %q", col, path[col], links)
		}
	}
	if !strings.HasPrefix(path["tcp"], "raw tracepoint tcp:tcp_retransmit_skb;") {
		t.Errorf("periscope check: tcp attach path %q, want the raw tracepoint", path["tcp"])
	}
}

// assertHTTPS: curl's three requests over one connection are three nginx
// SERVER spans and three curl CLIENT spans, each nginx span the child of
// the curl span of the same request.
func assertHTTPS(t *testing.T, tr *Traffic) {
	t.Helper()
	want := map[string]int{"nginx 2 GET /index.html 200": 2, "nginx 2 GET /missing 404": 1,
		"curl 3 GET /index.html 200": 2, "curl 3 GET /missing 404": 1}
	assertPairs(t, "HTTPS", tr, want)
}

// assertPlain: curl's three requests to nginx over plain HTTP, one
// connection, are three nginx SERVER and three curl CLIENT spans, linked:
// what only the sockets collector (syscall tracepoints) can see.
func assertPlain(t *testing.T, tr *Traffic) {
	t.Helper()
	want := map[string]int{"nginx 2 GET /ok 200": 1, "nginx 2 GET /missing 404": 1, "nginx 2 GET /fail 500": 1,
		"curl 3 GET /ok 200": 1, "curl 3 GET /missing 404": 1, "curl 3 GET /fail 500": 1}
	assertPairs(t, "plain HTTP", tr, want)
}

// assertGo: goapp's four requests are four SERVER and four CLIENT spans.
func assertGo(t *testing.T, tr *Traffic) {
	t.Helper()
	want := map[string]int{"goapp 2 GET /hello 200": 2, "goapp 2 GET /status/404 404": 1, "goapp 2 GET /status/503 503": 1,
		"goapp 3 GET /hello 200": 2, "goapp 3 GET /status/404 404": 1, "goapp 3 GET /status/503 503": 1}
	assertPairs(t, "Go", tr, want)
}

// assertPairs counts spans by "service kind method path code" and checks that each
// server span's parent is a client span of the traffic in the same trace.
func assertPairs(t *testing.T, what string, tr *Traffic, want map[string]int) {
	t.Helper()
	if tr == nil {
		t.Errorf("no %s traffic was sent", what)
		return
	}
	got := map[string]int{}
	clients := map[string]Span{}
	for _, s := range tr.Spans {
		a := s.Attributes
		got[fmt.Sprintf("%s %d %s %s %s", s.Service, s.Kind, a["http.request.method"], a["url.path"], a["http.response.status_code"])]++
		if s.Kind == 3 {
			clients[s.SpanID] = s
		}
	}
	if len(tr.Spans) != 2*tr.Requests || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: %d spans %v, want %d: %v\n%s", what, len(tr.Spans), got, 2*tr.Requests, want, Describe(tr.Spans))
		return
	}
	for _, s := range tr.Spans {
		if s.Kind != 2 {
			continue
		}
		c, ok := clients[s.ParentSpanID]
		if !ok || c.TraceID != s.TraceID || c.Attributes["http.response.status_code"] != s.Attributes["http.response.status_code"] {
			t.Errorf("%s: server span %s is not the child of a client span\n%s", what, s, Describe(tr.Spans))
		}
	}
}

// assertTCP: the agent counted exactly what the kernel retransmitted: for
// the sending socket (tcpi_total_retrans), charged to the sender and its
// port, and for the whole guest (RetransSegs).
func assertTCP(t *testing.T, run Run) {
	t.Helper()
	tcp := run.TCP
	what := "tcp.hook " + run.Hook
	if run.Hook == "" {
		what = "default hook"
	}
	if tcp.Bytes != 4<<20 {
		t.Errorf("%s: the lossy transfer delivered %d bytes, want %d", what, tcp.Bytes, 4<<20)
	}
	// Tail loss probes stay on: their resends go through
	// __tcp_retransmit_skb, which both hooks see.
	if tcp.EarlyRetrans == "0" {
		t.Errorf("%s: net.ipv4.tcp_early_retrans was 0 during the transfer: tail loss probes were off", what)
	}
	if tcp.SocketRetrans < 5 {
		t.Errorf("%s: the sending socket retransmitted %d segments only: the drop rule caused no loss", what, tcp.SocketRetrans)
	}
	var all, sender float64
	for k, v := range tcp.Series {
		all += v
		l := labels(k)
		if l["process_pid"] == strconv.Itoa(tcp.SenderPID) && l["network_local_port"] == strconv.Itoa(tcp.Port) {
			sender += v
		}
	}
	t.Logf("%s: agent %v (sender %v), socket %d, RetransSegs %d, TCPLossProbes %d", what, all, sender, tcp.SocketRetrans,
		tcp.RetransSegs, tcp.Counters["TcpExt:TCPLossProbes"])
	if sender != float64(tcp.SocketRetrans) {
		t.Errorf("%s: periscope_tcp_retransmits_total rose by %v for the sender (pid %d, port %d), the kernel counted %d for its socket: %v",
			what, sender, tcp.SenderPID, tcp.Port, tcp.SocketRetrans, tcp.Series)
	}
	if all != float64(tcp.RetransSegs) {
		t.Errorf("%s: periscope_tcp_retransmits_total rose by %v in all, RetransSegs by %d: %v\nTcp/TcpExt counters that moved: %v",
			what, all, tcp.RetransSegs, tcp.Series, tcp.Counters)
	}
}

// assertDetached: the agent exited 0 and left exactly what was attached
// before it started.
func assertDetached(t *testing.T, run Run) {
	t.Helper()
	if run.StopCode != 0 {
		t.Errorf("tcp.hook %q: the agent exited with code %d", run.Hook, run.StopCode)
	}
	if run.After != run.Before {
		t.Errorf("tcp.hook %q: attached before the agent %+v, after it stopped %+v", run.Hook, run.Before, run.After)
	}
	if run.After.UprobeEvents != "" || run.After.KprobeEvents != "" {
		t.Errorf("tcp.hook %q: probes left in tracefs: uprobe_events %q, kprobe_events %q", run.Hook, run.After.UprobeEvents, run.After.KprobeEvents)
	}
}

// labels splits a series key ("a=1,b=2") into its labels.
func labels(key string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(key, ",") {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}
