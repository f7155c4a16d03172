package sockets

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/periscope-apm/periscope/collectors/loader"
	"github.com/periscope-apm/periscope/events"
)

// stallSink holds the ring's reader in its first record until release is
// closed: the ring then fills behind it.
type stallSink struct {
	events.Sink
	once    sync.Once
	release chan struct{}
}

func (s *stallSink) stall()                         { s.once.Do(func() { <-s.release }) }
func (s *stallSink) Data(events.Data)               { s.stall() }
func (s *stallSink) Bind(events.Bind)               { s.stall() }
func (s *stallSink) Close(events.Close)             { s.stall() }
func (s *stallSink) WriteResult(events.WriteResult) {}
func (s *stallSink) Exit(events.Exit)               {}
func (s *stallSink) Exec(events.Exec)               {}

// While the reader is behind, the programs wake it once each time the
// bytes waiting cross a multiple of wakeup_bytes, not for every record past
// it: each forced wake-up is an irq_work interrupt in the context of the
// process whose syscall sent the record (wakeup_flags, bpf/common.bpf.h).
// Counted here for a client's writes while the reader is stalled: a record
// each, ~150 bytes of ring each, so that the old rule took an interrupt for
// nearly every one past the first ~27.
func TestWakeupOncePerThreshold(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test loads eBPF programs and must run as root")
	}
	const writes, wakeupBytes = 400, 4096
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := &stallSink{release: make(chan struct{})}
	released := false
	release := func() {
		if !released {
			close(s.release)
			released = true
		}
	}
	defer release()
	cfg := Config{Ring: loader.Ring{WakeupBytes: wakeupBytes, PollInterval: time.Hour}}
	c := New(cfg, s, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { release(); cancel(); c.Wait(); c.Close() }()

	// The client writes a line of HTTP per line of its stdin, one write
	// each, and prints "done" after the last.
	script := `import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
for l in iter(sys.stdin.readline, ""):
    s.sendall(l.rstrip("\n").encode() + b"\r\n")
print("done", flush=True)`
	cmd, in, out := startPython(t, script, ln.Addr().(*net.TCPAddr).Port)
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() { _, _ = io.Copy(io.Discard, conn) }()
	if l, err := out.ReadString('\n'); err != nil || l != "ready\n" {
		t.Fatalf("the client said %q, %v", l, err)
	}
	irqs := irqWorkCounter(t, cmd.Process.Pid)
	defer irqs.Close()

	var lines strings.Builder
	for i := range writes {
		fmt.Fprintf(&lines, "GET /stalled/%d HTTP/1.1\n", i)
	}
	if _, err := io.WriteString(in, lines.String()); err != nil {
		t.Fatal(err)
	}
	in.Close()
	if l, err := out.ReadString('\n'); err != nil || l != "done\n" {
		t.Fatalf("the client said %q, %v", l, err)
	}
	var buf [8]byte
	if _, err := irqs.Read(buf[:]); err != nil {
		t.Fatalf("read the irq_work count: %v", err)
	}
	n := binary.NativeEndian.Uint64(buf[:])
	t.Logf("%d irq_work interrupts in the client's context over its %d writes", n, writes)
	// Crossings of 4,096 bytes: ~15 for the client's own records, more if
	// other processes' records fill the ring meanwhile; the old rule: ~370.
	if n > writes/4 {
		t.Fatalf("%d irq_work interrupts in the client's context over %d writes with the reader stalled: want a wake-up per %d bytes, not one per record", n, writes, wakeupBytes)
	}
}

// irqWorkCounter counts the irq_vectors:irq_work_entry events of process
// pid (its main thread: the client writes from it).
func irqWorkCounter(t *testing.T, pid int) *os.File {
	t.Helper()
	var raw []byte
	var err error
	for _, dir := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if raw, err = os.ReadFile(dir + "/events/irq_vectors/irq_work_entry/id"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("the irq_work_entry tracepoint's id: %v", err)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_TRACEPOINT, Config: id}
	attr.Size = uint32(unsafe.Sizeof(attr))
	fd, err := unix.PerfEventOpen(&attr, pid, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		t.Fatalf("count irq_work_entry of process %d: %v", pid, err)
	}
	return os.NewFile(uintptr(fd), "irq_work_entry")
}
