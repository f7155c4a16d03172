//go:build kernelguest

// Package guest is the program the qemu guests of test/kernels run: built by
// the host test with `go test -c -tags kernelguest`, started by the guest's
// init, it runs `periscope check`, then the agent twice (default TCP hook,
// then `tcp.hook: kprobe`), drives nginx/curl over HTTPS and over plain
// HTTP (the sockets collector's syscall tracepoints), a Go net/http server
// and client and a lossy TCP transfer, and writes what it saw as a
// kernels.Result to the serial port named by GUEST_RESULT. It
// judges nothing: the host test asserts the result.
//
// Software emulation is 10-50 times slower than this machine: every wait
// here is long but bounded, and fails the test (which the host reports)
// rather than hang.
package guest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/kernels"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

const (
	// waitLong bounds every wait for the agent (ready, instrumented, spans).
	waitLong = 3 * time.Minute
	// tcpBytes are sent over a connection that loses 30 % of its data
	// segments.
	tcpBytes = 4 << 20
	// goRequests the goapp client sends (/hello, /status/404, /status/503,
	// /hello).
	goRequests = 4
)

// httpsPaths are the requests curl sends to nginx over one connection.
var httpsPaths = []string{"/index.html", "/index.html", "/missing"}

func TestGuest(t *testing.T) {
	// Not PERISCOPE_*: the agent, which inherits the environment, rejects
	// variables of its prefix that it does not know.
	dir, out := os.Getenv("GUEST_DIR"), os.Getenv("GUEST_RESULT")
	if dir == "" || out == "" {
		t.Fatal("GUEST_DIR and GUEST_RESULT are not set: this test runs in the qemu guests of test/kernels (make test-kernels)")
	}
	res := kernels.Result{Kernel: uname(t)}
	defer func() {
		res.Failed = t.Failed()
		writeResult(t, out, res)
	}()
	bin := filepath.Join(dir, "periscope")
	res.Check = check(bin)
	t.Logf("periscope check (exit %d):\n%s", res.Check.ExitCode, res.Check.Output)
	res.Runs = append(res.Runs, agentRun(t, bin, dir, ""))
	res.Runs = append(res.Runs, agentRun(t, bin, dir, "kprobe"))
}

func uname(t *testing.T) string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}

func check(bin string) kernels.Check {
	out, err := exec.Command(bin, "check").CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		out = append(out, err.Error()...)
	}
	return kernels.Check{Output: string(out), ExitCode: code}
}

// agentRun starts the agent with tcp.hook hook, drives traffic (with the
// default hook: HTTPS and Go too), stops the agent while the traced
// programs still run and records what stayed attached.
func agentRun(t *testing.T, bin, dir, hook string) kernels.Run {
	run := kernels.Run{Hook: hook, Before: probes(t)}
	cfg := filepath.Join(t.TempDir(), "periscope.yaml")
	yaml := "{}\n"
	if hook != "" {
		yaml = "tcp:\n  hook: " + hook + "\n"
	}
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	recv := otlpreceiver.Start(t)
	start := time.Now()
	a := harness.StartAgent(t, bin, []string{"run", "--console=off", "--config", cfg}, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint(), "OTEL_EXPORTER_OTLP_INSECURE=true", "OTEL_BSP_SCHEDULE_DELAY=200",
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatalf("agent not ready: %v", err)
	}
	t.Logf("agent (tcp.hook %q) ready in %v", hook, time.Since(start).Round(time.Millisecond))
	run.AttachPath = attachPaths(t, a)
	if hook == "" {
		plainPort := harness.FreePort(t)
		ngx := harness.StartNginx(t, harness.NginxOptions{Workers: 1, ExtraHTTPConfig: plainServer(plainPort)})
		run.HTTPS = https(t, a, recv, ngx)
		run.Plain = plain(t, recv, ngx, plainPort)
		server := goServer(t, dir)
		run.Go = goTraffic(t, a, recv, dir, server)
		defer ngx.Stop()
		defer server.Process.Kill()
	}
	run.TCP = lossyTransfer(t, a)
	run.Links = linkTypes(t)
	run.Probes = probesAttached(t, a)
	run.Logs = readFile(a.StderrPath)
	start = time.Now()
	run.StopCode = a.Stop()
	t.Logf("agent stopped in %v with code %d", time.Since(start).Round(time.Millisecond), run.StopCode)
	run.After = probes(t)
	return run
}

