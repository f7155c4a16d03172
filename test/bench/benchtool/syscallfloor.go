package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// The syscall floor (benchtool syscallfloor): what one side of the raw
// syscall tracepoint pair costs against both, with the in-process read/write
// loop of the syscall mode (minBatchNs) and no process to start, so that the
// configurations can alternate every fraction of a second: on a loaded
// shared machine, whose per-syscall cost drifts by more than the figures
// sought within the minutes a `make bench MODE=syscall` takes, each
// configuration is compared with the baseline of its own rotation.

// floorConfig is one configuration of the syscall floor: attach returns
// what detaches it (nil: nothing attached).
type floorConfig struct {
	name   string
	attach func() (func(), error)
}

func floorConfigs() []floorConfig {
	raw := func(names ...string) func() (func(), error) {
		return func() (func(), error) { return attachEmpty(true, names) }
	}
	return []floorConfig{
		{"baseline", nil},
		{"empty raw sys_enter + sys_exit", raw("sys_enter", "sys_exit")},
		{"empty raw sys_enter only", raw("sys_enter")},
		{"empty raw sys_exit only", raw("sys_exit")},
		{"empty tp_btf sys_exit only", attachEmptyTyped},
		{"exit-only prototype (tp_btf)", attachExitOnly},
	}
}

// attachEmptyTyped attaches a program that does nothing as a tp_btf
// program on raw_syscalls:sys_exit (the type of the agent's programs and of
// the exit-only prototype).
func attachEmptyTyped() (func(), error) { return attachEmptyTracing("sys_exit") }

// attachEmptyTracing attaches a program that does nothing as a tp_btf
// program on each raw syscall tracepoint named.
func attachEmptyTracing(names ...string) (func(), error) {
	var closers []io.Closer
	done := func() {
		for _, c := range slices.Backward(closers) {
			c.Close()
		}
	}
	for _, n := range names {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: n, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		})
		if err != nil {
			done()
			return nil, fmt.Errorf("load an empty tp_btf program for %s: %w", n, err)
		}
		closers = append(closers, prog)
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			done()
			return nil, fmt.Errorf("attach an empty tp_btf program to %s: %w", n, err)
		}
		closers = append(closers, l)
	}
	return done, nil
}

