package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// bpfIDs returns the IDs of the BPF programs and links that process pid
// holds, read from the fdinfo of its file descriptors (bpftool here cannot
// show which process holds what).
func bpfIDs(t *testing.T, pid int) (progs, links []int) {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fdinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if !strings.HasPrefix(link, "anon_inode:bpf") {
			continue
		}
		info, err := os.ReadFile(filepath.Join(fmt.Sprintf("/proc/%d/fdinfo", pid), fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		for _, line := range strings.Split(string(info), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			id, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				continue
			}
			switch {
			case k == "prog_id" && !slices.Contains(progs, id):
				progs = append(progs, id)
			case k == "link_id" && !slices.Contains(links, id):
				links = append(links, id)
			}
		}
	}
	slices.Sort(progs)
	slices.Sort(links)
	return progs, links
}

type bpfObject struct {
	ID int `json:"id"`
	// Type is a name, or a number for types this bpftool does not know
	// (uprobe_multi links).
	Type   any    `json:"type"`
	Name   string `json:"name"`
	ProgID int    `json:"prog_id"`
}

// bpftool lists the BPF programs ("prog") or links ("link") of the system.
func bpftool(t *testing.T, what string) map[int]bpfObject {
	t.Helper()
	out, err := exec.Command(harness.LookTool(t, "bpftool"), what, "show", "--json").Output()
	if err != nil {
		t.Fatalf("bpftool %s show: %v", what, err)
	}
	var objs []bpfObject
	if err := json.Unmarshal(out, &objs); err != nil {
		t.Fatalf("bpftool %s show: %v\n%s", what, err, out)
	}
	m := make(map[int]bpfObject, len(objs))
	for _, o := range objs {
		m[o.ID] = o
	}
	return m
}

// probeEvents returns the lines of the tracefs uprobe_events and
// kprobe_events files (kprobe_events is absent on this kernel).
func probeEvents(t *testing.T) []string {
	t.Helper()
	var lines []string
	for _, f := range []string{"uprobe_events", "kprobe_events"} {
		for _, dir := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(b), "\n") {
				if l != "" {
					lines = append(lines, f+": "+l)
				}
			}
			break
		}
	}
	return lines
}

// agentBPF is what an agent holds in the kernel, seen while it runs.
type agentBPF struct {
	progs, links []int
	events       []string // tracefs probe events before the agent started
}

// snapshotBPF records the agent's programs and links, and checks that
// there are uprobes on SSL functions (programs ssl_*), the syscall pair
// (sys_enter and sys_exit on raw_syscalls, as tp_btf or raw tracepoint
// programs) and process tracepoints (process_*) among them, and no program
// on a classic tracepoint: a syscalls:sys_* one would switch on the
// kernel's per-syscall tracing for every syscall of the node.
func snapshotBPF(t *testing.T, a *harness.Agent, events []string) agentBPF {
	t.Helper()
	progs, links := bpfIDs(t, a.PID)
	allProgs, allLinks := bpftool(t, "prog"), bpftool(t, "link")
	var names []string
	for _, id := range progs {
		p, ok := allProgs[id]
		if !ok {
			t.Fatalf("prog %d of the agent not listed by bpftool", id)
		}
		names = append(names, p.Name)
	}
	linkTypes := make(map[string]int)
	for _, id := range links {
		l, ok := allLinks[id]
		if !ok {
			t.Fatalf("link %d of the agent not listed by bpftool", id)
		}
		if !slices.Contains(progs, l.ProgID) {
			t.Errorf("link %d runs prog %d, which the agent does not hold", id, l.ProgID)
		}
		name := allProgs[l.ProgID].Name
		group, _, _ := strings.Cut(name, "_")
		if pair := strings.TrimSuffix(name, "_btf"); pair == "sys_enter" || pair == "sys_exit" {
			group = "syscalls"
		}
		if typ := fmt.Sprint(allProgs[l.ProgID].Type); typ == "tracepoint" {
			t.Errorf("link %d runs %s program %q: the agent's syscall hooks must all be in its raw syscall pair", id, typ, name)
		}
		typ := fmt.Sprint(l.Type)
		if typ == "12" { // BPF_LINK_TYPE_UPROBE_MULTI
			typ = "uprobe_multi"
		}
		linkTypes[typ+"/"+group]++
	}
	t.Logf("agent holds %d programs %v and %d links %v", len(progs), names, len(links), linkTypes)
	checkExecOrder(t, links, allLinks, allProgs)
	// Uprobes on libssl (perf_event or uprobe_multi links to ssl_*
	// programs), the syscall pair and process tracepoints must all be
	// there to be removed.
	for _, ks := range [][]string{{"perf_event/ssl", "uprobe_multi/ssl"}, {"raw_tracepoint/syscalls", "tracing/syscalls"}, {"raw_tracepoint/process"}} {
		n := 0
		for _, k := range ks {
			n += linkTypes[k]
		}
		if n == 0 {
			t.Fatalf("the agent holds no %s link: nothing to check the removal of", strings.Join(ks, " or "))
		}
	}
	return agentBPF{progs: progs, links: links, events: events}
}

