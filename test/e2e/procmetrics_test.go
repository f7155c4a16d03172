package e2e

import (
	"bytes"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// Settings of the resource metrics tests: short, so that the test is.
const (
	resInterval = time.Second
	resExpiry   = 5 * time.Second
	clockTicks  = 100 // USER_HZ: the unit of /proc/PID/stat's times
)

// procNow is what /proc says of a process now.
type procNow struct {
	user, system     float64 // seconds
	rss, virtual     float64 // bytes
	threads, fds     float64
	voluntary, invol float64
}

func readProcNow(t *testing.T, pid int) procNow {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d", pid)
	var p procNow
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64) // utime is field 14; f[0] is field 3
	st, _ := strconv.ParseFloat(f[12], 64)
	p.user, p.system = ut/clockTicks, st/clockTicks
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.ParseFloat(fs[0], 64)
		switch k {
		case "VmRSS":
			p.rss = n * 1024
		case "VmSize":
			p.virtual = n * 1024
		case "Threads":
			p.threads = n
		case "voluntary_ctxt_switches":
			p.voluntary = n
		case "nonvoluntary_ctxt_switches":
			p.invol = n
		}
	}
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	p.fds = float64(len(fds))
	return p
}

// within reports whether got is within tol of want.
func within(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

// resSeries counts the resource metric series of a service on /metrics.
func resSeries(fams map[string]*dto.MetricFamily, service string) int {
	n := 0
	for _, name := range []string{"process_cpu_time_seconds_total", "process_memory_usage_bytes", "process_memory_virtual_bytes",
		"process_threads", "process_unix_file_descriptors", "process_context_switches_total"} {
		for _, m := range fams[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "service_name" && l.GetValue() == service {
					n++
				}
			}
		}
	}
	return n
}

// waitFor polls cond every 200 ms for up to d and fails with what it last
// said.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, d, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lastPoint returns the newest OTLP point of a metric whose resource has
// service.name service and whose attributes include attrs.
func lastPoint(r *otlpreceiver.Receiver, service, name string, attrs map[string]string) (otlpreceiver.Metric, bool) {
	var last otlpreceiver.Metric
	found := false
	for _, m := range r.Metrics() {
		if m.Name != name || m.Resource["service.name"] != service {
			continue
		}
		match := true
		for k, v := range attrs {
			match = match && fmt.Sprint(m.Attributes[k]) == v
		}
		if match && (!found || !m.Time.Before(last.Time)) {
			last, found = m, true
		}
	}
	return last, found
}

// expectedHostID is what gopsutil's HostID reads on this machine: the
// SMBIOS product UUID when readable, else /etc/machine-id with dashes.
func expectedHostID(t *testing.T) string {
	if b, err := os.ReadFile("/sys/class/dmi/id/product_uuid"); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return strings.ToLower(string(bytes.TrimSpace(b)))
	}
	b, err := os.ReadFile("/etc/machine-id")
	if err != nil || len(bytes.TrimSpace(b)) != 32 {
		t.Fatalf("no product UUID and no machine-id on this machine: %v", err)
	}
	s := string(bytes.TrimSpace(b))
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// TestProcessMetrics: a python server holding 200 MiB and 500 files and a
// Go server burning a CPU, traced by the agent: the resource metrics on
// /metrics (per workload) and over OTLP (per process) match /proc; the
// host attributes are on the resources and target_info; the series of
// an exited process go after the expiry; 1,000 short-lived processes of
// one workload make one workload's series.
func TestProcessMetrics(t *testing.T) {
	goBin := filepath.Join(t.TempDir(), "goapp-res")
	if err := os.Rename(buildGoApp(t, t.TempDir(), "", false), goBin); err != nil {
		t.Fatal(err)
	}
	e := startAgentOTLP(t, []string{
		"OTEL_METRIC_EXPORT_INTERVAL=1000",
		"PERISCOPE_PROCESS_METRICS_INTERVAL=" + resInterval.String(),
		"PERISCOPE_PROCESS_METRICS_EXPIRY=" + resExpiry.String(),
	})
	py := startProc(t, []string{"OTEL_SERVICE_NAME=py-res"}, "/usr/bin/python3", testdataPath(t, "resource_hog.py"), "200", "500")
	py.expect("ready", 60*time.Second)
	port := harness.FreePort(t)
	burn := startProc(t, []string{"OTEL_SERVICE_NAME=go-burn"}, goBin, "server", fmt.Sprintf("127.0.0.1:%d", port), "-burn")
	waitListening(t, burn, port)
	e.instrumented(t, py.PID, burn.PID)

	t.Run("prometheus", func(t *testing.T) {
		checkResProm(t, e, py.PID, burn.PID)
		// With the resource series present, promtool accepts the endpoint.
		checkPromtool(t, e.agent)
	})
	t.Run("otlp", func(t *testing.T) { checkResOTLP(t, e, py.PID, burn.PID) })
	t.Run("host", func(t *testing.T) { checkHostAttrs(t, e, port) })
	t.Run("expiry", func(t *testing.T) { checkResExpiry(t, e, py) })
	t.Run("short-lived", func(t *testing.T) { checkShortLived(t, e, goBin) })
}

