package metrics

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/periscope-apm/periscope/span"
)

// fakeUsage serves readings from a table; a PID without one is gone.
type fakeUsage struct {
	usage     map[uint32]Usage
	forgotten map[uint32]int
}

func (f *fakeUsage) Read(pid uint32) (Usage, error) {
	u, ok := f.usage[pid]
	if !ok {
		return Usage{}, errors.New("gone")
	}
	return u, nil
}

func (f *fakeUsage) Forget(pid uint32) { f.forgotten[pid]++ }

// namedProcs names PIDs: the service by the table, else "svc".
type namedProcs map[uint32]string

func (f namedProcs) Process(pid uint32) *span.Process {
	name := f[pid]
	if name == "" {
		name = "svc"
	}
	return &span.Process{PID: pid, ServiceName: name, Attributes: []attribute.KeyValue{
		attribute.Int64("process.pid", int64(pid)),
		attribute.String("process.executable.name", name),
		attribute.String("host.name", "node-1"),
		attribute.String("host.arch", "amd64"),
	}}
}

type procFixture struct {
	m      *ProcessMetrics
	read   *fakeUsage
	traced []uint32
	now    time.Time
}

func newProcFixture(t *testing.T, names namedProcs) *procFixture {
	f := &procFixture{read: &fakeUsage{usage: map[uint32]Usage{}, forgotten: map[uint32]int{}}, now: time.Unix(1000, 0)}
	m, err := NewProcessMetrics(ProcessMetricsConfig{Interval: time.Second, Expiry: time.Minute, Now: func() time.Time { return f.now }},
		func() []uint32 { return f.traced }, names, f.read, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	return f
}

// scrape returns the exposition of the metrics named, sorted.
func (f *procFixture) scrape(t *testing.T, names ...string) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(f.m)
	var b strings.Builder
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, n := range names {
			if mf.GetName() != n {
				continue
			}
			for _, m := range mf.GetMetric() {
				var labels []string
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
				fmt.Fprintf(&b, "%s{%s} %.6g\n", n, strings.Join(labels, ","), v)
			}
		}
	}
	return b.String()
}

func TestProcessMetricsPerWorkload(t *testing.T) {
	f := newProcFixture(t, namedProcs{3: "other"})
	f.traced = []uint32{1, 2, 3}
	f.read.usage[1] = Usage{UserSeconds: 1, SystemSeconds: 0.5, RSS: 100, Virtual: 1000, Threads: 2, FDs: 10, Voluntary: 5, Involuntary: 1}
	f.read.usage[2] = Usage{UserSeconds: 2, SystemSeconds: 0.25, RSS: 200, Virtual: 2000, Threads: 3, FDs: 20, Voluntary: 7, Involuntary: 2}
	f.read.usage[3] = Usage{UserSeconds: 9, RSS: 1, Virtual: 1, Threads: 1, FDs: 1}
	f.m.Sample()
	const res = "host_name=node-1,process_executable_name=svc,service_name=svc"
	want := `process_cpu_time_seconds_total{cpu_mode=system,` + res + `} 0.75
process_cpu_time_seconds_total{cpu_mode=user,` + res + `} 3
process_memory_usage_bytes{` + res + `} 300
process_memory_virtual_bytes{` + res + `} 3000
process_threads{` + res + `} 5
process_unix_file_descriptors{` + res + `} 30
process_context_switches_total{host_name=node-1,process_context_switch_type=involuntary,process_executable_name=svc,service_name=svc} 3
process_context_switches_total{host_name=node-1,process_context_switch_type=voluntary,process_executable_name=svc,service_name=svc} 12
`
	got := f.scrape(t, CPUTimePromName, MemoryUsagePromName, MemoryVirtualPromName, ThreadCountPromName, FDCountPromName, ContextSwitchesPromName)
	for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
		if !strings.Contains(got, line+"\n") {
			t.Errorf("missing %s in\n%s", line, got)
		}
	}
	if strings.Contains(got, "process_pid") {
		t.Errorf("process_pid is a label:\n%s", got)
	}
	if n := strings.Count(got, "service_name=other"); n != 8 {
		t.Errorf("workload other has %d series, want 8:\n%s", n, got)
	}
}

