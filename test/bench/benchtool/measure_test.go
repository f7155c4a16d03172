package main

import (
	"strings"
	"testing"
)

func TestParsePerfStat(t *testing.T) {
	out := `12,,sched:sched_waking,9988776,100.00,,
3456,,sched:sched_waking,9988776,100.00,,
<not counted>,,irq_vectors:irq_work_entry,0,100.00,,
`
	got := parsePerfStat(out)
	if want := (perfEvents{wakeAgent: 12, wakeAll: 3456, irqWork: 0, ok: true}); got != want {
		t.Errorf("parsePerfStat = %+v, want %+v", got, want)
	}
	if got := parsePerfStat("Error: no such event\n"); got.ok {
		t.Errorf("an error parsed as counts: %+v", got)
	}
}

func TestParseSched(t *testing.T) {
	b := []byte(`goapp (1234, #threads: 5)
-------------------------------------------------------------------
se.exec_start                                :       1234567.891011
se.nr_migrations                             :                   17
nr_switches                                  :                  300
nr_voluntary_switches                        :                  250
nr_involuntary_switches                      :                   50
`)
	if got, want := parseSched(b), (schedCounts{voluntary: 250, involuntary: 50, migrations: 17}); got != want {
		t.Errorf("parseSched = %+v, want %+v", got, want)
	}
}

func TestParseIO(t *testing.T) {
	b := []byte("rchar: 4096\nwchar: 2048\nsyscr: 31\nsyscw: 17\nread_bytes: 0\nwrite_bytes: 0\ncancelled_write_bytes: 0\n")
	if got, want := parseIO(b), (schedCounts{syscr: 31, syscw: 17}); got != want {
		t.Errorf("parseIO = %+v, want %+v", got, want)
	}
}

func TestVerdict(t *testing.T) {
	for _, c := range []struct {
		x      noisy
		target float64
		atMost bool
		want   string
	}{
		{noisy{2, 0.5}, 3, true, "met"},
		{noisy{2.8, 0.5}, 3, true, "within noise"},
		{noisy{3.6, 0.5}, 3, true, "NOT met"},
		{noisy{65, 4}, 60, false, "met"},
		{noisy{58, 4}, 60, false, "within noise"},
		{noisy{50, 4}, 60, false, "NOT met"},
		{noisy{60, 0}, 60, false, "within noise"}, // no margin at all
	} {
		if got := verdict(c.x, c.target, c.atMost); got != c.want {
			t.Errorf("verdict(%+v, %v, atMost %v) = %q, want %q", c.x, c.target, c.atMost, got, c.want)
		}
	}
	if r := ratioOf([]float64{50, 60}, []float64{100, 100}); r.v != 0.55 || r.noise < 0.049 || r.noise > 0.051 {
		t.Errorf("ratioOf = %+v, want 0.55 ± 0.05", r)
	}
	if d := diffOf([]float64{10, 14}, []float64{5, 5}); d.v != 7 || d.noise != 2 {
		t.Errorf("diffOf = %+v, want 7 ± 2", d)
	}
}

func TestStageOf(t *testing.T) {
	for _, c := range []struct {
		stack []string // leaf first
		stage string
	}{
		{[]string{"google.golang.org/protobuf/internal/impl.(*MessageInfo).marshal", modulePath + "exporters/otlp.(*Exporter).send", "runtime.goexit"}, "exporters/otlp"},
		{[]string{"runtime.mapaccess2", modulePath + "correlator/httpspan.Build", modulePath + "correlator.(*Correlator).handle"}, "correlator/httpspan"},
		{[]string{"google.golang.org/grpc/internal/transport.(*loopyWriter).run"}, "gRPC transport"},
		{[]string{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"}, "Go runtime: garbage collector (background)"},
		{[]string{"runtime.findRunnable", "runtime.schedule"}, "Go runtime: scheduler, timers, other"},
	} {
		if got := stageOf(c.stack); got != c.stage {
			t.Errorf("stageOf(%v) = %q, want %q", c.stack, got, c.stage)
		}
	}
	for fn, pkg := range map[string]string{
		"github.com/a/b.c/d.(*T).M":                       "github.com/a/b.c/d",
		"runtime.mallocgc":                                "runtime",
		modulePath + "correlator.get[go.shape.*uint8]":    modulePath + "correlator",
		modulePath + "events.Pool[...].Get":               modulePath + "events",
		modulePath + "x.F[go.shape.*github.com/a/b.T].f1": modulePath + "x",
	} {
		if got := funcPackage(fn); got != pkg {
			t.Errorf("funcPackage(%q) = %q, want %q", fn, got, pkg)
		}
	}
	if got := leafOf([]string{"syscall.Syscall6", modulePath + "internal/ring.Read"}); got != "system calls (and vDSO)" {
		t.Errorf("leafOf(syscall) = %q", got)
	}
}

func TestAppCategory(t *testing.T) {
	for sym, want := range map[string]string{
		"bpf_prog_6deef7357e7b4530_go_serve_http": "kernel: inside BPF programs (any agent's)",
		"handle_swbp":               "kernel: uprobe breakpoint trap and dispatch",
		"irq_work_queue":            "kernel: wake-ups (irq_work, try_to_wake_up, epoll callbacks)",
		"__schedule":                "kernel: scheduler, context switches",
		"tcp_sendmsg_locked":        "kernel: everything else (syscalls, network stack, memory)",
		"bpf_ringbuf_reserve":       "kernel: BPF helpers and tracepoint glue",
		"perf_syscall_enter":        "kernel: BPF helpers and tracepoint glue",
		"asm_exc_int3":              "kernel: uprobe breakpoint trap and dispatch",
		"ep_poll_callback":          "kernel: wake-ups (irq_work, try_to_wake_up, epoll callbacks)",
		"finish_task_switch.isra.0": "kernel: scheduler, context switches",
	} {
		if got := appCategory(true, sym); got != want {
			t.Errorf("appCategory(%q) = %q, want %q", sym, got, want)
		}
	}
	if got := appCategory(false, "crypto/aes.gcmAesEnc"); !strings.HasPrefix(got, "user space") {
		t.Errorf("a user symbol: %q", got)
	}
}

func TestModeTable(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range benchModes() {
		if seen[m.name] || seen[m.out] || m.run == nil || m.rounds < 1 || m.duration < 2e9 || !strings.HasPrefix(m.out, "test/bench/results") {
			t.Errorf("mode %q: a duplicate name or results file, no run, or bad defaults: %+v", m.name, m)
		}
		seen[m.name], seen[m.out] = true, true
	}
	m, err := findMode("go")
	if err != nil {
		t.Fatal(err)
	}
	o := m.withDefaults(options{warmup: -1})
	if o.out != m.out || o.rounds != m.rounds || o.duration != m.duration || o.warmup != m.warmup {
		t.Errorf("defaults not applied: %+v", o)
	}
	o = m.withDefaults(options{out: "x.md", rounds: 1, duration: 3e9, warmup: 0})
	if o.out != "x.md" || o.rounds != 1 || o.duration != 3e9 || o.warmup != 0 {
		t.Errorf("the caller's values were overridden: %+v", o)
	}
	if _, err := findMode("nope"); err == nil || !strings.Contains(err.Error(), "go, plain") {
		t.Errorf("findMode(nope) = %v", err)
	}
}