func checkResProm(t *testing.T, e *env, pyPID, burnPID int) {
	py := map[string]string{"service_name": "py-res"}
	waitFor(t, 20*time.Second, "python's gauges on /metrics match /proc", func() (bool, string) {
		fams := e.agent.MetricFamilies(t)
		sum := func(name string) float64 { v, _ := harness.SumMetric(fams, name, py); return v }
		p := readProcNow(t, pyPID)
		got := fmt.Sprintf("rss %.0f (proc %.0f) virtual %.0f (%.0f) threads %.0f (%.0f) fds %.0f (%.0f)",
			sum("process_memory_usage_bytes"), p.rss, sum("process_memory_virtual_bytes"), p.virtual,
			sum("process_threads"), p.threads, sum("process_unix_file_descriptors"), p.fds)
		return p.rss >= 200<<20 && p.fds >= 500 &&
			within(sum("process_memory_usage_bytes"), p.rss, 2<<20) &&
			within(sum("process_memory_virtual_bytes"), p.virtual, 2<<20) &&
			sum("process_threads") == p.threads &&
			sum("process_unix_file_descriptors") == p.fds, got
	})
	// CPU: the value is at most one interval old, the burner uses at most
	// one CPU: before-read minus an interval's worth (and a tick) ≤ value ≤
	// after-read.
	burn := map[string]string{"service_name": "go-burn", "cpu_mode": "user"}
	waitFor(t, 20*time.Second, "go-burn's user CPU on /metrics matches /proc", func() (bool, string) {
		before := readProcNow(t, burnPID)
		v := e.agent.Metric(t, "process_cpu_time_seconds_total", burn)
		after := readProcNow(t, burnPID)
		tol := resInterval.Seconds()*1.5 + 0.02
		return v >= 1 && v >= before.user-tol && v <= after.user, fmt.Sprintf("%.2f s, /proc %.2f..%.2f", v, before.user, after.user)
	})
	waitFor(t, 10*time.Second, "python's context switches on /metrics match /proc", func() (bool, string) {
		before := readProcNow(t, pyPID)
		v := e.agent.Metric(t, "process_context_switches_total", map[string]string{"service_name": "py-res", "process_context_switch_type": "voluntary"})
		after := readProcNow(t, pyPID)
		// serve_forever wakes twice a second.
		return v > 0 && v <= after.voluntary && v >= before.voluntary-2*resInterval.Seconds()-2, fmt.Sprintf("%.0f, /proc %.0f..%.0f", v, before.voluntary, after.voluntary)
	})
	fams := e.agent.MetricFamilies(t)
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "process_") {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "process_pid" {
					t.Errorf("%s has a process_pid label", f.GetName())
				}
			}
		}
	}
	if n := resSeries(fams, "py-res"); n != 8 {
		t.Errorf("py-res has %d resource series, want 8 (2 CPU modes, 4 gauges, 2 switch types)", n)
	}
}