// An exited process's CPU stays in its workload's counters (they never go
// down); its gauges leave; the workload's series go after the expiry.
func TestProcessMetricsExitAndExpiry(t *testing.T) {
	f := newProcFixture(t, nil)
	f.traced = []uint32{1, 2}
	f.read.usage[1] = Usage{UserSeconds: 1, RSS: 100, Threads: 1, FDs: 3}
	f.read.usage[2] = Usage{UserSeconds: 2, RSS: 200, Threads: 1, FDs: 4}
	f.m.Sample()
	delete(f.read.usage, 1)
	f.read.usage[2] = Usage{UserSeconds: 3, RSS: 200, Threads: 1, FDs: 4}
	f.now = f.now.Add(time.Second)
	f.m.Sample()
	got := f.scrape(t, CPUTimePromName, FDCountPromName)
	for _, want := range []string{"cpu_mode=user,host_name=node-1,process_executable_name=svc,service_name=svc} 4\n", "process_unix_file_descriptors{host_name=node-1,process_executable_name=svc,service_name=svc} 4\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in\n%s", want, got)
		}
	}
	if f.read.forgotten[1] == 0 {
		t.Error("the reader was not told to forget PID 1")
	}
	f.m.ProcessExited(2, f.now)
	f.now = f.now.Add(30 * time.Second)
	got = f.scrape(t, CPUTimePromName, FDCountPromName)
	if !strings.Contains(got, "cpu_mode=user,host_name=node-1,process_executable_name=svc,service_name=svc} 4\n") || strings.Contains(got, FDCountPromName) {
		t.Errorf("after the last exit, want the CPU counter at 1+3 s and no gauge:\n%s", got)
	}
	f.now = f.now.Add(31 * time.Second)
	if got := f.scrape(t, CPUTimePromName); got != "" {
		t.Errorf("series after the expiry:\n%s", got)
	}
	if rms := f.m.ResourceMetrics(instrumentation.Scope{}, false); len(rms) != 0 {
		t.Errorf("%d OTLP resources after the expiry", len(rms))
	}
}

// A new process under a PID (its counters are lower) starts afresh and
// the old one's usage stays counted.
func TestProcessMetricsPIDReuse(t *testing.T) {
	f := newProcFixture(t, nil)
	f.traced = []uint32{1}
	f.read.usage[1] = Usage{UserSeconds: 5}
	f.m.Sample()
	f.read.usage[1] = Usage{UserSeconds: 1}
	f.m.Sample()
	if got := f.scrape(t, CPUTimePromName); !strings.Contains(got, "cpu_mode=user,host_name=node-1,process_executable_name=svc,service_name=svc} 6\n") {
		t.Errorf("want 5+1 s of user CPU:\n%s", got)
	}
}

// A thousand short-lived processes of one workload make one set of
// series, not a thousand.
func TestProcessMetricsShortLivedBounded(t *testing.T) {
	f := newProcFixture(t, nil)
	for pid := uint32(100); pid < 1100; pid++ {
		f.traced = []uint32{pid}
		f.read.usage = map[uint32]Usage{pid: {UserSeconds: 0.01, RSS: 1, Threads: 1, FDs: 1}}
		f.m.Sample()
		f.now = f.now.Add(10 * time.Millisecond)
	}
	if n := testutil.CollectAndCount(f.m); n != 8 {
		t.Errorf("%d series after 1000 processes, want 8", n)
	}
	got := f.scrape(t, CPUTimePromName)
	if !strings.Contains(got, "cpu_mode=user,host_name=node-1,process_executable_name=svc,service_name=svc} 10\n") {
		t.Errorf("want 1000 × 10 ms of CPU:\n%s", got)
	}
}

