package sockets

import (
	"encoding/binary"
	"log/slog"
	"sync"
	"time"

	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/internal/wire"
)

// With a process selection, the kernel traces a process discovery has not
// decided on yet (a program exec'd a moment ago, a child of an undecided
// parent), so that the first requests of a short-lived selected client are
// not missed. Its records are held here until discovery decides: handed on
// if it is selected, dropped (and counted) if not. Handing them on at once
// would let a program that is not selected (curl) become a span, or the
// parent of a selected server's span by 4-tuple.
//
// A decision is a verdict on the program a process ran at a time (at): the
// time of the exec marker in this ring that started the program, or of the
// /proc read the verdict comes from. The ring tells which program sent a
// record: the latest exec record of its process read before it (start). The
// records of a program are judged by the first verdict at or after its
// start and before the next program's. A verdict on an exec comes with the
// time of discovery's record of it, which is stamped before this ring's
// marker of the same exec (the agent attaches discovery's program first:
// discovery.Tracker.Attach): it judges the program the first marker at or
// after that time started (decideExec), once that marker is read. A forked child runs its parent's program and inherits its
// verdict (the kernel reports the fork in the ring, before any record of
// the child), at once or when the parent's comes.
//
// While a record is held, the progress the correlator sees for this ring is
// limited to its time (ktime.Progress.Limit): a peer waiting for it is not
// given up on. Holding is bounded: a process undecided for holdAge, or the
// oldest held process when holdBytes are held, is dropped and counted as
// undecided (with a selection, a program nobody decided on is not
// reported), and its later records are dropped until a verdict comes.
type hold struct {
	forward func([]byte) // hands a record on
	drop    func(reason string)
	limit   *ktime.Progress // nil: none to limit
	log     *slog.Logger    // nil: none
	// maxBytes and maxAge (ns) bound what is held.
	maxBytes int
	maxAge   uint64

	// markersFrom: the kernel time before the collector's exec marker
	// was attached. An exec before it has no marker in the ring.
	markersFrom uint64

	mu      sync.Mutex
	procs   map[uint32]*holdProc
	waiting map[uint32]*holdProc // those holding records
	orphans map[uint32]*holdProc // forked by an undecided parent, undecided
	leaving map[uint32]uint64    // processes discovery saw exit: when
	bytes   int
}

const (
	holdBytes = 4 << 20
	holdAge   = uint64(2 * time.Second)
	// maxVerdicts is how many verdicts, exec markers and verdicts
	// waiting for their marker a process keeps: those of the programs
	// whose records may still come.
	maxVerdicts = 8
)

type verdict struct {
	at       uint64
	selected bool
	expired  bool // given when the hold ran out: a real verdict replaces it
}

type holdProc struct {
	verdicts []verdict // by at
	starts   []uint64  // times of the latest exec records read
	execs    []verdict // verdicts on execs whose marker is not read yet
	held     []heldRecord
	exited   bool
	// parent, forkAt and parentStart name the program an orphan was
	// forked from.
	parent              uint32
	forkAt, parentStart uint64
}

// start returns the time of the latest exec record read (0: none).
func (p *holdProc) start() uint64 {
	if len(p.starts) == 0 {
		return 0
	}
	return p.starts[len(p.starts)-1]
}

type heldRecord struct {
	ts, start uint64
	raw       []byte
	// control: exec and exit markers, handed on whatever the verdict,
	// without one, once nothing before them is held.
	control bool
}

func newHold(forward func([]byte), drop func(string), limit *ktime.Progress) *hold {
	return &hold{forward: forward, drop: drop, limit: limit, maxBytes: holdBytes, maxAge: holdAge,
		procs: make(map[uint32]*holdProc), waiting: make(map[uint32]*holdProc), orphans: make(map[uint32]*holdProc), leaving: make(map[uint32]uint64)}
}

// judge returns the verdict on the program p started at start, that ran
// until next (0: p's current program).
func (p *holdProc) judge(start, next uint64) (verdict, bool) {
	for _, v := range p.verdicts {
		if v.at >= start && (next == 0 || v.at < next) {
			return v, true
		}
	}
	return verdict{}, false
}

// next returns when the program p started at start ended (0: it runs).
func (p *holdProc) next(start uint64) uint64 {
	for _, r := range p.held {
		if r.start > start {
			return r.start
		}
	}
	if p.start() > start {
		return p.start()
	}
	return 0
}

// execStart returns the start of the program the first exec marker at or
// after at started, if it was read.
func (p *holdProc) execStart(at uint64) (uint64, bool) {
	for _, s := range p.starts {
		if s >= at {
			return s, true
		}
	}
	return 0, false
}

