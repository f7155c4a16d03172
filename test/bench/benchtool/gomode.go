package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The go mode (-mode go, `MODE=go bash test/bench/run.sh`; `make bench` runs
// it after the nginx mode): the Go hello-world server of test/e2e/testdata/goapp
// (net/http, HTTP/2 off) under wrk, over HTTP and over HTTPS (crypto/tls), rounds
// without and with the agent alternated per scheme exactly as in the nginx
// mode. Its section is spliced into the nginx mode's results file after
// goMarker; each mode keeps the other's section.

const goMarker = "<!-- benchtool -mode go: everything below is rewritten by MODE=go -->"

// goServer is one `goapp server` process.
type goServer struct {
	bin, url, logPath, pidFile string
	tls                        bool
	cmd                        *exec.Cmd
	exited                     chan struct{}
}

func (s *goServer) scheme() string {
	if s.tls {
		return "HTTPS"
	}
	return "HTTP"
}

func startGoServer(ctx context.Context, bin, work, pidDir, cert, key string) (*goServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("free port: %w", err)
	}
	s := &goServer{bin: bin, tls: cert != "", pidFile: filepath.Join(pidDir, "goapp")}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"server", addr}
	s.url = "http://" + addr + "/hello"
	if s.tls {
		args = append(args, "-tls-cert", cert, "-tls-key", key)
		s.url = "https://" + addr + "/hello"
	}
	s.logPath = filepath.Join(work, "goapp-"+strings.ToLower(s.scheme())+".log")
	log, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	_ = os.WriteFile(s.pidFile, []byte(strconv.Itoa(s.cmd.Process.Pid)+"\n"), 0o644)
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()

	client := insecureClient()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-s.exited:
			b, _ := os.ReadFile(s.logPath)
			return nil, fmt.Errorf("goapp exited at start (%s)\n%s", s.cmd.ProcessState, b)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		default:
		}
		resp, err := client.Get(s.url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("goapp does not serve %s: %w", s.url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *goServer) pid() int { return s.cmd.Process.Pid }

func (s *goServer) stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.pid(), syscall.SIGKILL)
	<-s.exited
	_ = os.Remove(s.pidFile)
}

// goRound is one wrk run of the go mode.
type goRound struct {
	n         int
	withAgent bool
	load1     float64
	wrk       wrkResult
	serverCPU float64 // % of one core
	serverSec float64
	// with the agent only
	agentCPU  float64
	hwmKiB    uint64
	spans     uint64
	drops     uint64
	goRuns    map[string]uint64 // run_cnt deltas of the agent's go_* programs
	goTimeNs  uint64
	allRuns   uint64 // run_cnt deltas of all the agent's programs
	foreignGo uint64 // go_* runs of other agents' programs
	others    []string
}

type goScheme struct {
	name   string
	srv    string // wrk URL
	rounds []*goRound
}

func runGoMode(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (loads eBPF programs)")
	}
	if o.goapp == "" {
		return errors.New("-mode go needs -goapp (run.sh builds test/e2e/testdata/goapp)")
	}
	bin, err := filepath.Abs(o.goapp)
	if err != nil {
		return err
	}
	start := time.Now()
	load0 := loadAvg()
	pidDir := filepath.Join(o.work, "pids")
	if err := os.MkdirAll(pidDir, 0o755); err != nil {
		return err
	}
	closer, statsHow, err := enableBPFStats()
	if err != nil {
		return err
	}
	defer closer.Close()

	cert, key := filepath.Join(o.work, "go-cert.pem"), filepath.Join(o.work, "go-key.pem")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
		"-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
		"-keyout", key, "-out", cert).CombinedOutput()
	if err != nil {
		return fmt.Errorf("openssl req (self-signed certificate): %w\n%s", err, out)
	}

	var schemes []*goScheme
	var warnings []string
	for _, useTLS := range []bool{false, true} {
		c, k := "", ""
		if useTLS {
			c, k = cert, key
		}
		srv, err := startGoServer(ctx, bin, o.work, pidDir, c, k)
		if err != nil {
			return err
		}
		sc := &goScheme{name: srv.scheme(), srv: srv.url}
		logf("goapp %s: pid %d, %s", sc.name, srv.pid(), srv.url)
		err = runGoScheme(ctx, o, bin, srv, pidDir, sc, &warnings)
		srv.stop()
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		schemes = append(schemes, sc)
	}

	md := goReport(o, bin, schemes, statsHow, start, load0, loadAvg(), warnings)
	fmt.Println(md)
	old, _ := os.ReadFile(o.out)
	if err := writeFileAtomic(o.out, []byte(withGoSection(string(old), md))); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	logf("wrote %s (Go section)", o.out)
	return nil
}