// checkExecOrder checks that discovery's program on sched_process_exec
// (process_exec) was attached before every collector's exec marker
// (*_process_exec): programs on a tracepoint run in the order they were
// attached (link IDs grow with it), and the correlator names what follows a
// collector's marker by discovery's record of the exec, which must be
// stamped first to be waited for.
func checkExecOrder(t *testing.T, links []int, allLinks, allProgs map[int]bpfObject) {
	t.Helper()
	discovery := 0
	markers := map[int]string{}
	for _, id := range links {
		switch name := allProgs[allLinks[id].ProgID].Name; {
		case name == "process_exec":
			discovery = id
		case strings.HasSuffix(name, "process_exec"):
			markers[id] = name
		}
	}
	if discovery == 0 || len(markers) == 0 {
		t.Fatalf("no discovery exec program (link %d) or no collector exec marker (%v)", discovery, markers)
	}
	for id, name := range markers {
		if id < discovery {
			t.Errorf("%s (link %d) attached before discovery's process_exec (link %d)", name, id, discovery)
		}
	}
}

// stopAndCheck stops the agent with SIGINT and checks that it exited 0
// within 10 s and left none of its programs, links or tracefs entries.
func stopAndCheck(t *testing.T, a *harness.Agent, held agentBPF) {
	t.Helper()
	start := time.Now()
	if code := a.Stop(); code != 0 {
		t.Fatalf("agent exited with %d after SIGINT, want 0", code)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the agent took %v to stop", d)
	}
	// The kernel frees a program after its last reference is gone, in
	// deferred work: give that a moment before calling anything a leak.
	var leftProgs, leftLinks []string
	for deadline := time.Now().Add(3 * time.Second); ; {
		leftProgs, leftLinks = nil, nil
		allProgs, allLinks := bpftool(t, "prog"), bpftool(t, "link")
		for _, id := range held.progs {
			if p, ok := allProgs[id]; ok {
				leftProgs = append(leftProgs, fmt.Sprintf("program %d %q", id, p.Name))
			}
		}
		for _, id := range held.links {
			if l, ok := allLinks[id]; ok {
				leftLinks = append(leftLinks, fmt.Sprintf("link %d (type %v, prog %d)", id, l.Type, l.ProgID))
			}
		}
		if len(leftProgs)+len(leftLinks) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, what := range append(leftProgs, leftLinks...) {
		t.Errorf("%s is still there 3 s after the agent exited", what)
	}
	for _, l := range probeEvents(t) {
		if !slices.Contains(held.events, l) {
			t.Errorf("tracefs entry left behind: %s", l)
		}
	}
	// Nothing went wrong while stopping (warnings about other processes
	// on this machine before the signal are not this test's business).
	_, shutdown, ok := strings.Cut(readFile(t, a.StderrPath), "detaching probes")
	if !ok {
		t.Errorf("no shutdown message in the agent's log")
	}
	for _, l := range strings.Split(shutdown, "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			t.Errorf("agent warned while stopping: %s", l)
		}
	}
}

