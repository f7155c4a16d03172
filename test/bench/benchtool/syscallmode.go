package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// The syscall mode (-mode syscall, `make bench MODE=syscall`): what every
// process that is not HTTP pays for the agent's syscall tracepoints, which
// run for every read and write of the node. Four configurations, in blocks
// whose order alternates (ABCD DCBA ...): no agent; the floor of syscall
// tracing, empty BPF programs on the read and write syscall tracepoints
// (enter and exit), on the raw sys_enter/sys_exit tracepoints, and on one
// side of the raw pair only (sys_enter alone, sys_exit alone: what a design
// with one program per syscall would start from); a prototype of that
// design's path for a descriptor that is not a TCP socket (attachExitOnly);
// the agent. In each round, two syscall-heavy
// programs that touch no socket, timed by the CPU time they used (user +
// system, from wait4: time spent waiting for a CPU other work took does
// not count, which matters on a shared machine), each run several times
// and the fastest run kept:
//   - dd copying 1-byte blocks from /dev/zero to /dev/null (a read and a
//     write per byte);
//   - a pipe ping-pong: python3 and a forked child pass one byte back and
//     forth over two pipes (per round trip two reads, two writes and two
//     context switches).

// syscallRound is one round of the syscall mode.
type syscallRound struct {
	n      int
	config string // one of syscallConfigs
	load1  float64
	ddNs   float64 // CPU ns per syscall of dd bs=1, fastest run
	loopNs float64 // ns per syscall of the in-process loop's fastest batch (minBatchNs)
	pingNs float64 // CPU ns per syscall of the ping-pong, fastest run
	// foreign are the syscall tracepoint programs loaded before the round
	// began: other agents on this machine (tests of other work), which
	// every configuration then pays for too.
	foreign int
	// progNs is the time per run of each program the round loaded
	// (by name), over one more dd run with BPF run-time stats on.
	progNs map[string]float64
}

// syscallConfigs are the configurations of the syscall mode, baseline first.
var syscallConfigs = []string{"baseline", "empty tracepoints", "empty raw tracepoints", "empty raw sys_enter only", "empty raw sys_exit only", "exit-only prototype", "agent"}

// emptyFloors are the configurations of empty programs and the tracepoints
// each attaches to (raw tracepoints by name, else syscalls:NAME).
var emptyFloors = map[string]struct {
	raw   bool
	names []string
}{
	"empty tracepoints":        {false, []string{"sys_enter_read", "sys_exit_read", "sys_enter_write", "sys_exit_write"}},
	"empty raw tracepoints":    {true, []string{"sys_enter", "sys_exit"}},
	"empty raw sys_enter only": {true, []string{"sys_enter"}},
	"empty raw sys_exit only":  {true, []string{"sys_exit"}},
}

const (
	syscallDDBytes = 300_000 // 1-byte blocks per dd run: 600,000 syscalls
	syscallPings   = 50_000  // round trips per ping-pong run: 200,000 syscalls
	syscallRuns    = 5       // runs of each program per round, the fastest kept
	syscallBatch   = 1000    // syscalls per batch of the in-process loop
	syscallBatches = 400     // batches of the loop per round, the fastest kept
)

// pingPong is the ping-pong program (python3 -c PROGRAM N).
const pingPong = `import os, sys
n = int(sys.argv[1])
a, b = os.pipe()
c, d = os.pipe()
if os.fork() == 0:
    for _ in range(n):
        os.read(a, 1)
        os.write(d, b"x")
    os._exit(0)
for _ in range(n):
    os.write(b, b"x")
    os.read(c, 1)
os.wait()
`

func runSyscallMode(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (loads eBPF programs)")
	}
	start, load0 := time.Now(), loadAvg()
	pidDir := filepath.Join(o.work, "pids")
	if err := os.MkdirAll(pidDir, 0o755); err != nil {
		return err
	}
	var rounds []*syscallRound
	for block := 0; block < 2*o.rounds; block++ {
		order := slices.Clone(syscallConfigs)
		if block%2 == 1 {
			slices.Reverse(order)
		}
		for _, cfg := range order {
			r := &syscallRound{n: len(rounds) + 1, config: cfg}
			if err := measureSyscallRound(ctx, o, pidDir, r); err != nil {
				return fmt.Errorf("round %d (%s): %w", r.n, r.config, err)
			}
			rounds = append(rounds, r)
			logf("round %d %-24s dd %5.0f ns/syscall  loop %4.0f ns/syscall  ping-pong %5.0f ns/syscall  load %.2f",
				r.n, r.config, r.ddNs, r.loopNs, r.pingNs, r.load1)
		}
	}
	md := syscallReport(o, rounds, start, load0, loadAvg())
	fmt.Println(md)
	if err := writeFileAtomic(o.out, []byte(md)); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	logf("wrote %s", o.out)
	return nil
}