// floorHoldMain (benchtool floorhold) attaches empty tp_btf programs on
// raw_syscalls:sys_enter and sys_exit, the agent's dispatchers' type and
// places, and holds them until SIGINT or SIGTERM: what any program on the
// syscall tracepoints costs every process of the node, with nothing of the
// agent's own work, for an application benchmark to run against
// (test/bench/redis-floor.sh).
func floorHoldMain(args []string) int {
	if len(args) != 0 {
		fmt.Fprintln(os.Stderr, "usage: benchtool floorhold")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	detach, err := attachEmptyTracing("sys_enter", "sys_exit")
	if err != nil {
		fmt.Fprintln(os.Stderr, "floorhold:", err)
		return 1
	}
	defer detach()
	fmt.Println("attached")
	<-ctx.Done()
	return 0
}

func syscallFloorMain(args []string) int {
	fs := flag.NewFlagSet("benchtool syscallfloor", flag.ContinueOnError)
	rotations := fs.Int("rotations", 30, "rotations through the configurations (order alternating)")
	batches := fs.Int("batches", 50, "batches of the loop per configuration and rotation, the fastest kept")
	out := fs.String("out", "", "results file (markdown); stdout only if empty")
	commit := fs.String("commit", "", "the commit measured, for the results file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "syscallfloor: must run as root (loads eBPF programs)")
		return 1
	}
	start, load0 := time.Now(), loadAvg()
	rs, err := measureFloor(floorConfigs(), *rotations, *batches)
	if err != nil {
		fmt.Fprintln(os.Stderr, "syscallfloor:", err)
		return 1
	}
	md := floorReport(rs, *commit, *batches, start, load0, loadAvg())
	fmt.Print(md)
	if *out != "" {
		if err := writeFileAtomic(*out, []byte(md)); err != nil {
			fmt.Fprintln(os.Stderr, "syscallfloor:", err)
			return 1
		}
	}
	return 0
}

// floorRotation is one pass through the configurations.
type floorRotation struct {
	ns      map[string]float64 // per configuration: ns per syscall, fastest batch
	foreign bool               // other agents' syscall programs were loaded at some point
}

func measureFloor(cfgs []floorConfig, rotations, batches int) ([]floorRotation, error) {
	var rs []floorRotation
	for i := 0; i < rotations; i++ {
		order := slices.Clone(cfgs)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		r := floorRotation{ns: map[string]float64{}}
		for _, c := range order {
			n, err := foreignPrograms()
			if err != nil {
				return nil, err
			}
			r.foreign = r.foreign || n > 0
			if r.ns[c.name], err = floorOne(c, batches); err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
		}
		n, err := foreignPrograms()
		if err != nil {
			return nil, err
		}
		r.foreign = r.foreign || n > 0
		rs = append(rs, r)
		logf("rotation %d: %s", i+1, fmtRotation(cfgs, r))
	}
	return rs, nil
}

// foreignPrograms counts the syscall tracepoint programs of other agents
// loaded now: the prototype's own (sys_exit_proto), which the kernel may
// still list for a moment after it is closed, is not one.
func foreignPrograms() (int, error) {
	n, err := syscallPrograms()
	if err != nil {
		return 0, err
	}
	progs, err := bpftoolProgs()
	if err != nil {
		return 0, err
	}
	for _, p := range progs {
		if p.Name == "sys_exit_proto" {
			n--
		}
	}
	return n, nil
}

// floorOne measures the loop with configuration c attached.
func floorOne(c floorConfig, batches int) (float64, error) {
	if c.attach != nil {
		detach, err := c.attach()
		if err != nil {
			return 0, err
		}
		defer detach()
	}
	return minBatchNs(batches, syscallBatch)
}

func fmtRotation(cfgs []floorConfig, r floorRotation) string {
	parts := make([]string, len(cfgs))
	for i, c := range cfgs {
		parts[i] = fmt.Sprintf("%s %.0f", c.name, r.ns[c.name])
	}
	s := strings.Join(parts, ", ")
	if r.foreign {
		s += " (other agents' programs loaded)"
	}
	return s
}

func floorReport(rs []floorRotation, commit string, batches int, start time.Time, load0, load1 string) string {
	cfgs := floorConfigs()
	var clean []floorRotation
	for _, r := range rs {
		if !r.foreign {
			clean = append(clean, r)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# The syscall tracepoints' floor, one side against both\n\n")
	fmt.Fprintf(&b, "Generated by `benchtool syscallfloor` (test/bench/benchtool, syscallfloor.go; run under the bench lock) at %s, commit %s, %d CPUs, %s.\n",
		start.UTC().Format(time.RFC3339), commit, numCPU(), time.Since(start).Round(time.Second))
	fmt.Fprintf(&b, "Machine load (1, 5, 15 min) at start: %s; at end: %s (a shared VM: other work ran meanwhile).\n\n", load0, load1)
	fmt.Fprintf(&b, "%d rotations through the configurations, order alternating; in each, per configuration, the wall time per syscall of the fastest of %d batches "+
		"of %d syscalls (read of /dev/zero and write to /dev/null, 1 byte, in turn, on one thread of the driver). Each configuration is compared "+
		"with the baseline of its own rotation (the machine's per-syscall cost drifts between rotations). %d of the rotations had no other agent's "+
		"syscall programs loaded at any point: only those count below.\n\n", len(rs), batches, syscallBatch, len(clean))
	b.WriteString(floorTable(cfgs, clean))
	b.WriteString("\nAll rotations, those with other agents' programs loaded included (with any syscall tracepoint program loaded, the kernel's " +
		"slow syscall path runs in the baseline too: their figures leave out what that path costs):\n\n")
	b.WriteString(floorTable(cfgs, rs))
	b.WriteString("\nEvery rotation (ns per syscall):\n\n| rotation | " + strings.Join(names(cfgs), " | ") + " | other agents |\n|" + strings.Repeat("---|", len(cfgs)+2) + "\n")
	for i, r := range rs {
		fmt.Fprintf(&b, "| %d |", i+1)
		for _, c := range cfgs {
			fmt.Fprintf(&b, " %.0f |", r.ns[c.name])
		}
		fmt.Fprintf(&b, " %v |\n", r.foreign)
	}
	return b.String()
}

// floorTable sums up rotations rs by configuration.
func floorTable(cfgs []floorConfig, rs []floorRotation) string {
	var b strings.Builder
	base, pair := cfgs[0].name, cfgs[1].name
	b.WriteString("| config | ns per syscall (median) | added vs the same rotation's baseline: median [quartiles] | share of the raw pair's added cost (median of rotations) |\n|---|---|---|---|\n")
	for _, c := range cfgs {
		var v, d, share []float64
		for _, r := range rs {
			v = append(v, r.ns[c.name])
			d = append(d, r.ns[c.name]-r.ns[base])
			if p := r.ns[pair] - r.ns[base]; p > 0 {
				share = append(share, 100*(r.ns[c.name]-r.ns[base])/p)
			}
		}
		if len(v) == 0 {
			fmt.Fprintf(&b, "| %s | — | — | — |\n", c.name)
			continue
		}
		if c.name == base {
			fmt.Fprintf(&b, "| %s | %.0f | — | — |\n", c.name, median(v))
			continue
		}
		fmt.Fprintf(&b, "| %s | %.0f | %+.0f [%+.0f, %+.0f] | %.0f%% |\n", c.name, median(v), median(d), quantile(d, 0.25), quantile(d, 0.75), median(share))
	}
	return b.String()
}

func names(cfgs []floorConfig) []string {
	out := make([]string, len(cfgs))
	for i, c := range cfgs {
		out[i] = c.name
	}
	return out
}

// quantile returns the q quantile of v (nearest rank).
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(q * float64(len(s)-1))
	return s[i]
}
