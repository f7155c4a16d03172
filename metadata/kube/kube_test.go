package kube

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/periscope-apm/periscope/span"
)

// gathered returns the value of the one series of a gauge or counter.
func gathered(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name || len(f.GetMetric()) != 1 {
			continue
		}
		m := f.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no single series %s", name)
	return 0
}

const (
	testNode = "node-1"
	testNS   = "shop"
	cid1     = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cid2     = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

func ref(kind, name, uid string) metav1.OwnerReference {
	yes := true
	apiVersion := "apps/v1"
	if kind == "Job" || kind == "CronJob" {
		apiVersion = "batch/v1"
	}
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID(uid), Controller: &yes}
}

func newTestPod(name, uid string, labels map[string]string, owners []metav1.OwnerReference, statuses ...corev1.ContainerStatus) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: testNS, UID: types.UID(uid),
			Labels: labels, OwnerReferences: owners,
		},
		Spec:   corev1.PodSpec{NodeName: testNode},
		Status: corev1.PodStatus{ContainerStatuses: statuses},
	}
}

func status(name, id string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, ContainerID: id}
}

// attrMap flattens attributes for comparison.
func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func TestContainerID(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"containerd://" + cid1, cid1},
		{"cri-o://" + cid1, cid1},
		{"docker://" + cid1, cid1},
		{cid1, cid1},
		{"", ""},
	} {
		if got := ContainerID(tc.in); got != tc.want {
			t.Errorf("ContainerID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNewPodOwners(t *testing.T) {
	objects := []runtime.Object{
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
			Name: "web-7d4b9c", Namespace: testNS, UID: "rs-uid",
			OwnerReferences: []metav1.OwnerReference{ref("Deployment", "web", "dep-uid")},
		}},
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "lonely-rs", Namespace: testNS, UID: "rs2-uid"}},
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{
			Name: "report-29012345", Namespace: testNS, UID: "job-uid",
			OwnerReferences: []metav1.OwnerReference{ref("CronJob", "report", "cj-uid")},
		}},
	}
	client := fake.NewClientset(objects...)
	base := map[string]string{
		"k8s.pod.name": "p", "k8s.pod.uid": "u", "k8s.namespace.name": testNS, "k8s.node.name": testNode,
	}
	with := func(extra map[string]string) map[string]string {
		m := maps.Clone(base)
		maps.Copy(m, extra)
		return m
	}
	for _, tc := range []struct {
		name        string
		labels      map[string]string
		owners      []metav1.OwnerReference
		wantAttrs   map[string]string
		wantService string
	}{
		{
			name:      "bare pod",
			wantAttrs: base,
		},
		{
			name:      "ReplicaSet of a Deployment",
			owners:    []metav1.OwnerReference{ref("ReplicaSet", "web-7d4b9c", "rs-uid")},
			wantAttrs: with(map[string]string{"k8s.replicaset.name": "web-7d4b9c", "k8s.replicaset.uid": "rs-uid", "k8s.deployment.name": "web", "k8s.deployment.uid": "dep-uid"}),
			// The top owner names the service.
			wantService: "web",
		},
		{
			name:        "ReplicaSet without a Deployment",
			owners:      []metav1.OwnerReference{ref("ReplicaSet", "lonely-rs", "rs2-uid")},
			wantAttrs:   with(map[string]string{"k8s.replicaset.name": "lonely-rs", "k8s.replicaset.uid": "rs2-uid"}),
			wantService: "lonely-rs",
		},
		{
			name:        "ReplicaSet not found",
			owners:      []metav1.OwnerReference{ref("ReplicaSet", "gone-rs", "rs3-uid")},
			wantAttrs:   with(map[string]string{"k8s.replicaset.name": "gone-rs", "k8s.replicaset.uid": "rs3-uid"}),
			wantService: "gone-rs",
		},
		{
			name:        "DaemonSet",
			owners:      []metav1.OwnerReference{ref("DaemonSet", "agent", "ds-uid")},
			wantAttrs:   with(map[string]string{"k8s.daemonset.name": "agent", "k8s.daemonset.uid": "ds-uid"}),
			wantService: "agent",
		},
		{
			name:        "StatefulSet",
			owners:      []metav1.OwnerReference{ref("StatefulSet", "db", "sts-uid")},
			wantAttrs:   with(map[string]string{"k8s.statefulset.name": "db", "k8s.statefulset.uid": "sts-uid"}),
			wantService: "db",
		},
		{
			name:        "Job of a CronJob",
			owners:      []metav1.OwnerReference{ref("Job", "report-29012345", "job-uid")},
			wantAttrs:   with(map[string]string{"k8s.job.name": "report-29012345", "k8s.job.uid": "job-uid", "k8s.cronjob.name": "report", "k8s.cronjob.uid": "cj-uid"}),
			wantService: "report",
		},
		{
			name:        "name label wins over the owner",
			labels:      map[string]string{LabelName: "storefront", LabelVersion: "1.2.3"},
			owners:      []metav1.OwnerReference{ref("StatefulSet", "db", "sts-uid")},
			wantAttrs:   with(map[string]string{"k8s.statefulset.name": "db", "k8s.statefulset.uid": "sts-uid"}),
			wantService: "storefront",
		},
		{
			name:        "custom controller",
			owners:      []metav1.OwnerReference{ref("Rollout", "canary", "ro-uid")},
			wantAttrs:   base,
			wantService: "canary",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPod("p", "u", tc.labels, tc.owners)
			pod := NewPod(context.Background(), p, newOwnerCache(fakeAPI{client}, nil))
			if got := attrMap(pod.Attributes); !maps.Equal(got, tc.wantAttrs) {
				t.Errorf("attributes = %v, want %v", got, tc.wantAttrs)
			}
			if pod.Service != tc.wantService {
				t.Errorf("service = %q, want %q", pod.Service, tc.wantService)
			}
		})
	}
}

