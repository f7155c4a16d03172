package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// The A/B engine of the modes that compare an application without and with
// the agent (go, plain): rounds in ABBA order (baseline, agent, agent,
// baseline, ...), each measuring the application (CPU, scheduler counts,
// the wake-ups it makes), the agent (CPU, scheduler counts, RSS, its
// self-metrics) and the counting OTLP receiver (spans delivered); then a
// pair of profiled rounds (perf record of the application in both
// configurations, the agent's pprof CPU profile) kept out of the medians.
// A mode supplies an abTarget; abReport turns the rounds into markdown.

// abTarget is the traced application of a mode.
type abTarget struct {
	name string // "goapp HTTPS", "nginx plain HTTP"
	exe  string // the agent's --include-exe
	// The load: wrk with wc, unless load is set (another load generator,
	// say redis-benchmark or a gRPC client, reporting in wrkResult's terms:
	// requests, seconds, rps, p50, p99, errors), which loadDesc describes.
	wc       wrkConfig
	load     func(ctx context.Context, d time.Duration) (wrkResult, error)
	loadDesc string
	pids     func() []int // the processes whose CPU is the application's
	// appCPU, when set, counts the application's CPU in clock ticks
	// instead of the pids' own (PostgreSQL: backends forked per
	// connection, whose CPU the postmaster collects when it reaps them).
	appCPU func() (uint64, error)
	// served counts the requests the server answered, when it can (nginx's
	// stub_status); nil: wrk's count is used.
	served func() (uint64, error)
	// extra measures more in each round, after wrk (plain: dd's syscalls).
	extra func(ctx context.Context, r *abRound) error
	// ready is called with each agent once it follows the application.
	ready func(a *agent)
}

// abRound is one round of the A/B engine.
type abRound struct {
	n         int
	withAgent bool
	profiled  bool // a profile round: reported apart
	load1     float64
	wrk       wrkResult
	elapsed   float64 // seconds of the wrk run
	requests  uint64  // served (or wrk's count)

	appSec   float64     // utime+stime of the application over wrk
	appSched schedCounts // over wrk
	sys      sysCPU      // machine CPU over wrk
	perf     perfEvents  // measured rounds only

	// with the agent
	agentSec   float64 // utime+stime of the agent from wrk's start until the spans settled
	agentSched schedCounts
	hwmKiB     uint64
	built      uint64 // periscope_spans_total{kind="server"}
	exported   uint64 // periscope_spans_exported_total{exporter="otlp"}
	dropped    map[string]uint64
	ringDrops  uint64
	unmatched  uint64
	incomplete uint64
	queueLeft  float64 // periscope_exporter_queue_length at the end
	recv       recvCounts
	recvSec    float64 // the receiver's CPU over the same interval
	progs      map[string]progDelta
	foreign    uint64 // runs of other owners' uprobe programs (any config)
	others     []string

	extra map[string]float64 // the mode's own per-round figures
}

// progDelta is one BPF program's runs and time over a round.
type progDelta struct {
	typ       string
	runs, ns  uint64
	ownUprobe bool
}

// abResult is what the engine measured for one target.
type abResult struct {
	target      abTarget
	rounds      []*abRound
	appBase     []share // perf record of the application, baseline profile round
	appAgent    []share
	stages      []share // the agent's pprof, by stage
	leaves      []share // by leaf kind
	profPath    string
	profCPU     float64 // seconds of CPU the agent's profile holds
	profSamples int
	pmu         string // what perf's cpu-clock samples mean here
	profErr     []string
}

// abEnv is what every round shares.
type abEnv struct {
	o      options
	pidDir string
	recv   *receiver
}

// startAB does what every A/B mode does first: it checks for root, makes
// the pid directory and turns the kernel's BPF run-time stats on until
// closer is closed.
func startAB(o options) (h *abHeader, e abEnv, closer io.Closer, err error) {
	if os.Geteuid() != 0 {
		return nil, e, nil, errors.New("must run as root (loads eBPF programs)")
	}
	h = newABHeader(o)
	e = abEnv{o: o, pidDir: filepath.Join(o.work, "pids"), recv: o.recv}
	if err := os.MkdirAll(e.pidDir, 0o755); err != nil {
		return nil, e, nil, err
	}
	if closer, h.statsHow, err = enableBPFStats(); err != nil {
		return nil, e, nil, err
	}
	return h, e, closer, nil
}

