package sockets

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// pidMaxLimit is the most thread IDs a 64-bit kernel hands out
// (PID_MAX_LIMIT).
const pidMaxLimit = 4 << 20

// sizeThreadMaps sizes the per-thread bitmap of the programs (adopted: a
// bit per thread ID) to the kernel's pid_max. A thread ID beyond, after
// pid_max is raised, is not adopted.
func sizeThreadMaps(spec *ebpf.CollectionSpec, procRoot string) error {
	words := uint32(pidMaxLimit / 64)
	if b, err := os.ReadFile(filepath.Join(procRoot, "sys/kernel/pid_max")); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32); err == nil && n > 0 && n <= pidMaxLimit {
			words = uint32((n + 63) / 64)
		}
	}
	m := spec.Maps["adopted"]
	if m == nil {
		return fmt.Errorf("sockets spec has no map adopted")
	}
	m.MaxEntries = words
	return nil
}

// threadBits accumulates bits of a per-thread bitmap that user space sets
// (adopted): every word is written with all the bits ever set in it, so a
// write never clears a bit the programs have yet to see.
type threadBits map[uint32]uint64

// set sets tid's bit in m.
func (b threadBits) set(m *ebpf.Map, tid uint32) error {
	w := tid / 64
	b[w] |= 1 << (tid % 64)
	if err := m.Update(w, b[w], ebpf.UpdateAny); err != nil {
		return fmt.Errorf("mark thread %d: %w", tid, err)
	}
	return nil
}

// cleared reports whether the programs have cleared in m every bit b set
// (an unreadable word counts as cleared: nothing more can be learnt).
func (b threadBits) cleared(m *ebpf.Map) bool {
	for w, set := range b {
		var v uint64
		if err := m.Lookup(w, &v); err == nil && v&set != 0 {
			return false
		}
	}
	return true
}

// shareCallSlots makes threads hash to the first n of the thread_calls
// slots (n a power of two; 0: all of them).
func shareCallSlots(spec *ebpf.CollectionSpec, n int) error {
	if n == 0 {
		return nil
	}
	if max := int(spec.Maps["thread_calls"].MaxEntries); n < 0 || n > max || n&(n-1) != 0 {
		return fmt.Errorf("call slots: %d is not a power of two up to %d", n, max)
	}
	if err := spec.Variables["call_slot_mask"].Set(uint32(n - 1)); err != nil {
		return fmt.Errorf("set call_slot_mask: %w", err)
	}
	return nil
}

// AtomicsCmpxchg reports whether the running kernel's BPF has atomic
// compare-and-exchange (Linux 5.12), which the fd_other cache and the
// per-thread call slots of the programs need; without it they are left out
// (the code is dead for the verifier): every read or write looks its
// descriptor up in fds, and every call goes through the calls hash. It is
// the collector's own decision at Start, exported so that tests expecting
// either behaviour ask it rather than repeat it.
func AtomicsCmpxchg() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	major, minor, ok := kernelRelease(unix.ByteSliceToString(u.Release[:]))
	return ok && (major > 5 || major == 5 && minor >= 12)
}

// kernelRelease parses the major and minor numbers of a kernel release
// ("6.18.0-1-amd64").
func kernelRelease(rel string) (major, minor int, ok bool) {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	digits := parts[1]
	if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = digits[:i]
	}
	minor, err2 := strconv.Atoi(digits)
	return major, minor, err1 == nil && err2 == nil
}