// add records a verdict, keeping the latest maxVerdicts; a real one
// replaces those given on expiry since start.
func (p *holdProc) add(v verdict) {
	vs := p.verdicts[:0]
	for _, o := range p.verdicts {
		if !(o.expired && !v.expired && o.at >= p.start()) {
			vs = append(vs, o)
		}
	}
	i := len(vs)
	for i > 0 && vs[i-1].at > v.at {
		i--
	}
	vs = append(vs, verdict{})
	copy(vs[i+1:], vs[i:])
	vs[i] = v
	if len(vs) > maxVerdicts {
		vs = vs[len(vs)-maxVerdicts:]
	}
	p.verdicts = vs
}

// A fork record is a struct proc_event: the header, the parent's PID.
var offForkPPID = wire.HeaderSize

// record takes a record read from the ring.
func (h *hold) record(hd wire.Header, raw []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hd.Type == wire.EventFork {
		if len(raw) >= wire.ProcEventSize {
			h.fork(hd.PID, binary.NativeEndian.Uint32(raw[offForkPPID:]), hd.TS)
		}
		return
	}
	p := h.proc(hd.PID)
	control := hd.Type == wire.EventExec || hd.Type == wire.EventExit
	if len(p.held) == 0 {
		v, ok := p.judge(p.start(), 0)
		if ok || control {
			h.pass(v, control, raw)
			h.after(hd, p)
			return
		}
	}
	p.held = append(p.held, heldRecord{ts: hd.TS, start: p.start(), raw: append([]byte(nil), raw...), control: control})
	h.bytes += len(raw)
	h.waiting[hd.PID] = p
	h.after(hd, p)
	for h.bytes > h.maxBytes {
		h.expireOldest()
	}
	h.setLimit()
}

// after moves p past a marker: an exec starts another program, an exit
// ends the process (forgotten once nothing of it is held).
func (h *hold) after(hd wire.Header, p *holdProc) {
	switch hd.Type {
	case wire.EventExec:
		p.starts = keepLast(append(p.starts, hd.TS))
		execs := p.execs[:0]
		for _, v := range p.execs {
			if v.at <= hd.TS {
				v.at = hd.TS
				p.add(v)
			} else {
				execs = append(execs, v)
			}
		}
		p.execs = execs
	case wire.EventExit:
		p.exited = true
		delete(h.orphans, hd.PID)
		delete(h.leaving, hd.PID)
		if len(p.held) == 0 {
			delete(h.procs, hd.PID)
		}
	}
}

// fork starts process child with its parent's verdict, when there is one.
// Verdicts on child from before the fork were on an earlier process of
// that ID.
func (h *hold) fork(child, parent uint32, at uint64) {
	c := &holdProc{}
	if old := h.procs[child]; old != nil && len(old.held) == 0 {
		for _, v := range old.verdicts {
			if v.at >= at {
				c.verdicts = append(c.verdicts, v)
			}
		}
	} else if old != nil {
		return // records of the earlier process still wait: let them
	}
	delete(h.leaving, child)
	delete(h.orphans, child)
	h.procs[child] = c
	p := h.procs[parent]
	if p == nil {
		p = h.proc(parent)
	}
	if v, ok := p.judge(p.start(), 0); ok {
		v.at = at
		c.add(v)
		return
	}
	c.parent, c.forkAt, c.parentStart = parent, at, p.start()
	h.orphans[child] = c
}

// adopt gives the orphans of parent p the verdict on the program they were
// forked from, once there is one, and so on down to their own orphans.
func (h *hold) adopt(parent uint32, p *holdProc) {
	type proc struct {
		pid uint32
		p   *holdProc
	}
	for todo := []proc{{parent, p}}; len(todo) > 0; {
		parent, p := todo[0].pid, todo[0].p
		todo = todo[1:]
		for pid, c := range h.orphans {
			if c.parent != parent {
				continue
			}
			v, ok := p.judge(c.parentStart, p.next(c.parentStart))
			if !ok {
				continue
			}
			delete(h.orphans, pid)
			v.at = c.forkAt
			c.add(v)
			h.release(pid, c)
			todo = append(todo, proc{pid, c})
		}
	}
}

// proc returns the state of process pid, made on first use.
func (h *hold) proc(pid uint32) *holdProc {
	p := h.procs[pid]
	if p == nil {
		p = &holdProc{}
		h.procs[pid] = p
	}
	return p
}

// pass hands a record on or drops it by verdict v.
func (h *hold) pass(v verdict, control bool, raw []byte) {
	switch {
	case v.selected || control:
		h.forward(raw)
	case v.expired:
		h.drop("undecided")
	default:
		h.drop("unselected")
	}
}

