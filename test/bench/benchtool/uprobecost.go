package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// The uprobe micro-benchmark: callloop (test/bench/callloop.c) calls
// periscope_bench_<variant> N times and reports the elapsed time. For each
// variant (the function's first instruction) we run it bare, with a no-op
// entry uprobe, with a no-op uretprobe, and with both, several times,
// interleaved, and keep the median.

// probeVariant is one target function of callloop.
type probeVariant struct {
	name, first, how string
}

var probeVariants = []probeVariant{
	{"push", "push %rbp", "emulated by the kernel"},
	{"xol", "sub $0x18,%rsp (as OpenSSL 3's SSL_read)", "single-stepped out of line"},
	{"nop5", "5-byte nop", "the candidate for the kernel's nop5 optimization"},
}

type probeMode struct {
	name       string
	entry, ret bool
}

var probeModes = []probeMode{
	{"bare", false, false},
	{"entry uprobe", true, false},
	{"uretprobe only", false, true},
	{"entry + uretprobe", true, true},
}

// probeCost is the result for one variant: µs per call, by mode.
type probeCost struct {
	variant probeVariant
	calls   int         // per probed run; bare runs make 100x more calls
	runs    [][]float64 // by mode
	median  []float64   // by mode
}

// added is what the probes of mode m add to a call.
func (c *probeCost) added(m int) float64 { return c.median[m] - c.median[0] }

// noopProgram is `return 0` as a kprobe-type program (uprobes use that type).
func noopProgram() (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "bench_noop",
		Type:         ebpf.Kprobe,
		License:      "Dual MIT/GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
}

// uprobeCostMain is `benchtool uprobecost -callloop PATH`: the
// micro-benchmark alone, one "VARIANT<TAB>MODE<TAB>µs per call (median)"
// line each, bare calls included (test/bench/app-kernel.sh prices the
// trap with it).
func uprobeCostMain(args []string) int {
	fs := flag.NewFlagSet("benchtool uprobecost", flag.ContinueOnError)
	callloop := fs.String("callloop", "", "the compiled test/bench/callloop.c (required)")
	calls := fs.Int("calls", 10000, "calls per probed run (bare: 100x)")
	reps := fs.Int("reps", 5, "repetitions of each case")
	if err := fs.Parse(args); err != nil || *callloop == "" {
		fs.Usage()
		return 2
	}
	costs, err := measureUprobeCost(context.Background(), *callloop, *calls, *reps)
	if err != nil {
		fmt.Fprintln(os.Stderr, "uprobecost:", err)
		return 1
	}
	for _, c := range costs {
		for m, mode := range probeModes {
			fmt.Printf("%s\t%s\t%.3f\n", c.variant.name, mode.name, c.median[m])
		}
	}
	return 0
}

func measureUprobeCost(ctx context.Context, callloop string, calls, reps int) ([]*probeCost, error) {
	ex, err := link.OpenExecutable(callloop)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", callloop, err)
	}
	prog, err := noopProgram()
	if err != nil {
		return nil, fmt.Errorf("load no-op uprobe program: %w", err)
	}
	defer prog.Close()

	var out []*probeCost
	for _, v := range probeVariants {
		out = append(out, &probeCost{variant: v, calls: calls, runs: make([][]float64, len(probeModes))})
	}
	for r := 0; r < reps; r++ {
		for _, c := range out {
			for m, mode := range probeModes {
				n := calls
				if !mode.entry && !mode.ret {
					n = calls * 100
				}
				us, err := runProbed(ctx, ex, prog, callloop, c.variant.name, mode, n)
				if err != nil {
					return nil, fmt.Errorf("%s, %s: %w", c.variant.name, mode.name, err)
				}
				c.runs[m] = append(c.runs[m], us)
			}
		}
	}
	for _, c := range out {
		for _, runs := range c.runs {
			c.median = append(c.median, median(runs))
		}
	}
	return out, nil
}

func runProbed(ctx context.Context, ex *link.Executable, prog *ebpf.Program, callloop, variant string, mode probeMode, calls int) (float64, error) {
	symbol := "periscope_bench_" + variant
	var links []link.Link
	defer func() {
		for _, l := range links {
			l.Close()
		}
	}()
	if mode.entry {
		l, err := ex.Uprobe(symbol, prog, nil)
		if err != nil {
			return 0, fmt.Errorf("attach uprobe to %s: %w", symbol, err)
		}
		links = append(links, l)
	}
	if mode.ret {
		l, err := ex.Uretprobe(symbol, prog, nil)
		if err != nil {
			return 0, fmt.Errorf("attach uretprobe to %s: %w", symbol, err)
		}
		links = append(links, l)
	}
	before, err := prog.Stats()
	if err != nil {
		return 0, fmt.Errorf("program stats: %w", err)
	}

	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, callloop, variant, strconv.Itoa(calls)).Output()
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("run %s: %w", callloop, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return 0, fmt.Errorf("unexpected output %q", out)
	}
	n, err1 := strconv.ParseFloat(f[0], 64)
	ns, err2 := strconv.ParseFloat(f[1], 64)
	if err := errors.Join(err1, err2); err != nil || n <= 0 {
		return 0, fmt.Errorf("unexpected output %q", out)
	}

	// The probes must really have fired: the program runs once per hit (the
	// run count exists only while BPF stats are enabled).
	after, err := prog.Stats()
	if err == nil && after.RunCount > 0 {
		var want uint64
		if mode.entry {
			want += uint64(calls)
		}
		if mode.ret {
			want += uint64(calls)
		}
		if got := after.RunCount - before.RunCount; got < want {
			return 0, fmt.Errorf("the probe program ran %d times, want at least %d", got, want)
		}
	}
	return ns / n / 1e3, nil
}
