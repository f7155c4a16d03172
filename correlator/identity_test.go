package correlator

import (
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/span"
)

// changingProcs is a resolver whose identities the test changes, as a
// Kubernetes pod deleted changes a process's identity.
type changingProcs struct {
	mu    sync.Mutex
	procs map[uint32]*span.Process
	calls int
}

func (r *changingProcs) Process(pid uint32) *span.Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	return r.procs[pid]
}

func (r *changingProcs) set(pid uint32, p *span.Process) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.procs[pid] = p
}

// TestSpansFollowIdentityChanges: on one keep-alive connection (whose
// process state the correlator keeps), each span carries the identity the
// resolver returns when the span finishes.
func TestSpansFollowIdentityChanges(t *testing.T) {
	inPod := &span.Process{PID: 10, ServiceName: "web"}
	plain := &span.Process{PID: 10, ServiceName: "nginx"}
	res := &changingProcs{procs: map[uint32]*span.Process{10: inPod}}
	exp := &recorder{}
	c, err := New(DefaultConfig(), exp, res, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, c: c, exp: exp}
	id := cid(10, 0xa)
	h.bind(id, 5, 0, serverAddr, clientAddr)

	for i, tc := range []struct {
		set  *span.Process // identity from now on; nil: the resolver knows nothing
		want *span.Process
	}{
		{inPod, inPod},
		{plain, plain}, // the pod was deleted
		{nil, plain},   // nil keeps the last identity
		{inPod, inPod},
	} {
		res.set(10, tc.set)
		ms := 10 * (i + 1)
		h.read(id, 11, ms, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		h.write(id, 11, ms+1, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		spans := h.wantSpans(i + 1)
		if got := spans[i].Process; got != tc.want {
			t.Errorf("span %d: process %+v, want %+v", i, got, tc.want)
		}
	}
}

// TestUnnamedProcessHeld: the span of a process the resolver cannot name
// surely yet (gone before /proc was read, or read only at its fork, and its
// exec event not read yet) waits for the bind grace, and leaves with the
// name the resolver has by then, or as soon as it has a sure one.
func TestUnnamedProcessHeld(t *testing.T) {
	curl := &span.Process{PID: 10, ServiceName: "curl"}
	forked := &span.Process{PID: 10, ServiceName: "e2e.test", Tentative: true}
	for _, tc := range []struct {
		name  string
		first *span.Process // the resolver's identity when the span ends
		later *span.Process // and when the grace is over; nil: unchanged
		want  *span.Process
	}{
		{"no name, then the exec's", &span.Process{PID: 10, ServiceName: unknownService}, curl, curl},
		{"fork's name, then the exec's", forked, curl, curl},
		{"fork's name, no exec", forked, nil, forked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &changingProcs{procs: map[uint32]*span.Process{10: tc.first}}
			exp := &recorder{}
			cfg := DefaultConfig()
			cfg.BindGrace = DefaultBindGrace
			c, err := New(cfg, exp, res, nil, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			h := &harness{t: t, c: c, exp: exp}
			id := cid(10, 0xa)
			h.bind(id, 5, 0, clientAddr, serverAddr)
			h.write(id, 11, 1, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			h.read(id, 11, 2, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			if n := len(exp.spans); n != 0 {
				t.Fatalf("%d spans exported before the process has a sure name: %+v", n, exp.spans[0].Process)
			}
			if tc.later != nil {
				res.set(10, tc.later)
			}
			c.ReleaseHeld(at(2).Add(DefaultBindGrace - 1))
			if n, named := len(exp.spans), tc.later != nil; n != 0 && !named || n != 1 && named {
				t.Fatalf("%d spans exported before the grace is over, with a sure name %v", n, named)
			}
			c.ReleaseHeld(at(2).Add(DefaultBindGrace))
			spans := h.wantSpans(1)
			if spans[0].Process != tc.want {
				t.Errorf("process %+v, want %+v", spans[0].Process, tc.want)
			}
		})
	}
}