func measureSyscallRound(ctx context.Context, o options, pidDir string, r *syscallRound) (err error) {
	r.load1 = load1()
	if r.foreign, err = syscallPrograms(); err != nil {
		return err
	}
	before, err := bpftoolProgs()
	if err != nil {
		return err
	}
	if f, ok := emptyFloors[r.config]; ok {
		floor, err := attachEmpty(f.raw, f.names)
		if err != nil {
			return err
		}
		defer floor()
	}
	switch r.config {
	case "exit-only prototype":
		proto, err := attachExitOnly()
		if err != nil {
			return err
		}
		defer proto()
	case "agent":
		// Every process is traced the same way: the sockets
		// collector's programs run for every read and write whatever
		// the selection, which names no running program here.
		var a *agent
		if a, err = startAgent(o.agentCmd(), "periscope-bench-none", o.work, pidDir, r.n); err != nil {
			return err
		}
		defer func() {
			if serr := a.stop(); serr != nil && err == nil {
				err = serr
			}
		}()
		if err = a.waitReady(ctx, nil, 60*time.Second); err != nil {
			return err
		}
	}
	dd := []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=1", fmt.Sprintf("count=%d", syscallDDBytes), "status=none"}
	if r.ddNs, err = fastestCPU(ctx, dd, 2*syscallDDBytes); err != nil {
		return err
	}
	if r.loopNs, err = minBatchNs(syscallBatches, syscallBatch); err != nil {
		return err
	}
	ping := []string{"python3", "-c", pingPong, fmt.Sprint(syscallPings)}
	if r.pingNs, err = fastestCPU(ctx, ping, 4*syscallPings); err != nil {
		return err
	}
	if r.config != "empty tracepoints" && r.config != "baseline" {
		r.progNs, err = programTimes(ctx, before, dd)
	}
	return err
}

// programTimes runs argv once with the kernel's BPF run-time stats on and
// returns the time per run of each syscall tracepoint program loaded since
// before, by name ("empty" for the floor's unnamed program; another agent
// started meanwhile would count too). The stats read a clock around
// every run: the figures include that, which the empty program shows.
func programTimes(ctx context.Context, before []bpfProg, argv []string) (map[string]float64, error) {
	closer, _, err := enableBPFStats()
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	p0, err := bpftoolProgs()
	if err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", argv[0], err, out)
	}
	p1, err := bpftoolProgs()
	if err != nil {
		return nil, err
	}
	old := map[uint32]bool{}
	for _, p := range before {
		old[p.ID] = true
	}
	start := map[uint32]bpfProg{}
	for _, p := range p0 {
		start[p.ID] = p
	}
	out := map[string]float64{}
	for _, p := range p1 {
		s, ok := start[p.ID]
		if old[p.ID] || !ok || p.RunCnt <= s.RunCnt {
			continue
		}
		name := p.Name
		if name == "" {
			name = "empty"
		}
		if name != "empty" && !strings.HasPrefix(name, "sys_enter") && !strings.HasPrefix(name, "sys_exit") {
			continue // not on the syscall tracepoints
		}
		out[name] = float64(p.RunTimeNs-s.RunTimeNs) / float64(p.RunCnt-s.RunCnt)
	}
	return out, nil
}

// fastestCPU runs argv syscallRuns times and returns the least CPU time
// (user + system, its children's included) of a run divided by per, in ns.
func fastestCPU(ctx context.Context, argv []string, per int) (float64, error) {
	var best float64
	for i := 0; i < syscallRuns; i++ {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%s: %w\n%s", argv[0], err, out)
		}
		ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		if !ok {
			return 0, errors.New("no rusage")
		}
		ns := float64(syscall.TimevalToNsec(ru.Utime)+syscall.TimevalToNsec(ru.Stime)) / float64(per)
		if i == 0 || ns < best {
			best = ns
		}
	}
	return best, nil
}

