package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The gRPC mode (-mode grpc, `make bench MODE=grpc`): what the gotls
// collector costs a grpc-go server over TLS. test/e2e/testdata/grpcgo
// serves test.Echo; a copy of it named grpcgo-load makes unary Echo calls
// from -connections goroutines on one TLS connection for -duration per
// round. Rounds without and with the agent (selecting the server only) in
// ABBA order; reported: calls/s, server spans / calls, the agent's CPU per
// span and the uprobe hits per call of each gotls program.

// grpcRound is one round of the gRPC mode.
type grpcRound struct {
	n         int
	withAgent bool
	load1     float64
	calls     uint64
	rate      float64 // calls/s
	serverCPU float64 // % of one CPU
	agentCPU  float64 // % of one CPU
	agentSec  float64
	spans     uint64 // server spans the agent built
	recv      uint64 // server spans the counting receiver got
	drops     uint64
	runs      map[string]uint64 // run_cnt of the agent's programs
	others    []string
}

// grpcServer is the running grpcgo server.
type grpcServer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	port  int
}

func startGRPCServer(ctx context.Context, bin, cert, key, pidDir string) (*grpcServer, error) {
	cmd := exec.CommandContext(ctx, bin, "-mode", "server", "-cert", cert, "-key", key)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	_ = os.WriteFile(filepath.Join(pidDir, "goapp"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	s := &grpcServer{cmd: cmd, stdin: stdin}
	line, err := bufio.NewReader(out).ReadString('\n')
	if _, perr := fmt.Sscanf(line, "listening %d", &s.port); err != nil || perr != nil {
		s.stop()
		return nil, fmt.Errorf("grpcgo server: %q, %v %v", line, err, perr)
	}
	return s, nil
}

func (s *grpcServer) pid() int { return s.cmd.Process.Pid }

func (s *grpcServer) stop() {
	s.stdin.Close()
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// grpcLoad runs the load generator for d and returns the calls it made.
func grpcLoad(ctx context.Context, bin string, port int, ca string, conc int, d time.Duration, pidDir string) (uint64, error) {
	cmd := exec.CommandContext(ctx, bin, "-mode", "load", "-port", strconv.Itoa(port), "-ca", ca,
		"-conc", strconv.Itoa(conc), "-dur", d.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pidFile := filepath.Join(pidDir, "wrk")
	_ = os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	defer os.Remove(pidFile)
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("grpcgo load: %w\n%s", err, out.String())
	}
	var n uint64
	if _, err := fmt.Sscanf(strings.TrimSpace(out.String()), "calls %d", &n); err != nil {
		return 0, fmt.Errorf("grpcgo load said %q: %w", out.String(), err)
	}
	return n, nil
}

func runGRPCMode(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (loads eBPF programs)")
	}
	if o.grpcgo == "" {
		return errors.New("-grpcgo is required in grpc mode")
	}
	start, load0 := time.Now(), loadAvg()
	pidDir := filepath.Join(o.work, "pids")
	if err := os.MkdirAll(pidDir, 0o755); err != nil {
		return err
	}
	closer, statsHow, err := enableBPFStats()
	if err != nil {
		return err
	}
	defer closer.Close()
	cert, key := filepath.Join(o.work, "grpc-cert.pem"), filepath.Join(o.work, "grpc-key.pem")
	if out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
		"-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
		"-keyout", key, "-out", cert).CombinedOutput(); err != nil {
		return fmt.Errorf("openssl req (self-signed certificate): %w\n%s", err, out)
	}
	// The load generator is the same program under another name, so that
	// --include-exe selects the server only.
	loadBin := o.grpcgo + "-load"
	if b, err := os.ReadFile(o.grpcgo); err != nil {
		return err
	} else if err := os.WriteFile(loadBin, b, 0o755); err != nil {
		return err
	}
	srv, err := startGRPCServer(ctx, o.grpcgo, cert, key, pidDir)
	if err != nil {
		return err
	}
	defer srv.stop()
	logf("grpcgo server: pid %d, port %d, TLS; load: %d callers, then 1, on one connection", srv.pid(), srv.port, o.connections)
	if o.warmup > 0 {
		if _, err := grpcLoad(ctx, loadBin, srv.port, cert, o.connections, o.warmup, pidDir); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	// Many callers (frames of many calls batched into each TLS record),
	// then one call at a time (the most probe hits per call).
	var sections []string
	for _, conc := range []int{o.connections, 1} {
		var rounds []*grpcRound
		for i := 0; i < 2*o.rounds; i++ {
			r := &grpcRound{n: i + 1, withAgent: i%4 == 1 || i%4 == 2}
			if err := measureGRPCRound(ctx, o, srv, loadBin, cert, pidDir, conc, r); err != nil {
				return fmt.Errorf("%d callers, round %d (%s): %w", conc, r.n, cfgName(r.withAgent), err)
			}
			rounds = append(rounds, r)
			logf("%d callers round %d %-8s %9.0f calls/s  server CPU %5.1f%%  agent CPU %5.1f%%  spans %d/%d drops %d  uprobe hits/call %.2f  load %.2f",
				conc, r.n, cfgName(r.withAgent), r.rate, r.serverCPU, r.agentCPU, r.spans, r.calls, r.drops, ratio(uprobeRuns(r.runs), r.calls), r.load1)
		}
		sections = append(sections, grpcSection(o, conc, rounds))
	}
	md := fmt.Sprintf("# gRPC benchmark (grpc-go over TLS, the gotls collector)\n\n"+
		"Generated by `make bench MODE=grpc` (test/bench/benchtool, grpcmode.go) at %s, commit %s, %d CPUs, %s.\n"+
		"Machine load (1, 5, 15 min) at start: %s; at end: %s (a shared VM: other work ran meanwhile). BPF stats: %s.\n\n"+
		"test/e2e/testdata/grpcgo (google.golang.org/grpc) serving test.Echo over TLS; its copy grpcgo-load makes unary Echo calls "+
		"from C goroutines on one TLS connection for %s per round. The agent (`--include-exe grpcgo`: the server only; "+
		"spans exported over OTLP/gRPC to the counting receiver, console off; completeness counts the server spans the receiver got) is started for the agent rounds; rounds in ABBA order (baseline, agent, agent, baseline, ...).\n\n%s",
		start.UTC().Format(time.RFC3339), o.commit, numCPU(), time.Since(start).Round(time.Second), load0, loadAvg(), statsHow,
		o.duration, strings.Join(sections, "\n"))
	fmt.Println(md)
	if err := writeFileAtomic(o.out, []byte(md)); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	logf("wrote %s", o.out)
	return nil
}

func measureGRPCRound(ctx context.Context, o options, srv *grpcServer, loadBin, ca, pidDir string, conc int, r *grpcRound) (err error) {
	r.load1 = load1()
	var a *agent
	if r.withAgent {
		if a, err = startAgent(o.agentCmd(), o.grpcgo, o.work, pidDir, r.n); err != nil {
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
	}
	r.others = otherPeriscopes(0)
	var m0 promText
	var agentTicks0 uint64
	if a != nil {
		r.others = otherPeriscopes(a.pid())
		if m0, err = a.metrics(); err != nil {
			return err
		}
		if agentTicks0, err = cpuTicks(a.pid()); err != nil {
			return err
		}
	}
	var recv0 recvCounts
	if a != nil {
		if recv0, err = o.recv.counts(); err != nil {
			return err
		}
	}
	progs0, err := bpftoolProgs()
	if err != nil {
		return err
	}
	srvTicks0, err := cpuTicks(srv.pid())
	if err != nil {
		return err
	}
	t0 := time.Now()
	if r.calls, err = grpcLoad(ctx, loadBin, srv.port, ca, conc, o.duration, pidDir); err != nil {
		return err
	}
	elapsed := time.Since(t0).Seconds()
	r.rate = float64(r.calls) / o.duration.Seconds()
	srvTicks1, err := cpuTicks(srv.pid())
	if err != nil {
		return fmt.Errorf("server CPU (did it die?): %w", err)
	}
	r.serverCPU = 100 * float64(srvTicks1-srvTicks0) / clockTicks / elapsed
	progs1, err := bpftoolProgs()
	if err != nil {
		return err
	}
	if a == nil {
		return nil
	}
	agentTicks1, err := cpuTicks(a.pid())
	if err != nil {
		return fmt.Errorf("agent CPU (did the agent die?): %w\n%s", err, a.logTail())
	}
	r.agentSec = float64(agentTicks1-agentTicks0) / clockTicks
	r.agentCPU = 100 * r.agentSec / elapsed
	prev := make(map[uint32]uint64, len(progs0))
	for _, p := range progs0 {
		prev[p.ID] = p.RunCnt
	}
	r.runs = map[string]uint64{}
	for _, p := range progs1 {
		if a.progs[p.ID] && strings.HasPrefix(p.Name, "go_tls_") {
			r.runs[p.Name] += p.RunCnt - prev[p.ID]
		}
	}
	spans0, _ := m0.sum("periscope_spans_total", map[string]string{"kind": "server"})
	m1, err := settleSpans(ctx, a, spans0, r.calls)
	if err != nil {
		return err
	}
	spans1, _ := m1.sum("periscope_spans_total", map[string]string{"kind": "server"})
	d0, _ := m0.sum("periscope_events_dropped_total", nil)
	d1, _ := m1.sum("periscope_events_dropped_total", nil)
	r.spans, r.drops = uint64(spans1-spans0), uint64(d1-d0)
	r.recv, err = settleReceived(ctx, o.recv, recv0, r.spans)
	return err
}

// settleReceived waits until the receiver has got want server spans since
// recv0, or they stop arriving (1.5 s without one; 10 s at most), and
// returns how many it got.
func settleReceived(ctx context.Context, recv *receiver, recv0 recvCounts, want uint64) (uint64, error) {
	last, stable := uint64(0), time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := recv.counts()
		if err != nil {
			return 0, err
		}
		got := c.sub(recv0).ServerSpans
		if got >= want || time.Since(stable) >= 1500*time.Millisecond || time.Now().After(deadline) {
			return got, nil
		}
		if got != last {
			last, stable = got, time.Now()
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// uprobeRuns sums the runs of the uprobe programs (not the close
// tracepoint, nor the process markers).
func uprobeRuns(runs map[string]uint64) uint64 {
	var n uint64
	for name, v := range runs {
		if name != "go_tls_close" && !strings.HasPrefix(name, "go_tls_process") {
			n += v
		}
	}
	return n
}

func grpcSection(o options, conc int, rounds []*grpcRound) string {
	pick := func(agent bool, f func(*grpcRound) float64) []float64 {
		var v []float64
		for _, r := range rounds {
			if r.withAgent == agent {
				v = append(v, f(r))
			}
		}
		return v
	}
	rate := func(r *grpcRound) float64 { return r.rate }
	cpu := func(r *grpcRound) float64 { return r.serverCPU }
	var spans, recv, calls, drops uint64
	var agentSec float64
	runs := map[string]uint64{}
	worst := math.Inf(1)
	for _, r := range rounds {
		if r.withAgent {
			spans, recv, calls, drops, agentSec = spans+r.spans, recv+r.recv, calls+r.calls, drops+r.drops, agentSec+r.agentSec
			worst = min(worst, 100*ratio(r.recv, r.calls))
			for k, v := range r.runs {
				runs[k] += v
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## %d caller(s) on one connection\n\n", conc)
	b.WriteString("| round | config | calls/s | server CPU % | server spans built / received / calls | ring drops | agent CPU % | uprobe hits / call | load1 |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rounds {
		span, hits := "-", "-"
		if r.withAgent {
			span = fmt.Sprintf("%d / %d / %d", r.spans, r.recv, r.calls)
			hits = fmt.Sprintf("%.2f", ratio(uprobeRuns(r.runs), r.calls))
		}
		fmt.Fprintf(&b, "| %d | %s | %.0f | %.1f | %s | %d | %.1f | %s | %.2f |\n", r.n, cfgName(r.withAgent), r.rate, r.serverCPU, span, r.drops, r.agentCPU, hits, r.load1)
	}
	br, ar := pick(false, rate), pick(true, rate)
	tput := ratioOf(ar, br)
	fmt.Fprintf(&b, "\n- **Throughput with the agent**: %.1f ± %.1f%% of the baseline (medians %.0f vs %.0f calls/s; spread %.1f%% / %.1f%%; target ≥ 60%%: **%s**).\n",
		100*tput.v, 100*tput.noise, median(ar), median(br), spreadPct(ar), spreadPct(br), verdict(tput, 0.60, false))
	perCall := func(r *grpcRound) float64 { return 1e4 * r.serverCPU / r.rate } // µs of server CPU per call
	fmt.Fprintf(&b, "- **Server CPU**: %.1f%% with the agent, %.1f%% without (medians, %% of one CPU); per call %.1f µs with, %.1f µs without "+
		"(the difference is what the server pays for the probes: traps and BPF programs).\n",
		median(pick(true, cpu)), median(pick(false, cpu)), median(pick(true, perCall)), median(pick(false, perCall)))
	complete := "NOT met"
	if worst >= 100 {
		complete = "met"
	}
	fmt.Fprintf(&b, "- **Completeness**: %d server spans received for %d calls (%.3f%%, worst round %.3f%%; target 100%%: **%s**); %d built, %d ring drops.\n",
		recv, calls, 100*ratio(recv, calls), worst, complete, spans, drops)
	if spans > 0 {
		fmt.Fprintf(&b, "- **Agent CPU per span**: %.1f µs (agent CPU time over the agent rounds ÷ server spans).\n", 1e6*agentSec/float64(spans))
	}
	names := make([]string, 0, len(runs))
	for k := range runs {
		names = append(names, k)
	}
	sort.Strings(names)
	b.WriteString("- **Probe runs per call** (all agent rounds; the uprobes sit on an emulated instruction each: the stack-check branch of Write and Read, the CALL of runtime.memmove in Read):")
	for _, k := range names {
		fmt.Fprintf(&b, " %s %.2f;", k, ratio(runs[k], calls))
	}
	fmt.Fprintf(&b, " uprobes in all %.2f.\n", ratio(uprobeRuns(runs), calls))
	return b.String()
}
