package metadata

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/span"
)

// fakeProc describes one process of a fake /proc.
type fakeProc struct {
	exe     string   // target of the exe link; "" for none
	cmdline []string // NUL-joined
	comm    string
	environ []string
	cgroup  []string // lines of /proc/PID/cgroup; nil for no file
}

func writeProc(t *testing.T, root string, pid uint32, fp fakeProc) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(int(pid)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if fp.exe != "" {
		if err := os.Symlink(fp.exe, filepath.Join(dir, "exe")); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if fp.cmdline != nil {
		write("cmdline", strings.Join(fp.cmdline, "\x00")+"\x00")
	}
	if fp.comm != "" {
		write("comm", fp.comm+"\n")
	}
	write("environ", strings.Join(fp.environ, "\x00")+"\x00")
	if fp.cgroup != nil {
		write("cgroup", strings.Join(fp.cgroup, "\n")+"\n")
	}
}

// checkAttrs checks that p has the attributes of want and none of absent,
// and returns all its attributes.
func checkAttrs(t *testing.T, p *span.Process, want map[string]string, absent []string) map[string]string {
	t.Helper()
	got := attrMap(p)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, k := range absent {
		if _, ok := got[k]; ok {
			t.Errorf("%s = %q, want none", k, got[k])
		}
	}
	return got
}

func attrMap(p *span.Process) map[string]string {
	m := make(map[string]string)
	for _, kv := range p.Attributes {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func TestProcessesResolve(t *testing.T) {
	tests := []struct {
		name        string
		proc        fakeProc
		wantService string
		want        map[string]string // attributes that must be present
		absent      []string          // attributes that must not be present
	}{
		{
			name: "OTEL_SERVICE_NAME",
			proc: fakeProc{
				exe:     "/usr/bin/python3.11",
				cmdline: []string{"python3", "-m", "http.server", "8443"},
				comm:    "python3",
				environ: []string{"PATH=/bin", "OTEL_SERVICE_NAME=checkout", "AWS_SECRET_ACCESS_KEY=hunter2"},
			},
			wantService: "checkout",
			want: map[string]string{
				"process.pid":             "100",
				"process.executable.name": "python3.11",
				"process.executable.path": "/usr/bin/python3.11",
				"process.command":         "python3",
				"process.command_args":    `["-m","http.server","8443"]`,
				"host.name":               "node-1",
			},
		},
		{
			name: "service.name from OTEL_RESOURCE_ATTRIBUTES, other keys kept",
			proc: fakeProc{
				exe:     "/srv/app",
				cmdline: []string{"/srv/app"},
				environ: []string{"OTEL_RESOURCE_ATTRIBUTES=service.name=cart, service.namespace=shop,deployment.environment=prod%20eu,bad,process.pid=1,host.name=spoof"},
			},
			wantService: "cart",
			want: map[string]string{
				"service.namespace":      "shop",
				"deployment.environment": "prod eu",
				"process.pid":            "100",
				"host.name":              "node-1",
			},
			absent: []string{"service.name", "bad", "process.command_args"},
		},
		{
			name: "OTEL_SERVICE_NAME beats OTEL_RESOURCE_ATTRIBUTES",
			proc: fakeProc{
				exe:     "/srv/app",
				environ: []string{"OTEL_RESOURCE_ATTRIBUTES=service.name=from-attrs", "OTEL_SERVICE_NAME=from-env"},
			},
			wantService: "from-env",
		},
		{
			name:        "executable name when nothing is configured",
			proc:        fakeProc{exe: "/usr/sbin/nginx", cmdline: []string{"nginx: worker process"}, comm: "nginx"},
			wantService: "nginx",
			want:        map[string]string{"process.command": "nginx: worker process"},
		},
		{
			name:        "deleted executable",
			proc:        fakeProc{exe: "/opt/app/server (deleted)"},
			wantService: "server",
			want:        map[string]string{"process.executable.path": "/opt/app/server"},
		},
		{
			name:        "unreadable exe link: comm",
			proc:        fakeProc{cmdline: []string{"/x/y/z"}, comm: "worker"},
			wantService: "worker",
			want:        map[string]string{"process.executable.name": "worker"},
			absent:      []string{"process.executable.path"},
		},
		{
			name:        "nothing readable",
			proc:        fakeProc{},
			wantService: "unknown_service",
			absent:      []string{"process.executable.name", "process.command"},
		},
		{
			name:        "long arguments are left out",
			proc:        fakeProc{exe: "/bin/java", cmdline: []string{"java", "-cp", strings.Repeat("a.jar:", 400), "Main"}},
			wantService: "java",
			want:        map[string]string{"process.command": "java"},
			absent:      []string{"process.command_args"},
		},
		{
			name: "secret flags are redacted",
			proc: fakeProc{exe: "/bin/db", cmdline: []string{
				"db", "--password=hunter2", "--api-key", "k123", "-token", "t", "--verbose", "--db-pass=x", "--port", "5432",
			}},
			wantService: "db",
			want: map[string]string{
				"process.command_args": `["--password=REDACTED","--api-key","REDACTED","-token","REDACTED","--verbose","--db-pass=REDACTED","--port","5432"]`,
			},
		},
		{
			name: "headers, URLs and NAME=value are redacted",
			proc: fakeProc{exe: "/usr/bin/curl", cmdline: []string{
				"curl", "-H", "Authorization: Bearer hunter2", "https://u:k123@h/?token=hunter2", "API_KEY=k123",
			}},
			wantService: "curl",
			want: map[string]string{
				"process.command":      "curl",
				"process.command_args": `["-H","Authorization: REDACTED","https://REDACTED@h/?token=REDACTED","API_KEY=REDACTED"]`,
			},
		},
		{
			name:        "a redacted process title",
			proc:        fakeProc{exe: "/usr/bin/worker", cmdline: []string{"worker amqp://guest:hunter2@mq/"}},
			wantService: "worker",
			want:        map[string]string{"process.command": "worker amqp://REDACTED@mq/"},
			absent:      []string{"process.command_args"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeProc(t, root, 100, tc.proc)
			ps := NewProcesses(ProcessesConfig{ProcRoot: root, HostName: "node-1"})
			p, err := ps.Observe(100)
			if err != nil {
				t.Fatal(err)
			}
			if p.PID != 100 || p.ServiceName != tc.wantService {
				t.Errorf("pid %d service %q, want 100 %q", p.PID, p.ServiceName, tc.wantService)
			}
			got := checkAttrs(t, p, tc.want, tc.absent)
			for k, v := range got {
				if strings.Contains(v, "hunter2") || strings.Contains(v, "k123") {
					t.Errorf("secret leaked in %s=%q", k, v)
				}
			}
		})
	}
}

func TestProcessesContainer(t *testing.T) {
	tests := []struct {
		name     string
		proc     fakeProc
		wantID   string
		wantPod  string
		wantAttr string // container.id resource attribute; "" for absent
	}{
		{
			name: "kubepods container",
			proc: fakeProc{exe: "/usr/sbin/nginx", cgroup: []string{
				"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podUS + ".slice/cri-containerd-" + cid1 + ".scope",
			}},
			wantID:   cid1,
			wantPod:  podU,
			wantAttr: cid1,
		},
		{
			name: "host process",
			proc: fakeProc{exe: "/usr/sbin/nginx", cgroup: []string{"0::/system.slice/nginx.service"}},
		},
		{
			name: "no cgroup file",
			proc: fakeProc{exe: "/usr/sbin/nginx"},
		},
		{
			name: "the cgroup's container.id beats the application's",
			proc: fakeProc{
				exe:     "/srv/app",
				environ: []string{"OTEL_RESOURCE_ATTRIBUTES=container.id=spoofed"},
				cgroup:  []string{"0::/docker/" + cid2},
			},
			wantID:   cid2,
			wantAttr: cid2,
		},
		{
			name: "the application's container.id on a host process",
			proc: fakeProc{
				exe:     "/srv/app",
				environ: []string{"OTEL_RESOURCE_ATTRIBUTES=container.id=declared"},
				cgroup:  []string{"0::/init.scope"},
			},
			wantAttr: "declared",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeProc(t, root, 100, tc.proc)
			p, err := NewProcesses(ProcessesConfig{ProcRoot: root, HostName: "h"}).Observe(100)
			if err != nil {
				t.Fatal(err)
			}
			if p.ContainerID != tc.wantID || p.PodUID != tc.wantPod {
				t.Errorf("container %q pod %q, want %q %q", p.ContainerID, p.PodUID, tc.wantID, tc.wantPod)
			}
			n := 0
			for _, kv := range p.Attributes {
				if kv.Key == "container.id" {
					n++
					if v := kv.Value.AsString(); v != tc.wantAttr {
						t.Errorf("container.id = %q, want %q", v, tc.wantAttr)
					}
				}
			}
			if want := min(len(tc.wantAttr), 1); n != want {
				t.Errorf("%d container.id attributes, want %d", n, want)
			}
		})
	}
}

// A process's container outlives the process: it is read when the process
// is observed, and the cached identity keeps it after /proc/PID is gone.
func TestProcessesContainerAfterExit(t *testing.T) {
	root := t.TempDir()
	writeProc(t, root, 9, fakeProc{exe: "/bin/job", cgroup: []string{"0::/kubepods/burstable/pod" + podU + "/" + cid1}})
	ps := NewProcesses(ProcessesConfig{ProcRoot: root, HostName: "h"})
	if _, err := ps.Observe(9); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "9")); err != nil {
		t.Fatal(err)
	}
	if p := ps.Process(9); p.ContainerID != cid1 || p.PodUID != podU || attrMap(p)["container.id"] != cid1 {
		t.Errorf("after exit: %+v", p)
	}
}

