package main

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMax(v []float64) (float64, float64) {
	if len(v) == 0 {
		return 0, 0
	}
	lo, hi := v[0], v[0]
	for _, x := range v[1:] {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	}
}

// fmtInt writes n with thousands separators.
func fmtInt(n uint64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func fmtRuns(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmtUs(x)
	}
	return strings.Join(parts, " ")
}

func fmtUs(x float64) string {
	switch {
	case x < 0.1:
		return fmt.Sprintf("%.4f", x)
	case x < 10:
		return fmt.Sprintf("%.2f", x)
	default:
		return fmt.Sprintf("%.1f", x)
	}
}

// table is rows of cells; the first row is the header.
type table [][]string

func (t table) text() string {
	t = t.plain()
	widths := make([]int, 0)
	for _, row := range t {
		for i, c := range row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	for ri, row := range t {
		for i, c := range row {
			pad := widths[i] - len([]rune(c))
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(c)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", pad))
			}
		}
		b.WriteByte('\n')
		if ri == 0 {
			total := 0
			for _, w := range widths[:len(widths)-1] {
				total += w + 2
			}
			total += len([]rune(row[len(row)-1]))
			b.WriteString(strings.Repeat("-", total) + "\n")
		}
	}
	return b.String()
}

// plain drops the markdown: backticks.
func (t table) plain() table {
	out := make(table, len(t))
	for i, row := range t {
		out[i] = make([]string, len(row))
		for j, c := range row {
			out[i][j] = strings.ReplaceAll(c, "`", "")
		}
	}
	return out
}

