package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The tcp mode (-mode tcp, `make bench MODE=tcp`): what the TCP collector
// costs when there is no loss. Both configurations run the agent as the
// default mode does (selecting the benchmark's nginx, OpenSSL collector
// on); they differ only in tcp.enabled. Rounds alternate off, on, off, on...

// tcpRound is one wrk run of the tcp mode.
type tcpRound struct {
	n           int
	on          bool // TCP collector enabled
	load1       float64
	wrk         wrkResult
	agentCPU    float64
	nginxCPUSec float64
	tcpRuns     map[string]uint64 // run_cnt deltas of the agent's tcp_* programs
	tcpTime     map[string]uint64 // run_time_ns deltas
	tcpTimeNs   uint64
	retransmits float64 // periscope_tcp_retransmits_total delta
}

func tcpCfgName(on bool) string {
	if on {
		return "tcp on"
	}
	return "tcp off"
}

func runTCPMode(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (loads eBPF programs)")
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

	cfgs := map[bool]string{false: filepath.Join(o.work, "tcp-off.yaml"), true: filepath.Join(o.work, "tcp-on.yaml")}
	if err := writeAgentConfigs(cfgs, func(on bool) string { return fmt.Sprintf("tcp:\n  enabled: %v\n", on) }); err != nil {
		return err
	}

	ng, err := startBenchNginx(ctx, o, pidDir)
	defer ng.stop()
	if err != nil {
		return err
	}

	wc := wrkConfig{threads: o.threads, connections: o.connections, url: ng.url()}
	if o.newConns {
		wc.header = "Connection: close"
	}
	if err := warmUp(ctx, o, wc, pidDir); err != nil {
		return err
	}

	var rounds []*tcpRound
	for i := 0; i < 2*o.rounds; i++ {
		r := &tcpRound{n: i + 1, on: i%2 == 1}
		if err := measureTCPRound(ctx, o, ng, wc, pidDir, cfgs[r.on], r); err != nil {
			return fmt.Errorf("round %d (%s): %w", r.n, tcpCfgName(r.on), err)
		}
		rounds = append(rounds, r)
		logf("round %d %-7s %9.0f req/s  p50 %-8s p99 %-8s agent CPU %5.1f%%  tcp program runs %d  retransmits %v  load %.2f",
			r.n, tcpCfgName(r.on), r.wrk.rps, fmtDur(r.wrk.p50), fmtDur(r.wrk.p99), r.agentCPU, sumRuns(r.tcpRuns), r.retransmits, r.load1)
	}

	md := tcpReport(o, ng, wc, rounds, statsHow, start, load0, loadAvg())
	fmt.Println(md)
	if err := writeFileAtomic(o.out, []byte(md)); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	logf("wrote %s", o.out)
	return nil
}