// https sends httpsPaths over one curl connection to ngx once its worker
// is instrumented.
func https(t *testing.T, a *harness.Agent, recv *otlpreceiver.Receiver, ngx *harness.Nginx) *kernels.Traffic {
	instrumented(t, a, ngx.WorkerPIDs...)
	var args []string
	for _, p := range httpsPaths {
		args = append(args, "-o", "/dev/null", ngx.URL+p)
	}
	curl := exec.Command(harness.LookTool(t, "curl"), append([]string{"-sS", "--max-time", "120", "--cacert", ngx.CAFile}, args...)...)
	if out, err := curl.CombinedOutput(); err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	tr := &kernels.Traffic{Port: ngx.Port, Requests: len(httpsPaths), ServerPIDs: ngx.WorkerPIDs, ClientPIDs: []int{curl.Process.Pid}}
	tr.Spans = spans(t, recv, 2*tr.Requests, append(tr.ServerPIDs, tr.ClientPIDs...), "https")
	return tr
}

// plainPaths are the requests curl sends to nginx's plain HTTP server over
// one connection: 200, 404 and 500.
var plainPaths = []string{"/ok", "/missing", "/fail"}

// plainServer is an nginx server block on 127.0.0.1:port, plain HTTP.
func plainServer(port int) string {
	return fmt.Sprintf(`
    server {
        listen 127.0.0.1:%d;
        location = /ok { return 200 "ok\n"; }
        location = /fail { return 500; }
    }`, port)
}

// plain sends plainPaths over one curl connection to ngx's plain HTTP port:
// the sockets collector sees them at the syscalls (nginx's worker was
// already instrumented for HTTPS; the syscall tracepoints trace every
// process).
func plain(t *testing.T, recv *otlpreceiver.Receiver, ngx *harness.Nginx, port int) *kernels.Traffic {
	var args []string
	for _, p := range plainPaths {
		args = append(args, "-o", "/dev/null", fmt.Sprintf("http://127.0.0.1:%d%s", port, p))
	}
	curl := exec.Command(harness.LookTool(t, "curl"), append([]string{"-sS", "--max-time", "120"}, args...)...)
	if out, err := curl.CombinedOutput(); err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	tr := &kernels.Traffic{Port: port, Requests: len(plainPaths), ServerPIDs: ngx.WorkerPIDs, ClientPIDs: []int{curl.Process.Pid}}
	tr.Spans = spans(t, recv, 2*tr.Requests, append(tr.ServerPIDs, tr.ClientPIDs...), "http")
	return tr
}

// goServer starts goapp's HTTP server on a free port, from a copy in /tmp
// (a file of the test's own), and waits until it listens.
func goServer(t *testing.T, dir string) *exec.Cmd {
	bin := harness.CopyExe(t, filepath.Join(dir, "goapp"), "goapp")
	port := harness.FreePort(t)
	cmd := exec.Command(bin, "server", fmt.Sprintf("127.0.0.1:%d", port))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	want := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(waitLong); ; time.Sleep(100 * time.Millisecond) {
		addrs, _ := harness.ListeningAddrs(cmd.Process.Pid)
		if len(addrs) == 1 && addrs[0] == want {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("goapp does not listen on %s after %v", want, waitLong)
		}
	}
}

// goTraffic runs goapp's client against server once both are instrumented.
func goTraffic(t *testing.T, a *harness.Agent, recv *otlpreceiver.Receiver, dir string, server *exec.Cmd) *kernels.Traffic {
	addrs, _ := harness.ListeningAddrs(server.Process.Pid)
	_, portStr, _ := net.SplitHostPort(addrs[0])
	port, _ := strconv.Atoi(portStr)
	client := exec.Command(server.Path, "client", "http://"+addrs[0], strconv.Itoa(goRequests))
	stdin, err := client.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	client.Stdout, client.Stderr = &out, &out
	client.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	instrumented(t, a, server.Process.Pid, client.Process.Pid)
	io.WriteString(stdin, "\n")
	done := make(chan error, 1)
	go func() { done <- client.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("goapp client: %v: %s", err, out.String())
		}
	case <-time.After(waitLong):
		_ = client.Process.Kill()
		t.Fatalf("goapp client still runs after %v", waitLong)
	}
	tr := &kernels.Traffic{Port: port, Requests: goRequests, ServerPIDs: []int{server.Process.Pid}, ClientPIDs: []int{client.Process.Pid}}
	tr.Spans = spans(t, recv, 2*tr.Requests, append(tr.ServerPIDs, tr.ClientPIDs...), "http")
	return tr
}

func instrumented(t *testing.T, a *harness.Agent, pids ...int) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	for _, pid := range pids {
		if _, err := a.WaitInstrumented(ctx, pid); err != nil {
			t.Fatalf("pid %d not instrumented: %v", pid, err)
		}
	}
}