func runGoScheme(ctx context.Context, o options, bin string, srv *goServer, pidDir string, sc *goScheme, warnings *[]string) error {
	wc := wrkConfig{threads: o.threads, connections: o.connections, url: srv.url}
	if o.warmup > 0 {
		logf("warm-up: wrk %s", strings.Join(wc.args(o.warmup), " "))
		if _, _, err := runWrk(ctx, wc, o.warmup, pidDir); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	for i := 0; i < 2*o.rounds; i++ {
		r := &goRound{n: i + 1, withAgent: i%2 == 1}
		if err := measureGoRound(ctx, o, bin, srv, wc, pidDir, r); err != nil {
			return fmt.Errorf("round %d (%s): %w", r.n, cfgName(r.withAgent), err)
		}
		sc.rounds = append(sc.rounds, r)
		s := fmt.Sprintf("%s round %d %-8s %9.0f req/s  p50 %-8s p99 %-8s goapp CPU %5.1f%%  load %.2f",
			sc.name, r.n, cfgName(r.withAgent), r.wrk.rps, fmtDur(r.wrk.p50), fmtDur(r.wrk.p99), r.serverCPU, r.load1)
		if r.withAgent {
			s += fmt.Sprintf("  | agent CPU %.1f%%, HWM %.1f MiB, spans %d / wrk %d, drops %d, go_* runs/req %.2f",
				r.agentCPU, float64(r.hwmKiB)/1024, r.spans, r.wrk.requests, r.drops, ratio(sumRuns(r.goRuns), r.wrk.requests))
		}
		if r.foreignGo > 0 {
			w := fmt.Sprintf("%s round %d (%s): go_* uprobe programs of other agents ran %d times (%.2f per wrk request): they trace goapp and distort this round (other periscope processes: %s)",
				sc.name, r.n, cfgName(r.withAgent), r.foreignGo, ratio(r.foreignGo, r.wrk.requests), orNone(r.others))
			*warnings = append(*warnings, w)
			s += "  | WARNING: other agents' go_* programs ran"
		}
		logf("%s", s)
	}
	return nil
}

func measureGoRound(ctx context.Context, o options, bin string, srv *goServer, wc wrkConfig, pidDir string, r *goRound) (err error) {
	r.load1 = load1()
	var a *agent
	if r.withAgent {
		if a, err = startAgent(o.agentBin, bin, o.work, pidDir, r.n); err != nil {
			return err
		}
		defer func() {
			if serr := a.stop(); serr != nil && err == nil {
				err = serr
			}
		}()
		if err = a.waitReady(ctx, []int{srv.pid()}, 60*time.Second); err != nil {
			return err
		}
		r.others = otherPeriscopes(a.pid())
	} else {
		r.others = otherPeriscopes(0)
	}
	var m0 promText
	var agentTicks0 uint64
	if a != nil {
		if m0, err = a.metrics(); err != nil {
			return err
		}
		if agentTicks0, err = cpuTicks(a.pid()); err != nil {
			return fmt.Errorf("agent CPU: %w", err)
		}
	}
	progs0, err := bpftoolProgs()
	if err != nil {
		return err
	}
	srvTicks0, err := cpuTicks(srv.pid())
	if err != nil {
		return fmt.Errorf("goapp CPU: %w", err)
	}
	t0 := time.Now()
	if r.wrk, _, err = runWrk(ctx, wc, o.duration, pidDir); err != nil {
		return err
	}
	elapsed := time.Since(t0).Seconds()
	srvTicks1, err := cpuTicks(srv.pid())
	if err != nil {
		return fmt.Errorf("goapp CPU (did goapp die?): %w", err)
	}
	r.serverSec = float64(srvTicks1-srvTicks0) / clockTicks
	r.serverCPU = 100 * r.serverSec / elapsed
	var agentTicks1 uint64
	if a != nil {
		if agentTicks1, err = cpuTicks(a.pid()); err != nil {
			return fmt.Errorf("agent CPU (did the agent die?): %w\n%s", err, a.logTail())
		}
		r.agentCPU = 100 * float64(agentTicks1-agentTicks0) / clockTicks / elapsed
	}
	progs1, err := bpftoolProgs()
	if err != nil {
		return err
	}
	var ours map[uint32]bool
	if a != nil {
		ours = a.progs
	}
	prev := make(map[uint32]bpfProg, len(progs0))
	for _, p := range progs0 {
		prev[p.ID] = p
	}
	r.goRuns = map[string]uint64{}
	for _, p := range progs1 {
		d := p.RunCnt - prev[p.ID].RunCnt
		switch {
		case ours[p.ID] && strings.HasPrefix(p.Name, "go_"):
			r.goRuns[p.Name] += d
			r.goTimeNs += p.RunTimeNs - prev[p.ID].RunTimeNs
			r.allRuns += d
		case ours[p.ID]:
			r.allRuns += d
		case strings.HasPrefix(p.Name, "go_") && p.Type == "kprobe":
			r.foreignGo += d
		}
	}
	if a == nil {
		return nil
	}
	// Spans trail the requests: wait until they cover every request wrk
	// counted, or stop moving (the same settling as the nginx mode).
	spans0, _ := m0.sum("periscope_spans_total", map[string]string{"kind": "server"})
	m1, err := settleSpans(ctx, a, spans0, r.wrk.requests)
	if err != nil {
		return err
	}
	delta := func(name string, labels map[string]string) uint64 {
		v0, _ := m0.sum(name, labels)
		v1, _ := m1.sum(name, labels)
		if v1 < v0 {
			return 0
		}
		return uint64(v1 - v0)
	}
	r.spans = delta("periscope_spans_total", map[string]string{"kind": "server"})
	r.drops = delta("periscope_events_dropped_total", nil)
	if r.hwmKiB, err = statusKiB(a.pid(), "VmHWM"); err != nil {
		return fmt.Errorf("agent VmHWM: %w", err)
	}
	return nil
}

func goReport(o options, bin string, schemes []*goScheme, statsHow string, start time.Time, load0, load1 string, warnings []string) string {
	col := func(rs []*goRound, f func(*goRound) float64) []float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return v
	}
	split := func(sc *goScheme) (base, ag []*goRound) {
		for _, r := range sc.rounds {
			if r.withAgent {
				ag = append(ag, r)
			} else {
				base = append(base, r)
			}
		}
		return
	}
	rps := func(r *goRound) float64 { return r.wrk.rps }
	spread := func(rs []*goRound) float64 {
		lo, hi := minMax(col(rs, rps))
		if m := median(col(rs, rps)); m > 0 {
			return 50 * (hi - lo) / m
		}
		return 0
	}
	sumReq := func(rs []*goRound) uint64 {
		var n uint64
		for _, r := range rs {
			n += r.wrk.requests
		}
		return n
	}
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}

	header := []string{""}
	for _, sc := range schemes {
		header = append(header, sc.name+" baseline", sc.name+" with agent")
	}
	t := table{header}
	row := func(label string, f func(sc *goScheme, base, ag []*goRound) (string, string)) {
		cells := []string{label}
		for _, sc := range schemes {
			b, a := split(sc)
			x, y := f(sc, b, a)
			cells = append(cells, x, y)
		}
		t = append(t, cells)
	}
	both := func(f func(rs []*goRound) string) func(*goScheme, []*goRound, []*goRound) (string, string) {
		return func(_ *goScheme, b, a []*goRound) (string, string) { return f(b), f(a) }
	}
	agentOnly := func(f func(rs []*goRound) string) func(*goScheme, []*goRound, []*goRound) (string, string) {
		return func(_ *goScheme, _, a []*goRound) (string, string) { return "—", f(a) }
	}
	durMed := func(f func(*goRound) time.Duration) func([]*goRound) string {
		return func(rs []*goRound) string {
			return fmtDur(time.Duration(median(col(rs, func(r *goRound) float64 { return float64(f(r)) }))))
		}
	}
	var targets []string

	row("requests/s (median of rounds)", both(func(rs []*goRound) string { return fmt.Sprintf("%.0f", median(col(rs, rps))) }))
	row("requests/s range over rounds", both(func(rs []*goRound) string {
		lo, hi := minMax(col(rs, rps))
		return fmt.Sprintf("%.0f–%.0f (±%.1f%%)", lo, hi, spread(rs))
	}))
	row("throughput ratio agent/baseline (target ≥ 50%)", func(sc *goScheme, b, a []*goRound) (string, string) {
		x := 100 * median(col(a, rps)) / max(median(col(b, rps)), 1)
		targets = append(targets, fmt.Sprintf("%s throughput %.1f%% of baseline (≥ 50%%: %s)", sc.name, x, met(x >= 50)))
		return "—", fmt.Sprintf("%.1f%%", x)
	})
	row("latency p50 (median of rounds)", both(durMed(func(r *goRound) time.Duration { return r.wrk.p50 })))
	row("latency p99 (median of rounds)", both(durMed(func(r *goRound) time.Duration { return r.wrk.p99 })))
	row("goapp CPU (% of one core, median)", both(func(rs []*goRound) string {
		return fmt.Sprintf("%.0f%%", median(col(rs, func(r *goRound) float64 { return r.serverCPU })))
	}))
	row("goapp CPU time per request", both(func(rs []*goRound) string {
		var sec float64
		for _, r := range rs {
			sec += r.serverSec
		}
		return fmt.Sprintf("%.1f µs", 1e6*sec/float64(max(sumReq(rs), 1)))
	}))
	row("agent CPU (% of one core; median, max)", agentOnly(func(rs []*goRound) string {
		v := col(rs, func(r *goRound) float64 { return r.agentCPU })
		_, hi := minMax(v)
		return fmt.Sprintf("%.1f%%, %.1f%%", median(v), hi)
	}))
	row("agent peak RSS (VmHWM, max of rounds)", agentOnly(func(rs []*goRound) string {
		_, hi := minMax(col(rs, func(r *goRound) float64 { return float64(r.hwmKiB) }))
		return fmt.Sprintf("%.1f MiB", hi/1024)
	}))
	row("completeness: server spans ÷ wrk requests (target ≥ 99.9%)", func(sc *goScheme, _, a []*goRound) (string, string) {
		var spans uint64
		worst := -1.0
		for _, r := range a {
			spans += r.spans
			if c := 100 * ratio(r.spans, r.wrk.requests); worst < 0 || c < worst {
				worst = c
			}
		}
		c := 100 * ratio(spans, sumReq(a))
		targets = append(targets, fmt.Sprintf("%s completeness %.3f%%, worst round %.3f%% (≥ 99.9%%: %s)", sc.name, c, worst, met(worst >= 99.9)))
		return "—", fmt.Sprintf("%.3f%% (%s / %s; worst round %.3f%%)", c, fmtInt(spans), fmtInt(sumReq(a)), worst)
	})
	row("ring-buffer drops (events)", agentOnly(func(rs []*goRound) string {
		var n uint64
		for _, r := range rs {
			n += r.drops
		}
		return fmtInt(n)
	}))
	row("uprobe runs per request, `go_*` (target ≤ 2)", func(sc *goScheme, _, a []*goRound) (string, string) {
		byName := map[string]uint64{}
		var runs uint64
		for _, r := range a {
			for k, v := range r.goRuns {
				byName[k] += v
				runs += v
			}
		}
		names := make([]string, 0, len(byName))
		for k := range byName {
			names = append(names, k)
		}
		sort.Strings(names)
		var parts []string
		for _, k := range names {
			if byName[k] == 0 {
				continue // the client-side programs: goapp serves only
			}
			parts = append(parts, fmt.Sprintf("%s %.2f", k, ratio(byName[k], sumReq(a))))
		}
		x := ratio(runs, sumReq(a))
		targets = append(targets, fmt.Sprintf("%s %.2f uprobe hits per request (≤ 2: %s)", sc.name, x, met(x <= 2.005)))
		return "—", fmt.Sprintf("%.2f (%s)", x, strings.Join(parts, ", "))
	})
	row("time inside the `go_*` programs per request", agentOnly(func(rs []*goRound) string {
		var ns uint64
		for _, r := range rs {
			ns += r.goTimeNs
		}
		return fmt.Sprintf("%.0f ns", float64(ns)/float64(max(sumReq(rs), 1)))
	}))
	row("all the agent's BPF program runs per request (tracepoints are system-wide)", agentOnly(func(rs []*goRound) string {
		var n uint64
		for _, r := range rs {
			n += r.allRuns
		}
		return fmt.Sprintf("%.2f", ratio(n, sumReq(rs)))
	}))
	row("wrk socket errors / non-2xx", both(func(rs []*goRound) string {
		var se, nx uint64
		for _, r := range rs {
			se += r.wrk.socketErrs
			nx += r.wrk.non2xx
		}
		return fmt.Sprintf("%d / %d", se, nx)
	}))

	per := table{{"scheme", "round", "config", "req/s", "p50", "p99", "goapp CPU", "agent CPU", "VmHWM", "spans", "wrk requests", "drops", "go_* runs/req", "other agents' go_* runs", "load1"}}
	for _, sc := range schemes {
		for _, r := range sc.rounds {
			cells := []string{sc.name, fmt.Sprint(r.n), cfgName(r.withAgent), fmt.Sprintf("%.0f", r.wrk.rps), fmtDur(r.wrk.p50), fmtDur(r.wrk.p99), fmt.Sprintf("%.0f%%", r.serverCPU)}
			if r.withAgent {
				cells = append(cells, fmt.Sprintf("%.1f%%", r.agentCPU), fmt.Sprintf("%.1f MiB", float64(r.hwmKiB)/1024), fmtInt(r.spans), fmtInt(r.wrk.requests),
					fmtInt(r.drops), fmt.Sprintf("%.2f", ratio(sumRuns(r.goRuns), r.wrk.requests)))
			} else {
				cells = append(cells, "—", "—", "—", fmtInt(r.wrk.requests), "—", "—")
			}
			cells = append(cells, fmtInt(r.foreignGo), fmt.Sprintf("%.2f", r.load1))
			per = append(per, cells)
		}
	}
	for _, sc := range schemes {
		b, a := split(sc)
		for _, x := range []struct {
			what string
			rs   []*goRound
		}{{"baseline", b}, {"agent", a}} {
			if s := spread(x.rs); s > 15 {
				warnings = append(warnings, fmt.Sprintf("%s: the %s rounds disagree by ±%.0f%%: the machine was busy (load average %s at start, %s at end), so the throughput figures are not reliable", sc.name, x.what, s, load0, load1))
			}
		}
	}

	wc := wrkConfig{threads: o.threads, connections: o.connections, url: "http[s]://127.0.0.1:PORT/hello"}
	var b strings.Builder
	fmt.Fprintf(&b, "## Go hello-world server (net/http), without and with the agent\n\n")
	fmt.Fprintf(&b, "Generated by `MODE=go bash test/bench/run.sh` (benchtool -mode go; `make bench` runs it after the nginx mode). Speed is reported, not asserted.\n\n")
	fmt.Fprintf(&b, "- **date**: %s UTC, %s; **load average (1, 5, 15 min)**: %s at start, %s at end (%d CPUs)\n", start.UTC().Format("2006-01-02 15:04"), time.Since(start).Round(time.Second), load0, load1, numCPU())
	fmt.Fprintf(&b, "- **Periscope**: %s\n", o.commit)
	fmt.Fprintf(&b, "- **target**: test/e2e/testdata/goapp (`%s`, CGO_ENABLED=0), `goapp server 127.0.0.1:PORT [-tls-cert C -tls-key K]`, handler `/hello` (6-byte body), HTTP/1.1 keep-alive (HTTP/2 disabled), HTTPS via crypto/tls with a self-signed RSA-2048 certificate\n", goVersionOf(bin))
	fmt.Fprintf(&b, "- **agent**: `periscope run --console=off --include-exe GOAPP --metrics-addr 127.0.0.1:PORT`, GOAPP being the full path of the built goapp (wrk is not traced); started before and stopped after each of its rounds\n")
	fmt.Fprintf(&b, "- **load**: `wrk %s` (wrk %s)\n", strings.Join(wc.args(o.duration), " "), wrkVersion())
	fmt.Fprintf(&b, "- **rounds**: %d per configuration and scheme, alternated baseline, agent, baseline, agent, … after a %s warm-up; medians over rounds; program runs from `bpftool prog show` (%s)\n", o.rounds, o.warmup, statsHow)
	fmt.Fprintf(&b, "- **completeness**: `periscope_spans_total{kind=\"server\"}` before/after each round ÷ wrk's \"N requests in\" (requests in flight when wrk stops, at most %d, are served and traced but not counted by wrk, so a round may exceed 100%%)\n\n", o.connections)
	b.WriteString(t.markdown())
	fmt.Fprintf(&b, "\n**Targets (issue 3, reported, not asserted):** %s.\n", strings.Join(targets, "; "))
	for _, w := range warnings {
		fmt.Fprintf(&b, "\n- **Warning:** %s", w)
	}
	if len(warnings) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("\n### Per round (Go)\n\n")
	b.WriteString(per.markdown())
	return b.String()
}

// withGoSection returns file (a results file) with its Go section, if any,
// replaced by goMD.
func withGoSection(file, goMD string) string {
	if i := strings.Index(file, goMarker); i >= 0 {
		file = file[:i]
	}
	if file = strings.TrimRight(file, "\n"); file != "" {
		file += "\n\n"
	}
	return file + goMarker + "\n\n" + goMD
}

// keepGoSection returns nginxMD followed by the Go section of old (the
// results file being replaced), if it has one.
func keepGoSection(nginxMD, old string) string {
	if i := strings.Index(old, goMarker); i >= 0 {
		return strings.TrimRight(nginxMD, "\n") + "\n\n" + old[i:]
	}
	return nginxMD
}

func goVersionOf(bin string) string {
	out, err := exec.Command("go", "version", bin).Output()
	if err != nil {
		return "go version unknown"
	}
	s := strings.TrimSpace(string(out))
	if i := strings.Index(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}
