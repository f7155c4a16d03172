package metrics

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/periscope-apm/periscope/span"
)

// Names and units of the resource metrics of traced processes
// (OpenTelemetry semantic conventions for OS process metrics) and their
// Prometheus translations.
const (
	CPUTimeName         = "process.cpu.time"
	MemoryUsageName     = "process.memory.usage"
	MemoryVirtualName   = "process.memory.virtual"
	ThreadCountName     = "process.thread.count"
	FDCountName         = "process.unix.file_descriptor.count"
	ContextSwitchesName = "process.context_switches"

	CPUTimePromName         = "process_cpu_time_seconds_total"
	MemoryUsagePromName     = "process_memory_usage_bytes"
	MemoryVirtualPromName   = "process_memory_virtual_bytes"
	ThreadCountPromName     = "process_threads"
	FDCountPromName         = "process_unix_file_descriptors"
	ContextSwitchesPromName = "process_context_switches_total"

	attrCPUMode           = "cpu.mode"
	attrContextSwitchType = "process.context_switch.type"
)

// Usage is the resource usage of one process at one time.
type Usage struct {
	// Started is when the process started (zero: unknown).
	Started time.Time
	// UserSeconds and SystemSeconds are the CPU time of all its threads.
	UserSeconds, SystemSeconds float64
	// RSS and Virtual are its resident and virtual memory in bytes.
	RSS, Virtual uint64
	Threads      int64
	FDs          int64
	// Voluntary and Involuntary are its context switches.
	Voluntary, Involuntary int64
}

// counters is the monotonic part of a Usage.
type counters struct {
	user, system           float64
	voluntary, involuntary int64
}

func (u Usage) counters() counters {
	return counters{u.UserSeconds, u.SystemSeconds, u.Voluntary, u.Involuntary}
}

func (c *counters) add(o counters) {
	c.user += o.user
	c.system += o.system
	c.voluntary += o.voluntary
	c.involuntary += o.involuntary
}

// after reports whether a counter of o is smaller than c's: a read of
// another process under the same PID.
func (c counters) after(o counters) bool {
	return o.user < c.user || o.system < c.system || o.voluntary < c.voluntary || o.involuntary < c.involuntary
}

// UsageReader reads the resource usage of processes.
type UsageReader interface {
	// Read reads a process now; it fails once the process is gone.
	Read(pid uint32) (Usage, error)
	// Forget drops what the reader keeps of a process that exited.
	Forget(pid uint32)
}

// ProcessMetricsConfig configures ProcessMetrics.
type ProcessMetricsConfig struct {
	// Interval is how often Run reads the traced processes. Default 15s.
	Interval time.Duration
	// Expiry drops a process's series (OTLP) this long after it exited,
	// and a workload's (Prometheus) this long after its last process
	// exited. Default 5m.
	Expiry time.Duration
	// Now returns the time (tests). Default time.Now.
	Now func() time.Time
}

func (c *ProcessMetricsConfig) defaults() {
	if c.Interval <= 0 {
		c.Interval = 15 * time.Second
	}
	if c.Expiry <= 0 {
		c.Expiry = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// ProcessMetrics holds the resource metrics of the traced processes: read
// every interval, summed per workload (the RED metrics' identity, never
// the PID) for Prometheus, and per process (its resource, as on its spans)
// for OTLP. A workload's counters keep what its exited processes used, so
// they never go down while processes come and go; its series go away an
// Expiry after its last process exited. It is safe for concurrent use.
type ProcessMetrics struct {
	cfg    ProcessMetricsConfig
	traced func() []uint32
	procs  ProcessResolver
	read   UsageReader

	reads, failures prometheus.Counter
	cpu             prometheus.Counter // CPU of Run's reads

	mu        sync.Mutex
	live      map[uint32]*procSeries
	exited    []*procSeries        // until Expiry after their exit, for OTLP
	exitedAt  map[uint32]time.Time // PIDs that exited, until Expiry after
	workloads map[string]*resWorkload
	descs     map[resDescKey]*prometheus.Desc
}

// procSeries is one process's last reading.
type procSeries struct {
	pid     uint32
	proc    *span.Process
	w       *resWorkload
	first   time.Time // first read
	last    time.Time // last read
	usage   Usage
	exitAt  time.Time // zero while it runs
	sent    counters  // counters at the last delta export
	sentAt  time.Time
	anySent bool
}

// resWorkload is the sum of a workload's processes.
type resWorkload struct {
	key    string
	values []string // resourceKeys' values
	live   int
	start  time.Time
	seen   time.Time // last read of one of its processes
	gone   counters  // what its exited processes used
}

// NewProcessMetrics returns the resource metrics of the processes traced()
// lists, named by procs and read by read. reg receives its self-metrics
// (nil registers nothing); register the ProcessMetrics itself with the
// registry that serves /metrics.
func NewProcessMetrics(cfg ProcessMetricsConfig, traced func() []uint32, procs ProcessResolver, read UsageReader, reg prometheus.Registerer) (*ProcessMetrics, error) {
	cfg.defaults()
	m := &ProcessMetrics{
		cfg:    cfg,
		traced: traced,
		procs:  procs,
		read:   read,
		reads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "periscope_process_metrics_reads_total",
			Help: "Reads of a traced process's resource usage.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "periscope_process_metrics_read_failures_total",
			Help: "Reads of a traced process's resource usage that failed (the process exited, or /proc could not be read).",
		}),
		cpu: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "periscope_process_metrics_cpu_seconds_total",
			Help: "CPU time the agent spent reading the resource usage of traced processes, in seconds.",
		}),
		live:      make(map[uint32]*procSeries),
		exitedAt:  make(map[uint32]time.Time),
		workloads: make(map[string]*resWorkload),
		descs:     make(map[resDescKey]*prometheus.Desc),
	}
	if reg != nil {
		if err := reg.Register(m.reads); err != nil {
			return nil, err
		}
		if err := reg.Register(m.failures); err != nil {
			return nil, err
		}
		if err := reg.Register(m.cpu); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Run reads the traced processes every interval until ctx is done. It
// keeps its OS thread, so that the thread's CPU time around each Sample is
// what the reads cost (periscope_process_metrics_cpu_seconds_total).
func (m *ProcessMetrics) Run(ctx context.Context) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	m.timedSample()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.timedSample()
		}
	}
}

