package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/pprof/profile"
)

// Two profiles per mode, taken in a pair of extra rounds after the measured
// ones (so that profiling distorts no reported median): the application's
// CPU by kernel and user symbol with `perf record` (baseline and agent),
// to say where its extra CPU per request goes; and the agent's own CPU by
// Go package with its /debug/pprof/profile (config pprof), to split the
// agent's CPU per span by stage.

// share is one line of a breakdown: a name and its fraction of the samples.
type share struct {
	name string
	frac float64
}

// perfRecord samples pids' CPU (cpu-clock, 999 Hz, with call chains) for d
// into path.
func perfRecord(ctx context.Context, pids []int, d time.Duration, path string) <-chan error {
	done := make(chan error, 1)
	ids := make([]string, len(pids))
	for i, p := range pids {
		ids[i] = strconv.Itoa(p)
	}
	cmd := exec.CommandContext(ctx, "perf", "record", "-q", "-g", "-e", "cpu-clock", "-F", "999", "-p", strings.Join(ids, ","), "-o", path,
		"--", "sleep", strconv.FormatFloat(d.Seconds(), 'f', 1, 64))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	go func() {
		if b, err := cmd.CombinedOutput(); err != nil {
			done <- fmt.Errorf("perf record: %w: %s", err, strings.TrimSpace(string(b)))
			return
		}
		done <- nil
	}()
	return done
}

// perfCategories reads a perf.data file recorded with call chains and sums
// its samples into the categories of appCategory.
func perfCategories(path string) ([]share, error) {
	out, err := exec.Command("perf", "script", "-i", path, "-F", "ip,sym").Output()
	if err != nil {
		return nil, fmt.Errorf("perf script: %w", err)
	}
	return chainShares(string(out))
}

// categoriesMain is `benchtool categories PERF.DATA...`: each file's
// shares by category, one "FILE<TAB>SHARE<TAB>CATEGORY" line each (for
// test/bench/app-kernel.sh, which records its own rounds).
func categoriesMain(paths []string) int {
	for _, p := range paths {
		sh, err := perfCategories(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "categories:", err)
			return 1
		}
		for _, s := range sh {
			fmt.Printf("%s\t%.6f\t%s\n", p, s.frac, s.name)
		}
	}
	return 0
}

// chainShares sums the samples of `perf script -F ip,sym` output (one
// sample a block of "ADDRESS SYMBOL" lines, innermost frame first, blocks
// separated by blank lines) into appCategory's categories.
func chainShares(script string) ([]share, error) {
	counts := map[string]float64{}
	total := 0
	for _, block := range strings.Split(script, "\n\n") {
		chain := parseChain(block)
		if len(chain) == 0 {
			continue
		}
		counts[appCategory(chain)]++
		total++
	}
	if total == 0 {
		return nil, fmt.Errorf("perf script: no samples")
	}
	for k := range counts {
		counts[k] /= float64(total)
	}
	return sortedShares(counts), nil
}

// frame is one line of a call chain.
type frame struct {
	kernel bool
	sym    string
}

// parseChain reads one sample's frames; the kernel's are at addresses
// with the top bit set (x86-64, arm64).
func parseChain(block string) []frame {
	var chain []frame
	for _, line := range strings.Split(block, "\n") {
		addr, sym, _ := strings.Cut(strings.TrimSpace(line), " ")
		ip, err := strconv.ParseUint(addr, 16, 64)
		if err != nil {
			continue
		}
		chain = append(chain, frame{kernel: ip>>63 == 1, sym: strings.TrimSpace(sym)})
	}
	return chain
}

// appCategories are the kernel code paths that the agent can add to an
// application's CPU. A sample is named by the innermost frame of its
// kernel call chain that matches a category (categories tried in order
// on each frame): so a sample taken where interrupts are re-enabled
// (pvm_irq_enable, _raw_spin_unlock_irqrestore, which take the samples
// that came due while they were off) counts for the path that turned
// them off, e.g. the int3 exception's entry and return.
var appCategories = []struct {
	name  string
	parts []string
}{
	{catBPFProgs, []string{"bpf_prog_"}},
	{"kernel: uprobe dispatch (find the uprobe, run its handlers, skip the instruction)", []string{"uprobe", "handler_chain", "branch_emulate_op", "xol"}},
	{catInt3, []string{"asm_exc_int3", "exc_int3", "swbp", "do_int3"}},
	{"kernel: syscall tracepoints (the syscall slow path and its trace glue)", []string{"syscall_trace", "syscall_exit_work", "bpf_trace_run", "__bpf_trace_", "trace_call", "perf_syscall", "__traceiter", "perf_trace", "trace_sys", "tracing_"}},
	{catBPFHelpers, []string{"bpf_", "copy_from_user_nofault", "copy_from_kernel_nofault", "htab_", "lookup_nulls_elem", "lookup_elem_raw"}},
	{"kernel: ring-buffer wake-ups (irq_work)", []string{"irq_work"}},
	{"kernel: wake-ups (try_to_wake_up, epoll callbacks)", []string{"ttwu", "try_to_wake_up", "wake_up", "ep_poll_callback", "select_task_rq", "enqueue_task", "enqueue_entity"}},
	{"kernel: scheduler, context switches", []string{"schedule", "switch_to", "finish_task_switch", "pick_next", "dequeue_", "update_curr", "__switch", "context_switch", "update_load", "idle"}},
	{"kernel: TLB shootdowns and other IPIs", []string{"flush_tlb", "smp_call_function", "call_function"}},
	{"kernel: page faults", []string{"exc_page_fault", "handle_mm_fault"}},
	{"kernel: timer and device interrupts (and the softirqs they run)", []string{"asm_sysvec_", "asm_common_interrupt"}},
}

