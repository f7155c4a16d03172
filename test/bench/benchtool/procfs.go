package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat.
var clockTicks = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			return v
		}
	}
	return 100
}()

// procStat holds the fields of /proc/PID/stat the benchmark uses.
type procStat struct {
	ppid       int
	utime      uint64 // clock ticks, all threads
	stime      uint64
	cutime     uint64 // of its children it waited for
	cstime     uint64
	comm       string
	startTicks uint64
}

// parseProcStat parses one /proc/PID/stat line. The command name is in
// parentheses and may itself contain spaces and parentheses, so fields are
// counted from the last ')'.
func parseProcStat(line string) (procStat, error) {
	open := strings.IndexByte(line, '(')
	end := strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("malformed stat line %q", line)
	}
	f := strings.Fields(line[end+1:])
	// f[0] is field 3 (state); utime is field 14, stime 15, cutime 16,
	// cstime 17, starttime 22.
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("short stat line %q", line)
	}
	var s procStat
	var err error
	s.comm = line[open+1 : end]
	if s.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, fmt.Errorf("stat ppid: %w", err)
	}
	if s.utime, err = strconv.ParseUint(f[11], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("stat utime: %w", err)
	}
	if s.stime, err = strconv.ParseUint(f[12], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("stat stime: %w", err)
	}
	if s.cutime, err = strconv.ParseUint(f[13], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("stat cutime: %w", err)
	}
	if s.cstime, err = strconv.ParseUint(f[14], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("stat cstime: %w", err)
	}
	if s.startTicks, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("stat starttime: %w", err)
	}
	return s, nil
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(strings.TrimSpace(string(b)))
}

// cpuTicks is utime+stime of pid.
func cpuTicks(pid int) (uint64, error) {
	s, err := readProcStat(pid)
	if err != nil {
		return 0, err
	}
	return s.utime + s.stime, nil
}

// statusKiB reads a "Key:   N kB" line of /proc/PID/status.
func statusKiB(pid int, key string) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusKiB(b, key)
}

func parseStatusKiB(b []byte, key string) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			break
		}
		return strconv.ParseUint(f[0], 10, 64)
	}
	return 0, fmt.Errorf("no %s in /proc/PID/status", key)
}

// childrenOf lists the PIDs whose parent is ppid.
func childrenOf(ppid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		s, err := readProcStat(pid)
		if err == nil && s.ppid == ppid {
			out = append(out, pid)
		}
	}
	return out
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// load1 is the one-minute load average.
func load1() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// bpfProgIDs returns the IDs of the BPF programs that pid holds, directly (a
// program fd) or through a link (a link fd's fdinfo names its program).
func bpfProgIDs(pid int) (map[uint32]bool, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	ids := make(map[uint32]bool)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if id, ok := fdinfoProgID(b); ok {
			ids[id] = true
		}
	}
	return ids, nil
}

func fdinfoProgID(b []byte) (uint32, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == "prog_id" {
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			return uint32(id), err == nil
		}
	}
	return 0, false
}

// otherPeriscopes lists processes other than exclude whose executable is
// named periscope: other agents would put their own probes on nginx and wrk.
func otherPeriscopes(exclude int) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == exclude || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue
		}
		base := filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
		if strings.HasPrefix(base, "periscope") && base != "periscope-bench" {
			out = append(out, fmt.Sprintf("%d (%s)", pid, exe))
		}
	}
	return out
}