func TestOwnerForbiddenGuessesDeployment(t *testing.T) {
	client := fake.NewClientset()
	gets := 0
	client.PrependReactor("get", "replicasets", func(k8stesting.Action) (bool, runtime.Object, error) {
		gets++
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "replicasets"}, "web-5f6c7", errors.New("no RBAC"))
	})
	owners := newOwnerCache(fakeAPI{client}, nil)
	for range 3 {
		p := newTestPod("web-5f6c7-abcde", "u", map[string]string{"pod-template-hash": "5f6c7"},
			[]metav1.OwnerReference{ref("ReplicaSet", "web-5f6c7", "rs-uid")})
		pod := NewPod(context.Background(), p, owners)
		if got := attrMap(pod.Attributes)["k8s.deployment.name"]; got != "web" {
			t.Fatalf("k8s.deployment.name = %q, want web (guessed from the names)", got)
		}
	}
	if gets != 1 {
		t.Errorf("%d GETs of the ReplicaSet, want 1 (the failure is cached)", gets)
	}
}

// fakeProcs is a ProcessResolver with fixed identities.
type fakeProcs map[uint32]*span.Process

func (f fakeProcs) Process(pid uint32) *span.Process { return f[pid] }

func proc(pid uint32, service, exe, containerID, podUID string, extra ...attribute.KeyValue) *span.Process {
	attrs := []attribute.KeyValue{attribute.Int64("process.pid", int64(pid))}
	if exe != "" {
		attrs = append(attrs, attribute.String("process.executable.name", exe))
	}
	attrs = append(attrs, extra...)
	return &span.Process{PID: pid, ServiceName: service, ContainerID: containerID, PodUID: podUID, Attributes: attrs}
}

func TestDecorateServiceName(t *testing.T) {
	labelled := &Pod{Namespace: testNS, Service: "storefront", Version: "2.0",
		Attributes: []attribute.KeyValue{keyPodName.String("p"), keyNamespace.String(testNS)}}
	owned := &Pod{Namespace: testNS, Service: "web",
		Attributes: []attribute.KeyValue{keyPodName.String("p"), keyNamespace.String(testNS)}}
	bare := &Pod{Namespace: testNS,
		Attributes: []attribute.KeyValue{keyPodName.String("p"), keyNamespace.String(testNS)}}
	for _, tc := range []struct {
		name          string
		proc          *span.Process
		pod           *Pod
		wantService   string
		wantNamespace string
		wantVersion   string
	}{
		{"OTEL_SERVICE_NAME wins", proc(1, "checkout", "python3", cid1, ""), labelled, "checkout", testNS, "2.0"},
		{"label over executable", proc(1, "python3", "python3", cid1, ""), labelled, "storefront", testNS, "2.0"},
		{"owner over executable", proc(1, "nginx", "nginx", cid1, ""), owned, "web", testNS, ""},
		{"executable for a bare pod", proc(1, "nginx", "nginx", cid1, ""), bare, "nginx", testNS, ""},
		{"unknown process", proc(1, "unknown_service", "", cid1, ""), owned, "web", testNS, ""},
		{"process's own namespace and version", proc(1, "checkout", "java", cid1, "",
			attribute.String("service.namespace", "payments"), attribute.String("service.version", "9")),
			labelled, "checkout", "payments", "9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Decorate(tc.proc, tc.pod, "app")
			if got.ServiceName != tc.wantService {
				t.Errorf("service.name = %q, want %q", got.ServiceName, tc.wantService)
			}
			m := attrMap(got.Attributes)
			if m["service.namespace"] != tc.wantNamespace {
				t.Errorf("service.namespace = %q, want %q", m["service.namespace"], tc.wantNamespace)
			}
			if m["service.version"] != tc.wantVersion {
				t.Errorf("service.version = %q, want %q", m["service.version"], tc.wantVersion)
			}
			if m["k8s.container.name"] != "app" || m["container.id"] != cid1 || m["k8s.pod.name"] != "p" {
				t.Errorf("attributes = %v, want k8s.container.name=app, container.id, k8s.pod.name=p", m)
			}
			if tc.proc.ServiceName == got.ServiceName && len(tc.proc.Attributes) == len(got.Attributes) {
				t.Errorf("the base identity was not copied")
			}
		})
	}
}

