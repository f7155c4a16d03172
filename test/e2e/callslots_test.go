package e2e

import (
	"fmt"
	"testing"

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