const (
	catUser       = "user space (the application's own code, Go runtime, libc, libssl)"
	catOther      = "kernel: everything else (syscalls, network stack, memory)"
	catBPFProgs   = "kernel: inside BPF programs (any agent's)"
	catBPFHelpers = "kernel: BPF helpers and maps"
	catInt3       = "kernel: uprobe trap (the int3 exception's entry and return)"
)

// appCategory names a sample by its call chain, innermost frame first.
func appCategory(chain []frame) string {
	if len(chain) == 0 || !chain[0].kernel {
		return catUser
	}
	for i, f := range chain {
		if !f.kernel {
			break
		}
		if i > 0 && strings.HasPrefix(f.sym, "bpf_prog_") {
			return catBPFHelpers // a BPF program called what the frames inside it run
		}
		for _, c := range appCategories {
			for _, p := range c.parts {
				if strings.Contains(f.sym, p) {
					return c.name
				}
			}
		}
	}
	return catOther
}

func sortedShares(m map[string]float64) []share {
	out := make([]share, 0, len(m))
	for k, v := range m {
		out = append(out, share{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].frac != out[j].frac {
			return out[i].frac > out[j].frac
		}
		return out[i].name < out[j].name
	})
	return out
}

// agentProfile fetches a CPU profile of d from the agent's /debug/pprof.
func agentProfile(ctx context.Context, addr string, d time.Duration) (*profile.Profile, error) {
	secs := max(1, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), nil)
	if err != nil {
		return nil, err
	}
	c := http.Client{Timeout: d + 30*time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent CPU profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("agent CPU profile: %s (is the agent's pprof option on?)", resp.Status)
	}
	p, err := profile.Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("agent CPU profile: %w", err)
	}
	return p, nil
}

const modulePath = "github.com/periscope-apm/periscope/"

// stageOf names the stage a sample's CPU belongs to: the innermost frame of
// a Periscope package (that package pays for what it calls: protobuf,
// maps, allocations); else the innermost frame of a library that runs
// goroutines of its own (the OTel SDK's batcher, gRPC's transport); else
// the Go runtime's garbage collector, or the rest of the runtime.
func stageOf(funcs []string) string {
	for _, f := range funcs {
		if pkg := funcPackage(f); strings.HasPrefix(pkg, modulePath) {
			return strings.TrimPrefix(pkg, modulePath)
		}
	}
	for _, f := range funcs {
		switch pkg := funcPackage(f); {
		case strings.HasPrefix(pkg, "go.opentelemetry.io/otel"):
			return "OTel SDK (batcher, otlptrace exporter)"
		case strings.HasPrefix(pkg, "google.golang.org/grpc"), strings.HasPrefix(pkg, "golang.org/x/net/http2"):
			return "gRPC transport"
		case strings.HasPrefix(pkg, "github.com/cilium/ebpf"):
			return "cilium/ebpf"
		case strings.HasPrefix(pkg, "github.com/prometheus"):
			return "Prometheus client (/metrics)"
		case strings.HasPrefix(pkg, "net/http"):
			return "net/http (/metrics, /status, pprof)"
		}
	}
	for _, f := range funcs {
		if strings.HasPrefix(f, "runtime.gcBgMarkWorker") || strings.HasPrefix(f, "runtime.bgsweep") || strings.HasPrefix(f, "runtime.bgscavenge") {
			return "Go runtime: garbage collector (background)"
		}
	}
	return "Go runtime: scheduler, timers, other"
}