func TestDecorateReplacesProcessK8sAttributes(t *testing.T) {
	// A process told its pod name through OTEL_RESOURCE_ATTRIBUTES (a
	// stale one, say); the informer's wins, k8s.cluster.name stays.
	p := proc(1, "svc", "svc", cid1, "", attribute.String("k8s.pod.name", "old"),
		attribute.String("k8s.cluster.name", "prod"), attribute.String("container.id", cid1))
	pod := &Pod{Namespace: testNS, Attributes: []attribute.KeyValue{keyPodName.String("new"), keyNamespace.String(testNS)}}
	got := Decorate(p, pod, "")
	counts := map[attribute.Key]int{}
	for _, kv := range got.Attributes {
		counts[kv.Key]++
	}
	m := attrMap(got.Attributes)
	if m["k8s.pod.name"] != "new" || m["k8s.cluster.name"] != "prod" || counts["k8s.pod.name"] != 1 || counts["container.id"] != 1 {
		t.Errorf("attributes = %v", got.Attributes)
	}
}

// startWatcher runs a Watcher on a fake client and waits until its pod
// watch is established (the fake client loses events sent before).
func startWatcher(t *testing.T, client *fake.Clientset, reg prometheus.Registerer) *Watcher {
	t.Helper()
	var once sync.Once
	watching := make(chan struct{})
	client.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
		once.Do(func() { close(watching) })
		return false, nil, nil
	})
	w, err := NewWatcher(WatcherConfig{API: fakeAPI{client}, NodeName: testNode, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if !w.WaitSynced(sctx) {
		t.Fatal("watcher did not sync")
	}
	select {
	case <-watching:
	case <-time.After(10 * time.Second):
		t.Fatal("watcher did not start watching")
	}
	return w
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestResolverFollowsPods(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
			Name: "web-7d4b9c", Namespace: testNS, UID: "rs-uid",
			OwnerReferences: []metav1.OwnerReference{ref("Deployment", "web", "dep-uid")},
		}},
		newTestPod("web-7d4b9c-x1", "pod-uid-1", nil,
			[]metav1.OwnerReference{ref("ReplicaSet", "web-7d4b9c", "rs-uid")},
			status("app", "containerd://"+cid1)),
	)
	reg := prometheus.NewRegistry()
	w := startWatcher(t, client, reg)
	if n := gathered(t, reg, "periscope_kubernetes_pods"); n != 1 {
		t.Errorf("periscope_kubernetes_pods = %v, want 1", n)
	}
	procs := fakeProcs{
		10: proc(10, "nginx", "nginx", cid1, "pod-uid-1"),
		11: proc(11, "sidecar", "sidecar", cid2, "pod-uid-1"), // container ID not in the status yet
		12: proc(12, "host", "host", "", ""),
		13: proc(13, "other", "other", cid2, ""), // a container of no known pod
	}
	r := NewResolver(procs, w)

	got := r.Process(10)
	m := attrMap(got.Attributes)
	want := map[string]string{
		"k8s.pod.name": "web-7d4b9c-x1", "k8s.pod.uid": "pod-uid-1", "k8s.namespace.name": testNS,
		"k8s.node.name": testNode, "k8s.replicaset.name": "web-7d4b9c", "k8s.deployment.name": "web",
		"k8s.container.name": "app", "service.namespace": testNS, "container.id": cid1,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("pid 10: %s = %q, want %q (all: %v)", k, m[k], v, m)
		}
	}
	if got.ServiceName != "web" {
		t.Errorf("pid 10: service.name = %q, want web", got.ServiceName)
	}
	if again := r.Process(10); again != got {
		t.Errorf("a second call built a new identity; want the cached one")
	}
	if allocs := testing.AllocsPerRun(100, func() { r.Process(10) }); allocs != 0 {
		t.Errorf("Process allocates %v times per call, want 0", allocs)
	}

	// By pod UID: pod attributes, no container name.
	m11 := attrMap(r.Process(11).Attributes)
	if m11["k8s.pod.name"] != "web-7d4b9c-x1" || m11["k8s.container.name"] != "" {
		t.Errorf("pid 11 (by pod UID): %v", m11)
	}
	if p := r.Process(12); p != procs[12] {
		t.Errorf("host process: got %+v, want the base identity", p)
	}
	if p := r.Process(13); p != procs[13] {
		t.Errorf("unknown container: got %+v, want the base identity", p)
	}

	// The sidecar's status arrives: it is found by container ID now.
	pod, err := client.CoreV1().Pods(testNS).Get(ctx, "web-7d4b9c-x1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, status("sidecar", "containerd://"+cid2))
	if _, err := client.CoreV1().Pods(testNS).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "sidecar container name", func() bool {
		return attrMap(r.Process(11).Attributes)["k8s.container.name"] == "sidecar"
	})

	// Deleted: later identities no longer claim the pod.
	if err := client.CoreV1().Pods(testNS).Delete(ctx, "web-7d4b9c-x1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pod deleted", func() bool { return gathered(t, reg, "periscope_kubernetes_pods") == 0 })
	for _, pid := range []uint32{10, 11} {
		if p := r.Process(pid); p != procs[pid] {
			t.Errorf("pid %d after the pod's deletion: %v, want the base identity", pid, attrMap(p.Attributes))
		}
	}
}