func syscallReport(o options, rounds []*syscallRound, start time.Time, load0, load1 string) string {
	cleanOnly := false
	pick := func(cfg string, f func(*syscallRound) float64) []float64 {
		var v []float64
		for _, r := range rounds {
			if r.config == cfg && (!cleanOnly || r.foreign == 0) {
				v = append(v, f(r))
			}
		}
		return v
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# What a process that is not HTTP pays (the sockets collector's syscall tracepoints)\n\n")
	fmt.Fprintf(&b, "Generated by `make bench MODE=syscall` (test/bench/benchtool, syscallmode.go) at %s, commit %s, %d CPUs, %s.\n",
		start.UTC().Format(time.RFC3339), o.commit, numCPU(), time.Since(start).Round(time.Second))
	fmt.Fprintf(&b, "Machine load (1, 5, 15 min) at start: %s; at end: %s (a shared VM: other work ran meanwhile).\n\n", load0, load1)
	fmt.Fprintf(&b, "Configurations: no agent (baseline); empty BPF programs on the syscalls:sys_{enter,exit}_{read,write} tracepoints "+
		"(the floor of the agent's way: what tracing read and write costs before any program does anything); empty BPF programs on the "+
		"raw sys_enter/sys_exit tracepoints (the floor of the other way: every syscall); the same on raw sys_enter only and on raw sys_exit only "+
		"(the floor of one program per syscall); the exit-only prototype (a tp_btf program on raw sys_exit alone taking the path a syscall on a descriptor that is not a TCP socket "+
		"would take in a design with one program per syscall: the number and the descriptor from the registers, one load of a per-process descriptor table as the agent's fd_other; x86-64 only); the agent (every collector, default configuration, "+
		"a process selection that names no running program). Blocks of the %d in alternating order (ABC... ...CBA). In each round, the CPU time (user + system, from wait4) per syscall of "+
		"`dd if=/dev/zero of=/dev/null bs=1 count=%d` (a read and a write per byte) and of a python3 pipe ping-pong of %d round trips "+
		"(two reads and two writes per round trip, two processes), each run %d times, the fastest run kept; and the wall time per syscall of the fastest of %d batches "+
		"of %d syscalls (read of /dev/zero and write to /dev/null, 1 byte, in turn) made by the driver itself on one thread (the fastest batch is one no other work "+
		"interrupted: on a loaded VM, whose CPU time includes time the host took, it is the steadier figure).\n\n",
		len(syscallConfigs), syscallDDBytes, syscallPings, syscallRuns, syscallBatches, syscallBatch)
	b.WriteString("| round | config | dd ns/syscall | loop ns/syscall (fastest batch) | ping-pong ns/syscall | other agents' syscall programs | load1 |\n|---|---|---|---|---|---|---|\n")
	foreign := 0
	for _, r := range rounds {
		fmt.Fprintf(&b, "| %d | %s | %.0f | %.0f | %.0f | %d | %.2f |\n", r.n, r.config, r.ddNs, r.loopNs, r.pingNs, r.foreign, r.load1)
		if r.foreign > 0 {
			foreign++
		}
	}
	fmt.Fprintf(&b, "\n%d of %d rounds began with syscall tracepoint programs of other agents loaded (other work on this machine): "+
		"those rounds, baseline included, paid for them too.\n", foreign, len(rounds))
	line := func(what string, f func(*syscallRound) float64) {
		base := pick(syscallConfigs[0], f)
		for _, cfg := range syscallConfigs {
			if len(pick(cfg, f)) == 0 {
				return // no clean round of cfg
			}
		}
		blo, bhi := minMax(base)
		fmt.Fprintf(&b, "\n**%s** (ns per syscall, median of the rounds; the range of the difference over all pairs of rounds in brackets):\n\n", what)
		fmt.Fprintf(&b, "- baseline: %.0f (rounds %s; spread %.1f%%)\n", median(base), fmtList(base), spreadPct(base))
		for _, cfg := range syscallConfigs[1:] {
			v := pick(cfg, f)
			lo, hi := minMax(v)
			fmt.Fprintf(&b, "- %s: %.0f, %+.0f ns added [%+.0f, %+.0f] (rounds %s; spread %.1f%%)\n",
				cfg, median(v), median(v)-median(base), lo-bhi, hi-blo, fmtList(v), spreadPct(v))
		}
	}
	line("dd bs=1", func(r *syscallRound) float64 { return r.ddNs })
	line("in-process read/write loop, fastest batch", func(r *syscallRound) float64 { return r.loopNs })
	line("pipe ping-pong", func(r *syscallRound) float64 { return r.pingNs })
	if foreign > 0 {
		cleanOnly = true
		line("dd bs=1, rounds without other agents only", func(r *syscallRound) float64 { return r.ddNs })
		line("in-process loop, rounds without other agents only", func(r *syscallRound) float64 { return r.loopNs })
		line("pipe ping-pong, rounds without other agents only", func(r *syscallRound) float64 { return r.pingNs })
	}
	b.WriteString(programTable(rounds))
	b.WriteString("\nTarget: the agent adds ≤ 150 ns per syscall of a process that is not HTTP.\n")
	return b.String()
}

// programTable lists the time per run of the programs each configuration
// loaded (median of its rounds), from one dd run per round with BPF
// run-time stats on.
func programTable(rounds []*syscallRound) string {
	byKey := map[string][]float64{}
	var keys []string
	for _, r := range rounds {
		for name, ns := range r.progNs {
			k := r.config + "\x00" + name
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], ns)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString("\n**BPF programs' time per run** during one more `dd` per round with the kernel's run-time stats on " +
		"(bpftool prog show run_time_ns ÷ run_cnt; the stats read a clock around each run, which the empty program's figure is made of; " +
		"far less sensitive to the machine's load than the CPU times above):\n\n| config | program | ns per run (median) | rounds |\n|---|---|---|---|\n")
	for _, k := range keys {
		cfg, name, _ := strings.Cut(k, "\x00")
		v := byKey[k]
		fmt.Fprintf(&b, "| %s | `%s` | %.1f | %s |\n", cfg, name, median(v), fmtList1(v))
	}
	return b.String()
}

func fmtList1(v []float64) string { return fmtListIn(v, "%.1f") }

func fmtList(v []float64) string { return fmtListIn(v, "%.0f") }

// fmtListIn formats v sorted, each value with format.
func fmtListIn(v []float64, format string) string {
	s := slices.Clone(v)
	slices.Sort(s)
	parts := make([]string, len(s))
	for i, x := range s {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, ", ")
}

// attachEmpty attaches a BPF program that does nothing to the syscalls:
// tracepoints names, or with raw to the raw tracepoints names, and returns
// what detaches it.
func attachEmpty(raw bool, names []string) (func(), error) {
	typ := ebpf.TracePoint
	if raw {
		typ = ebpf.RawTracepoint
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: typ, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		return nil, fmt.Errorf("load an empty program: %w", err)
	}
	var links []link.Link
	done := func() {
		for _, l := range links {
			l.Close()
		}
		prog.Close()
	}
	attach := func(l link.Link, err error) error {
		if err == nil {
			links = append(links, l)
		}
		return err
	}
	for _, n := range names {
		if raw {
			err = errors.Join(err, attach(link.AttachRawTracepoint(link.RawTracepointOptions{Name: n, Program: prog})))
		} else {
			err = errors.Join(err, attach(link.Tracepoint("syscalls", n, prog, nil)))
		}
	}
	if err != nil {
		done()
		return nil, fmt.Errorf("attach empty programs: %w", err)
	}
	return done, nil
}

// syscallPrograms counts the BPF programs on syscall tracepoints loaded now
// (by name: the agent's are sys_enter*, sys_exit*, on syscall tracepoints,
// raw tracepoints or tp_btf).
func syscallPrograms() (int, error) {
	progs, err := bpftoolProgs()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range progs {
		sys := strings.HasPrefix(p.Name, "sys_enter") || strings.HasPrefix(p.Name, "sys_exit")
		if sys && (p.Type == "tracepoint" || p.Type == "raw_tracepoint" || p.Type == "tracing") {
			n++
		}
	}
	return n, nil
}

// x86-64 struct pt_regs offsets the exit-only prototype reads.
const (
	ptRegsDI     = 112 // the first argument: the descriptor
	ptRegsOrigAX = 120 // the syscall number
)

// attachExitOnly attaches, as a tp_btf program on raw_syscalls:sys_exit
// alone (the agent's program type), the path a syscall on a descriptor
// that is not a TCP socket would take in a design with one program per
// syscall, at its exit: the number from the registers (read and write
// here; the agent switches over a dozen), the descriptor (di: the
// arguments are still in the registers at exit on x86-64), the process
// ID, one load of a table indexed by process and descriptor block as the
// agent's fd_other, and the descriptor's bit tested (set the first time,
// as note_other does). Owner checks and the other syscalls' cases are left
// out: a few instructions. x86-64 only (the registers' offsets).
func attachExitOnly() (func(), error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("the exit-only prototype reads x86-64 registers, not %s", runtime.GOARCH)
	}
	table, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 65536})
	if err != nil {
		return nil, fmt.Errorf("exit-only prototype's table: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "sys_exit_proto", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "sys_exit", License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R6, asm.R1, 0, asm.DWord), // regs
			asm.LoadMem(asm.R7, asm.R6, ptRegsOrigAX, asm.DWord),
			asm.JGT.Imm(asm.R7, 1, "out"), // read (0) and write (1) only
			asm.LoadMem(asm.R8, asm.R6, ptRegsDI, asm.DWord),
			asm.JGT.Imm(asm.R8, 1023, "out"), // FD_OTHER_MAX (negative too)
			asm.FnGetCurrentPidTgid.Call(),
			asm.RSh.Imm(asm.R0, 32),
			// key = (tgid + fd/32 * 0x9E37) % 65536
			asm.Mov.Reg(asm.R2, asm.R8),
			asm.RSh.Imm(asm.R2, 5),
			asm.Mul.Imm(asm.R2, 0x9E37),
			asm.Add.Reg(asm.R2, asm.R0),
			asm.And.Imm(asm.R2, 0xffff),
			asm.StoreMem(asm.RFP, -4, asm.R2, asm.Word),
			asm.LoadMapPtr(asm.R1, table.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.Mov.Reg(asm.R2, asm.R8),
			asm.And.Imm(asm.R2, 31),
			asm.Mov.Imm(asm.R3, 1),
			asm.LSh.Reg(asm.R3, asm.R2),
			asm.Mov.Reg(asm.R4, asm.R1),
			asm.And.Reg(asm.R4, asm.R3),
			asm.JNE.Imm(asm.R4, 0, "out"),
			asm.Or.Reg(asm.R1, asm.R3),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
			asm.Return(),
		}})
	if err != nil {
		table.Close()
		return nil, fmt.Errorf("load the exit-only prototype: %w", err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		prog.Close()
		table.Close()
		return nil, fmt.Errorf("attach the exit-only prototype: %w", err)
	}
	return func() { l.Close(); prog.Close(); table.Close() }, nil
}