// leafOf names what the CPU was spent on: the leaf frame's kind.
func leafOf(funcs []string) string {
	if len(funcs) == 0 {
		return "unknown"
	}
	leaf, pkg := funcs[0], funcPackage(funcs[0])
	for _, f := range funcs {
		if strings.HasPrefix(f, "runtime.gcBgMarkWorker") || strings.HasPrefix(f, "runtime.gcAssist") || strings.HasPrefix(f, "runtime.gcDrain") {
			return "garbage collection (background and assists)"
		}
	}
	switch {
	case pkg == "syscall" || pkg == "internal/runtime/syscall" || strings.HasPrefix(pkg, "golang.org/x/sys/unix") ||
		strings.HasPrefix(leaf, "runtime.futex") || strings.HasPrefix(leaf, "runtime.epollwait") || strings.HasPrefix(leaf, "runtime.usleep") ||
		strings.HasPrefix(leaf, "runtime.nanotime") || strings.HasPrefix(leaf, "runtime.write") || strings.HasPrefix(leaf, "runtime.read") ||
		strings.HasPrefix(leaf, "runtime/internal/syscall") || strings.HasPrefix(leaf, "internal/runtime/syscall"):
		return "system calls (and vDSO)"
	case strings.HasPrefix(leaf, "runtime.malloc") || strings.HasPrefix(leaf, "runtime.mallocgc") || strings.Contains(leaf, "mcache") ||
		strings.Contains(leaf, "mcentral") || strings.Contains(leaf, "mheap") || strings.HasPrefix(leaf, "runtime.memclr") ||
		strings.HasPrefix(leaf, "runtime.nextFreeFast") || strings.HasPrefix(leaf, "runtime.heapBits") || strings.Contains(leaf, "writeHeapBits") ||
		strings.HasPrefix(leaf, "runtime.newobject") || strings.HasPrefix(leaf, "runtime.makeslice") || strings.HasPrefix(leaf, "runtime.growslice"):
		return "memory allocation"
	case strings.HasPrefix(pkg, "runtime"), strings.HasPrefix(pkg, "internal/"), pkg == "sync", strings.HasPrefix(pkg, "sync/"):
		return "Go runtime: maps, scheduler, locks, other"
	case strings.HasPrefix(pkg, "google.golang.org/protobuf"):
		return "protobuf encoding"
	case strings.HasPrefix(pkg, modulePath):
		return "Periscope code"
	case !strings.Contains(leaf, "."):
		return "Go runtime: maps, scheduler, locks, other" // assembly (aeshashbody, memeqbody)
	case strings.HasPrefix(pkg, "go.opentelemetry.io/"):
		return "OTel SDK and OTLP conversion code"
	case strings.HasPrefix(pkg, "google.golang.org/grpc"), strings.HasPrefix(pkg, "golang.org/x/net/http2"):
		return "gRPC and HTTP/2 code"
	case pkg == "reflect" || strings.HasPrefix(pkg, "internal/reflectlite"):
		return "reflection"
	default:
		return "other library code (" + shortPkg(pkg) + ", ...)"
	}
}

func shortPkg(pkg string) string {
	if i := strings.LastIndexByte(pkg, '/'); i >= 0 {
		return pkg[i+1:]
	}
	return pkg
}

// funcPackage is the import path of a Go function name:
// "github.com/a/b/c.(*T).M" → "github.com/a/b/c".
func funcPackage(fn string) string {
	// Compiler-made equality and hash functions of a type are named after it.
	fn = strings.TrimPrefix(strings.TrimPrefix(fn, "type:.eq."), "type:.hash.")
	if i := strings.IndexByte(fn, '['); i >= 0 {
		fn = fn[:i] // type arguments name other packages: "pkg.F[go.shape.*a/b.T]"
	}
	slash := strings.LastIndexByte(fn, '/')
	dot := strings.IndexByte(fn[slash+1:], '.')
	if dot < 0 {
		return fn
	}
	return fn[:slash+1+dot]
}

// profileShares sums a CPU profile's samples by key(stack, leaf first).
func profileShares(p *profile.Profile, key func([]string) string) []share {
	vi := len(p.SampleType) - 1 // cpu nanoseconds
	sums := map[string]float64{}
	var total float64
	for _, s := range p.Sample {
		var funcs []string
		for _, loc := range s.Location {
			for i := len(loc.Line) - 1; i >= 0; i-- { // inlined frames: innermost first
				if loc.Line[i].Function != nil {
					funcs = append(funcs, loc.Line[i].Function.Name)
				}
			}
		}
		v := float64(s.Value[vi])
		sums[key(funcs)] += v
		total += v
	}
	if total == 0 {
		return nil
	}
	for k := range sums {
		sums[k] /= total
	}
	return sortedShares(sums)
}

// writeProfile keeps the raw profile next to the results, for `go tool
// pprof`.
func writeProfile(p *profile.Profile, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return p.Write(f)
}

// hardwarePMU says whether perf can count CPU cycles here; without a PMU
// (most VMs) cpu-clock is a timer, and a sample taken while interrupts were
// off lands where they are turned back on (finish_task_switch,
// _raw_spin_unlock_irqrestore), so the scheduler's share includes work done
// just before.
func hardwarePMU() string {
	out, _ := exec.Command("perf", "stat", "-x", ",", "-e", "cycles", "true").CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Split(line, ","); len(f) > 2 && f[2] == "cycles" {
			if strings.HasPrefix(f[0], "<") {
				return "no hardware PMU (perf stat -e cycles: " + f[0] + "): cpu-clock is a timer, and samples taken while interrupts were off land where they are re-enabled (finish_task_switch, _raw_spin_unlock_irqrestore), which inflates the scheduler's line"
			}
			return "hardware PMU present"
		}
	}
	return "PMU unknown (perf stat -e cycles gave nothing)"
}