func (t table) markdown() string {
	var b strings.Builder
	for ri, row := range t {
		cells := make([]string, len(row))
		for i, c := range row {
			// Leading spaces mark a sub-row; markdown would swallow them.
			if trimmed := strings.TrimLeft(c, " "); trimmed != c {
				c = "&emsp;" + trimmed
			}
			cells[i] = strings.ReplaceAll(c, "|", `\|`) // a cell's own | would end it
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
		if ri == 0 {
			seps := make([]string, len(row))
			for i := range seps {
				seps[i] = "---"
				if i > 0 {
					seps[i] = "--:"
				}
			}
			b.WriteString("| " + strings.Join(seps, " | ") + " |\n")
		}
	}
	return b.String()
}

type report struct {
	title    string
	config   [][2]string
	machine  [][2]string
	main     table
	perRound table
	probe    table
	notes    []string
	warnings []string

	probeReps, probeCalls int
}

func (e *env) report() report {
	o := e.o
	var base, ag []*round
	for _, r := range e.rounds {
		if r.withAgent {
			ag = append(ag, r)
		} else {
			base = append(base, r)
		}
	}
	col := func(rs []*round, f func(*round) float64) []float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return v
	}
	sumU := func(rs []*round, f func(*round) uint64) uint64 {
		var s uint64
		for _, r := range rs {
			s += f(r)
		}
		return s
	}
	rps := func(r *round) float64 { return r.wrk.rps }
	p50 := func(r *round) float64 { return float64(r.wrk.p50) }
	p99 := func(r *round) float64 { return float64(r.wrk.p99) }
	bRPS, aRPS := median(col(base, rps)), median(col(ag, rps))
	spread := func(rs []*round) string {
		lo, hi := minMax(col(rs, rps))
		m := median(col(rs, rps))
		if m == 0 {
			return "—"
		}
		return fmt.Sprintf("%.0f–%.0f (±%.1f%%)", lo, hi, 50*(hi-lo)/m)
	}
	cpuPerReq := func(rs []*round) string {
		var sec float64
		var reqs uint64
		for _, r := range rs {
			sec += r.nginxCPUSec
			reqs += r.wrk.requests
		}
		if reqs == 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f µs", 1e6*sec/float64(reqs))
	}

	wrkReqA := sumU(ag, func(r *round) uint64 { return r.wrk.requests })
	nginxReqA := sumU(ag, func(r *round) uint64 { return r.nginxReqs })
	spansA := sumU(ag, func(r *round) uint64 { return r.spans })
	entryA := sumU(ag, func(r *round) uint64 { return r.probes.entry })
	retA := sumU(ag, func(r *round) uint64 { return r.probes.ret })
	tpA := sumU(ag, func(r *round) uint64 { return r.probes.tracepoints })
	var hwm uint64
	for _, r := range ag {
		hwm = max(hwm, r.hwmKiB)
	}
	minCompl := 1e9
	for _, r := range ag {
		if r.wrk.requests > 0 {
			minCompl = min(minCompl, float64(r.spans)/float64(r.wrk.requests))
		}
	}
	pct := func(a, b uint64) string {
		if b == 0 {
			return "—"
		}
		return fmt.Sprintf("%.3f%%", 100*float64(a)/float64(b))
	}
	perReq := func(a uint64) string { return fmt.Sprintf("%.2f", ratio(a, wrkReqA)) }
	errs := func(rs []*round) string {
		return fmt.Sprintf("%d / %d", sumU(rs, func(r *round) uint64 { return r.wrk.socketErrs }),
			sumU(rs, func(r *round) uint64 { return r.wrk.non2xx }))
	}
	dash := "—"
	agentCPU := col(ag, func(r *round) float64 { return r.agentCPU })
	_, cpuMax := minMax(agentCPU)
	startups := col(ag, func(r *round) float64 { return r.startup.Seconds() })

	rep := report{title: "Periscope benchmark: nginx + TLS under wrk, without and with the agent", probeReps: o.probeReps, probeCalls: o.probeCalls}
	rep.main = table{
		{"", "baseline (no agent)", "with agent"},
		{"requests/s (median of rounds)", fmt.Sprintf("%.0f", bRPS), fmt.Sprintf("%.0f", aRPS)},
		{"requests/s range over rounds", spread(base), spread(ag)},
		{"throughput ratio agent/baseline", dash, fmt.Sprintf("%.1f%%", 100*aRPS/max(bRPS, 1e-9))},
		{"  same, rounds where no other agent's uprobes ran", dash, cleanRatio(base, ag)},
		{"latency p50 (median of rounds)", fmtDur(time.Duration(median(col(base, p50)))), fmtDur(time.Duration(median(col(ag, p50))))},
		{"latency p99 (median of rounds)", fmtDur(time.Duration(median(col(base, p99)))), fmtDur(time.Duration(median(col(ag, p99))))},
		{"nginx worker CPU (% of one core)", fmt.Sprintf("%.0f%%", median(col(base, func(r *round) float64 { return r.nginxCPU }))),
			fmt.Sprintf("%.0f%%", median(col(ag, func(r *round) float64 { return r.nginxCPU })))},
		{"nginx CPU time per request", cpuPerReq(base), cpuPerReq(ag)},
		{"agent CPU (% of one core; median, max)", dash, fmt.Sprintf("%.1f%%, %.1f%%", median(agentCPU), cpuMax)},
		{"agent peak RSS (VmHWM, max of rounds)", dash, fmt.Sprintf("%.1f MiB", float64(hwm)/1024)},
		{"completeness: spans ÷ wrk requests", dash, fmt.Sprintf("%s (%s / %s; worst round %.3f%%)", pct(spansA, wrkReqA), fmtInt(spansA), fmtInt(wrkReqA), 100*minCompl)},
		{"spans ÷ requests nginx served", dash, fmt.Sprintf("%s (%s / %s)", pct(spansA, nginxReqA), fmtInt(spansA), fmtInt(nginxReqA))},
		{"ring-buffer drops (events)", dash, fmtInt(sumU(ag, func(r *round) uint64 { return r.drops }))},
		{"uprobe hits per request", dash, perReq(entryA + retA)},
		{"  entry probes (`ssl_*_enter`)", dash, perReq(entryA)},
		{"  return probe (`ssl_leave`)", dash, perReq(retA)},
		{"  by program", dash, byProgram(ag, wrkReqA, true)},
		{"agent's uprobe sites (first instruction)", dash, siteSummary(ag)},
		{"tracepoint program runs per request (system-wide)", dash, perReq(tpA)},
		{"time inside the agent's BPF programs per request", dash, fmt.Sprintf("%.2f µs", float64(sumU(ag, func(r *round) uint64 { return r.probes.bpfTimeNs }))/1e3/max(float64(wrkReqA), 1))},
		{"  by program (µs per request; ns per run)", dash, timeByProgram(ag, wrkReqA)},
		{"agent start → ready, SIGTERM → exit (median)", dash, fmt.Sprintf("%.1f s, %.1f s", median(startups), median(col(ag, func(r *round) float64 { return r.stopTime.Seconds() })))},
		{"wrk socket errors / non-2xx", errs(base), errs(ag)},
	}

	rep.perRound = table{{"round", "config", "req/s", "p50", "p99", "nginx CPU", "agent CPU", "VmHWM", "spans", "wrk requests", "nginx requests", "drops", "uprobe hits/req", "other agents' uprobe runs", "load1"}}
	for _, r := range e.rounds {
		row := []string{fmt.Sprint(r.n), cfgName(r.withAgent), fmt.Sprintf("%.0f", r.wrk.rps), fmtDur(r.wrk.p50), fmtDur(r.wrk.p99),
			fmt.Sprintf("%.0f%%", r.nginxCPU)}
		if r.withAgent {
			row = append(row, fmt.Sprintf("%.1f%%", r.agentCPU), fmt.Sprintf("%.1f MiB", float64(r.hwmKiB)/1024),
				fmtInt(r.spans), fmtInt(r.wrk.requests), fmtInt(r.nginxReqs), fmtInt(r.drops),
				fmt.Sprintf("%.2f", ratio(r.probes.uprobes(), r.wrk.requests)))
		} else {
			row = append(row, dash, dash, dash, fmtInt(r.wrk.requests), fmtInt(r.nginxReqs), dash, dash)
		}
		row = append(row, fmtInt(r.foreign), fmt.Sprintf("%.2f", r.load1))
		rep.perRound = append(rep.perRound, row)
	}

	rep.probe = table{{"first instruction of the probed function", "bare call (µs)"}}
	for _, mode := range probeModes[1:] {
		rep.probe[0] = append(rep.probe[0], mode.name+" (µs added)")
	}
	for _, c := range e.probe {
		row := []string{fmt.Sprintf("`%s`: %s", c.variant.first, c.variant.how), fmtUs(c.median[0])}
		for m := 1; m < len(probeModes); m++ {
			lo, hi := minMax(c.runs[m])
			row = append(row, fmt.Sprintf("%s (runs %s–%s)", fmtUs(c.added(m)), fmtUs(lo-c.median[0]), fmtUs(hi-c.median[0])))
		}
		rep.probe = append(rep.probe, row)
	}

	// Context: what the measured hits should cost at the micro-benchmark's
	// prices. An entry program and a return program on the same call share
	// one breakpoint trap (a uretprobe is armed by a trap at the entry), so a
	// call with both costs the "entry + uretprobe" price, not the sum. Which
	// price applies depends on the instruction at the probe site.
	if len(e.probe) > 0 && wrkReqA > 0 {
		paired := min(entryA, retA)
		cost := func(c *probeCost) float64 {
			return (float64(paired)*c.added(3) + float64(entryA-paired)*c.added(1) + float64(retA-paired)*c.added(2)) / float64(wrkReqA)
		}
		var prices []string
		for _, c := range e.probe {
			prices = append(prices, fmt.Sprintf("%s µs when the probed instruction is %s", fmtUs(c.added(3)), c.variant.how))
		}
		// Which prices apply: the agent's sites, by their first instruction.
		want := map[string]bool{}
		for _, r := range ag {
			for _, st := range r.sites {
				switch {
				case st.insn == "nop5":
					want["nop5"] = true
				case st.emulated:
					want["push"] = true
				default:
					want["xol"] = true
				}
			}
		}
		lo, hi := -1.0, -1.0
		for _, c := range e.probe {
			if len(want) > 0 && !want[c.variant.name] {
				continue
			}
			if lo < 0 {
				lo, hi = cost(c), cost(c)
			}
			lo, hi = min(lo, cost(c)), max(hi, cost(c))
		}
		est := fmt.Sprintf("%.1f µs", lo)
		if hi-lo >= 0.05 {
			est = fmt.Sprintf("%.1f–%.1f µs", lo, hi)
		}
		basis := "whatever their probe sites"
		if len(want) > 0 {
			basis = "given the agent's probe sites"
		}
		rep.notes = append(rep.notes, fmt.Sprintf(
			"Uprobe prices on this kernel (micro-benchmark below): an entry probe and a return probe on the same call share one breakpoint trap, and a call with both costs %s. At these prices, %s, the measured %s entry + %s return hits per request (%s probed calls) cost about %s per request in nginx; nginx's CPU time per request went from %s (baseline) to %s (agent).",
			strings.Join(prices, ", "), basis, perReq(entryA), perReq(retA), perReq(max(entryA, retA)), est, cpuPerReq(base), cpuPerReq(ag)))
	}
	if tpA > 0 {
		var tpNs uint64
		for _, r := range ag {
			for name, ns := range r.probes.timeByName {
				if !r.probes.uprobeNames[name] {
					tpNs += ns
				}
			}
		}
		rep.notes = append(rep.notes, fmt.Sprintf(
			"The agent's tracepoint programs run for every matching syscall of every process on the machine (wrk's and any other program's included: the per-request figure grows with unrelated activity), %.0f ns each on average inside the program; per request: %s.",
			float64(tpNs)/max(float64(tpA), 1), byProgram(ag, wrkReqA, false)))
	}
	if nginxReqA > wrkReqA {
		rep.notes = append(rep.notes, fmt.Sprintf(
			"nginx served %s more requests than wrk counted: requests in flight when wrk stops (at most %d per round, one per connection) are answered but not counted by wrk, so spans ÷ nginx requests is the exact completeness.",
			fmtInt(nginxReqA-wrkReqA), o.connections))
	}
	if n := sumU(ag, func(r *round) uint64 { return r.clientSpans }); n > 0 {
		e.warn(fmt.Sprintf("%d client spans appeared although only nginx was selected", n))
	}
	if n := sumU(ag, func(r *round) uint64 { return r.unmatched }); n > 0 {
		rep.notes = append(rep.notes, fmt.Sprintf("return probes without their entry (periscope_calls_unmatched_total): %d", n))
	}
	if n := sumU(ag, func(r *round) uint64 { return r.incomplete }); n > 0 {
		rep.notes = append(rep.notes, fmt.Sprintf("requests ended without a complete response (periscope_requests_incomplete_total): %d", n))
	}
	for _, r := range ag {
		if r.probes.uprobes() == 0 {
			e.warn(fmt.Sprintf("round %d: the agent's ssl_* programs never ran (programs held: %v)", r.n, r.probes.progsSeen))
		}
	}
	for _, r := range e.rounds {
		if r.foreign > 0 {
			per := ratio(r.foreign, r.wrk.requests)
			why := "if they trace every process, some fired in nginx or wrk and slowed this round"
			if per >= 1 {
				why = "in step with this round's requests: they trace nginx and/or wrk, so this round's figures are distorted"
			}
			e.warn(fmt.Sprintf("round %d (%s): uprobe programs named `ssl_*` of other agents on this machine ran %s times (%.2f per wrk request), %s (other periscope processes: %s)",
				r.n, cfgName(r.withAgent), fmtInt(r.foreign), per, why, orNone(r.others)))
		} else if len(r.others) > 0 {
			e.warn(fmt.Sprintf("round %d: other periscope processes were running (%s); none of their `ssl_*` uprobe programs ran during the round", r.n, strings.Join(r.others, ", ")))
		}
	}
	for _, cfg := range []struct {
		name string
		rs   []*round
	}{{"baseline", base}, {"agent", ag}} {
		lo, hi := minMax(col(cfg.rs, rps))
		if m := median(col(cfg.rs, rps)); m > 0 && 50*(hi-lo)/m > 10 {
			e.warn(fmt.Sprintf("the %s rounds disagree by ±%.0f%% (%.0f–%.0f req/s): the machine was busy (load average %s at start, %s at end), so the throughput figures are not reliable; run again when it is quiet",
				cfg.name, 50*(hi-lo)/m, lo, hi, e.loadAt[0], e.loadAt[1]))
		}
	}
	rep.warnings = e.warnings

	commit := o.commit
	if commit == "" {
		commit = "unknown"
	}
	rep.config = [][2]string{
		{"Periscope", commit},
		{"agent", "`periscope run --console=off --include-exe NGINX --metrics-addr 127.0.0.1:PORT`, NGINX being the full path of a private copy of the nginx executable (selects the benchmark's nginx only: not wrk, not other nginx processes on the machine); started before and stopped after each of its rounds, so baseline rounds run with no probe attached"},
		{"target", fmt.Sprintf("%s, `worker_processes %d`, TLS (%s, self-signed RSA-2048), keep-alive (`keepalive_requests 10000000`), `access_log off`, static file of %d bytes", e.ng.version, o.workers, e.tls, e.ng.fileSize)},
		{"load", fmt.Sprintf("`wrk %s` (wrk %s)", strings.Join(wrkConfig{threads: o.threads, connections: o.connections, url: "https://127.0.0.1:PORT" + indexPath}.args(o.duration), " "), wrkVersion())},
		{"rounds", fmt.Sprintf("%d per configuration, alternated baseline, agent, baseline, agent, … after a %s warm-up; medians over rounds", o.rounds, o.warmup)},
		{"uprobe hits", "`run_cnt` of the agent's programs in `bpftool -j prog show` (stats via " + e.statsHow + "), before/after each round, ÷ requests wrk completed"},
		{"completeness", "`periscope_spans_total{kind=\"server\"}` before/after each round (after: once spans stop arriving) ÷ wrk's \"N requests in\""},
		{"CPU", "utime+stime from /proc/PID/stat over the wrk run; RSS: VmHWM from /proc/PID/status"},
	}
	rep.machine = [][2]string{
		{"date", e.start.UTC().Format("2006-01-02 15:04 MST")},
		{"kernel", strings.TrimSpace(readFirst("/proc/sys/kernel/osrelease"))},
		{"CPU", fmt.Sprintf("%d × %s%s", numCPU(), cpuModel(), hypervisor())},
		{"memory", memTotal()},
		{"load average (1, 5, 15 min)", fmt.Sprintf("%s at start, %s at end", e.loadAt[0], e.loadAt[1])},
	}
	return rep
}

