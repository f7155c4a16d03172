package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/metadata"
	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// v1TestHierarchy is the name of the cgroup v1 hierarchy the tests mount: a
// named hierarchy with no controller, so that moving a process into it
// changes nothing but its /proc/PID/cgroup. A fixed name, so that a
// hierarchy a crashed run left behind is reused, not multiplied.
const v1TestHierarchy = "periscope_test"

// kubeCgroup is a cgroup made by a test in one of the layouts the kubelet
// gives containers, without any container runtime.
type kubeCgroup struct {
	Layout      string // a name for messages
	Dir         string // the leaf cgroup's directory
	ContainerID string // what the agent must read from it
	PodUID      string
}

// randomHex returns n random bytes as hex.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// randomPodUID returns a random UUID in the kubelet's form.
func randomPodUID(t *testing.T) string {
	h := randomHex(t, 16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// cgroup2Root returns where the cgroup v2 (unified) hierarchy is mounted,
// from /proc/self/mountinfo: /sys/fs/cgroup on a pure v2 host,
// /sys/fs/cgroup/unified on a hybrid one.
func cgroup2Root(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && fields[3] == "/" {
				return fields[4]
			}
		}
	}
	t.Fatalf("no cgroup2 file system mounted (no cgroup2 line with root / in /proc/self/mountinfo); the container tests need one")
	return ""
}

// mountV1Hierarchy mounts the named cgroup v1 hierarchy v1TestHierarchy on
// a fresh directory and unmounts it at the end of the test.
func mountV1Hierarchy(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "periscope-cgv1-")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("cgroup", dir, "cgroup", 0, "none,name="+v1TestHierarchy); err != nil {
		_ = os.Remove(dir)
		t.Fatalf("mount -t cgroup -o none,name=%s: %v: this kernel does not allow a named cgroup v1 hierarchy", v1TestHierarchy, err)
	}
	t.Cleanup(func() {
		defer os.Remove(dir)
		// The kernel destroys a v1 hierarchy when it is unmounted with no
		// child cgroups, but removed cgroups stay its children until RCU
		// callbacks free them, which this kernel (CONFIG_RCU_LAZY) batches
		// for tens of seconds: unmounted before then, the hierarchy lingers
		// in every process's /proc/PID/cgroup. So: unmount, flush the
		// callbacks (rcutree's do_rcu_barrier) while waiting for the
		// hierarchy to go, and if it stays, mount it again and unmount it
		// once the children are surely gone. (Mounting it while it is
		// being destroyed would revive it: wait between attempts.)
		for attempt := 1; ; attempt++ {
			if err := syscall.Unmount(dir, 0); err != nil {
				t.Errorf("umount %s: %v", dir, err)
				return
			}
			for range 15 {
				if !v1HierarchyExists(t) {
					return
				}
				_ = os.WriteFile("/sys/module/rcutree/parameters/do_rcu_barrier", []byte("1"), 0o644)
				time.Sleep(200 * time.Millisecond)
			}
			if attempt == 10 {
				t.Errorf("cgroup v1 hierarchy name=%s still exists after unmounting it %d times", v1TestHierarchy, attempt)
				return
			}
			if err := syscall.Mount("cgroup", dir, "cgroup", 0, "none,name="+v1TestHierarchy); err != nil {
				t.Errorf("mount the lingering hierarchy %s again to destroy it: %v", v1TestHierarchy, err)
				return
			}
		}
	})
	return dir
}

// v1HierarchyExists reports whether the test's named v1 hierarchy exists.
func v1HierarchyExists(t *testing.T) bool {
	t.Helper()
	return strings.Contains(readFile(t, "/proc/self/cgroup"), ":name="+v1TestHierarchy+":")
}

// makeKubeCgroup creates the cgroup rel (a path below root, parents
// included) and removes it at the end of the test, leaf first, after
// moving any process still in it to root, with the parents that no other
// cgroup uses. Tests running at the same time may share parents
// (kubepods.slice): a parent removed by one while the other creates its
// path is created again.
func makeKubeCgroup(t *testing.T, layout, root, rel, containerID, podUID string) kubeCgroup {
	t.Helper()
	dir := filepath.Join(root, rel)
	var err error
	for range 10 {
		if err = os.MkdirAll(dir, 0o755); !errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	if err != nil {
		t.Fatalf("create cgroup %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if !removeCgroup(t, root, dir) {
			return
		}
		for parent := filepath.Dir(dir); parent != root && strings.HasPrefix(parent, root+"/"); parent = filepath.Dir(parent) {
			if syscall.Rmdir(parent) != nil {
				return // used by another cgroup, or gone already
			}
		}
	})
	return kubeCgroup{Layout: layout, Dir: dir, ContainerID: containerID, PodUID: podUID}
}