// keepLast keeps the latest maxVerdicts of s.
func keepLast[T any](s []T) []T {
	if len(s) > maxVerdicts {
		s = s[len(s)-maxVerdicts:]
	}
	return s
}

// decide records discovery's verdict on process pid's program at time at
// and settles what it holds.
func (h *hold) decide(pid uint32, selected bool, at uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.settle(pid, h.proc(pid), verdict{at: at, selected: selected})
}

// decideExec records discovery's verdict on the program process pid
// exec'd at time at (discovery's record of the exec, stamped before this
// ring's marker of it): the verdict on the program the first marker at or
// after at started, now if it was read, else when it is. An exec from
// before the marker was attached has none: the ring sees the program it
// started as the one running at that time.
func (h *hold) decideExec(pid uint32, selected bool, at uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.proc(pid)
	v := verdict{at: at, selected: selected}
	if at < h.markersFrom {
		h.settle(pid, p, v)
		return
	}
	if s, ok := p.execStart(at); ok {
		v.at = s
		h.settle(pid, p, v)
		return
	}
	delete(h.leaving, pid)
	p.execs = keepLast(append(p.execs, v))
}

// settle records verdict v on process pid and settles what it holds.
func (h *hold) settle(pid uint32, p *holdProc, v verdict) {
	delete(h.leaving, pid) // it lives: discovery reports an exec as an exit and a new process
	p.add(v)
	if c := h.orphans[pid]; c == p {
		if _, ok := p.judge(0, 0); ok {
			delete(h.orphans, pid)
		}
	}
	h.release(pid, p)
	h.adopt(pid, p)
	h.setLimit()
}

// release hands on or drops p's held records in order, up to the first
// whose program is still undecided.
func (h *hold) release(pid uint32, p *holdProc) {
	n := 0
	for _, r := range p.held {
		v, ok := p.judge(r.start, p.next(r.start))
		if !ok && !r.control {
			break
		}
		h.pass(v, r.control, r.raw)
		h.bytes -= len(r.raw)
		n++
	}
	p.held = p.held[n:]
	if len(p.held) > 0 {
		return
	}
	p.held = nil
	delete(h.waiting, pid)
	if p.exited {
		delete(h.procs, pid)
	}
}

// gone says that discovery saw process pid exit at kernel time now. Its
// last records may still wait in the ring (discovery reads its own, sooner):
// the verdict on it stays for maxAge, unless the ring's exit record of the
// process or a fork of another process with its ID comes first, or a
// verdict after it (an exec, which discovery reports as an exit and a new
// process) says it lives on.
func (h *hold) gone(pid uint32, now uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.procs[pid] != nil {
		h.leaving[pid] = now
	}
}

// expire drops what has been held for longer than maxAge at kernel time
// now.
func (h *hold) expire(now uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for pid, p := range h.waiting {
		if p.held[0].ts+h.maxAge < now {
			h.giveUp(pid, p)
		}
	}
	for pid, at := range h.leaving {
		if at+h.maxAge < now {
			delete(h.leaving, pid)
			if p := h.procs[pid]; p != nil && len(p.held) == 0 {
				delete(h.procs, pid)
				delete(h.orphans, pid)
			}
		}
	}
	h.setLimit()
}

// expireOldest gives up on the process whose held record is the oldest.
func (h *hold) expireOldest() {
	var oldest *holdProc
	var pid uint32
	for id, p := range h.waiting {
		if oldest == nil || p.held[0].ts < oldest.held[0].ts {
			oldest, pid = p, id
		}
	}
	if oldest != nil {
		h.giveUp(pid, oldest)
	}
}

// giveUp decides process pid's undecided program as expired: its records
// are dropped until a real verdict comes.
func (h *hold) giveUp(pid uint32, p *holdProc) {
	for _, r := range p.held {
		if _, ok := p.judge(r.start, p.next(r.start)); !ok {
			p.add(verdict{at: r.start, expired: true})
		}
	}
	if _, ok := p.judge(p.start(), 0); !ok {
		p.add(verdict{at: p.start(), expired: true})
	}
	delete(h.orphans, pid)
	if h.log != nil {
		h.log.Debug("undecided process: held records dropped", "pid", pid, "records", len(p.held), "start", p.start(), "first", p.held[0].ts)
	}
	h.release(pid, p)
}

// setLimit limits the ring's progress to the oldest held record's time.
func (h *hold) setLimit() {
	if h.limit == nil {
		return
	}
	var least uint64
	for _, p := range h.waiting {
		if t := p.held[0].ts; least == 0 || t < least {
			least = t
		}
	}
	h.limit.Limit(least)
}