// TestAgentStop: SIGINT makes the agent exit 0 within seconds and leave
// nothing in the kernel: every BPF program and link it held (uprobes on
// SSL_*, syscall tracepoints, process tracepoints, and whatever else its
// collectors attach) is gone, and it added no entry to the tracefs
// uprobe_events or kprobe_events files. Both attach modes: once per file
// for all processes (nginx), and per selected process.
//
// With its processes selected (so that nothing else on this machine can
// crowd them out) it also flushes at exit the spans of requests that
// completed just before the signal: a client makes 3 requests and exits,
// SIGINT follows at once, and when the agent has exited the receiver holds
// exactly the 3 server and 3 client spans.
func TestAgentStop(t *testing.T) {
	t.Run("all processes", func(t *testing.T) {
		events := probeEvents(t)
		e := startAgent(t)
		ngx := harness.StartNginx(t, harness.NginxOptions{Workers: 1})
		e.instrumented(t, ngx.WorkerPIDs...)
		held := snapshotBPF(t, e.agent, events)
		runCurl(t, harness.LookTool(t, "curl"), "-sS", "--cacert", ngx.CAFile, "-o", "/dev/null", ngx.URL+"/index.html")
		e.spans(t, 1, byPIDs(kindServer, ngx.WorkerPIDs...))
		stopAndCheck(t, e.agent, held)
	})
	// Without the sockets collector, the other collectors' syscall hooks
	// run in a pair of their own: the SSL* of nginx and curl is bound to
	// its socket there (the spans name their peers).
	t.Run("plaintext off", func(t *testing.T) {
		events := probeEvents(t)
		e := startAgentOTLP(t, []string{"PERISCOPE_PLAINTEXT_ENABLED=false"})
		ngx := harness.StartNginx(t, harness.NginxOptions{Workers: 1})
		e.instrumented(t, ngx.WorkerPIDs...)
		held := snapshotBPF(t, e.agent, events)
		st, err := e.agent.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range st.Collectors {
			if c.Name == "sockets" {
				t.Errorf("the sockets collector runs with plaintext.enabled false")
			}
		}
		for _, hook := range []string{"discovery: mmap", "openssl: read/write", "gotls: close", "tcp: accept"} {
			if !strings.Contains(st.Syscalls, hook) {
				t.Errorf("/status syscalls %q does not name the hook %q", st.Syscalls, hook)
			}
		}
		// Discovery's mmap hook runs there too: every dynamically linked
		// program maps its libraries executable.
		waitMetric(t, e.agent, "periscope_process_events_total", map[string]string{"type": "mmap"}, "> 0", func(v float64) bool { return v > 0 })
		runCurl(t, harness.LookTool(t, "curl"), "-sS", "--cacert", ngx.CAFile, "-o", "/dev/null", ngx.URL+"/index.html")
		for _, s := range append(e.spans(t, 1, byPIDs(kindServer, ngx.WorkerPIDs...)), e.spans(t, 1, byPort("curl", kindClient, ngx.Port))...) {
			if attrInt(s, "network.peer.port") == 0 {
				t.Errorf("span %q has no network.peer.port (its SSL* was not bound to its socket): %v", s.Name, s.Attributes)
			}
		}
		stopAndCheck(t, e.agent, held)
	})
	t.Run("selected processes", func(t *testing.T) {
		events := probeEvents(t)
		f := startFaultEnv(t)
		srv, port := f.server(t, "http-server")
		cli := f.peer(t, "get-client", port, f.ca, "/a", "/b", "/c")
		f.instrumented(t, srv.PID, cli.PID)
		held := snapshotBPF(t, f.agent, events)
		cli.send("go")
		cli.mustSucceed(20 * time.Second)
		stopAndCheck(t, f.agent, held)
		// Flushed at exit: nothing more can arrive.
		server := filterSpans(f.recv.Spans(), byPIDs(kindServer, srv.PID))
		client := filterSpans(f.recv.Spans(), byPIDs(kindClient, cli.PID))
		got := counts(append(server, client...), func(s otlpreceiver.Span) string {
			return fmt.Sprintf("%d %s %d", s.Kind, s.Name, attrInt(s, "http.response.status_code"))
		})
		want := map[string]int{"2 GET /a 200": 1, "2 GET /b 200": 1, "2 GET /c 200": 1, "3 GET /a 200": 1, "3 GET /b 200": 1, "3 GET /c 200": 1}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("after the agent exited the receiver has %v, want %v", got, want)
		}
	})
}