// cleanRatio is the throughput ratio over the rounds that no other agent's
// probes disturbed.
func cleanRatio(base, ag []*round) string {
	clean := func(rs []*round) []float64 {
		var v []float64
		for _, r := range rs {
			if r.foreign == 0 {
				v = append(v, r.wrk.rps)
			}
		}
		return v
	}
	b, a := clean(base), clean(ag)
	if len(b) == len(base) && len(a) == len(ag) {
		return "(all rounds)"
	}
	if len(b) == 0 || len(a) == 0 {
		return fmt.Sprintf("— (clean rounds: %d baseline, %d agent)", len(b), len(a))
	}
	return fmt.Sprintf("%.1f%% (%.0f / %.0f req/s; clean rounds: %d baseline, %d agent)", 100*median(a)/median(b), median(a), median(b), len(b), len(a))
}

// siteSummary lists the probe sites of the last agent round. The same site
// in several paths of one file (/proc/PID/root/... per process) shows once.
func siteSummary(rs []*round) string {
	for i := len(rs) - 1; i >= 0; i-- {
		if len(rs[i].sites) == 0 {
			continue
		}
		var parts []string
		seen := map[string]bool{}
		for _, s := range rs[i].sites {
			if str := s.String(); !seen[str] {
				seen[str] = true
				parts = append(parts, str)
			}
		}
		return strings.Join(parts, ", ")
	}
	return "—"
}