func checkResOTLP(t *testing.T, e *env, pyPID, burnPID int) {
	waitFor(t, 20*time.Second, "python's gauges over OTLP match /proc", func() (bool, string) {
		p := readProcNow(t, pyPID)
		fds, ok1 := lastPoint(e.recv, "py-res", "process.unix.file_descriptor.count", nil)
		rss, ok2 := lastPoint(e.recv, "py-res", "process.memory.usage", nil)
		thr, ok3 := lastPoint(e.recv, "py-res", "process.thread.count", nil)
		if !ok1 || !ok2 || !ok3 {
			return false, "no points yet"
		}
		return fds.Value == p.fds && within(rss.Value, p.rss, 2<<20) && thr.Value == p.threads,
			fmt.Sprintf("fds %.0f (proc %.0f) rss %.0f (%.0f) threads %.0f (%.0f)", fds.Value, p.fds, rss.Value, p.rss, thr.Value, p.threads)
	})
	rss, _ := lastPoint(e.recv, "py-res", "process.memory.usage", nil)
	if fmt.Sprint(rss.Resource["process.pid"]) != strconv.Itoa(pyPID) || rss.Unit != "By" || rss.Type != "sum" || rss.Monotonic {
		t.Errorf("process.memory.usage: resource %v, unit %q, type %s, monotonic %v", rss.Resource, rss.Unit, rss.Type, rss.Monotonic)
	}
	fds, _ := lastPoint(e.recv, "py-res", "process.unix.file_descriptor.count", nil)
	if fds.Unit != "{file_descriptor}" {
		t.Errorf("process.unix.file_descriptor.count unit %q", fds.Unit)
	}
	waitFor(t, 20*time.Second, "go-burn's user CPU over OTLP matches /proc", func() (bool, string) {
		before := readProcNow(t, burnPID)
		cpu, ok := lastPoint(e.recv, "go-burn", "process.cpu.time", map[string]string{"cpu.mode": "user"})
		after := readProcNow(t, burnPID)
		if !ok {
			return false, "no point yet"
		}
		// A point is up to an export interval old on top of the reading's age.
		tol := 2.5*resInterval.Seconds() + 0.02
		return cpu.Value >= 1 && cpu.Value >= before.user-tol && cpu.Value <= after.user && cpu.Unit == "s" && cpu.Monotonic,
			fmt.Sprintf("%.2f s (unit %s, monotonic %v), /proc %.2f..%.2f", cpu.Value, cpu.Unit, cpu.Monotonic, before.user, after.user)
	})
	sw, ok := lastPoint(e.recv, "go-burn", "process.context_switches", map[string]string{"process.context_switch.type": "involuntary"})
	if !ok || sw.Unit != "{context_switch}" || !sw.Monotonic || fmt.Sprint(sw.Resource["process.pid"]) != strconv.Itoa(burnPID) {
		t.Errorf("process.context_switches of go-burn: %+v (found %v)", sw, ok)
	}
}

