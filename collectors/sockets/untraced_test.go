package sockets

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	osexec "os/exec"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/periscope-apm/periscope/discovery"
	"github.com/periscope-apm/periscope/events"
)

// nopSink takes the records the hold lets through: none here.
type nopSink struct{ events.Sink }

func (nopSink) Data(events.Data)   {}
func (nopSink) Bind(events.Bind)   {}
func (nopSink) Close(events.Close) {}
func (nopSink) Exit(events.Exit)   {}
func (nopSink) Exec(events.Exec)   {}

// A TCP socket of a process that is not traced goes to fd_other at its
// first call, with the descriptors that are not TCP sockets (untraced in
// bpf/sockets.bpf.c): its next calls leave before the tail call and the
// descriptor's lookup. Selecting the process later empties its slots
// (forgetOther): its calls on that socket are sent to user space again.
func TestUntracedSocketLeavesEarly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test loads eBPF programs and must run as root")
	}
	if !AtomicsCmpxchg() {
		t.Fatal("this kernel has no BPF compare-and-exchange: the fd_other table is off")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := New(Config{PerProcess: true}, nopSink{}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); c.Wait(); c.Close() }()

	// The client writes each line of its stdin, as a line of HTTP, on a
	// TCP connection to ln, whose descriptor it prints first.
	port := ln.Addr().(*net.TCPAddr).Port
	script := `import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(s.fileno(), flush=True)
for l in iter(sys.stdin.readline, ""):
    s.sendall(l.rstrip("\n").encode() + b"\r\n")`
	cmd, in, out := startPython(t, script, port)
	var fd uint32
	if _, err := fmt.Fscan(out, &fd); err != nil || fd >= 32 {
		t.Fatalf("the client's socket descriptor: %d, %v (want one below 32)", fd, err)
	}
	pid := uint32(cmd.Process.Pid)
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		t.Fatal(err)
	}
	c.ProcessUpdated(discovery.Process{PID: pid, Exe: exe}, nil)
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	send := func(line string) {
		t.Helper()
		if _, err := io.WriteString(in, line+"\n"); err != nil {
			t.Fatal(err)
		}
		if got, err := r.ReadString('\n'); err != nil || got != line+"\r\n" {
			t.Fatalf("the server read %q, %v; want %q", got, err, line+"\r\n")
		}
	}

	send("GET /untraced HTTP/1.1")
	var slot uint64
	key := pid % c.objs.FdOther.MaxEntries() // block 0: descriptors 0-31
	if err := c.objs.FdOther.Lookup(key, &slot); err != nil {
		t.Fatal(err)
	}
	if slot>>32 != uint64(pid) || slot&(1<<fd) == 0 {
		t.Fatalf("fd_other slot of process %d's block 0 is %#x after its call on descriptor %d: want its owner and bit %d", pid, slot, fd, fd)
	}

	// The hold judges a program once (its first verdict): the records
	// of the socket reach user space again, and are dropped there.
	sent := func() float64 { return testutil.ToFloat64(c.m.Read.WithLabelValues("unselected")) }
	if n := sent(); n != 0 {
		t.Fatalf("%v records of the process while it was not traced", n)
	}
	c.ProcessUpdated(discovery.Process{PID: pid, Exe: exe, Selected: true}, nil)
	for i := 0; sent() == 0; i++ {
		if i == 50 {
			_ = c.objs.FdOther.Lookup(key, &slot)
			t.Fatalf("no record of process %d's writes after it was selected (its fd_other slot: %#x)", pid, slot)
		}
		send("GET /traced HTTP/1.1")
		time.Sleep(100 * time.Millisecond)
	}
}

// startPython starts python3 running script with port as its argument, and
// returns it with its standard input and output; the test's end closes its
// input and waits for it.
func startPython(t *testing.T, script string, port int) (*osexec.Cmd, io.WriteCloser, *bufio.Reader) {
	t.Helper()
	cmd := osexec.Command("python3", "-c", script, fmt.Sprint(port))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	return cmd, in, bufio.NewReader(out)
}