func TestProcessesCache(t *testing.T) {
	root := t.TempDir()
	writeProc(t, root, 7, fakeProc{exe: "/bin/sh", environ: []string{"OTEL_SERVICE_NAME=first"}})
	ps := NewProcesses(ProcessesConfig{ProcRoot: root, HostName: "h"})

	p1 := ps.Process(7)
	if p1.ServiceName != "first" {
		t.Fatalf("service %q", p1.ServiceName)
	}
	// The process exits: its identity stays until Forget.
	if err := os.RemoveAll(filepath.Join(root, "7")); err != nil {
		t.Fatal(err)
	}
	if p := ps.Process(7); p != p1 {
		t.Errorf("identity not kept after exit: %+v", p)
	}
	if _, err := ps.Observe(7); err == nil {
		t.Errorf("Observe of a missing process succeeded")
	}
	ps.Forget(7)
	p := ps.Process(7)
	if p.ServiceName != "unknown_service" || p.PID != 7 {
		t.Errorf("after Forget: %+v", p)
	}
	if attrMap(p)["process.pid"] != "7" || attrMap(p)["host.name"] != "h" {
		t.Errorf("minimal identity attributes: %v", p.Attributes)
	}

	// A new program under the same PID (exec): Observe replaces the
	// identity.
	ps.Forget(7)
	writeProc(t, root, 7, fakeProc{exe: "/bin/sh", environ: []string{"OTEL_SERVICE_NAME=first"}})
	ps.Process(7)
	if err := os.RemoveAll(filepath.Join(root, "7")); err != nil {
		t.Fatal(err)
	}
	writeProc(t, root, 7, fakeProc{exe: "/usr/bin/second"})
	if p, err := ps.Observe(7); err != nil || p.ServiceName != "second" {
		t.Fatalf("Observe after exec: %v %+v", err, p)
	}
	if p := ps.Process(7); p.ServiceName != "second" {
		t.Errorf("cached identity after exec: %q", p.ServiceName)
	}
}

