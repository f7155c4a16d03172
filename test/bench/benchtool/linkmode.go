package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// The linking mode (-mode linking, `make bench MODE=linking`): what
// cross-node linking costs each agent. Two "nodes" are two network
// namespaces joined by a veth pair: wrk in A calls nginx (plain HTTP) in
// B over keep-alive connections; A's agent traces wrk (client spans, and
// it answers lookups), B's agent traces nginx (server spans: it asks A
// about each and holds the span until the answer). Both agents run in
// every round; rounds alternate unlinked, linked, linked, unlinked (ABBA),
// the agents started afresh per round with linking off (no listen, no
// peers) or on. Each agent's CPU is its own utime+stime from
// /proc/PID/stat over the load and until its spans settled; nginx's CPU is
// the application's.

// linkNet is the two namespaces and their addresses.
type linkNet struct {
	nsA, nsB   string
	a, b       string // the nodes' addresses on the A-B link
	rootA, inA string // the A-root link: the driver's end, A's end
	rootB, inB string
	links      []string
}

// linkRound is one round of the linking mode.
type linkRound struct {
	n             int
	linked        bool
	profiled      bool
	load1         float64
	wrk           wrkResult
	requests      uint64 // served by nginx (stub_status)
	cpuA, cpuB    float64
	nginxSec      float64
	lookups       map[string]float64 // B's periscope_link_lookups_total by result
	served        float64            // A's periscope_link_requests_served_total
	spansA, spans float64            // client spans built by A, server spans by B
	recv          uint64             // spans the receiver got
	profA, profB  []share
}

func linkCfgName(linked bool) string {
	if linked {
		return "linked"
	}
	return "unlinked"
}

func runLinkMode(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (network namespaces, eBPF)")
	}
	start, load0 := time.Now(), loadAvg()
	pidDir := filepath.Join(o.work, "pids")
	if err := os.MkdirAll(filepath.Join(pidDir, "a"), 0o755); err != nil {
		return err
	}
	ln, err := setupLinkNet()
	defer ln.teardown()
	if err != nil {
		return err
	}
	// A receiver of the mode's own, on the driver's end of A's link, which
	// B reaches through the driver's namespace.
	recv, err := startReceiver(filepath.Join(pidDir, "a"), filepath.Join(o.work, "receiver-link.log"), "-grpc", ln.rootA+":0")
	if err != nil {
		return err
	}
	defer recv.stop()
	token := filepath.Join(o.work, "link-token")
	if err := os.WriteFile(token, []byte("bench-link-token-0123456789abcdef\n"), 0o600); err != nil {
		return err
	}
	ng := &nginx{plain: true, listenHost: "0.0.0.0", reach: ln.inB, wrap: []string{"ip", "netns", "exec", ln.nsB}}
	if err := ng.setup(o.work, o.workers); err != nil {
		return fmt.Errorf("nginx setup: %w", err)
	}
	defer ng.stop()
	if err := ng.start(ctx, pidDir); err != nil {
		return err
	}
	wrkBin, err := exec.LookPath("wrk")
	if err != nil {
		return err
	}
	if wrkBin, err = filepath.EvalSymlinks(wrkBin); err != nil {
		return err
	}
	wc := wrkConfig{threads: o.threads, connections: o.connections, wrap: []string{"ip", "netns", "exec", ln.nsA},
		url: fmt.Sprintf("http://%s:%d%s", ln.b, ng.port, indexPath)}
	env := linkEnv{o: o, ln: ln, recv: recv, token: token, ng: ng, wc: wc, wrk: wrkBin, pidDir: pidDir}
	if err := warmUp(ctx, o, wc, pidDir); err != nil {
		return err
	}
	var rounds []*linkRound
	for i := 0; i < 2*o.rounds; i++ {
		r := &linkRound{n: i + 1, linked: i%4 == 1 || i%4 == 2}
		if err := env.measure(ctx, r); err != nil {
			return fmt.Errorf("round %d (%s): %w", r.n, linkCfgName(r.linked), err)
		}
		rounds = append(rounds, r)
		logf("%s", r.line())
	}
	for _, linked := range []bool{false, true} {
		if !o.profile {
			break
		}
		r := &linkRound{n: len(rounds) + 1, linked: linked, profiled: true}
		if err := env.measure(ctx, r); err != nil {
			return fmt.Errorf("profile round (%s): %w", linkCfgName(linked), err)
		}
		rounds = append(rounds, r)
		logf("%s", r.line())
	}
	md := linkReport(o, env, rounds, start, load0, loadAvg())
	fmt.Println(md)
	if err := writeFileAtomic(o.out, []byte(md)); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	logf("wrote %s", o.out)
	return nil
}

