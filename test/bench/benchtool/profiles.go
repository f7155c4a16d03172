package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
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

// perfRecord samples pids' CPU (cpu-clock, 999 Hz, no call graphs) for d
// into path.
func perfRecord(ctx context.Context, pids []int, d time.Duration, path string) <-chan error {
	done := make(chan error, 1)
	ids := make([]string, len(pids))
	for i, p := range pids {
		ids[i] = strconv.Itoa(p)
	}
	cmd := exec.CommandContext(ctx, "perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-p", strings.Join(ids, ","), "-o", path,
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

var rePerfLine = regexp.MustCompile(`^\s*([0-9.]+)%\s+\[(.)\]\s+(.*)$`)

// perfCategories reads a perf.data file and sums its samples into the
// categories of appCategory.
func perfCategories(path string) ([]share, error) {
	out, err := exec.Command("perf", "report", "-i", path, "--stdio", "--no-children", "-q", "--sort", "sym", "--percent-limit", "0").Output()
	if err != nil {
		return nil, fmt.Errorf("perf report: %w", err)
	}
	sums := map[string]float64{}
	for _, line := range strings.Split(string(out), "\n") {
		m := rePerfLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		pct, _ := strconv.ParseFloat(m[1], 64)
		sums[appCategory(m[2] == "k", strings.TrimSpace(m[3]))] += pct / 100
	}
	if len(sums) == 0 {
		return nil, fmt.Errorf("perf report of %s: no samples", path)
	}
	return sortedShares(sums), nil
}

// appCategories are the kernel symbol groups that the agent can add to an
// application's CPU, tried in order; the first match names the sample.
var appCategories = []struct {
	name  string
	parts []string
}{
	{"kernel: inside BPF programs (any agent's)", []string{"bpf_prog_"}},
	{"kernel: uprobe breakpoint trap and dispatch", []string{"uprobe", "swbp", "int3", "xol", "uretprobe"}},
	{"kernel: BPF helpers and tracepoint glue", []string{"bpf_", "trace_call", "perf_syscall", "__traceiter", "perf_trace", "syscall_trace", "trace_sys", "tracing_", "copy_from_user_nofault", "htab_", "lookup_nulls_elem", "lookup_elem_raw"}},
	{"kernel: wake-ups (irq_work, try_to_wake_up, epoll callbacks)", []string{"irq_work", "ttwu", "try_to_wake_up", "wake_up", "ep_poll_callback", "select_task_rq", "enqueue_"}},
	{"kernel: scheduler, context switches", []string{"schedule", "switch_to", "finish_task_switch", "pick_next", "dequeue_", "update_curr", "__switch", "context_switch", "update_load", "idle"}},
}

func appCategory(kernel bool, sym string) string {
	if !kernel {
		return "user space (the application's own code, Go runtime, libc, libssl)"
	}
	for _, c := range appCategories {
		for _, p := range c.parts {
			if strings.Contains(sym, p) {
				return c.name
			}
		}
	}
	return "kernel: everything else (syscalls, network stack, memory)"
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
