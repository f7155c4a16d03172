// Package preopen tells which TCP connections of a process may have
// carried requests before the agent's probes on it were in place.
//
// Go programs' requests are seen by uprobes (gohttp, gotls), which report
// no TCP sequence numbers and nothing of how a connection began: a
// keep-alive connection open before its process was probed has its
// requests counted from the first one seen, which another node's agent,
// which saw the connection from its start, numbers differently. Such
// connections must have no request ordinal (cross-node linking would
// answer with a wrong client span). A Table records, once a process's
// probes are in place, the connections the process has open then (from
// /proc/PID/fd and /proc/PID/net/tcp{,6}, read by procnet: no probe, no
// syscall hook); a connection is seen from its start when it is not one of those and its
// first request seen came after that record was taken. A connection that
// opened and closed between the probes' attach and the record is taken
// for one that may have been open before (an unlinked span, never a wrong
// parent).
package preopen

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/periscope-apm/periscope/discovery"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/internal/procnet"
)

// margin is added to the time a record was taken. The record's time is
// read from the kernel's clock (CLOCK_MONOTONIC, bpf_ktime_get_ns's)
// converted as the collectors convert their events' (ktime.Clock): two
// such conversions, each measured when its clock was made, differ by the
// error of those measurements (well under a microsecond; more only if the
// wall clock was stepped between the agent's start and its collectors').
const margin = 200 * time.Microsecond

// maxPerProcess bounds the connections recorded for a process: a process
// with more open when probed has none of its connections taken as seen
// from the start.
const maxPerProcess = 1 << 16

// Table holds, per probed process, the connections it had open when
// probed. It is safe for concurrent use.
type Table struct {
	procRoot string
	now      func() time.Time

	mu    sync.Mutex
	procs map[uint32]*record
	gone  []uint32 // exited processes, oldest first (sweep)
}

type record struct {
	taken  time.Time
	exited time.Time // zero while it runs
	all    bool      // too many connections to record: none is fresh
	open   map[events.Tuple]bool
}

// New returns an empty table reading processes under procRoot (/proc).
func New(procRoot string) *Table {
	clock := ktime.NewClock()
	return &Table{procRoot: procRoot, now: func() time.Time { return clock.Time(ktime.Now()) }, procs: make(map[uint32]*record)}
}

// Probed records the connections process pid has open now; it is called
// once probes on the process are in place, and again each time more are
// (the latest record counts). A process that cannot be read is left
// unrecorded: none of its connections is seen from the start.
func (t *Table) Probed(pid uint32) error {
	r, err := t.read(pid)
	if err != nil {
		t.mu.Lock()
		delete(t.procs, pid)
		t.mu.Unlock()
		return err
	}
	t.mu.Lock()
	t.procs[pid] = r
	t.mu.Unlock()
	return nil
}

// Exited says that process pid exited (or exec'd another program) at. Its
// record is kept exitLinger longer, for its events that the collectors'
// rings deliver after discovery's report of the exit; a record taken
// after at is the next program's, and stays.
func (t *Table) Exited(pid uint32, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := t.procs[pid]; r != nil && !r.taken.After(at) {
		r.exited = at
		t.gone = append(t.gone, pid)
	}
	t.sweep(at)
}

// exitLinger is how long the record of an exited process is kept.
const exitLinger = time.Minute

// sweep forgets the processes that exited exitLinger before now.
func (t *Table) sweep(now time.Time) {
	n := 0
	for _, pid := range t.gone {
		r := t.procs[pid]
		switch {
		case r == nil || r.exited.IsZero():
			// forgotten, or probed again as another program
		case now.Sub(r.exited) > exitLinger:
			delete(t.procs, pid)
		default:
			t.gone[n] = pid
			n++
		}
	}
	clear(t.gone[n:])
	t.gone = t.gone[:n]
}

// ProcessExited implements discovery.Observer.
func (t *Table) ProcessExited(pid uint32, at time.Time) { t.Exited(pid, at) }

// ProcessUpdated implements discovery.Observer: a process is recorded when
// probed (Probed), not when discovered.
func (t *Table) ProcessUpdated(discovery.Process, []discovery.Mapping) {}

// Len returns the number of processes recorded.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.procs)
}

// FromStart reports whether the connection tu of process pid, whose first
// request seen began at first, was seen from its start: the process was
// recorded, the connection was not open then, and first came after.
func (t *Table) FromStart(pid uint32, tu events.Tuple, first time.Time) bool {
	tu = events.Tuple{Local: unmap(tu.Local), Remote: unmap(tu.Remote)}
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.procs[pid]
	return r != nil && !r.all && !r.open[tu] && first.After(r.taken.Add(margin))
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// read records the connections of pid's socket descriptors: the sockets
// first, then the tables of its network namespace (a connection opened
// between the two is not in the record, and its first request comes
// after the record's time: it is fresh).
func (t *Table) read(pid uint32) (*record, error) {
	dir := filepath.Join(t.procRoot, strconv.FormatUint(uint64(pid), 10))
	inodes, err := socketInodes(filepath.Join(dir, "fd"))
	if err != nil {
		return nil, err
	}
	r := &record{open: make(map[events.Tuple]bool)}
	if len(inodes) > 0 {
		if err := procnet.Read(t.procRoot, pid, func(s procnet.Socket) bool { return r.add(s, inodes) }); err != nil {
			return nil, err
		}
	}
	r.taken = t.now()
	return r, nil
}

// socketInodes returns the inodes of the sockets among the descriptors in
// fdDir (/proc/PID/fd).
func socketInodes(fdDir string) (map[uint64]bool, error) {
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, err
	}
	inodes := make(map[uint64]bool)
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := procnet.SocketInode(target); ok {
			inodes[ino] = true
		}
	}
	return inodes, nil
}

// add records s if it is a connection (not a listener) of one of
// inodes, and reports false once the record is full (then none of the
// process's connections is fresh).
func (r *record) add(s procnet.Socket, inodes map[uint64]bool) bool {
	if s.State == procnet.Listen || !inodes[s.Inode] {
		return true
	}
	if len(r.open) >= maxPerProcess {
		r.all = true
		return false
	}
	r.open[events.Tuple{Local: s.Local, Remote: s.Remote}] = true
	return true
}
