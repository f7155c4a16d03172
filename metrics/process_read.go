package metrics

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/common"
	"github.com/shirou/gopsutil/v4/process"
)

// ProcReader reads resource usage from /proc with gopsutil's process
// package: CPU times from /proc/PID/stat, memory from statm, threads and
// context switches from status, file descriptors from the fd directory.
// It keeps one gopsutil Process per PID (which caches the start time) until
// Forget. It is safe for concurrent use.
type ProcReader struct {
	ctx context.Context // carries the proc root for gopsutil

	mu    sync.Mutex
	procs map[uint32]*process.Process
}

// NewProcReader returns a reader of the proc file system at procRoot (""
// means /proc).
func NewProcReader(procRoot string) *ProcReader {
	// /proc/PID/stat gives start times in ticks since boot; without this
	// gopsutil reads /proc/stat for the boot time at every read. The boot
	// time does not change while the agent runs. (A setting of gopsutil's
	// package, the same for every reader.)
	process.EnableBootTimeCache(true)
	ctx := context.Background()
	if procRoot != "" {
		ctx = context.WithValue(ctx, common.EnvKey, common.EnvMap{common.HostProcEnvKey: procRoot})
	}
	return &ProcReader{ctx: ctx, procs: make(map[uint32]*process.Process)}
}

// Read implements UsageReader.
func (r *ProcReader) Read(pid uint32) (Usage, error) {
	p, err := r.process(pid)
	if err != nil {
		return Usage{}, err
	}
	times, err := p.TimesWithContext(r.ctx)
	if err != nil {
		return Usage{}, fmt.Errorf("process %d cpu times: %w", pid, err)
	}
	mem, err := p.MemoryInfoWithContext(r.ctx)
	if err != nil {
		return Usage{}, fmt.Errorf("process %d memory: %w", pid, err)
	}
	// Context switches are the main thread's: /proc/PID/status counts
	// that thread only, and a sum over task/*/status would not be a
	// counter (it drops when a thread exits). gopsutil reads status once
	// per call.
	switches, err := p.NumCtxSwitchesWithContext(r.ctx)
	if err != nil {
		return Usage{}, fmt.Errorf("process %d context switches: %w", pid, err)
	}
	threads, err := p.NumThreadsWithContext(r.ctx)
	if err != nil {
		return Usage{}, fmt.Errorf("process %d threads: %w", pid, err)
	}
	fds, err := p.NumFDsWithContext(r.ctx)
	if err != nil {
		return Usage{}, fmt.Errorf("process %d file descriptors: %w", pid, err)
	}
	u := Usage{
		UserSeconds:   times.User,
		SystemSeconds: times.System,
		RSS:           mem.RSS,
		Virtual:       mem.VMS,
		Threads:       int64(threads),
		FDs:           int64(fds),
		Voluntary:     switches.Voluntary,
		Involuntary:   switches.Involuntary,
	}
	if ms, err := p.CreateTimeWithContext(r.ctx); err == nil && ms > 0 {
		u.Started = time.UnixMilli(ms)
	}
	return u, nil
}

// process returns the gopsutil Process of pid, made on first use.
func (r *ProcReader) process(pid uint32) (*process.Process, error) {
	r.mu.Lock()
	p := r.procs[pid]
	r.mu.Unlock()
	if p != nil {
		return p, nil
	}
	p, err := process.NewProcessWithContext(r.ctx, int32(pid))
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	r.mu.Lock()
	r.procs[pid] = p
	r.mu.Unlock()
	return p, nil
}

// Forget implements UsageReader.
func (r *ProcReader) Forget(pid uint32) {
	r.mu.Lock()
	delete(r.procs, pid)
	r.mu.Unlock()
}