func TestProcessesBounded(t *testing.T) {
	root := t.TempDir()
	ps := NewProcesses(ProcessesConfig{ProcRoot: root, HostName: "h", MaxEntries: 4})
	writeProc(t, root, 1, fakeProc{exe: "/bin/alive"})
	ps.Process(1)
	for pid := uint32(2); pid < 20; pid++ {
		ps.Process(pid) // not in the fake /proc: dead
	}
	if len(ps.cache) > 4 {
		t.Errorf("cache holds %d entries", len(ps.cache))
	}
	if e := ps.cache[1]; e == nil || e.proc.ServiceName != "alive" {
		t.Errorf("live process dropped before dead ones: %+v", e)
	}
}

func TestProcessesDefaults(t *testing.T) {
	ps := NewProcesses(ProcessesConfig{})
	if ps.root != "/proc" || ps.maxEntries != defaultMaxEntries {
		t.Errorf("defaults: root %q max %d", ps.root, ps.maxEntries)
	}
	// This test's own process resolves from the real /proc.
	p, err := ps.Observe(uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if p.ServiceName == "" || attrMap(p)["process.pid"] != strconv.Itoa(os.Getpid()) {
		t.Errorf("self: %+v", p)
	}
}

func TestPercentDecode(t *testing.T) {
	for in, want := range map[string]string{"a%20b": "a b", "plain": "plain", "%41%42": "AB"} {
		if got, err := percentDecode(in); err != nil || got != want {
			t.Errorf("percentDecode(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"%", "%4", "%zz"} {
		if _, err := percentDecode(in); err == nil {
			t.Errorf("percentDecode(%q) succeeded", in)
		}
	}
}

// OmitArgs leaves the arguments out, from /proc and from exec events; the
// command stays, redacted.
func TestProcessesOmitArgs(t *testing.T) {
	root := t.TempDir()
	writeProc(t, root, 100, fakeProc{exe: "/bin/db", cmdline: []string{"db", "--port=1"}})
	ps := NewProcesses(ProcessesConfig{ProcRoot: root, HostName: "h", OmitArgs: true})
	p, err := ps.Observe(100)
	if err != nil {
		t.Fatal(err)
	}
	checkAttrs(t, p, map[string]string{"process.command": "db"}, []string{"process.command_args"})
	ps.Exec(5, "/bin/x", []string{"x a://u:p@h/", "--port=1"}, 1)
	checkAttrs(t, ps.Process(5), map[string]string{"process.command": "x a://REDACTED@h/"}, []string{"process.command_args"})
}

// An exec recorded from the kernel's event names a process that is gone
// before /proc is read; Observe replaces it while the process can be read,
// and a failed Observe keeps it.
func TestProcessesExec(t *testing.T) {
	root := t.TempDir()
	ps := NewProcesses(ProcessesConfig{ProcRoot: root, HostName: "h"})
	for _, tc := range []struct {
		name       string
		path       string
		argv       []string
		wantName   string
		wantAttrs  map[string]string
		wantAbsent []string
	}{
		{"absolute path", "/usr/bin/curl", []string{"curl", "-sS", "https://x/?a=1"}, "curl",
			map[string]string{"process.executable.name": "curl", "process.executable.path": "/usr/bin/curl", "process.command": "curl", "host.name": "h", "process.pid": "5"}, nil},
		{"relative path", "./job", []string{"./job"}, "job",
			map[string]string{"process.executable.name": "job", "process.command": "./job"}, []string{"process.executable.path"}},
		{"no argv", "/bin/true", nil, "true",
			map[string]string{"process.executable.name": "true"}, []string{"process.command", "process.command_args"}},
		{"secrets", "/usr/bin/mysql", []string{"mysql", "-pS3", "--host=db", "postgres://a:S3@h/"}, "mysql",
			map[string]string{"process.command_args": `["-pREDACTED","--host=db","postgres://REDACTED@h/"]`}, nil},
		{"no path", "", []string{"/opt/app/server", "--port=1"}, "server",
			map[string]string{"process.executable.name": "server", "process.command": "/opt/app/server"}, []string{"process.executable.path"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps.Exec(5, tc.path, tc.argv, 1)
			p := ps.Process(5)
			if p.ServiceName != tc.wantName || p.ContainerID != "" {
				t.Errorf("service %q container %q, want %q and none", p.ServiceName, p.ContainerID, tc.wantName)
			}
			checkAttrs(t, p, tc.wantAttrs, tc.wantAbsent)
		})
	}
	// Observe fails (no /proc/5): the exec identity stays.
	if _, err := ps.Observe(5); err == nil || ps.Process(5).ServiceName != "server" {
		t.Errorf("after a failed Observe: %+v, err %v", ps.Process(5), err)
	}
	// The process can be read: its full identity replaces the exec one.
	writeProc(t, root, 5, fakeProc{exe: "/opt/app/server", environ: []string{"OTEL_SERVICE_NAME=payments"}})
	if _, err := ps.Observe(5); err != nil || ps.Process(5).ServiceName != "payments" {
		t.Errorf("after Observe: %+v, err %v", ps.Process(5), err)
	}
}

// TestProcessesExecuted: identities are ordered by the kernel's clock
// against the execs Executed reports (at their place in a collector's
// ring): a name read before the last exec is tentative, the first read or
// exec event after it replaces that, and nothing older replaces anything
// newer.
func TestProcessesExecuted(t *testing.T) {
	parent := fakeProc{exe: "/tmp/e2e.test", cmdline: []string{"/tmp/e2e.test", "-test.run=X"}}
	curl := fakeProc{exe: "/usr/bin/curl", cmdline: []string{"curl", "-k"}}
	for _, tc := range []struct {
		name string
		// steps runs after /proc/7 shows parent; now returns a
		// monotonic time after everything before.
		steps     func(t *testing.T, ps *Processes, proc7 func(*fakeProc), now func() uint64)
		want      string
		tentative bool
	}{
		{"read before the exec, read again after", func(t *testing.T, ps *Processes, proc7 func(*fakeProc), now func() uint64) {
			ps.Observe(7)
			ps.Executed(7, now())
			proc7(&curl)
		}, "curl", false},
		{"read before the exec, gone, exec event after", func(t *testing.T, ps *Processes, proc7 func(*fakeProc), now func() uint64) {
			ps.Observe(7)
			at := now()
			ps.Executed(7, at)
			proc7(nil)
			if p := ps.Process(7); !p.Tentative || p.ServiceName != "e2e.test" {
				t.Errorf("before the exec event: %q tentative %v, want e2e.test tentative", p.ServiceName, p.Tentative)
			}
			ps.Exec(7, "/usr/bin/curl", []string{"curl"}, at)
		}, "curl", false},
		{"read before the exec, gone, no exec event", func(t *testing.T, ps *Processes, proc7 func(*fakeProc), now func() uint64) {
			ps.Observe(7)
			ps.Executed(7, now())
			proc7(nil)
		}, "e2e.test", true},
		{"exec event and read before the marker", func(t *testing.T, ps *Processes, proc7 func(*fakeProc), now func() uint64) {
			at := now()
			proc7(&curl)
			ps.Exec(7, "/usr/bin/curl", []string{"curl"}, at)
			ps.Observe(7)
			ps.Executed(7, at)
		}, "curl", false},
		{"read before the exec, stored after the marker", func(t *testing.T, ps *Processes, proc7 func(*fakeProc), now func() uint64) {
			before := now()
			ps.Executed(7, now())
			proc7(nil)
			ps.Exec(7, "/tmp/e2e.test", nil, before)
		}, "e2e.test", true},
		{"an older identity does not replace a newer one", func(t *testing.T, ps *Processes, proc7 func(*fakeProc), now func() uint64) {
			older, newer := now(), now()
			proc7(nil)
			ps.Exec(7, "/usr/bin/curl", nil, newer)
			ps.Exec(7, "/bin/sh", nil, older)
		}, "curl", false},
		{"no exec: the first read stays", func(t *testing.T, ps *Processes, proc7 func(*fakeProc), now func() uint64) {
			ps.Observe(7)
			proc7(nil)
		}, "e2e.test", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			ps := NewProcesses(ProcessesConfig{ProcRoot: root, HostName: "h"})
			proc7 := replaceProc(t, root, 7)
			proc7(&parent)
			last := ktime.Now()
			now := func() uint64 { last = max(last+1, ktime.Now()); return last }
			tc.steps(t, ps, proc7, now)
			p := ps.Process(7)
			if p.ServiceName != tc.want || p.Tentative != tc.tentative {
				t.Errorf("process %q tentative %v, want %q tentative %v", p.ServiceName, p.Tentative, tc.want, tc.tentative)
			}
			if again := ps.Process(7); again != p {
				t.Errorf("the identity is not cached: %p then %p", p, again)
			}
		})
	}
}

// TestProcessesExecsBounded: every exec on the node is reported, most of
// processes nobody asks about; they take no identity entry and a bounded
// amount of memory.
func TestProcessesExecsBounded(t *testing.T) {
	ps := NewProcesses(ProcessesConfig{ProcRoot: t.TempDir(), HostName: "h"})
	for pid := uint32(1); pid <= 3*maxPendingExecs; pid++ {
		ps.Executed(pid, uint64(pid))
	}
	if len(ps.cache) != 0 || len(ps.execs) > maxPendingExecs {
		t.Errorf("%d identities and %d execs kept, want none and at most %d", len(ps.cache), len(ps.execs), maxPendingExecs)
	}
}

// TestProcessesAwaiting: a process whose exec a collector reported is
// awaiting its name until discovery has read past that exec, or until
// something names it.
func TestProcessesAwaiting(t *testing.T) {
	ps := NewProcesses(ProcessesConfig{ProcRoot: t.TempDir(), HostName: "h"})
	if ps.Awaiting(9) {
		t.Errorf("a process with no exec reported awaits a name")
	}
	ps.Executed(9, 100) // the collector's exec marker; discovery is behind
	if !ps.Awaiting(9) {
		t.Errorf("exec at 100, discovery at 0: not awaiting")
	}
	ps.Process(9) // gone from /proc: unknown_service, cached
	if !ps.Awaiting(9) {
		t.Errorf("an unnamed identity stops the wait")
	}
	ps.Discovery().Advance(99)
	if !ps.Awaiting(9) {
		t.Errorf("discovery at 99, exec at 100: not awaiting")
	}
	ps.Discovery().Advance(100)
	if ps.Awaiting(9) {
		t.Errorf("discovery past the exec (not selected, no name coming): still awaiting")
	}
	ps.Discovery().Advance(50) // never goes back
	if ps.Awaiting(9) {
		t.Errorf("Discovered went back")
	}

	ps.Executed(10, 200)
	ps.Exec(10, "/usr/bin/curl", []string{"curl"}, 200) // named from the exec event
	if ps.Awaiting(10) || ps.Process(10).ServiceName != "curl" {
		t.Errorf("named by its exec event: awaiting %v, name %q", ps.Awaiting(10), ps.Process(10).ServiceName)
	}
}

// TestProcessesReadAfterExec: once discovery has handled an exec, the
// identity is one read from /proc after it. A read begun during the exec
// (the new executable mapped, its environment not laid out yet: no
// OTEL_SERVICE_NAME) and the exec event's identity (no environment at
// all) both give way to a read after the exec; an identity read after the
// exec is kept, not read again; a process gone keeps the exec event's.
func TestProcessesReadAfterExec(t *testing.T) {
	const exe = "/tmp/grpcgo"
	argv := []string{exe, "-mode", "client"}
	halfSetUp := fakeProc{exe: exe}
	client := fakeProc{exe: exe, cmdline: argv, environ: []string{"OTEL_SERVICE_NAME=grpc-go-client"}}
	for _, tc := range []struct {
		name   string
		steps  func(ps *Processes, proc7 func(*fakeProc), now func() uint64) uint64 // returns the exec's time
		before string                                                               // the name before ReadAfterExec
		want   string
	}{
		{"read during the exec, then the exec event", func(ps *Processes, proc7 func(*fakeProc), now func() uint64) uint64 {
			proc7(&halfSetUp)
			ps.Observe(7)
			at := now()
			proc7(&client)
			ps.Exec(7, exe, argv, at)
			return at
		}, "grpcgo", "grpc-go-client"},
		{"the exec event, then a read during the next exec", func(ps *Processes, proc7 func(*fakeProc), now func() uint64) uint64 {
			proc7(&client)
			ps.Exec(7, exe, argv, now())
			ps.Observe(7) // read after the first exec: named
			proc7(&halfSetUp)
			ps.Observe(7) // during the second
			at := now()
			proc7(&client)
			ps.Exec(7, exe, argv, at)
			return at
		}, "grpcgo", "grpc-go-client"},
		{"read after the exec: kept", func(ps *Processes, proc7 func(*fakeProc), now func() uint64) uint64 {
			at := now()
			proc7(&client)
			ps.Exec(7, exe, argv, at)
			ps.Observe(7)
			proc7(&fakeProc{exe: exe, environ: []string{"OTEL_SERVICE_NAME=not-read-again"}})
			return at
		}, "grpc-go-client", "grpc-go-client"},
		{"gone: the exec event's identity stays", func(ps *Processes, proc7 func(*fakeProc), now func() uint64) uint64 {
			proc7(&halfSetUp)
			ps.Observe(7)
			at := now()
			proc7(nil)
			ps.Exec(7, exe, argv, at)
			return at
		}, "grpcgo", "grpcgo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			ps := NewProcesses(ProcessesConfig{ProcRoot: root, HostName: "h"})
			proc7 := replaceProc(t, root, 7)
			last := ktime.Now()
			now := func() uint64 { last = max(last+1, ktime.Now()); return last }
			at := tc.steps(ps, proc7, now)
			if p := ps.Process(7); p.ServiceName != tc.before {
				t.Fatalf("named %q before ReadAfterExec, want %q", p.ServiceName, tc.before)
			}
			ps.ReadAfterExec(7, at)
			if p := ps.Process(7); p.ServiceName != tc.want || p.Tentative {
				t.Errorf("after ReadAfterExec: %q tentative %v, want %q", p.ServiceName, p.Tentative, tc.want)
			}
		})
	}
}

// replaceProc returns a function that replaces pid's directory under the
// fake /proc root with fp's, or removes it when fp is nil.
func replaceProc(t *testing.T, root string, pid uint32) func(fp *fakeProc) {
	return func(fp *fakeProc) {
		if err := os.RemoveAll(filepath.Join(root, strconv.FormatUint(uint64(pid), 10))); err != nil {
			t.Fatal(err)
		}
		if fp != nil {
			writeProc(t, root, pid, *fp)
		}
	}
}