// timeByProgram lists the time spent inside each of the agent's programs
// per request (and per run), largest first, down to 0.05 µs per request.
func timeByProgram(rs []*round, requests uint64) string {
	ns, runs := map[string]uint64{}, map[string]uint64{}
	for _, r := range rs {
		for name, t := range r.probes.timeByName {
			ns[name] += t
			runs[name] += r.probes.byName[name]
		}
	}
	var names []string
	for name := range ns {
		if float64(ns[name])/1e3/max(float64(requests), 1) >= 0.05 {
			names = append(names, name)
		}
	}
	sort.Slice(names, func(i, j int) bool { return ns[names[i]] > ns[names[j]] })
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %.2f; %.0f", name, float64(ns[name])/1e3/max(float64(requests), 1), float64(ns[name])/max(float64(runs[name]), 1))
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, ", ")
}

// byProgram lists runs per request of the agent's uprobe programs (or of its
// other programs), most frequent first.
func byProgram(rs []*round, requests uint64, uprobes bool) string {
	const minPerRequest = 0.01
	sum := map[string]uint64{}
	for _, r := range rs {
		for name, n := range r.probes.byName {
			isProbe := r.probes.uprobeNames[name]
			if isProbe == uprobes {
				sum[name] += n
			}
		}
	}
	names := make([]string, 0, len(sum))
	for name := range sum {
		if ratio(sum[name], requests) >= minPerRequest {
			names = append(names, name)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if sum[names[i]] != sum[names[j]] {
			return sum[names[i]] > sum[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %.2f", name, ratio(sum[name], requests))
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, ", ")
}

func (r report) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s\n\n", r.title)
	for _, kv := range append(append([][2]string(nil), r.machine...), r.config[:1]...) {
		fmt.Fprintf(&b, "  %-28s %s\n", kv[0]+":", kv[1])
	}
	b.WriteString("\n" + r.main.text())
	b.WriteString("\nPer round:\n" + r.perRound.text())
	fmt.Fprintf(&b, "\nCost of a uprobe hit on this kernel (no-op BPF program; medians of %d runs of %s calls):\n%s", r.probeReps, fmtInt(uint64(r.probeCalls)), r.probe.text())
	for _, n := range r.notes {
		b.WriteString("\nNote: " + strings.ReplaceAll(n, "`", "") + "\n")
	}
	for _, w := range r.warnings {
		b.WriteString("\nWARNING: " + strings.ReplaceAll(w, "`", "") + "\n")
	}
	return b.String()
}

func (r report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", r.title)
	b.WriteString("Generated by `make bench` (test/bench/run.sh). Speed is reported, not asserted.\n\n")
	b.WriteString("## Machine\n\n")
	for _, kv := range r.machine {
		fmt.Fprintf(&b, "- **%s**: %s\n", kv[0], kv[1])
	}
	b.WriteString("\n## Configuration\n\n")
	for _, kv := range r.config {
		fmt.Fprintf(&b, "- **%s**: %s\n", kv[0], kv[1])
	}
	b.WriteString("\n## Results\n\n" + r.main.markdown())
	if len(r.notes) > 0 || len(r.warnings) > 0 {
		b.WriteString("\n")
		for _, n := range r.notes {
			b.WriteString("- " + n + "\n")
		}
		for _, w := range r.warnings {
			b.WriteString("- **Warning:** " + w + "\n")
		}
	}
	b.WriteString("\n### Per round\n\n" + r.perRound.markdown())
	b.WriteString("\n## Cost of one uprobe hit on this kernel\n\n")
	fmt.Fprintf(&b, "A small function called in a loop (test/bench/callloop.c), timed with `clock_gettime`, with a no-op BPF program attached as an entry uprobe, a uretprobe, or both (cilium/ebpf `link.OpenExecutable(...).Uprobe/Uretprobe`); medians of %d interleaved runs of %s calls (bare: %s). The cost depends on the instruction the probe replaces, so the functions differ only in their first one.\n\n", r.probeReps, fmtInt(uint64(r.probeCalls)), fmtInt(uint64(100*r.probeCalls)))
	b.WriteString(r.probe.markdown())
	return b.String()
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none found by name"
	}
	return strings.Join(s, ", ")
}

func readFirst(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func cpuModel() string {
	for _, line := range strings.Split(readFirst("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func hypervisor() string {
	for _, line := range strings.Split(readFirst("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			if strings.Contains(" "+v+" ", " hypervisor ") {
				return " (virtual machine: hypervisor CPU flag)"
			}
			return ""
		}
	}
	return ""
}

func memTotal() string {
	v, err := parseStatusKiB([]byte(readFirst("/proc/meminfo")), "MemTotal")
	if err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(v)/(1<<20))
}

func wrkVersion() string {
	out, _ := exec.Command("wrk", "--version").CombinedOutput()
	f := strings.Fields(string(out))
	if len(f) >= 2 {
		return f[1]
	}
	return "?"
}