func TestWatcherLogsOutageOnce(t *testing.T) {
	client := fake.NewClientset()
	var mu sync.Mutex
	fail := true
	lists := 0
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		lists++
		if fail {
			return true, nil, errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
		}
		return false, nil, nil
	})
	rec := &recordHandler{}
	reg := prometheus.NewRegistry()
	w, err := NewWatcher(WatcherConfig{API: fakeAPI{client}, NodeName: testNode, Logger: slogNew(rec), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	start := time.Now()
	if w.WaitStarted(ctx) {
		t.Fatal("WaitStarted reports the pods indexed while the API server fails")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("WaitStarted returned after %v, want at the first failure", d)
	}
	eventually(t, "three failed lists", func() bool { mu.Lock(); defer mu.Unlock(); return lists >= 3 })
	if w.Synced() {
		t.Fatal("synced while the API server fails")
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	if !w.WaitSynced(sctx) {
		t.Fatal("did not sync once the API server answered")
	}
	msgs := rec.messages()
	warns := slices.DeleteFunc(slices.Clone(msgs), func(s string) bool { return s[:5] != "WARN " })
	if len(warns) != 1 {
		t.Errorf("warnings = %q, want exactly one for the outage", warns)
	}
	if !slices.Contains(msgs, "INFO kubernetes: the API server answers again") {
		t.Errorf("no recovery line in %q", msgs)
	}
	if n := gathered(t, reg, "periscope_kubernetes_api_errors_total"); n < 3 {
		t.Errorf("periscope_kubernetes_api_errors_total = %v, want >= 3", n)
	}
}

// recordHandler keeps "LEVEL message" of every record.
type recordHandler struct {
	mu   sync.Mutex
	msgs []string
}

func slogNew(h *recordHandler) *slog.Logger { return slog.New(h) }

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Level.String()+" "+r.Message)
	return nil
}

func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.msgs)
}

// fakeAPI is the API over client-go's fake clientset, which keeps objects
// in memory and serves watches like an API server.
type fakeAPI struct{ c *fake.Clientset }

func (f fakeAPI) ListPods(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	return f.c.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
}

func (f fakeAPI) WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return f.c.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, opts)
}

func (f fakeAPI) GetReplicaSet(ctx context.Context, namespace, name string) (*appsv1.ReplicaSet, error) {
	return f.c.AppsV1().ReplicaSets(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (f fakeAPI) GetJob(ctx context.Context, namespace, name string) (*batchv1.Job, error) {
	return f.c.BatchV1().Jobs(namespace).Get(ctx, name, metav1.GetOptions{})
}

func TestWatcherAddresses(t *testing.T) {
	a := newTestPod("a", "uid-a", nil, nil)
	a.Status.HostIP, a.Status.PodIP = "192.168.1.10", "10.1.0.5"
	a.Status.PodIPs = []corev1.PodIP{{IP: "10.1.0.5"}, {IP: "fd00::5"}}
	b := newTestPod("b", "uid-b", nil, nil)
	b.Status.HostIP, b.Status.PodIP = "192.168.1.10", "192.168.1.10" // host network
	w := startWatcher(t, fake.NewClientset(a, b), nil)
	got := map[string]bool{}
	for _, ip := range w.Addresses(100) {
		got[ip.String()] = true
	}
	want := map[string]bool{"192.168.1.10": true, "10.1.0.5": true, "fd00::5": true}
	if !maps.Equal(got, want) {
		t.Errorf("addresses %v, want %v", got, want)
	}
	if n := len(w.Addresses(2)); n != 2 {
		t.Errorf("Addresses(2) returned %d", n)
	}
}