// minBatchNs makes batches batches of per syscalls on one thread, reads of
// one byte from /dev/zero and writes of it to /dev/null in turn (as dd
// bs=1, without a process to start), and returns the wall time per
// syscall of the fastest batch: one that nothing interrupted.
func minBatchNs(batches, per int) (float64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	zero, err := os.Open("/dev/zero")
	if err != nil {
		return 0, err
	}
	defer zero.Close()
	null, err := os.OpenFile("/dev/null", os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	var buf [1]byte
	p := uintptr(unsafe.Pointer(&buf[0]))
	zfd, nfd := zero.Fd(), null.Fd()
	var best time.Duration
	for b := 0; b < batches; b++ {
		t0 := time.Now()
		for i := 0; i < per/2; i++ {
			if _, _, e := syscall.RawSyscall(syscall.SYS_READ, zfd, p, 1); e != 0 {
				return 0, fmt.Errorf("read /dev/zero: %w", e)
			}
			if _, _, e := syscall.RawSyscall(syscall.SYS_WRITE, nfd, p, 1); e != 0 {
				return 0, fmt.Errorf("write /dev/null: %w", e)
			}
		}
		if d := time.Since(t0); b == 0 || d < best {
			best = d
		}
	}
	return float64(best.Nanoseconds()) / float64(per&^1), nil
}
