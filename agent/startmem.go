package agent

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// startGCPercent is the garbage collector's target while the agent starts:
// loading the BPF objects (the kernel's BTF, relocations, verifier logs)
// makes tens of MiB of garbage in a few seconds, and at the default target
// (GOGC=100) the heap grew to twice what was live before a collection, a
// peak that stayed the agent's highest resident memory (VmHWM) under load
// (test/bench/results-e2e-cpu.md).
const startGCPercent = 25

// setMaxProcs applies the max_procs option: n > 0 caps the processors the
// agent's goroutines run on at once; 0 leaves Go's default.
func setMaxProcs(log *slog.Logger, n int) {
	if n > 0 {
		prev := runtime.GOMAXPROCS(n)
		log.Debug("max_procs", "gomaxprocs", n, "was", prev)
	}
}

// lowGCDuringStart lowers the collector's target for the start (unless
// GOGC asks for less, or for none) and returns what restores it, handing
// the start's freed pages back to the system.
func lowGCDuringStart() (restore func()) {
	prev := debug.SetGCPercent(startGCPercent)
	if prev < startGCPercent { // GOGC=off is -1
		debug.SetGCPercent(prev)
		return func() {}
	}
	return func() {
		debug.SetGCPercent(prev)
		debug.FreeOSMemory()
	}
}

// dropStartPages hands back to the kernel the pages of the agent's own
// executable that the start touched (BTF loading, the collectors' set-up,
// package initialisers): the kernel maps file pages 16 at a time around
// each fault, and without this ~26 MiB of the executable stayed resident
// for good, on top of the rings each collector maps as it starts (the
// agent's peak RSS was this start). It runs after each collector's start
// and once the agent is ready. MADV_PAGEOUT reclaims them; the code and
// tables the agent still runs fault back in as it uses them.
func dropStartPages(log *slog.Logger) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		log.Debug("drop start pages", "err", err)
		return
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		log.Debug("drop start pages", "err", err)
		return
	}
	var dropped uint64
	for _, line := range strings.Split(string(maps), "\n") {
		start, end, ok := readOnlyMapping(line, exe)
		if !ok {
			continue
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, start, end-start, unix.MADV_PAGEOUT); errno != 0 {
			log.Debug("drop start pages", "err", errno) // before Linux 5.4
			return
		}
		dropped += uint64(end - start)
	}
	log.Debug("dropped start pages", "bytes", dropped)
}

// readOnlyMapping parses a /proc/PID/maps line and reports the range of a
// mapping of file exe that is not writable (text, read-only data).
func readOnlyMapping(line, exe string) (start, end uintptr, ok bool) {
	f := strings.Fields(line)
	if len(f) < 6 || f[5] != exe || strings.Contains(f[1], "w") {
		return 0, 0, false
	}
	lo, hi, found := strings.Cut(f[0], "-")
	s, err1 := strconv.ParseUint(lo, 16, 64)
	e, err2 := strconv.ParseUint(hi, 16, 64)
	if !found || err1 != nil || err2 != nil || e <= s {
		return 0, 0, false
	}
	return uintptr(s), uintptr(e), true
}
