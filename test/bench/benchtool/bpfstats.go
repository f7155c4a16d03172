package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// enableBPFStats turns on the kernel's per-program run_cnt/run_time_ns for as
// long as the returned closer (a BPF_ENABLE_STATS fd) is open. Unlike writing
// kernel.bpf_stats_enabled, the fd is reference-counted by the kernel, so it
// neither clobbers nor is clobbered by anyone else toggling the sysctl, and it
// goes away with the process even on SIGKILL. Falls back to the sysctl.
func enableBPFStats() (io.Closer, string, error) {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err == nil {
		return c, "BPF_ENABLE_STATS fd (same effect as sysctl kernel.bpf_stats_enabled=1, undone on exit)", nil
	}
	const path = "/proc/sys/kernel/bpf_stats_enabled"
	old, rerr := os.ReadFile(path)
	if rerr != nil {
		return nil, "", fmt.Errorf("enable BPF stats: %v; read %s: %w", err, path, rerr)
	}
	if werr := os.WriteFile(path, []byte("1\n"), 0o644); werr != nil {
		return nil, "", fmt.Errorf("enable BPF stats: %v; write %s: %w", err, path, werr)
	}
	return closerFunc(func() error { return os.WriteFile(path, old, 0o644) }),
		"sysctl kernel.bpf_stats_enabled=1 (restored on exit)", nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// bpfProg is one entry of `bpftool -j prog show`. bpftool omits run_cnt and
// run_time_ns while they are zero.
type bpfProg struct {
	ID        uint32 `json:"id"`
	Type      string `json:"type"`
	Name      string `json:"name"`
	RunCnt    uint64 `json:"run_cnt"`
	RunTimeNs uint64 `json:"run_time_ns"`
}

func bpftoolProgs() ([]bpfProg, error) {
	out, err := exec.Command("bpftool", "-j", "prog", "show").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("bpftool -j prog show: %w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("bpftool -j prog show: %w", err)
	}
	var progs []bpfProg
	if err := json.Unmarshal(out, &progs); err != nil {
		return nil, fmt.Errorf("parse bpftool output: %w", err)
	}
	return progs, nil
}

// probeCounts sums run_cnt over the agent's programs: uprobes (programs of
// type kprobe, named ssl_*) split into entry programs and the shared return
// program ssl_leave; everything else (syscall and sched tracepoints). It also
// sums the uprobe programs named ssl_* that are not our agent's ("foreign":
// another agent on this machine whose probes fire in nginx or wrk would
// distort both configurations).
type probeCounts struct {
	entry, ret  uint64            // ours
	tracepoints uint64            // ours, every program that is not a uprobe
	bpfTimeNs   uint64            // ours: time inside all the programs (not the trap)
	byName      map[string]uint64 // run_cnt
	timeByName  map[string]uint64 // run_time_ns
	uprobeNames map[string]bool
	foreign     uint64 // a delta: see sub
	foreignByID map[uint32]uint64
	progsSeen   []string
}

func (p probeCounts) uprobes() uint64 { return p.entry + p.ret }

const returnProg = "ssl_leave"

func isUprobe(p bpfProg) bool { return p.Type == "kprobe" && strings.HasPrefix(p.Name, "ssl_") }

func countProbes(progs []bpfProg, ours map[uint32]bool) probeCounts {
	c := probeCounts{foreignByID: make(map[uint32]uint64), byName: make(map[string]uint64), timeByName: make(map[string]uint64), uprobeNames: make(map[string]bool)}
	for _, p := range progs {
		if !ours[p.ID] {
			if isUprobe(p) {
				c.foreignByID[p.ID] = p.RunCnt
			}
			continue
		}
		c.progsSeen = append(c.progsSeen, p.Name+"("+p.Type+")")
		c.byName[p.Name] += p.RunCnt
		c.timeByName[p.Name] += p.RunTimeNs
		if isUprobe(p) {
			c.uprobeNames[p.Name] = true
		}
		c.bpfTimeNs += p.RunTimeNs
		switch {
		case isUprobe(p) && p.Name == returnProg:
			c.ret += p.RunCnt
		case isUprobe(p):
			c.entry += p.RunCnt
		default:
			c.tracepoints += p.RunCnt
		}
	}
	return c
}

// sub is p-q. Other owners' programs come and go between two samples: a
// program that appeared meanwhile counts in full, one that went away is lost.
func (p probeCounts) sub(q probeCounts) probeCounts {
	var foreign uint64
	for id, n := range p.foreignByID {
		if before, ok := q.foreignByID[id]; ok && before <= n {
			foreign += n - before
		} else if !ok {
			foreign += n
		}
	}
	byName := make(map[string]uint64, len(p.byName))
	for name, n := range p.byName {
		byName[name] = n - min(n, q.byName[name])
	}
	timeByName := make(map[string]uint64, len(p.timeByName))
	for name, n := range p.timeByName {
		timeByName[name] = n - min(n, q.timeByName[name])
	}
	return probeCounts{
		entry:       p.entry - q.entry,
		ret:         p.ret - q.ret,
		tracepoints: p.tracepoints - q.tracepoints,
		bpfTimeNs:   p.bpfTimeNs - q.bpfTimeNs,
		byName:      byName,
		timeByName:  timeByName,
		uprobeNames: p.uprobeNames,
		foreign:     foreign,
		progsSeen:   p.progsSeen,
	}
}