// spans waits (bounded) for at least n spans of pids with url.scheme
// scheme, then a settling period for any more, and returns all of them: the
// host counts.
func spans(t *testing.T, recv *otlpreceiver.Receiver, n int, pids []int, scheme string) []kernels.Span {
	mine := func(s otlpreceiver.Span) bool {
		if s.Attributes["url.scheme"] != scheme {
			return false
		}
		pid, _ := s.Resource["process.pid"].(int64)
		for _, p := range pids {
			if int64(p) == pid {
				return true
			}
		}
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if _, err := recv.WaitForSpans(ctx, n, mine); err != nil {
		t.Logf("waiting for %d spans of %v: %v", n, pids, err)
	}
	time.Sleep(3 * time.Second)
	var out []kernels.Span
	for _, s := range recv.Spans() {
		if mine(s) {
			out = append(out, kernels.FromOTLP(s))
		}
	}
	return out
}

// lossyTransfer sends tcpBytes from this process over loopback while nft
// drops 30 % of the sender's data segments, and records how much the
// kernel's counters (the node's, the sending socket's) and the agent's
// counter rose.
func lossyTransfer(t *testing.T, a *harness.Agent) kernels.TCP {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	undrop := dropPackets(t, fmt.Sprintf("tcp sport %d meta length > 200 numgen random mod 10 < 3", port))
	before := series(t, a)
	net0 := netCounters(t)

	sent := make(chan uint32, 1)
	go func() { sent <- send(t, l) }()
	c, err := net.DialTimeout("tcp", l.Addr().String(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(waitLong))
	n, err := io.CopyN(io.Discard, c, tcpBytes)
	c.Close()
	if err != nil {
		t.Fatalf("lossy transfer: received %d bytes: %v", n, err)
	}
	socket := <-sent
	undrop()
	// Until the agent has read every retransmission: its counter still
	// for 3 s.
	var after map[string]float64
	last, since := -1.0, time.Now()
	for deadline := time.Now().Add(waitLong); time.Since(since) < 3*time.Second; time.Sleep(200 * time.Millisecond) {
		after = series(t, a)
		if sum := total(after); sum != last {
			last, since = sum, time.Now()
		}
		if time.Now().After(deadline) {
			t.Errorf("the retransmission counter still moves after %v", waitLong)
			break
		}
	}
	tcp := kernels.TCP{Port: port, SenderPID: os.Getpid(), Bytes: n, SocketRetrans: socket, Series: map[string]float64{}, Counters: map[string]uint64{},
		EarlyRetrans: strings.TrimSpace(readFile("/proc/sys/net/ipv4/tcp_early_retrans"))}
	for k, v := range netCounters(t) {
		if d := v - net0[k]; d != 0 {
			tcp.Counters[k] = d
		}
	}
	tcp.RetransSegs = tcp.Counters["Tcp:RetransSegs"]
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			tcp.Series[k] = d
		}
	}
	t.Logf("lossy transfer of %d bytes: the socket retransmitted %d, RetransSegs +%d, agent %v; counters %v", n, socket, tcp.RetransSegs, tcp.Series, tcp.Counters)
	return tcp
}

// send accepts one connection on l, writes tcpBytes, waits for the
// receiver to close (every segment acknowledged), reads what the kernel
// counted for the socket (tcpi_total_retrans) and resets the connection:
// no FIN of its own that could be retransmitted after the count.
func send(t *testing.T, l net.Listener) uint32 {
	c, err := l.Accept()
	if err != nil {
		t.Errorf("lossy transfer: accept: %v", err)
		return 0
	}
	tc := c.(*net.TCPConn)
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(waitLong))
	if _, err := tc.Write(make([]byte, tcpBytes)); err != nil {
		t.Errorf("lossy transfer: send: %v", err)
		return 0
	}
	if _, err := io.Copy(io.Discard, tc); err != nil {
		t.Errorf("lossy transfer: wait for the receiver's FIN: %v", err)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		t.Errorf("lossy transfer: %v", err)
		return 0
	}
	var info *unix.TCPInfo
	var infoErr error
	if err := raw.Control(func(fd uintptr) { info, infoErr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || infoErr != nil {
		t.Errorf("lossy transfer: TCP_INFO: %v %v", err, infoErr)
		return 0
	}
	_ = tc.SetLinger(0)
	return info.Total_retrans
}

// netCounters reads the Tcp: counters of /proc/net/snmp and the TcpExt:
// ones of /proc/net/netstat, as "Tcp:RetransSegs".
func netCounters(t *testing.T) map[string]uint64 {
	out := map[string]uint64{}
	for _, f := range []string{"/proc/net/snmp", "/proc/net/netstat"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			if len(names) == 0 || len(names) != len(values) || (names[0] != "Tcp:" && names[0] != "TcpExt:") {
				continue
			}
			for j := 1; j < len(names); j++ {
				if v, err := strconv.ParseUint(values[j], 10, 64); err == nil {
					out[names[0]+names[j]] = v
				}
			}
		}
	}
	if _, ok := out["Tcp:RetransSegs"]; !ok {
		t.Fatal("/proc/net/snmp has no Tcp: RetransSegs")
	}
	return out
}