// checkHostAttrs: host.id, host.arch, os.type and os.description are on
// spans, on the resource metrics and in target_info.
func checkHostAttrs(t *testing.T, e *env, port int) {
	want := map[string]string{"host.id": expectedHostID(t), "host.arch": runtime.GOARCH, "os.type": "linux"}
	check := func(what string, res map[string]any) {
		t.Helper()
		for k, v := range want {
			if fmt.Sprint(res[k]) != v {
				t.Errorf("%s: %s = %v, want %q", what, k, res[k], v)
			}
		}
		if d, _ := res["os.description"].(string); !strings.Contains(d, "Linux") || res["host.name"] == nil {
			t.Errorf("%s: os.description %q, host.name %v", what, d, res["host.name"])
		}
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/hello", port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	spans := e.spans(t, 1, func(s otlpreceiver.Span) bool { return s.ServiceName() == "go-burn" })
	check("span", spans[0].Resource)
	m, _ := lastPoint(e.recv, "go-burn", "process.cpu.time", nil)
	check("process.cpu.time", m.Resource)
	var red otlpreceiver.Metric
	waitFor(t, 10*time.Second, "the RED histogram of go-burn over OTLP", func() (bool, string) {
		var ok bool
		red, ok = lastPoint(e.recv, "go-burn", "http.server.request.duration", nil)
		return ok, "none"
	})
	check("http.server.request.duration", red.Resource)
	labels := map[string]string{"host_id": want["host.id"], "host_arch": want["host.arch"], "os_type": "linux", "service_name": "periscope"}
	if v := e.agent.Metric(t, "target_info", labels); v != 1 {
		t.Errorf("target_info%v = %v, want 1", labels, v)
	}
}

// checkResExpiry: once python exits its gauges go at once, its counters
// stay (a workload's CPU never goes down) until the expiry, then go; and
// OTLP stops sending its process.
func checkResExpiry(t *testing.T, e *env, py *proc) {
	py.kill()
	killed := time.Now()
	waitFor(t, 10*time.Second, "python's gauges gone after its exit", func() (bool, string) {
		fams := e.agent.MetricFamilies(t)
		n := resSeries(fams, "py-res")
		return n == 4, fmt.Sprintf("%d series", n)
	})
	if since := time.Since(killed); since >= resExpiry {
		t.Fatalf("the exit took %v to be seen, longer than the expiry: cannot tell the expiry apart", since)
	}
	waitFor(t, resExpiry+10*time.Second, "python's counters gone after the expiry", func() (bool, string) {
		n := resSeries(e.agent.MetricFamilies(t), "py-res")
		return n == 0, fmt.Sprintf("%d series", n)
	})
	if since := time.Since(killed); since < resExpiry-resInterval {
		t.Errorf("series gone %v after the exit, before the %v expiry", since, resExpiry)
	}
	time.Sleep(1500 * time.Millisecond) // an export in flight
	count := func() int {
		n := 0
		for _, m := range e.recv.Metrics() {
			if m.Resource["service.name"] == "py-res" {
				n++
			}
		}
		return n
	}
	before := count()
	time.Sleep(3 * time.Second) // three export intervals
	if after := count(); after != before {
		t.Errorf("%d OTLP points of the exited python after its expiry", after-before)
	}
}

// checkShortLived: 1,000 traced processes of one workload, 250 at a time,
// each living 1.2 s (read at least once): one workload's series on
// /metrics, while OTLP sees them one by one.
func checkShortLived(t *testing.T, e *env, goBin string) {
	readsBefore := e.agent.Metric(t, "periscope_process_metrics_reads_total", nil)
	for range 4 {
		cmds := make([]*exec.Cmd, 250)
		for i := range cmds {
			cmds[i] = exec.Command(goBin, "linger", "1200ms")
			cmds[i].Env = append(os.Environ(), "OTEL_SERVICE_NAME=short-lived")
			if err := cmds[i].Start(); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range cmds {
			if err := c.Wait(); err != nil {
				t.Fatalf("linger: %v", err)
			}
		}
	}
	fams := e.agent.MetricFamilies(t)
	if n := resSeries(fams, "short-lived"); n == 0 || n > 8 {
		t.Errorf("1,000 short-lived processes made %d series on /metrics, want at most 8", n)
	}
	pids := make(map[string]bool)
	waitFor(t, 5*time.Second, "the short-lived processes over OTLP", func() (bool, string) {
		for _, m := range e.recv.Metrics() {
			if m.Resource["service.name"] == "short-lived" {
				pids[fmt.Sprint(m.Resource["process.pid"])] = true
			}
		}
		return len(pids) >= 400, fmt.Sprintf("%d processes", len(pids))
	})
	reads := e.agent.Metric(t, "periscope_process_metrics_reads_total", nil) - readsBefore
	cpu, _ := harness.SumMetric(fams, "process_cpu_time_seconds_total", map[string]string{"service_name": "short-lived"})
	t.Logf("1,000 processes: %d series, %d read over OTLP, %.0f reads, %.2f s CPU", resSeries(fams, "short-lived"), len(pids), reads, cpu)
}