func TestProcessMetricsOTLP(t *testing.T) {
	f := newProcFixture(t, nil)
	f.traced = []uint32{7}
	f.read.usage[7] = Usage{UserSeconds: 1.5, SystemSeconds: 0.5, RSS: 4096, Virtual: 8192, Threads: 4, FDs: 9, Voluntary: 3, Involuntary: 1}
	f.m.Sample()
	rms := f.m.ResourceMetrics(instrumentation.Scope{Name: "x"}, false)
	if len(rms) != 1 {
		t.Fatalf("%d resources, want 1", len(rms))
	}
	res := rms[0].Resource.Set()
	for k, want := range map[attribute.Key]string{"process.pid": "7", "service.name": "svc", "host.arch": "amd64", "host.name": "node-1"} {
		if v, ok := res.Value(k); !ok || v.Emit() != want {
			t.Errorf("resource %s = %q, want %q", k, v.Emit(), want)
		}
	}
	got := map[string]string{}
	for _, m := range rms[0].ScopeMetrics[0].Metrics {
		switch d := m.Data.(type) {
		case metricdata.Sum[float64]:
			for _, p := range d.DataPoints {
				mode, _ := p.Attributes.Value(attrCPUMode)
				got[m.Name+"/"+mode.Emit()+"/"+m.Unit] = strconv.FormatFloat(p.Value, 'g', -1, 64) + "/" + strconv.FormatBool(d.IsMonotonic)
			}
		case metricdata.Sum[int64]:
			for _, p := range d.DataPoints {
				typ, _ := p.Attributes.Value(attrContextSwitchType)
				got[m.Name+"/"+typ.Emit()+"/"+m.Unit] = strconv.FormatInt(p.Value, 10) + "/" + strconv.FormatBool(d.IsMonotonic)
			}
		}
	}
	want := map[string]string{
		"process.cpu.time/user/s":                               "1.5/true",
		"process.cpu.time/system/s":                             "0.5/true",
		"process.context_switches/voluntary/{context_switch}":   "3/true",
		"process.context_switches/involuntary/{context_switch}": "1/true",
		"process.memory.usage//By":                              "4096/false",
		"process.memory.virtual//By":                            "8192/false",
		"process.thread.count//{thread}":                        "4/false",
		"process.unix.file_descriptor.count//{file_descriptor}": "9/false",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("points\n got %v\nwant %v", got, want)
	}

	// Delta: the change since the last delta export; nothing when none.
	if rms := f.m.ResourceMetrics(instrumentation.Scope{}, true); len(rms) != 1 {
		t.Fatalf("first delta: %d resources", len(rms))
	}
	if rms := f.m.ResourceMetrics(instrumentation.Scope{}, true); len(rms) != 0 {
		t.Fatalf("delta without change: %d resources", len(rms))
	}
	f.read.usage[7] = Usage{UserSeconds: 2, SystemSeconds: 0.5, RSS: 4096, Virtual: 8192, Threads: 4, FDs: 9, Voluntary: 3, Involuntary: 1}
	f.now = f.now.Add(time.Second)
	f.m.Sample()
	rms = f.m.ResourceMetrics(instrumentation.Scope{}, true)
	cpu := rms[0].ScopeMetrics[0].Metrics[0].Data.(metricdata.Sum[float64])
	if cpu.Temporality != metricdata.DeltaTemporality || cpu.DataPoints[0].Value != 0.5 {
		t.Errorf("delta cpu %+v, want 0.5 s of user", cpu)
	}
}

