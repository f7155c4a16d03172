package discovery

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/shirou/gopsutil/v4/common"
	"github.com/shirou/gopsutil/v4/process"
	"golang.org/x/sys/unix"

	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/symbols"
)

// Mapping is an executable file mapped by a process.
type Mapping struct {
	// Path is the file's path inside the process's mount namespace.
	Path string
	// File is the device and inode /proc/PID/maps reports.
	File symbols.FileID
}

// Process is a process and the executable files it maps.
type Process struct {
	PID  uint32
	PPID uint32
	// Selected says whether the process selection includes it. Observers
	// learn from every process (which files hold OpenSSL, say) but put
	// probes only on selected ones.
	Selected bool
	// Exe is the executable's path inside the process's mount namespace.
	Exe string
	// Root is the directory through which the agent reaches the
	// process's files (/proc/PID/root), so files in containers resolve.
	Root string
	Maps []Mapping
	// Read is when the process was read (CLOCK_MONOTONIC ns, taken just
	// before its executable): Selected judges the program it ran then.
	Read uint64
}

// HostPath returns the path through which the agent opens p's file path.
func (p Process) HostPath(path string) string { return filepath.Join(p.Root, path) }

func procDir(procRoot string, pid uint32) string {
	return filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10))
}

// readExe returns the path of the executable of the process whose /proc
// directory is dir, without the " (deleted)" the kernel appends to a
// replaced file's.
func readExe(dir string) (string, error) {
	exe, err := os.Readlink(filepath.Join(dir, "exe"))
	return strings.TrimSuffix(exe, " (deleted)"), err
}

// readProcess reads what the table keeps of a process.
func readProcess(procRoot string, pid uint32) (Process, error) {
	dir := procDir(procRoot, pid)
	read := ktime.Now()
	exe, err := readExe(dir)
	if err != nil {
		return Process{}, fmt.Errorf("process %d: %w", pid, err)
	}
	maps, err := readMaps(procRoot, pid)
	if err != nil {
		return Process{}, err
	}
	return Process{
		PID:  pid,
		PPID: readPPID(dir),
		Exe:  exe,
		Root: filepath.Join(dir, "root"),
		Maps: maps,
		Read: read,
	}, nil
}

// readPPID reads the parent's PID from /proc/PID/stat. It runs for every
// exec event, so it stays hand-written: gopsutil's Ppid parses the whole
// stat line and looks the process up first, about ten times the cost
// (BenchmarkProcPPID: 17–37 µs here, 181–296 µs with gopsutil, same VM).
func readPPID(dir string) uint32 {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return 0
	}
	// comm may contain spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.ParseUint(f[1], 10, 32)
	return uint32(ppid)
}

// readMaps lists the distinct executable, file-backed mappings of a
// process. It runs for every exec and executable mmap event, and gopsutil
// has no equivalent: its MemoryMaps reads smaps (which makes the kernel
// walk every page) and drops the device and inode the table keys on
// (BenchmarkProcMaps: 62–183 µs here, 1.2–2.5 ms with gopsutil).
func readMaps(procRoot string, pid uint32) ([]Mapping, error) {
	f, err := os.Open(filepath.Join(procDir(procRoot, pid), "maps"))
	if err != nil {
		return nil, fmt.Errorf("process %d maps: %w", pid, err)
	}
	defer f.Close()
	var out []Mapping
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// Most lines are not executable: they are skipped without making
		// a string of them (this runs for every executable mmap on the
		// node, and was most of the agent's allocations).
		if !executableFileLine(sc.Bytes()) {
			continue
		}
		m, ok := parseMapsLine(sc.Text())
		if !ok || slices.ContainsFunc(out, func(o Mapping) bool { return o.File == m.File }) {
			continue
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("process %d maps: %w", pid, err)
	}
	return out, nil
}

// executableFileLine is a cheap first look at a line of /proc/PID/maps:
// whether its second field (split as strings.Fields splits) says executable
// and a path may follow, which parseMapsLine needs to keep it.
func executableFileLine(line []byte) bool {
	var perms []byte
	i := 0
	for range 2 {
		i = skipSpace(line, i, true)
		start := i
		i = skipSpace(line, i, false)
		if start == i {
			return false
		}
		perms = line[start:i]
	}
	return len(perms) >= 3 && perms[2] == 'x' && bytes.IndexByte(line[i:], '/') >= 0
}

// skipSpace returns the index of the first rune of line from i on that is
// not (space true) or is (space false) white space.
func skipSpace(line []byte, i int, space bool) int {
	for i < len(line) {
		r, n := utf8.DecodeRune(line[i:])
		if unicode.IsSpace(r) != space {
			break
		}
		i += n
	}
	return i
}

// parseMapsLine parses one line of /proc/PID/maps, keeping executable
// mappings of files:
//
//	7f2c4a9d1000-7f2c4aa3f000 r-xp 00022000 fd:01 1315 /usr/lib/x86_64-linux-gnu/libssl.so.3
func parseMapsLine(line string) (Mapping, bool) {
	f := strings.Fields(line)
	if len(f) < 6 || len(f[1]) < 3 || f[1][2] != 'x' || !strings.HasPrefix(f[5], "/") {
		return Mapping{}, false
	}
	major, minor, ok := strings.Cut(f[3], ":")
	if !ok {
		return Mapping{}, false
	}
	maj, err1 := strconv.ParseUint(major, 16, 32)
	min, err2 := strconv.ParseUint(minor, 16, 32)
	ino, err3 := strconv.ParseUint(f[4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || ino == 0 {
		return Mapping{}, false
	}
	path := strings.Join(f[5:], " ")
	if strings.HasSuffix(path, " (deleted)") {
		return Mapping{}, false
	}
	return Mapping{
		Path: path,
		File: symbols.FileID{Dev: unix.Mkdev(uint32(maj), uint32(min)), Ino: ino},
	}, true
}

// listPIDs returns the processes (not threads) in procRoot, with
// gopsutil's process package: it lists /proc as fast as a hand-written
// loop did (BenchmarkProcList: 268–383 µs against 209–436 µs on a busy
// 2-core VM, ~200 processes), and runs at start and on rescans only.
func listPIDs(procRoot string) ([]uint32, error) {
	ctx := context.WithValue(context.Background(), common.EnvKey, common.EnvMap{common.HostProcEnvKey: procRoot})
	list, err := process.PidsWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	pids := make([]uint32, 0, len(list))
	for _, pid := range list {
		if pid > 0 {
			pids = append(pids, uint32(pid))
		}
	}
	return pids, nil
}

// Programs reads the executable of every running process (PID, Exe, Read;
// no mappings): a first look, a few microseconds per process, for what
// must be decided before the full scan (Tracker.Start) reaches each one.
func Programs(procRoot string) ([]Process, error) {
	pids, err := listPIDs(procRoot)
	if err != nil {
		return nil, err
	}
	out := make([]Process, 0, len(pids))
	for _, pid := range pids {
		read := ktime.Now()
		exe, err := readExe(procDir(procRoot, pid))
		if err != nil {
			continue // gone, or a kernel thread
		}
		out = append(out, Process{PID: pid, Exe: exe, Read: read})
	}
	return out, nil
}

// Alive reports whether the process can still be reached through Root
// (false once it has exited and been reaped).
func (p Process) Alive() bool {
	if p.Root == "" {
		return false
	}
	_, err := os.Stat(filepath.Dir(p.Root))
	return err == nil
}