func measureTCPRound(ctx context.Context, o options, ng *nginx, wc wrkConfig, pidDir, cfg string, r *tcpRound) (err error) {
	r.load1 = load1()
	a, err := startAgent(o.agentCmd(), ng.bin, o.work, pidDir, r.n, "--config", cfg)
	if err != nil {
		return err
	}
	defer func() {
		if serr := a.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	if err := a.waitReady(ctx, ng.workerPIDs(), 60*time.Second); err != nil {
		return err
	}
	m0, err := a.metrics()
	if err != nil {
		return err
	}
	ticks0, err := cpuTicks(a.pid())
	if err != nil {
		return fmt.Errorf("agent CPU: %w", err)
	}
	progs0, err := bpftoolProgs()
	if err != nil {
		return err
	}
	nginxTicks0 := ng.workerTicks()
	t0 := time.Now()
	if r.wrk, _, err = runWrk(ctx, wc, o.duration, pidDir); err != nil {
		return err
	}
	elapsed := time.Since(t0).Seconds()
	r.nginxCPUSec = float64(ng.workerTicks()-nginxTicks0) / clockTicks
	ticks1, err := cpuTicks(a.pid())
	if err != nil {
		return fmt.Errorf("agent CPU (did the agent die?): %w\n%s", err, a.logTail())
	}
	r.agentCPU = 100 * float64(ticks1-ticks0) / clockTicks / elapsed
	progs1, err := bpftoolProgs()
	if err != nil {
		return err
	}
	r.tcpRuns, r.tcpTime = tcpProgramRuns(progs0, progs1, a.progs)
	r.tcpTimeNs = sumRuns(r.tcpTime)
	m1, err := a.metrics()
	if err != nil {
		return err
	}
	v0, _ := m0.sum("periscope_tcp_retransmits_total", nil)
	v1, _ := m1.sum("periscope_tcp_retransmits_total", nil)
	r.retransmits = v1 - v0
	return nil
}

// tcpProgramRuns returns the run_cnt and run_time_ns deltas of the agent's
// programs named tcp_*, by name.
func tcpProgramRuns(before, after []bpfProg, ours map[uint32]bool) (runs, ns map[string]uint64) {
	prev := make(map[uint32]bpfProg)
	for _, p := range before {
		prev[p.ID] = p
	}
	runs, ns = make(map[string]uint64), make(map[string]uint64)
	for _, p := range after {
		if !ours[p.ID] || !strings.HasPrefix(p.Name, "tcp_") {
			continue
		}
		runs[p.Name] += p.RunCnt - prev[p.ID].RunCnt
		ns[p.Name] += p.RunTimeNs - prev[p.ID].RunTimeNs
	}
	return runs, ns
}

func sumRuns(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func tcpReport(o options, ng *nginx, wc wrkConfig, rounds []*tcpRound, statsHow string, start time.Time, load0, load1 string) string {
	byCfg := map[bool][]*tcpRound{}
	for _, r := range rounds {
		byCfg[r.on] = append(byCfg[r.on], r)
	}
	col := func(rs []*tcpRound, f func(*tcpRound) float64) []float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return v
	}
	rps := func(r *tcpRound) float64 { return r.wrk.rps }
	spread := func(rs []*tcpRound) float64 { return spreadPct(col(rs, rps)) }
	offRPS, onRPS := median(col(byCfg[false], rps)), median(col(byCfg[true], rps))
	diff := 0.0
	if offRPS > 0 {
		diff = 100 * (onRPS - offRPS) / offRPS
	}
	noise := max(spread(byCfg[false]), spread(byCfg[true]))
	verdict := "within the run-to-run noise"
	if abs(diff) >= noise {
		verdict = "LARGER than the run-to-run noise"
	}

	var reqs, runs, ns uint64
	byName, nsByName := map[string]uint64{}, map[string]uint64{}
	var retrans float64
	for _, r := range byCfg[true] {
		reqs += r.wrk.requests
		ns += r.tcpTimeNs
		for k, v := range r.tcpRuns {
			byName[k] += v
			runs += v
		}
		for k, v := range r.tcpTime {
			nsByName[k] += v
		}
	}
	for _, r := range rounds {
		retrans += r.retransmits
	}
	names := make([]string, 0, len(byName))
	for k := range byName {
		names = append(names, k)
	}
	sort.Strings(names)
	var perProg, perProgNs []string
	for _, k := range names {
		perProg = append(perProg, fmt.Sprintf("%s %.3f", k, ratio(byName[k], reqs)))
		if byName[k] > 0 {
			perProgNs = append(perProgNs, fmt.Sprintf("%s %.0f ns/run", k, float64(nsByName[k])/float64(byName[k])))
		}
	}

	cell := func(on bool, f func([]*tcpRound) string) string { return f(byCfg[on]) }
	cpuPerReq := func(rs []*tcpRound) string {
		var sec float64
		var n uint64
		for _, r := range rs {
			sec += r.nginxCPUSec
			n += r.wrk.requests
		}
		return fmt.Sprintf("%.1f µs", 1e6*sec/float64(max(n, 1)))
	}
	med := func(f func(*tcpRound) float64, format string) func([]*tcpRound) string {
		return func(rs []*tcpRound) string { return fmt.Sprintf(format, median(col(rs, f))) }
	}
	rng := func(rs []*tcpRound) string {
		lo, hi := minMax(col(rs, rps))
		return fmt.Sprintf("%.0f–%.0f (±%.1f%%)", lo, hi, spread(rs))
	}
	durMed := func(f func(*tcpRound) time.Duration) func([]*tcpRound) string {
		return func(rs []*tcpRound) string {
			return fmtDur(time.Duration(median(col(rs, func(r *tcpRound) float64 { return float64(f(r)) }))))
		}
	}
	t := table{
		{"", "TCP collector off", "TCP collector on"},
		{"requests/s (median of rounds)", cell(false, med(rps, "%.0f")), cell(true, med(rps, "%.0f"))},
		{"requests/s range over rounds", cell(false, rng), cell(true, rng)},
		{"latency p50 (median)", cell(false, durMed(func(r *tcpRound) time.Duration { return r.wrk.p50 })), cell(true, durMed(func(r *tcpRound) time.Duration { return r.wrk.p50 }))},
		{"latency p99 (median)", cell(false, durMed(func(r *tcpRound) time.Duration { return r.wrk.p99 })), cell(true, durMed(func(r *tcpRound) time.Duration { return r.wrk.p99 }))},
		{"agent CPU (% of one core, median)", cell(false, med(func(r *tcpRound) float64 { return r.agentCPU }, "%.1f%%")), cell(true, med(func(r *tcpRound) float64 { return r.agentCPU }, "%.1f%%"))},
		{"TCP program runs per request", "—", fmt.Sprintf("%.3f (%s)", ratio(runs, reqs), strings.Join(perProg, ", "))},
		{"nginx CPU time per request", cell(false, cpuPerReq), cell(true, cpuPerReq)},
		{"time in TCP programs per request (all CPUs)", "—", fmt.Sprintf("%.0f ns (%s)", float64(ns)/float64(max(reqs, 1)), strings.Join(perProgNs, ", "))},
	}
	var per table
	per = append(per, []string{"round", "config", "req/s", "p50", "p99", "agent CPU", "TCP program runs", "retransmits counted", "load1"})
	for _, r := range rounds {
		per = append(per, []string{fmt.Sprint(r.n), tcpCfgName(r.on), fmt.Sprintf("%.0f", r.wrk.rps), fmtDur(r.wrk.p50), fmtDur(r.wrk.p99),
			fmt.Sprintf("%.1f%%", r.agentCPU), fmtInt(sumRuns(r.tcpRuns)), fmt.Sprintf("%.0f", r.retransmits), fmt.Sprintf("%.2f", r.load1)})
	}

	conn := "keep-alive connections"
	if wc.header != "" {
		conn = "a new connection per request (`-H \"" + wc.header + "\"`: TCP and TLS handshake every time)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Periscope benchmark: the TCP collector off and on\n\n")
	fmt.Fprintf(&b, "Generated by `make bench MODE=tcp` (test/bench/run.sh, benchtool -mode tcp). Speed is reported, not asserted.\n\n")
	fmt.Fprintf(&b, "- **date**: %s UTC, %s\n", start.UTC().Format("2006-01-02 15:04"), time.Since(start).Round(time.Second))
	fmt.Fprintf(&b, "- **Periscope**: %s\n", o.commit)
	fmt.Fprintf(&b, "- **agent**: `periscope run --console=off --include-exe NGINX --config F`, F setting `tcp.enabled` to false or true; OpenSSL collector on in both\n")
	fmt.Fprintf(&b, "- **target**: nginx %s, `worker_processes %d`, TLS, %s\n", ng.version, o.workers, ng.tlsInfo())
	fmt.Fprintf(&b, "- **load**: `wrk %s` over %s\n", strings.Join(wc.args(o.duration), " "), conn)
	fmt.Fprintf(&b, "- **rounds**: %d per configuration, alternated off, on, off, on, …; medians over rounds; program runs from `bpftool prog show` (%s)\n", o.rounds, statsHow)
	fmt.Fprintf(&b, "- **load average**: %s at start, %s at end\n\n", load0, load1)
	b.WriteString(t.markdown())
	fmt.Fprintf(&b, "\n**Throughput with the TCP collector on differs from off by %+.1f%% (medians); the run-to-run noise is ±%.1f%% (the larger spread of the two configurations): %s.** ", diff, noise, verdict)
	fmt.Fprintf(&b, "There is no induced loss: the retransmit hook runs only for what the node retransmits anyway (%.0f segments counted during the \"on\" rounds, by any process on the node); ", retrans)
	fmt.Fprintf(&b, "the socket-owner hooks run once per connection state change and per accept, so with keep-alive connections the collector's programs barely run at all; `-new-conns` (NEW_CONNS=1) makes every request a new connection.\n\n")
	b.WriteString("### Per round\n\n")
	b.WriteString(per.markdown())
	return b.String()
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
