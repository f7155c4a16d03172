package main

import (
	"math"
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
		{noisy{90, math.NaN()}, 60, false, "not judged (one round: no spread)"},
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
	// Chains as `perf script -F ip,sym` prints them, innermost first.
	for _, tc := range []struct{ chain, want string }{
		{"ffffffffc0032370 bpf_prog_6deef7357e7b4530_go_serve_http\nffffffff814cf3df uprobe_prog_run", catBPFProgs},
		{"ffffffff8159f5da handle_swbp", catInt3},
		// the int3 exception's return, where interrupts come back on: not "everything else"
		{"ffffffff82242009 pvm_irq_enable\nffffffff82241f31 __raw_callee_save_pvm_irq_enable\nffffffff82242f23 irqentry_exit_to_user_mode\nffffffff81000c55 asm_exc_int3\n284625 net/http.serverHandler.ServeHTTP", catInt3},
		{"ffffffff8134a344 mtree_load\nffffffff8159ecb1 find_active_uprobe_rcu\nffffffff8159f5da uprobe_notify_resume\nffffffff82242f3f irqentry_exit_to_user_mode\nffffffff81000c55 asm_exc_int3", "kernel: uprobe dispatch (find the uprobe, run its handlers, skip the instruction)"},
		{"ffffffff8134a344 __virt_addr_valid\nffffffff816cf02c __check_object_size\nffffffff815b4646 copy_from_user_nofault\nffffffff814d077b bpf_probe_read_user\nffffffffc003237d bpf_prog_1812593a03b67854_go_serve_http\nffffffff814cf3df uprobe_prog_run", catBPFHelpers},
		{"ffffffff8134a344 kvm_clock_get_cycles\nffffffff8134a344 ktime_get_mono_fast_ns\nffffffffc003237d bpf_prog_18efb9be8d2174f3_go_finish_request", catBPFHelpers},
		{"ffffffff814cc393 bpf_trace_run2\nffffffff81424adc __bpf_trace_sys_enter\nffffffff81425010 syscall_trace_enter\nffffffff8223caef do_syscall_64", "kernel: syscall tracepoints (the syscall slow path and its trace glue)"},
		{"ffffffff82242009 pvm_write_msr\nffffffff82242009 native_apic_msr_write\nffffffff82242009 arch_irq_work_raise\nffffffff82242009 irq_work_queue\nffffffff82242009 bpf_ringbuf_submit\nffffffffc003237d bpf_prog_18efb9be8d2174f3_go_finish_request", "kernel: ring-buffer wake-ups (irq_work)"},
		{"ffffffff82242009 ep_poll_callback", "kernel: wake-ups (try_to_wake_up, epoll callbacks)"},
		{"ffffffff82242009 pvm_irq_enable\nffffffff82242009 finish_task_switch.isra.0\nffffffff82242009 __schedule", "kernel: scheduler, context switches"},
		{"ffffffff82242009 flush_tlb_func\nffffffff82242009 __flush_smp_call_function_queue", "kernel: TLB shootdowns and other IPIs"},
		{"ffffffff82242009 clear_page_erms\nffffffff82242009 handle_mm_fault\nffffffff82242009 exc_page_fault", "kernel: page faults"},
		{"ffffffff82242009 hrtimer_interrupt\nffffffff82242009 asm_sysvec_apic_timer_interrupt", "kernel: timer and device interrupts (and the softirqs they run)"},
		{"ffffffff82242009 tcp_sendmsg_locked\nffffffff82242009 __x64_sys_write\nffffffff8223caef do_syscall_64", catOther},
		// a user frame ends the kernel chain: what the user code above did does not count
		{"ffffffff82242009 tcp_sendmsg_locked\n284625 runtime.schedule", catOther},
		{"1b16e9 crypto/aes.gcmAesEnc\n1b16e9 crypto/tls.(*Conn).write", catUser},
	} {
		if got := appCategory(parseChain(tc.chain)); got != tc.want {
			t.Errorf("appCategory(%q) = %q, want %q", tc.chain, got, tc.want)
		}
	}
}

func TestChainShares(t *testing.T) {
	script := "ffffffff82242009 pvm_irq_enable\nffffffff81000c55 asm_exc_int3\n284625 main.f\n\n" +
		"284625 main.f\n\n\n" +
		"\t284625 main.f\n\t26a67f main.g\n\n" +
		"ffffffff82242009 tcp_sendmsg_locked\n"
	got, err := chainShares(script)
	if err != nil {
		t.Fatal(err)
	}
	want := []share{{catUser, 0.5}, {catOther, 0.25}, {catInt3, 0.25}}
	if len(got) != len(want) {
		t.Fatalf("chainShares = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("chainShares[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if _, err := chainShares("\n\n"); err == nil {
		t.Error("no samples: no error")
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