func total(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// series scrapes periscope_tcp_retransmits_total, keyed by labels.
func series(t *testing.T, a *harness.Agent) map[string]float64 {
	out := map[string]float64{}
	fam := a.MetricFamilies(t)["periscope_tcp_retransmits_total"]
	if fam == nil {
		return out
	}
	for _, m := range fam.GetMetric() {
		var parts []string
		for _, lp := range m.GetLabel() {
			if lp.GetValue() != "" {
				parts = append(parts, lp.GetName()+"="+lp.GetValue())
			}
		}
		sort.Strings(parts)
		out[strings.Join(parts, ",")] = m.GetCounter().GetValue()
	}
	return out
}

// probesAttached reads periscope_probes_attached by collector and path.
func probesAttached(t *testing.T, a *harness.Agent) map[string]float64 {
	out := map[string]float64{}
	fam := a.MetricFamilies(t)["periscope_probes_attached"]
	if fam == nil {
		return out
	}
	for _, m := range fam.GetMetric() {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		out[l["collector"]+"/"+l["path"]] = m.GetGauge().GetValue()
	}
	return out
}

// dropPackets drops the loopback packets matching match on the input hook
// (where drops cause retransmissions) until the returned func is called.
func dropPackets(t *testing.T, match string) func() {
	nft := harness.LookTool(t, "nft")
	rules := "table inet periscope_guest {\n chain input {\n  type filter hook input priority 0;\n  iifname \"lo\" " + match + " drop\n }\n}\n"
	f := filepath.Join(t.TempDir(), "drop.nft")
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nft, "-f", f).CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s\n%s", err, out, rules)
	}
	return func() {
		if out, err := exec.Command(nft, "delete", "table", "inet", "periscope_guest").CombinedOutput(); err != nil {
			t.Fatalf("nft delete table: %v: %s", err, out)
		}
	}
}

// attachPaths reads each collector's attach path from /status.
func attachPaths(t *testing.T, a *harness.Agent) map[string]string {
	c := http.Client{Timeout: time.Minute}
	resp, err := c.Get("http://" + a.MetricsAddr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Collectors []struct {
			Name       string `json:"name"`
			AttachPath string `json:"attach_path"`
		} `json:"collectors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range st.Collectors {
		out[c.Name] = c.AttachPath
	}
	return out
}

// probes reads what is attached on the node.
func probes(t *testing.T) kernels.Probes {
	links := bpftool(t, "link")
	progs := bpftool(t, "prog")
	return kernels.Probes{
		UprobeEvents: readFile("/sys/kernel/tracing/uprobe_events"),
		KprobeEvents: readFile("/sys/kernel/tracing/kprobe_events"),
		Links:        len(links), Programs: len(progs),
	}
}

// linkTypes counts the BPF links on the node by type.
func linkTypes(t *testing.T) map[string]int {
	out := map[string]int{}
	for _, l := range bpftool(t, "link") {
		typ, _ := l["type"].(string)
		out[typ]++
	}
	return out
}

func bpftool(t *testing.T, object string) []map[string]any {
	out, err := exec.Command(harness.LookTool(t, "bpftool"), "-j", object, "show").Output()
	if err != nil {
		t.Fatalf("bpftool %s show: %v", object, err)
	}
	var v []map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("bpftool %s show: %v: %s", object, err, out)
	}
	return v
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(b)
}

// writeResult writes the result as one marked line to path (a serial
// port).
func writeResult(t *testing.T, path string, res kernels.Result) {
	b, err := json.Marshal(res)
	if err != nil {
		t.Errorf("encode result: %v", err)
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Errorf("open %s: %v", path, err)
		return
	}
	defer f.Close()
	if _, err := f.Write(append(append([]byte("\n"+kernels.ResultMarker), b...), '\n')); err != nil {
		t.Errorf("write %s: %v", path, err)
	}
}
