package main

import (
	"testing"
	"time"
)

const wrkSample = `Running 2s test @ https://127.0.0.1:42191/index.html
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   733.52us    0.88ms  26.94ms   97.22%
    Req/Sec    37.37k     7.80k   69.05k    85.37%
  Latency Distribution
     50%  605.00us
     75%  700.00us
     90%    0.92ms
     99%    3.90ms
  152343 requests in 2.10s, 122.77MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:  72549.78
Transfer/sec:     58.46MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkSample)
	if err != nil {
		t.Fatal(err)
	}
	if r.requests != 152343 || r.seconds != 2.1 || r.rps != 72549.78 {
		t.Errorf("requests %d in %gs at %g/s", r.requests, r.seconds, r.rps)
	}
	if r.p50 != 605*time.Microsecond || r.p99 != 3900*time.Microsecond {
		t.Errorf("p50 %s p99 %s", r.p50, r.p99)
	}
	if r.socketErrs != 5 || r.non2xx != 7 {
		t.Errorf("socket errors %d, non-2xx %d", r.socketErrs, r.non2xx)
	}
}

func TestParseWrkIncomplete(t *testing.T) {
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Fatal("no error for output without a summary")
	}
}

func TestParseProcStat(t *testing.T) {
	line := "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 31 7 20 0 9 0 12345 1000 200 18446744073709551615"
	s, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if s.comm != "a (weird) name" || s.ppid != 1 || s.utime != 250 || s.stime != 75 || s.cutime != 31 || s.cstime != 7 || s.startTicks != 12345 {
		t.Errorf("%+v", s)
	}
}

func TestParseStatusKiB(t *testing.T) {
	v, err := parseStatusKiB([]byte("Name:\tperiscope\nVmPeak:\t  900 kB\nVmHWM:\t   41234 kB\nVmRSS:\t 40000 kB\n"), "VmHWM")
	if err != nil || v != 41234 {
		t.Fatalf("VmHWM = %d, %v", v, err)
	}
}

func TestFdinfoProgID(t *testing.T) {
	id, ok := fdinfoProgID([]byte("pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1057\nlink_type:\tperf\nlink_id:\t88\nprog_tag:\tabc\nprog_id:\t311\n"))
	if !ok || id != 311 {
		t.Fatalf("prog_id = %d, %v", id, ok)
	}
	if _, ok := fdinfoProgID([]byte("pos:\t0\nflags:\t02\nmap_type:\t27\n")); ok {
		t.Fatal("a map fd has no program")
	}
}

func TestPromText(t *testing.T) {
	p := parsePromText(`# HELP periscope_spans_total Spans built by the correlator, by kind.