// ProcReader reads this test process as /proc has it.
func TestProcReaderSelf(t *testing.T) {
	r := NewProcReader("")
	pid := uint32(os.Getpid())
	files := make([]*os.File, 20)
	for i := range files {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files[i] = f
	}
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
	} // CPU time to read
	u, err := r.Read(pid)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	// ReadDir holds one more descriptor than Read saw.
	if d := int64(len(ents)) - u.FDs; d < 0 || d > 2 {
		t.Errorf("FDs %d, /proc/self/fd lists %d", u.FDs, len(ents))
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			if d := n*1024 - int64(u.RSS); d < -8<<20 || d > 8<<20 {
				t.Errorf("RSS %d, status says %d kB", u.RSS, n)
			}
		case "VmSize":
			if d := n*1024 - int64(u.Virtual); d < -64<<20 || d > 64<<20 {
				t.Errorf("virtual %d, status says %d kB", u.Virtual, n)
			}
		case "voluntary_ctxt_switches":
			if n < u.Voluntary {
				t.Errorf("voluntary switches %d, then status %d", u.Voluntary, n)
			}
		}
	}
	if u.Threads < 1 || u.Started.IsZero() || time.Since(u.Started) > time.Hour || u.UserSeconds+u.SystemSeconds <= 0 {
		t.Errorf("implausible reading %+v", u)
	}
	r.Forget(pid)
	if _, err := r.Read(1 << 30); err == nil {
		t.Error("reading a PID that does not exist succeeded")
	}
}

// BenchmarkProcReader is the cost of reading one process (this one, 500
// open files) with gopsutil: what an interval costs per traced process.
func BenchmarkProcReader(b *testing.B) {
	for range 500 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
	}
	r := NewProcReader("")
	pid := uint32(os.Getpid())
	for b.Loop() {
		if _, err := r.Read(pid); err != nil {
			b.Fatal(err)
		}
	}
}

// exitingUsage reports the exit of a process while a Sample reads it, as
// discovery may.
type exitingUsage struct {
	fakeUsage
	m    *ProcessMetrics
	exit uint32
}

func (e *exitingUsage) Read(pid uint32) (Usage, error) {
	u, err := e.fakeUsage.Read(pid)
	if pid == e.exit {
		e.m.ProcessExited(pid, time.Time{})
	}
	return u, err
}

// A process that exits while a Sample reads it is counted once: its exit
// takes its last reading, and the Sample's reading is dropped.
func TestProcessMetricsExitDuringSample(t *testing.T) {
	f := newProcFixture(t, nil)
	r := &exitingUsage{fakeUsage: fakeUsage{usage: map[uint32]Usage{1: {UserSeconds: 1}}, forgotten: map[uint32]int{}}}
	m, err := NewProcessMetrics(ProcessMetricsConfig{Interval: time.Second, Expiry: time.Minute, Now: func() time.Time { return f.now }},
		func() []uint32 { return []uint32{1} }, namedProcs(nil), r, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.m, f.m = m, m
	m.Sample()
	r.exit, r.usage[1] = 1, Usage{UserSeconds: 2}
	m.Sample()
	r.exit = 0
	m.Sample() // the same instant: a reading from before the exit, dropped too
	if got := f.scrape(t, CPUTimePromName); !strings.Contains(got, "cpu_mode=user,host_name=node-1,process_executable_name=svc,service_name=svc} 1\n") {
		t.Errorf("want the 1 s of the last reading before the exit, once:\n%s", got)
	}
}

// Reads, exits, scrapes and OTLP exports at once (run with -race).
func TestProcessMetricsConcurrent(t *testing.T) {
	r := NewProcReader("")
	self := uint32(os.Getpid())
	m, err := NewProcessMetrics(ProcessMetricsConfig{Interval: time.Millisecond, Expiry: time.Millisecond},
		func() []uint32 { return []uint32{self, 1 << 30} }, namedProcs(nil), r, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	for ctx.Err() == nil {
		m.ProcessExited(self, time.Now())
		_ = testutil.CollectAndCount(m)
		_ = m.ResourceMetrics(instrumentation.Scope{}, true)
	}
	<-done
	if testutil.ToFloat64(m.cpu) <= 0 {
		t.Error("no CPU time counted for the reads")
	}
}