// appTicks is the application's CPU so far, in clock ticks.
func (t abTarget) appTicks(pids []int) (uint64, error) {
	if t.appCPU != nil {
		return t.appCPU()
	}
	return cpuTicksOf(pids)
}

func runAB(ctx context.Context, e abEnv, t abTarget) (*abResult, error) {
	res := &abResult{target: t}
	if e.o.warmup > 0 {
		logf("warm-up: %s for %s", t.describeLoad(e.o.warmup), e.o.warmup)
		if _, err := e.runLoad(ctx, t, e.o.warmup); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	for i := 0; i < 2*e.o.rounds; i++ {
		r := &abRound{n: i + 1, withAgent: i%4 == 1 || i%4 == 2}
		if err := e.measure(ctx, t, r, res); err != nil {
			return nil, fmt.Errorf("round %d (%s): %w", r.n, cfgName(r.withAgent), err)
		}
		res.rounds = append(res.rounds, r)
		logf("%s", r.line(t.name))
	}
	if !e.o.profile {
		return res, nil
	}
	res.pmu = hardwarePMU()
	for _, agent := range []bool{false, true} {
		r := &abRound{n: len(res.rounds) + 1, withAgent: agent, profiled: true}
		if err := e.measure(ctx, t, r, res); err != nil {
			return nil, fmt.Errorf("profile round (%s): %w", cfgName(agent), err)
		}
		res.rounds = append(res.rounds, r)
		logf("%s (profiled)", r.line(t.name))
	}
	return res, nil
}

func (r *abRound) line(name string) string {
	s := fmt.Sprintf("%s round %d %-8s %8.0f req/s p99 %-8s app %.1f µs/req  load %.2f", name, r.n, cfgName(r.withAgent), r.wrk.rps,
		fmtDur(r.wrk.p99), 1e6*r.appSec/float64(max(r.requests, 1)), r.load1)
	if r.withAgent {
		s += fmt.Sprintf(" | agent %.2f µs/span, built %d, received %d (server %d) of %d requests, dropped %v, ring drops %d",
			1e6*r.agentSec/float64(max(r.built, 1)), r.built, r.recv.Spans, r.recv.ServerSpans, r.requests, r.dropped, r.ringDrops)
	}
	return s
}

// measure runs one round: the agent (when withAgent) is started before and
// stopped after it, so baseline rounds run with no probe attached.
func (e abEnv) measure(ctx context.Context, t abTarget, r *abRound, res *abResult) (err error) {
	r.load1 = load1()
	var a *agent
	if r.withAgent {
		if a, err = startAgent(e.o.agentCmd(), t.exe, e.o.work, e.pidDir, r.n); err != nil {
			return err
		}
		defer func() {
			if serr := a.stop(); serr != nil && err == nil {
				err = serr
			}
		}()
		if err = a.waitReady(ctx, t.pids(), 60*time.Second); err != nil {
			return err
		}
		if t.ready != nil {
			t.ready(a)
		}
		r.others = otherPeriscopes(a.pid())
	} else {
		r.others = otherPeriscopes(0)
	}
	pids := t.pids()
	var m0 promText
	var agentT0 uint64
	var agentS0 schedCounts
	var recv0 recvCounts
	var recvT0 uint64
	if a != nil {
		if m0, err = a.metrics(); err != nil {
			return err
		}
		if agentT0, err = cpuTicks(a.pid()); err != nil {
			return err
		}
		agentS0 = readSched([]int{a.pid()})
	}
	if recv0, err = e.recv.counts(); err != nil {
		return err
	}
	recvT0, _ = cpuTicks(e.recv.pid())
	progs0, err := bpftoolProgs()
	if err != nil {
		return err
	}
	var served0 uint64
	if t.served != nil {
		if served0, err = t.served(); err != nil {
			return err
		}
	}
	appT0, err := t.appTicks(pids)
	if err != nil {
		return fmt.Errorf("application CPU: %w", err)
	}
	appS0, sys0 := readSched(pids), readSysCPU()

	var perfDone <-chan perfEvents
	var recDone <-chan error
	var profDone chan error
	var prof *profile.Profile
	appData := filepath.Join(e.o.work, fmt.Sprintf("app-%s.perf.data", cfgName(r.withAgent)))
	d := e.o.duration
	if r.profiled {
		d *= 2 // more samples; the profiles are shares, the rounds' figures are per request
	}
	if r.profiled {
		recDone = perfRecord(ctx, pids, d-time.Second, appData)
		if a != nil {
			profDone = make(chan error, 1)
			go func() {
				var perr error
				prof, perr = agentProfile(ctx, a.addr, d-time.Second)
				profDone <- perr
			}()
		}
	} else {
		perfDone = perfStat(ctx, pids, e.o.duration-time.Second)
	}
	t0 := time.Now()
	if r.wrk, err = e.runLoad(ctx, t, d); err != nil {
		return err
	}
	r.elapsed = time.Since(t0).Seconds()
	appT1, err := t.appTicks(pids)
	if err != nil {
		return fmt.Errorf("application CPU (did it die?): %w", err)
	}
	r.appSec = float64(appT1-appT0) / clockTicks
	r.appSched, r.sys = readSched(pids).sub(appS0), readSysCPU().sub(sys0)
	progs1, err := bpftoolProgs()
	if err != nil {
		return err
	}
	r.requests = r.wrk.requests
	if t.served != nil {
		s1, err := t.served()
		if err != nil {
			return err
		}
		r.requests = s1 - served0 - 1 // the second status request counted itself
	}
	var ours map[uint32]bool
	if a != nil {
		ours = a.progs
	}
	r.progs, r.foreign = progDeltas(progs0, progs1, ours)
	if perfDone != nil {
		r.perf = <-perfDone
	}
	if recDone != nil {
		if perr := <-recDone; perr != nil {
			res.profErr = append(res.profErr, perr.Error())
		} else if sh, perr := perfCategories(appData); perr != nil {
			res.profErr = append(res.profErr, perr.Error())
		} else if r.withAgent {
			res.appAgent = sh
		} else {
			res.appBase = sh
		}
	}
	if profDone != nil {
		if perr := <-profDone; perr != nil {
			res.profErr = append(res.profErr, perr.Error())
		} else {
			res.stages, res.leaves = profileShares(prof, stageOf), profileShares(prof, leafOf)
			res.profSamples = len(prof.Sample)
			for _, smp := range prof.Sample {
				res.profCPU += float64(smp.Value[len(smp.Value)-1]) / 1e9
			}
			res.profPath = filepath.Join(e.o.work, "agent.cpu.pprof")
			_ = writeProfile(prof, res.profPath)
		}
	}
	if t.extra != nil {
		if err := t.extra(ctx, r); err != nil {
			return err
		}
	}
	if a == nil {
		return nil
	}
	return e.settle(ctx, a, r, m0, recv0, agentT0, agentS0, recvT0)
}

// settle waits until the receiver has every server span for the round's
// requests, or they stop arriving (10 s at most), then takes the agent's
// figures: CPU and scheduler counts from wrk's start to now, spans built,
// exported, dropped and why.
func (e abEnv) settle(ctx context.Context, a *agent, r *abRound, m0 promText, recv0 recvCounts, agentT0 uint64, agentS0 schedCounts, recvT0 uint64) error {
	last, stable := uint64(0), time.Now()
	deadline := time.Now().Add(10 * time.Second)
	built0, _ := m0.sum("periscope_spans_total", map[string]string{"kind": "server"})
	for {
		c, err := e.recv.counts()
		if err != nil {
			return err
		}
		r.recv = c.sub(recv0)
		m, err := a.metrics()
		if err != nil {
			return err
		}
		built, _ := m.sum("periscope_spans_total", map[string]string{"kind": "server"})
		// Done when every request's span arrived and the agent has built
		// none that has not (requests in flight when the load stopped are
		// served and traced after it).
		if (r.recv.ServerSpans >= r.requests && float64(r.recv.ServerSpans) >= built-built0) ||
			time.Since(stable) >= 1500*time.Millisecond || time.Now().After(deadline) {
			break
		}
		if r.recv.Spans != last {
			last, stable = r.recv.Spans, time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	t1, err := cpuTicks(a.pid())
	if err != nil {
		return fmt.Errorf("agent CPU (did the agent die?): %w\n%s", err, a.logTail())
	}
	r.agentSec = float64(t1-agentT0) / clockTicks
	r.agentSched = readSched([]int{a.pid()}).sub(agentS0)
	if rt, err := cpuTicks(e.recv.pid()); err == nil {
		r.recvSec = float64(rt-recvT0) / clockTicks
	}
	m1, err := a.metrics()
	if err != nil {
		return err
	}
	delta := func(name string, labels map[string]string) uint64 {
		v0, _ := m0.sum(name, labels)
		v1, _ := m1.sum(name, labels)
		return uint64(max(v1-v0, 0))
	}
	r.built = delta("periscope_spans_total", map[string]string{"kind": "server"})
	r.exported = delta("periscope_spans_exported_total", map[string]string{"exporter": "otlp"})
	r.dropped = map[string]uint64{}
	for _, reason := range []string{"queue_full", "export_failed", "sampled_out"} {
		r.dropped[reason] = delta("periscope_spans_dropped_total", map[string]string{"exporter": "otlp", "reason": reason})
	}
	r.ringDrops = delta("periscope_events_dropped_total", nil)
	r.unmatched = delta("periscope_calls_unmatched_total", nil)
	r.incomplete = delta("periscope_requests_incomplete_total", nil)
	r.queueLeft, _ = m1.sum("periscope_exporter_queue_length", map[string]string{"exporter": "otlp"})
	if _, ok := m1.sum("periscope_spans_exported_total", map[string]string{"exporter": "otlp"}); !ok {
		return fmt.Errorf("the agent has no OTLP exporter (no periscope_spans_exported_total{exporter=\"otlp\"}): the receiver gets nothing\n%s", a.logTail())
	}
	if r.hwmKiB, err = statusKiB(a.pid(), "VmHWM"); err != nil {
		return fmt.Errorf("agent VmHWM: %w", err)
	}
	return nil
}

// progDeltas is each of our BPF programs' runs and time between two
// `bpftool prog show`, by name, and the runs of other owners' uprobe
// programs (another agent tracing the same processes).
func progDeltas(before, after []bpfProg, ours map[uint32]bool) (map[string]progDelta, uint64) {
	prev := make(map[uint32]bpfProg, len(before))
	for _, p := range before {
		prev[p.ID] = p
	}
	out := map[string]progDelta{}
	var foreign uint64
	for _, p := range after {
		q, seen := prev[p.ID]
		runs, ns := p.RunCnt-min(p.RunCnt, q.RunCnt), p.RunTimeNs-min(p.RunTimeNs, q.RunTimeNs)
		if !seen {
			runs, ns = p.RunCnt, p.RunTimeNs
		}
		if !ours[p.ID] {
			if p.Type == "kprobe" && (strings.HasPrefix(p.Name, "go_") || strings.HasPrefix(p.Name, "ssl_")) {
				foreign += runs
			}
			continue
		}
		d := out[p.Name]
		d.typ, d.runs, d.ns = p.Type, d.runs+runs, d.ns+ns
		d.ownUprobe = p.Type == "kprobe"
		out[p.Name] = d
	}
	return out, foreign
}

// runLoad runs the target's load for d.
func (e abEnv) runLoad(ctx context.Context, t abTarget, d time.Duration) (wrkResult, error) {
	if t.load != nil {
		return t.load(ctx, d)
	}
	r, _, err := runWrk(ctx, t.wc, d, e.pidDir)
	return r, err
}

// describeLoad is the load as the report states it.
func (t abTarget) describeLoad(d time.Duration) string {
	if t.load != nil {
		return t.loadDesc
	}
	return fmt.Sprintf("`wrk %s` (wrk %s)", strings.Join(t.wc.args(d), " "), wrkVersion())
}