// removeCgroup moves the processes left in dir to root and removes dir,
// waiting a little for exiting processes to leave it. It reports whether
// dir is gone.
func removeCgroup(t *testing.T, root, dir string) bool {
	var err error
	for range 50 {
		if b, rerr := os.ReadFile(filepath.Join(dir, "cgroup.procs")); rerr == nil {
			for pid := range strings.FieldsSeq(string(b)) {
				_ = os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(pid), 0o644)
			}
		}
		if err = syscall.Rmdir(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("remove cgroup %s: %v", dir, err)
	return false
}

// startInCgroup starts name with args as the first process of cgroup cg:
// a shell writes its own PID into cgroup.procs and then executes the
// program, which is so born in its container as a runtime would do it.
func startInCgroup(t *testing.T, cg kubeCgroup, env []string, name string, args ...string) *proc {
	t.Helper()
	sh := harness.LookTool(t, "sh")
	script := `echo $$ > "$1/cgroup.procs" || exit 97; shift; exec "$@"`
	p := startProc(t, env, sh, append([]string{"-c", script, "sh", cg.Dir, name}, args...)...)
	return p
}

// TestContainerCgroups: HTTPS servers (python http.server wrapped in ssl)
// born in real cgroups laid out as the kubelet lays out containers — cgroup
// v2 with the systemd driver (containerd, and cri-o in a guaranteed pod),
// cgroup v2 with the cgroupfs driver, and a cgroup v1 hierarchy with the
// cgroupfs driver — and no container runtime at all. Every server span
// carries its server's container.id, every curl span the test's own (none
// on a host), and the agent's RED metrics count each container's requests
// exactly under its container_id label.
func TestContainerCgroups(t *testing.T) {
	harness.RequireRoot(t)
	v2 := cgroup2Root(t)
	v1 := mountV1Hierarchy(t)

	podA, podB, podC, podD := randomPodUID(t), randomPodUID(t), randomPodUID(t), randomPodUID(t)
	ctrA, ctrB, ctrC, ctrD := randomHex(t, 32), randomHex(t, 32), randomHex(t, 32), randomHex(t, 32)
	systemdPod := func(qos, uid string) string {
		escaped := strings.ReplaceAll(uid, "-", "_")
		if qos == "" {
			return "kubepods.slice/kubepods-pod" + escaped + ".slice"
		}
		return "kubepods.slice/kubepods-" + qos + ".slice/kubepods-" + qos + "-pod" + escaped + ".slice"
	}
	cgroups := []kubeCgroup{
		makeKubeCgroup(t, "v2 systemd containerd besteffort", v2,
			systemdPod("besteffort", podA)+"/cri-containerd-"+ctrA+".scope", ctrA, podA),
		makeKubeCgroup(t, "v2 systemd cri-o guaranteed", v2,
			systemdPod("", podB)+"/crio-"+ctrB+".scope", ctrB, podB),
		makeKubeCgroup(t, "v2 cgroupfs burstable", v2,
			"kubepods/burstable/pod"+podC+"/"+ctrC, ctrC, podC),
		makeKubeCgroup(t, "v1 cgroupfs besteffort", v1,
			"kubepods/besteffort/pod"+podD+"/"+ctrD, ctrD, podD),
	}

	// What the test's own processes (the curl clients) carry: nothing on
	// a host, the container's ID when the tests run in one.
	self, err := os.Open("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	host, err := metadata.ParseCgroup(self)
	self.Close()
	if err != nil {
		t.Fatal(err)
	}

	bin := t.TempDir()
	py := harness.CopyExeTo(t, python(t), bin, "pyctr")
	curl := harness.CopyExeTo(t, harness.LookTool(t, "curl"), bin, "curlctr")
	e := startAgent(t, "--include-exe", filepath.Join(bin, "*"))
	cert, key, ca := harness.GenerateCert(t, filepath.Join(t.TempDir(), "tls"))

	type target struct {
		cg       kubeCgroup
		srv      *proc
		port     int
		requests int
	}
	var targets []*target
	for i, cg := range cgroups {
		srv := startInCgroup(t, cg, nil, py, testdataPath(t, "https_server.py"), cert, key)
		srv.expect("started", 20*time.Second)
		// The server is in its cgroup, as the agent will read it.
		cgFile := readFile(t, fmt.Sprintf("/proc/%d/cgroup", srv.PID))
		if got, err := metadata.ParseCgroup(strings.NewReader(cgFile)); err != nil || got.ID != cg.ContainerID || got.PodUID != cg.PodUID {
			t.Fatalf("%s: server pid %d is not in its cgroup (parsed %+v, %v):\n%s", cg.Layout, srv.PID, got, err, cgFile)
		}
		srv.send("go")
		port, err := strconv.Atoi(srv.expect("listening", 20*time.Second))
		if err != nil {
			t.Fatalf("%s: bad port from the server: %v", cg.Layout, err)
		}
		targets = append(targets, &target{cg: cg, srv: srv, port: port, requests: 3 + i})
	}
	for _, tg := range targets {
		e.instrumented(t, tg.srv.PID)
	}

	// Each server gets its own number of requests over one keep-alive
	// connection from one curl. curl reads its configuration from stdin,
	// so that it is instrumented before it sends anything.
	for _, tg := range targets {
		cli := startProc(t, nil, curl, "-K", "-")
		settled(t, e.agent, cli.PID)
		var cfg strings.Builder
		fmt.Fprintf(&cfg, "silent\nshow-error\nfail\ncacert = %q\n", ca)
		for range tg.requests {
			fmt.Fprintf(&cfg, "url = \"https://127.0.0.1:%d/hello\"\noutput = \"/dev/null\"\n", tg.port)
		}
		if _, err := io.WriteString(cli.stdin, cfg.String()); err != nil {
			t.Fatalf("%s: write curl's configuration: %v", tg.cg.Layout, err)
		}
		cli.stdin.Close()
		cli.mustSucceed(20 * time.Second)
	}

	for _, tg := range targets {
		server := e.spans(t, tg.requests, byPIDs(kindServer, tg.srv.PID))
		client := e.spans(t, tg.requests, func(s otlpreceiver.Span) bool {
			exe, _ := s.Resource["process.executable.path"].(string)
			return int(s.Kind) == kindClient && exe == curl && attrInt(s, "server.port") == int64(tg.port)
		})
		for _, s := range server {
			if got, _ := s.Resource["container.id"].(string); got != tg.cg.ContainerID {
				t.Errorf("%s: server span %q: container.id %q, want %q; resource %v", tg.cg.Layout, s.Name, got, tg.cg.ContainerID, s.Resource)
			}
			if s.Name != "GET /hello" || attrInt(s, "http.response.status_code") != 200 {
				t.Errorf("%s: server span %q code %d, want GET /hello 200", tg.cg.Layout, s.Name, attrInt(s, "http.response.status_code"))
			}
		}
		for _, s := range client {
			got, present := s.Resource["container.id"].(string)
			if host.ID == "" && present || got != host.ID {
				t.Errorf("%s: curl span %q: container.id %q (present %v), want the test's own %q", tg.cg.Layout, s.Name, got, present, host.ID)
			}
		}
	}

	// The RED metrics: each container's server requests, exactly.
	for _, tg := range targets {
		waitMetric(t, e.agent, "http_server_request_duration_seconds_count",
			map[string]string{"container_id": tg.cg.ContainerID}, strconv.Itoa(tg.requests), equals(float64(tg.requests)))
	}
}

// settled waits until the agent has had pid instrumented for a second
// without a break. A process the agent has just discovered can lose its
// probes for a moment and get them again (seen with curl under
// --include-exe: two "attached" log lines for one PID 140 ms apart), and
// requests sent in between would have no spans.
func settled(t *testing.T, a *harness.Agent, pid int) {
	t.Helper()
	const quiet = time.Second
	deadline := time.Now().Add(20 * time.Second)
	var since time.Time
	for {
		st, err := a.Status(t.Context())
		if err != nil {
			t.Fatalf("agent /status: %v", err)
		}
		listed := false
		for _, p := range st.Processes {
			if p.PID == pid && len(p.Collectors) > 0 {
				listed = true
			}
		}
		switch {
		case !listed:
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= quiet:
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not instrumented for %v without a break within 20 s", pid, quiet)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