# TYPE periscope_spans_total counter
periscope_spans_total{kind="client"} 3
periscope_spans_total{kind="server"} 1.234567e+06
periscope_events_dropped_total{collector="openssl"} 2
periscope_events_dropped_total{collector="process",note="a \"quoted\", value"} 5
go_goroutines 12
`)
	if v, ok := p.sum("periscope_spans_total", map[string]string{"kind": "server"}); !ok || v != 1234567 {
		t.Errorf("server spans = %g, %v", v, ok)
	}
	if v, _ := p.sum("periscope_events_dropped_total", nil); v != 7 {
		t.Errorf("drops = %g", v)
	}
	if v, _ := p.sum("periscope_events_dropped_total", map[string]string{"note": `a "quoted", value`}); v != 5 {
		t.Errorf("escaped label: %g", v)
	}
	if v, ok := p.sum("go_goroutines", nil); !ok || v != 12 {
		t.Errorf("go_goroutines = %g, %v", v, ok)
	}
	if _, ok := p.sum("absent_total", nil); ok {
		t.Error("found an absent metric")
	}
}

func TestStubStatus(t *testing.T) {
	n, err := parseStubStatus("Active connections: 1 \nserver accepts handled requests\n 52 52 152393 \nReading: 0 Writing: 1 Waiting: 0 \n")
	if err != nil || n != 152393 {
		t.Fatalf("requests = %d, %v", n, err)
	}
}

func TestProgDeltas(t *testing.T) {
	ours := map[uint32]bool{1: true, 2: true, 3: true, 4: true, 5: true}
	before := []bpfProg{
		{ID: 1, Type: "kprobe", Name: "ssl_read_enter", RunCnt: 10, RunTimeNs: 1000},
		{ID: 2, Type: "kprobe", Name: "ssl_leave", RunCnt: 10},
		{ID: 3, Type: "tracepoint", Name: "sys_enter_read", RunCnt: 100},
		{ID: 5, Type: "raw_tracepoint", Name: "ssl_process_exit", RunCnt: 1},
		{ID: 9, Type: "kprobe", Name: "ssl_write_enter", RunCnt: 50}, // another agent's
	}
	after := []bpfProg{
		{ID: 1, Type: "kprobe", Name: "ssl_read_enter", RunCnt: 30, RunTimeNs: 3000},
		{ID: 2, Type: "kprobe", Name: "ssl_leave", RunCnt: 50},
		{ID: 3, Type: "tracepoint", Name: "sys_enter_read", RunCnt: 300},
		{ID: 4, Type: "kprobe", Name: "ssl_write_enter"}, // bpftool omits run_cnt 0
		{ID: 5, Type: "raw_tracepoint", Name: "ssl_process_exit", RunCnt: 3},
		{ID: 9, Type: "kprobe", Name: "ssl_write_enter", RunCnt: 60},
		{ID: 10, Type: "kprobe", Name: "go_serve_http", RunCnt: 4}, // another agent's, appeared meanwhile
	}
	d, foreign := progDeltas(before, after, ours)
	want := map[string]progDelta{
		"ssl_read_enter":   {typ: "kprobe", runs: 20, ns: 2000, ownUprobe: true},
		"ssl_leave":        {typ: "kprobe", runs: 40, ownUprobe: true},
		"sys_enter_read":   {typ: "tracepoint", runs: 200},
		"ssl_write_enter":  {typ: "kprobe", ownUprobe: true},
		"ssl_process_exit": {typ: "raw_tracepoint", runs: 2},
	}
	if foreign != 14 || len(d) != len(want) {
		t.Errorf("foreign %d (want 14), %d programs (want %d): %+v", foreign, len(d), len(want), d)
	}
	for name, w := range want {
		if d[name] != w {
			t.Errorf("%s: %+v, want %+v", name, d[name], w)
		}
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median = %g", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median = %g", m)
	}
}

func TestClassifyInsn(t *testing.T) {
	for _, c := range []struct {
		b        []byte
		insn     string
		emulated bool
	}{
		{[]byte{0x48, 0x83, 0xec, 0x18, 0x64}, "sub $0x18,%rsp", false}, // SSL_read in OpenSSL 3.0
		{[]byte{0x55, 0x48, 0x89, 0xe5}, "push", true},
		{[]byte{0x41, 0x57, 0x41, 0x56}, "push", true},
		{[]byte{0xe8, 0x10, 0x20, 0x00, 0x00}, "call", true},
		{[]byte{0x0f, 0x1f, 0x44, 0x00, 0x00}, "nop5", true},
		{[]byte{0x0f, 0x84, 0x00, 0x01, 0x00, 0x00}, "jcc", true},
		{[]byte{0xf3, 0x0f, 0x1e, 0xfa}, "endbr64", false},
		{[]byte{0x8d, 0x47, 0x01, 0xc3}, "bytes 8d4701c3", false},
	} {
		insn, emulated := classifyInsn(c.b)
		if insn != c.insn || emulated != c.emulated {
			t.Errorf("% x: %q, %v; want %q, %v", c.b, insn, emulated, c.insn, c.emulated)
		}
	}
}
