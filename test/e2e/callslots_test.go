package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/collectors/sockets"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// TestPlaintextCallSlotsShared: the sockets collector keeps a call in
// flight in its thread's slot (bpf/sockets.bpf.c: thread_calls); a thread
// whose slot another thread holds keeps it in the calls hash instead. With
// one slot for the whole node (plaintext.call_slots: 1) every thread shares
// it: a Python client makes N requests on each of T keep-alive connections
// from T threads at once to a threading http.server (and keeps one more
// connection idle, its server thread waiting in a read throughout), so that
// at any moment at most one of the calls in flight is in the slot and the
// others go through the hash. Exactly T×N SERVER and T×N CLIENT spans of
// /ok, each server span the child of a client span. On kernels without BPF
// compare-and-exchange every call takes the hash anyway.
func TestPlaintextCallSlotsShared(t *testing.T) {
	const threads, n = 8, 50
	py := python(t)
	e := startAgentOTLP(t, []string{"PERISCOPE_PLAINTEXT_CALL_SLOTS=1"}, selectExes(t, py)...)
	dir := plainDir(t)
	srv, err := startPlainServer(t, "python", dir, func(port int) []string {
		return []string{py, "server.py", fmt.Sprint(port)}
	})
	if err != nil {
		t.Fatal(err)
	}
	e.instrumented(t, srv.pid)
	client := runClient(t, py, "client.py", "threads", "127.0.0.1", fmt.Sprint(srv.port), fmt.Sprint(threads), fmt.Sprint(n))
	ok := func(kind, pid int) func(otlpreceiver.Span) bool {
		x := expect{kind: kind, pid: pid, port: srv.port}
		return func(s otlpreceiver.Span) bool {
			return x.match(s) && attrStr(s, "url.path") == "/ok" && attrInt(s, "http.response.status_code") == 200
		}
	}
	server := e.spans(t, threads*n, ok(kindServer, srv.pid))
	clients := e.spans(t, threads*n, ok(kindClient, client))
	checkParents(t, server, clients)
	t.Logf("call slots used: %v (kernel with BPF compare-and-exchange)", sockets.AtomicsCmpxchg())
}

// TestPlaintextAdoptionEnds: reads that threads were blocked in when the
// agent started are recorded by user space as if the programs had seen
// their entry (adopted), and the exits of every thread look at the adopted
// bits until each adopted thread has left its read. A thread can be found
// blocked in a read whose entry the programs did see (entered between the
// attach and the scan): its call is in its slot, and its exit must end the
// adoption too, or the bit stays set — every exit keeps looking, and the
// thread's next exit without a call of its own takes the stale adopted
// read. A Python client keeps 8 keep-alive connections busy (a request a
// millisecond each) to a threading http.server while the agent starts:
// some reads are adopted, and all adoptions must end within a few seconds
// while the threads go on.
func TestPlaintextAdoptionEnds(t *testing.T) {
	py := python(t)
	dir := plainDir(t)
	srv, err := startPlainServer(t, "python", dir, func(port int) []string {
		return []string{py, "server.py", fmt.Sprint(port)}
	})
	if err != nil {
		t.Fatal(err)
	}
	cl := startProc(t, nil, py, filepath.Join(dir, "client.py"), "busy", "127.0.0.1", fmt.Sprint(srv.port), "8", "300")
	cl.expect("ready", 30*time.Second)
	e := startAgentOTLP(t, nil, selectExes(t, py)...)
	adopted := regexp.MustCompile(`msg="collector started" collector=sockets.* blocked_reads=(\d+)`)
	deadline := time.Now().Add(20 * time.Second)
	var logs string
	for {
		logs = e.agent.Logs()
		if m := adopted.FindStringSubmatch(logs); m != nil {
			if n, _ := strconv.Atoi(m[1]); n == 0 {
				t.Fatalf("no read adopted at start: the busy threads were not caught in a read\n%s", logs)
			}
			if strings.Contains(logs, "reads blocked at start: all ended") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("adopted reads did not all end within 20 s of the agent's start while their threads went on\n%s", logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%s", adopted.FindString(logs))
}
