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

const returnProg = "ssl_leave"