// timedSample samples and counts the CPU time this thread spent on it.
func (m *ProcessMetrics) timedSample() {
	before, ok := threadCPU()
	m.Sample()
	if after, ok2 := threadCPU(); ok && ok2 && after >= before {
		m.cpu.Add(after - before)
	}
}

// threadCPU is the CPU time of the calling OS thread, in seconds.
func threadCPU() (float64, bool) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds(), true
}

// Sample reads every traced process once. The reads happen outside the
// lock: a scrape never waits for /proc.
func (m *ProcessMetrics) Sample() {
	type reading struct {
		pid   uint32
		usage Usage
		proc  *span.Process
	}
	readAt := m.cfg.Now()
	pids := m.traced()
	readings := make([]reading, 0, len(pids))
	for _, pid := range pids {
		m.reads.Inc()
		u, err := m.read.Read(pid)
		if err != nil {
			m.failures.Inc()
			continue
		}
		readings = append(readings, reading{pid, u, m.procs.Process(pid)})
	}
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := make(map[uint32]bool, len(readings))
	for _, r := range readings {
		if at, ok := m.exitedAt[r.pid]; ok && !at.Before(readAt) {
			continue // read, then exited while this Sample read others: counted by the exit
		}
		seen[r.pid] = true
		m.update(r.pid, r.proc, r.usage, now)
	}
	for pid, ps := range m.live {
		if !seen[pid] {
			m.exit(ps, now) // exited, or no longer traced
		}
	}
	m.expire(now)
}

// update records a reading of pid; m.mu is held.
func (m *ProcessMetrics) update(pid uint32, proc *span.Process, u Usage, now time.Time) {
	key, values := workloadOf(proc)
	ps := m.live[pid]
	if ps != nil && (ps.w.key != key || ps.usage.counters().after(u.counters())) {
		m.exit(ps, now) // another program, or another process, under this PID
		ps = nil
	}
	if ps == nil {
		w := m.workloads[key]
		if w == nil {
			w = &resWorkload{key: key, values: values, start: now}
			m.workloads[key] = w
		}
		w.live++
		ps = &procSeries{pid: pid, w: w, first: now, sentAt: now}
		m.live[pid] = ps
	}
	ps.proc, ps.usage, ps.last = proc, u, now
	ps.w.seen = now
}

// ProcessExited implements discovery.Observer's exit half: the process's
// last reading goes into its workload's counters at once, so that a new
// process reusing the PID starts afresh.
func (m *ProcessMetrics) ProcessExited(pid uint32, at time.Time) {
	m.read.Forget(pid)
	m.mu.Lock()
	defer m.mu.Unlock()
	if ps := m.live[pid]; ps != nil {
		m.exit(ps, m.cfg.Now())
	}
}

// exit moves a process from the live ones to the exited ones; m.mu is
// held. What it used since its last reading is not known: at most one
// interval's worth.
func (m *ProcessMetrics) exit(ps *procSeries, now time.Time) {
	delete(m.live, ps.pid)
	m.read.Forget(ps.pid)
	ps.exitAt = now
	m.exitedAt[ps.pid] = now
	ps.w.live--
	ps.w.seen = now
	ps.w.gone.add(ps.usage.counters())
	m.exited = append(m.exited, ps)
}

// expire drops the processes and workloads whose expiry has passed; m.mu
// is held.
func (m *ProcessMetrics) expire(now time.Time) {
	kept := m.exited[:0]
	for _, ps := range m.exited {
		if now.Sub(ps.exitAt) < m.cfg.Expiry {
			kept = append(kept, ps)
		}
	}
	clear(m.exited[len(kept):])
	m.exited = kept
	for pid, at := range m.exitedAt {
		if now.Sub(at) >= m.cfg.Expiry {
			delete(m.exitedAt, pid)
		}
	}
	for key, w := range m.workloads {
		if w.live == 0 && now.Sub(w.seen) >= m.cfg.Expiry {
			delete(m.workloads, key)
		}
	}
}