func (r *linkRound) line() string {
	return fmt.Sprintf("round %d %-8s %8.0f req/s  agent A %.2f µs/req  agent B %.2f µs/req  nginx %.2f µs/req  lookups %v  load %.2f",
		r.n, linkCfgName(r.linked), r.wrk.rps, r.perReq(r.cpuA), r.perReq(r.cpuB), r.perReq(r.nginxSec), r.lookups, r.load1)
}

// perReq is sec seconds of CPU per request served, in µs.
func (r *linkRound) perReq(sec float64) float64 { return 1e6 * sec / float64(max(r.requests, 1)) }

func setupLinkNet() (*linkNet, error) {
	pid := os.Getpid()
	n := 200 + pid%50 // the e2e tests use 10.100-199
	ln := &linkNet{
		nsA: fmt.Sprintf("pslbA%d", pid), nsB: fmt.Sprintf("pslbB%d", pid),
		a: fmt.Sprintf("10.%d.3.1", n), b: fmt.Sprintf("10.%d.3.2", n),
		rootA: fmt.Sprintf("10.%d.1.1", n), inA: fmt.Sprintf("10.%d.1.2", n),
		rootB: fmt.Sprintf("10.%d.2.1", n), inB: fmt.Sprintf("10.%d.2.2", n),
	}
	ab, ba := fmt.Sprintf("lbab%d", pid), fmt.Sprintf("lbba%d", pid)
	ra, ar := fmt.Sprintf("lbra%d", pid), fmt.Sprintf("lbar%d", pid)
	rb, br := fmt.Sprintf("lbrb%d", pid), fmt.Sprintf("lbbr%d", pid)
	ln.links = []string{ra, rb}
	for _, args := range [][]string{
		{"netns", "add", ln.nsA}, {"netns", "add", ln.nsB},
		{"link", "add", ab, "type", "veth", "peer", "name", ba},
		{"link", "set", ab, "netns", ln.nsA}, {"link", "set", ba, "netns", ln.nsB},
		{"link", "add", ra, "type", "veth", "peer", "name", ar}, {"link", "set", ar, "netns", ln.nsA},
		{"link", "add", rb, "type", "veth", "peer", "name", br}, {"link", "set", br, "netns", ln.nsB},
		{"-n", ln.nsA, "addr", "add", ln.a + "/24", "dev", ab}, {"-n", ln.nsB, "addr", "add", ln.b + "/24", "dev", ba},
		{"-n", ln.nsA, "addr", "add", ln.inA + "/24", "dev", ar}, {"-n", ln.nsB, "addr", "add", ln.inB + "/24", "dev", br},
		{"addr", "add", ln.rootA + "/24", "dev", ra}, {"addr", "add", ln.rootB + "/24", "dev", rb},
		{"-n", ln.nsA, "link", "set", "lo", "up"}, {"-n", ln.nsB, "link", "set", "lo", "up"},
		{"-n", ln.nsA, "link", "set", ab, "up"}, {"-n", ln.nsB, "link", "set", ba, "up"},
		{"-n", ln.nsA, "link", "set", ar, "up"}, {"-n", ln.nsB, "link", "set", br, "up"},
		{"link", "set", ra, "up"}, {"link", "set", rb, "up"},
		// B exports to the receiver on the driver's end of A's link.
		{"-n", ln.nsB, "route", "add", ln.rootA + "/32", "via", ln.rootB},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return ln, fmt.Errorf("ip %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return ln, nil
}

// teardown deletes the namespaces (and so their veth ends and peers).
func (ln *linkNet) teardown() {
	if ln == nil {
		return
	}
	for _, ns := range []string{ln.nsA, ln.nsB} {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
	for _, l := range ln.links {
		_ = exec.Command("ip", "link", "del", l).Run()
	}
}

// linkEnv is what every round of the linking mode shares.
type linkEnv struct {
	o      options
	ln     *linkNet
	recv   *receiver
	token  string
	ng     *nginx
	wc     wrkConfig
	wrk    string // the resolved wrk executable, A's --include-exe
	pidDir string
}

// agentCmd runs a node's agent in namespace ns, exporting to the mode's
// receiver through the namespace's link to the driver, with linking on
// (listening on self, asking peer) or off.
func (e linkEnv) agentCmd(ns, host, self, peer string, linked bool) agentCmd {
	_, port, _ := net.SplitHostPort(e.recv.grpcAddr)
	ac := agentCmd{bin: e.o.agentBin, wrap: []string{"ip", "netns", "exec", ns}, host: host, env: []string{
		"PERISCOPE_PPROF=true",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://" + net.JoinHostPort(e.ln.rootA, port),
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc",
		"PERISCOPE_TCP_ENABLED=false",
		"PERISCOPE_PROCESS_METRICS_ENABLED=false",
	}}
	if linked {
		ac.env = append(ac.env,
			"PERISCOPE_LINKING_LISTEN="+net.JoinHostPort(self, "7071"),
			"PERISCOPE_LINKING_PEERS="+net.JoinHostPort(peer, "7071"),
			"PERISCOPE_LINKING_TOKEN_FILE="+e.token)
	}
	return ac
}

func (e linkEnv) measure(ctx context.Context, r *linkRound) (err error) {
	r.load1 = load1()
	stop := func(a *agent) {
		if serr := a.stop(); serr != nil && err == nil {
			err = serr
		}
	}
	b, err := startAgent(e.agentCmd(e.ln.nsB, e.ln.inB, e.ln.b, e.ln.a, r.linked), e.ng.bin, e.o.work, e.pidDir, 10*r.n+2)
	if err != nil {
		return err
	}
	defer stop(b)
	a, err := startAgent(e.agentCmd(e.ln.nsA, e.ln.inA, e.ln.a, e.ln.b, r.linked), e.wrk, e.o.work, filepath.Join(e.pidDir, "a"), 10*r.n+1)
	if err != nil {
		return err
	}
	defer stop(a)
	if err := b.waitReady(ctx, e.ng.workerPIDs(), 60*time.Second); err != nil {
		return err
	}
	if err := a.waitReady(ctx, nil, 60*time.Second); err != nil {
		return err
	}
	if r.linked { // the agents announce their addresses to each other
		if err := waitPeers(ctx, a, b); err != nil {
			return err
		}
	}
	return e.load(ctx, r, a, b)
}

// waitPeers waits until each agent has its peer's addresses.
func waitPeers(ctx context.Context, agents ...*agent) error {
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range agents {
		for {
			m, err := a.metrics()
			if err != nil {
				return err
			}
			if v, _ := m.sum("periscope_link_peer_addresses", nil); v > 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("agent %s has no peer address after 30 s\n%s", a.addr, a.logTail())
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// load runs wrk once and measures both agents and nginx over it.
func (e linkEnv) load(ctx context.Context, r *linkRound, a, b *agent) error {
	mA0, err := a.metrics()
	if err != nil {
		return err
	}
	mB0, err := b.metrics()
	if err != nil {
		return err
	}
	req0, err := e.ng.requests()
	if err != nil {
		return err
	}
	recv0, err := e.recv.counts()
	if err != nil {
		return err
	}
	tA0, errA := cpuTicks(a.pid())
	tB0, errB := cpuTicks(b.pid())
	if err := errors.Join(errA, errB); err != nil {
		return err
	}
	ng0 := e.ng.workerTicks()
	var profs [2]chan profResult
	if r.profiled {
		for i, ag := range []*agent{a, b} {
			profs[i] = make(chan profResult, 1)
			go func(ag *agent, ch chan profResult) {
				p, err := agentProfile(ctx, ag.addr, e.o.duration)
				ch <- profResult{p, err}
			}(ag, profs[i])
		}
	}
	if r.wrk, _, err = runWrk(ctx, e.wc, e.o.duration, e.pidDir); err != nil {
		return err
	}
	r.nginxSec = float64(e.ng.workerTicks()-ng0) / clockTicks
	req1, err := e.ng.requests()
	if err != nil {
		return err
	}
	r.requests = req1 - req0 - 1 // the first count's own request
	mB, err := settleSpans(ctx, b, metricOf(mB0, "periscope_spans_total", "kind", "server"), r.requests)
	if err != nil {
		return err
	}
	mA, err := settleClientSpans(ctx, a, metricOf(mA0, "periscope_spans_total", "kind", "client"), r.requests)
	if err != nil {
		return err
	}
	tA1, errA := cpuTicks(a.pid())
	tB1, errB := cpuTicks(b.pid())
	if err := errors.Join(errA, errB); err != nil {
		return fmt.Errorf("agent CPU (did an agent die?): %w", err)
	}
	r.cpuA, r.cpuB = float64(tA1-tA0)/clockTicks, float64(tB1-tB0)/clockTicks
	r.spans = metricOf(mB, "periscope_spans_total", "kind", "server") - metricOf(mB0, "periscope_spans_total", "kind", "server")
	r.spansA = metricOf(mA, "periscope_spans_total", "kind", "client") - metricOf(mA0, "periscope_spans_total", "kind", "client")
	r.served = metricOf(mA, "periscope_link_requests_served_total", "", "") - metricOf(mA0, "periscope_link_requests_served_total", "", "")
	r.lookups = map[string]float64{}
	for _, res := range []string{"linked", "not_found", "timeout", "no_owner", "dropped", "refused", "error", "no_key"} {
		if d := metricOf(mB, "periscope_link_lookups_total", "result", res) - metricOf(mB0, "periscope_link_lookups_total", "result", res); d != 0 {
			r.lookups[res] = d
		}
	}
	time.Sleep(time.Second) // the last batch reaches the receiver
	recv1, err := e.recv.counts()
	if err != nil {
		return err
	}
	r.recv = recv1.sub(recv0).Spans
	if r.profiled {
		for i, out := range []*[]share{&r.profA, &r.profB} {
			pr := <-profs[i]
			if pr.err != nil {
				return pr.err
			}
			*out = profileShares(pr.p, linkStageOf)
			_ = writeProfile(pr.p, filepath.Join(e.o.work, fmt.Sprintf("agent-%c-%s.cpu.pprof", 'A'+i, linkCfgName(r.linked))))
		}
	}
	return nil
}

func metricOf(m promText, name, label, value string) float64 {
	var sel map[string]string
	if label != "" {
		sel = map[string]string{label: value}
	}
	v, _ := m.sum(name, sel)
	return v
}

// settleClientSpans is settleSpans for client spans.
func settleClientSpans(ctx context.Context, a *agent, spans0 float64, want uint64) (promText, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := a.metrics()
		if err != nil {
			return nil, err
		}
		if metricOf(m, "periscope_spans_total", "kind", "client")-spans0 >= float64(want) || time.Now().After(deadline) {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type profResult struct {
	p   *profile.Profile
	err error
}

// linkFuncs are the correlator's linking functions (correlator/link.go).
var linkFuncs = []string{"startLink", "popSettled", "LinkDone", "settle", "expireLinks", "ExpireLinks", "holdForLink", "indexLocal", "unindexLocal", "rememberClient", "Answer", "answer", "linkRoot"}

// linkStageOf is stageOf with linking apart: a sample whose innermost
// Periscope frame is in package linking, or one of the correlator's
// linking functions, is linking's (a span exported from the answer's
// goroutine is the correlator's and the exporter's, as it would be
// without linking).
func linkStageOf(funcs []string) string {
	for _, f := range funcs {
		pkg := funcPackage(f)
		if !strings.HasPrefix(pkg, modulePath) {
			continue
		}
		if pkg == modulePath+"linking" {
			return "linking: lookups, batches, answers (package linking, with the gRPC calls it makes)"
		}
		if pkg == modulePath+"correlator" && slices.Contains(linkFuncs, f[strings.LastIndexByte(f, '.')+1:]) {
			return "linking: the correlator's side (lookups started, spans held, answers served)"
		}
		break
	}
	return stageOf(funcs)
}

func linkReport(o options, e linkEnv, rounds []*linkRound, start time.Time, load0, load1 string) string {
	pick := func(linked bool, f func(*linkRound) float64) []float64 {
		var v []float64
		for _, r := range rounds {
			if r.linked == linked && !r.profiled {
				v = append(v, f(r))
			}
		}
		return v
	}
	cpuA := func(r *linkRound) float64 { return r.perReq(r.cpuA) }
	cpuB := func(r *linkRound) float64 { return r.perReq(r.cpuB) }
	cpuAB := func(r *linkRound) float64 { return r.perReq(r.cpuA + r.cpuB) }
	app := func(r *linkRound) float64 { return r.perReq(r.nginxSec) }
	rps := func(r *linkRound) float64 { return r.wrk.rps }
	rng := func(v []float64, unit string) string {
		lo, hi := minMax(v)
		return fmt.Sprintf("%.2f (%.2f–%.2f)%s", median(v), lo, hi, unit)
	}
	t := table{{"", "unlinked (median, range)", "linked (median, range)", "linked − unlinked", "target", "verdict"}}
	for _, x := range []struct {
		label  string
		f      func(*linkRound) float64
		target float64
	}{
		{"agent A (client side: traces wrk, answers lookups), CPU µs per request", cpuA, 1},
		{"agent B (server side: traces nginx, asks, holds spans), CPU µs per request", cpuB, 1},
		{"both agents, CPU µs per request", cpuAB, 2},
		{"nginx (the application), CPU µs per request", app, 0},
	} {
		u, l := pick(false, x.f), pick(true, x.f)
		d := diffOf(l, u)
		tg, v := fmt.Sprintf("≤ %.0f µs", x.target), verdict(d, x.target, true)
		if x.target == 0 {
			tg, v = "no change", "changed"
			if abs(d.v) <= d.noise {
				v = "no change beyond noise"
			}
		}
		t = append(t, []string{x.label, rng(u, ""), rng(l, ""), fmt.Sprintf("%+.2f ± %.2f", d.v, d.noise), tg, v})
	}
	u, l := pick(false, rps), pick(true, rps)
	t = append(t, []string{"requests/s", rng(u, ""), rng(l, ""), fmt.Sprintf("%+.0f", median(l)-median(u)), "—", "—"})

	per := table{{"round", "config", "req/s", "requests (nginx)", "A µs/req", "B µs/req", "nginx µs/req", "client spans (A)", "server spans (B)", "spans received", "B's lookups", "batches A answered", "load1"}}
	for _, r := range rounds {
		cfg := linkCfgName(r.linked)
		if r.profiled {
			cfg += " (profiled)"
		}
		per = append(per, []string{fmt.Sprint(r.n), cfg, fmt.Sprintf("%.0f", r.wrk.rps), fmtInt(r.requests),
			fmt.Sprintf("%.2f", cpuA(r)), fmt.Sprintf("%.2f", cpuB(r)), fmt.Sprintf("%.2f", app(r)),
			fmt.Sprintf("%.0f", r.spansA), fmt.Sprintf("%.0f", r.spans), fmtInt(r.recv), fmtLookups(r.lookups), fmt.Sprintf("%.0f", r.served), fmt.Sprintf("%.2f", r.load1)})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Cross-node linking: each agent's CPU per linked request\n\n")
	fmt.Fprintf(&b, "Generated by `make bench MODE=linking` (test/bench/run.sh, benchtool -mode linking, test/bench/benchtool/linkmode.go). Speed is reported, not asserted.\n\n")
	fmt.Fprintf(&b, "- **date**: %s UTC, %s\n", start.UTC().Format("2006-01-02 15:04"), time.Since(start).Round(time.Second))
	fmt.Fprintf(&b, "- **Periscope**: %s\n", o.commit)
	fmt.Fprintf(&b, "- **machine**: %s, %d CPUs (shared with other engineers' tests)\n", cpuModel(), numCPU())
	fmt.Fprintf(&b, "- **two nodes**: network namespaces A and B joined by a veth pair; `wrk %s` in A calls nginx %s (plain HTTP, keep-alive, %d worker) in B\n", strings.Join(e.wc.args(o.duration), " "), e.ng.version, o.workers)
	fmt.Fprintf(&b, "- **agents**: one per namespace (`ip netns exec`), A with `--include-exe %s` (client spans), B with `--include-exe NGINX` (server spans), both exporting to one counting OTLP receiver, `PERISCOPE_TCP_ENABLED=false`, `PERISCOPE_PROCESS_METRICS_ENABLED=false`; **linked**: `PERISCOPE_LINKING_LISTEN` on the node's address, `PERISCOPE_LINKING_PEERS` the other's, a token; **unlinked**: neither. Both agents started afresh for every round\n", e.wrk)
	fmt.Fprintf(&b, "- **CPU**: each agent's own utime+stime (/proc/PID/stat) from wrk's start until its spans settled, and nginx's workers' over wrk, divided by the requests nginx served (stub_status)\n")
	fmt.Fprintf(&b, "- **rounds**: %d per configuration, ABBA (unlinked, linked, linked, unlinked, …); medians; the noise of a difference is the two configurations' half-ranges added in quadrature; a target is met only when the margin beats it\n", o.rounds)
	fmt.Fprintf(&b, "- **load average**: %s at start, %s at end\n\n", load0, load1)
	b.WriteString(t.markdown())
	b.WriteString("\n### Per round\n\n")
	b.WriteString(per.markdown())
	for _, r := range rounds {
		if !r.profiled {
			continue
		}
		fmt.Fprintf(&b, "\n### Where each agent's CPU goes (profiled round %d, %s)\n\n", r.n, linkCfgName(r.linked))
		fmt.Fprintf(&b, "From each agent's `/debug/pprof/profile` over wrk (%s), scaled to its CPU per request in that round (A %.2f µs, B %.2f µs). A sample is linking's when package linking or the correlator's linking functions are on its stack; gRPC transport goroutines (reading and writing HTTP/2 frames) serve both the OTLP export and the lookups.\n\n", o.duration, cpuA(r), cpuB(r))
		pt := table{{"stage", "agent A µs/req", "agent B µs/req"}}
		names := map[string][2]float64{}
		var order []string
		for i, sh := range [][]share{r.profA, r.profB} {
			scale := []float64{cpuA(r), cpuB(r)}[i]
			for _, s := range sh {
				if _, ok := names[s.name]; !ok {
					order = append(order, s.name)
				}
				v := names[s.name]
				v[i] = s.frac * scale
				names[s.name] = v
			}
		}
		for _, n := range order {
			pt = append(pt, []string{n, fmt.Sprintf("%.2f", names[n][0]), fmt.Sprintf("%.2f", names[n][1])})
		}
		b.WriteString(pt.markdown())
	}
	return b.String()
}

func fmtLookups(m map[string]float64) string {
	if len(m) == 0 {
		return "—"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
