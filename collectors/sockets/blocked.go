package sockets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"

	"github.com/periscope-apm/periscope/events"
)

// blockedRead is a thread that waits in a read-family syscall, as
// /proc/PID/task/TID/syscall shows it.
type blockedRead struct {
	pid, tid uint32
	call     socketsCall
	line     []byte // the syscall file's text, to see the thread move on
}

// readCalls are the read-family syscalls the programs trace, by number,
// and how their arguments are read.
var readCalls = map[uint32]socketsCallKind{
	syscall.SYS_READ:     socketsCallKindCALL_BUF,
	syscall.SYS_RECVFROM: socketsCallKindCALL_BUF,
	syscall.SYS_READV:    socketsCallKindCALL_IOV,
	syscall.SYS_RECVMSG:  socketsCallKindCALL_MSG,
}

// parseSyscall reads a /proc/PID/task/TID/syscall line ("NR ARG1 ... ARG6
// SP PC") of a thread blocked in a traced read: ok is false for anything
// else ("running", another syscall, a malformed line).
func parseSyscall(line []byte) (socketsCall, bool) {
	f := strings.Fields(string(line))
	if len(f) < 4 {
		return socketsCall{}, false
	}
	nr, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil {
		return socketsCall{}, false
	}
	kind, ok := readCalls[uint32(nr)]
	if !ok {
		return socketsCall{}, false
	}
	var args [3]uint64
	for i := range args {
		if args[i], err = strconv.ParseUint(strings.TrimPrefix(f[1+i], "0x"), 16, 64); err != nil {
			return socketsCall{}, false
		}
	}
	if args[0] > 1<<31-1 {
		return socketsCall{}, false
	}
	return socketsCall{
		Buf: args[1], Count: args[2], Fd: int32(args[0]),
		Kind: uint8(kind), Dir: uint8(events.Read), Found: 1, Nr: uint32(nr),
	}, true
}

// blockedReads lists the threads of the node waiting in a read of a
// socket.
func blockedReads(procRoot string, skip uint32) []blockedRead {
	files, _ := filepath.Glob(filepath.Join(procRoot, "[0-9]*", "task", "[0-9]*", "syscall"))
	var out []blockedRead
	for _, f := range files {
		line, err := os.ReadFile(f)
		if err != nil {
			continue // gone, or not ours to read
		}
		call, ok := parseSyscall(line)
		if !ok {
			continue
		}
		taskDir := filepath.Dir(f)
		pid, err1 := strconv.ParseUint(filepath.Base(filepath.Dir(filepath.Dir(taskDir))), 10, 32)
		tid, err2 := strconv.ParseUint(filepath.Base(taskDir), 10, 32)
		if err1 != nil || err2 != nil || uint32(pid) == skip {
			continue
		}
		link, err := os.Readlink(filepath.Join(taskDir, "fd", strconv.Itoa(int(call.Fd))))
		if err != nil || !strings.HasPrefix(link, "socket:") {
			continue
		}
		out = append(out, blockedRead{pid: uint32(pid), tid: uint32(tid), call: call, line: line})
	}
	return out
}

// adoptBlockedReads records, as if the programs had seen their entry, the
// reads of sockets that threads were blocked in when the programs were
// attached: the first request on a keep-alive connection idle at that
// moment is then seen whole. A thread that left its read meanwhile is
// let go (the program checks the syscall number at the exit too). While
// some adopted thread has yet to leave its read, the exits of every thread
// look at the adopted bits (adopting); endAdoption stops that.
func (c *Collector) adoptBlockedReads() (int, threadBits, error) {
	n := 0
	bits := threadBits{}
	found := blockedReads(c.cfg.ProcRoot, uint32(os.Getpid()))
	if len(found) == 0 {
		return 0, bits, nil
	}
	if err := c.objs.Adopting.Put(uint32(0), uint64(1)); err != nil {
		return 0, bits, fmt.Errorf("mark adoption: %w", err)
	}
	for _, b := range found {
		key := uint64(b.pid)<<32 | uint64(b.tid)
		if err := c.objs.Calls.Update(key, b.call, ebpf.UpdateNoExist); err != nil {
			if errors.Is(err, ebpf.ErrKeyExist) {
				continue // the thread has entered a traced call since
			}
			return n, bits, fmt.Errorf("record blocked read of %d/%d: %w", b.pid, b.tid, err)
		}
		if err := bits.set(c.objs.Adopted, b.tid); err != nil {
			c.dropFound(key, b.call)
			return n, bits, err
		}
		now, err := os.ReadFile(filepath.Join(c.cfg.ProcRoot, strconv.Itoa(int(b.pid)), "task", strconv.Itoa(int(b.tid)), "syscall"))
		if err != nil || !bytes.Equal(now, b.line) {
			c.dropFound(key, b.call)
			continue
		}
		n++
	}
	return n, bits, nil
}

// adoptionPoll is how often endAdoption looks at the adopted bits.
const adoptionPoll = time.Second

// endAdoption clears adopting once every bit of bits has been cleared by
// the programs (each adopted thread left its read), so that exits stop
// looking at adopted; until ctx ends.
func (c *Collector) endAdoption(ctx context.Context, bits threadBits) {
	if len(bits) == 0 {
		return
	}
	t := time.NewTicker(adoptionPoll)
	defer t.Stop()
	for {
		if bits.cleared(c.objs.Adopted) {
			if ctx.Err() != nil {
				return
			}
			if err := c.objs.Adopting.Put(uint32(0), uint64(0)); err != nil {
				c.log.Warn("adopted reads: exits keep looking at them", "err", err)
				return
			}
			c.log.Info("reads blocked at start: all ended")
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// dropFound deletes an adopted read whose thread moved on, unless the
// programs replaced it with a call they saw.
func (c *Collector) dropFound(key uint64, call socketsCall) {
	var cur socketsCall
	if err := c.objs.Calls.Lookup(key, &cur); err == nil && cur == call {
		_ = c.objs.Calls.Delete(key)
	}
}
