package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/periscope-apm/periscope/test/e2e/harness"
)

// kubeNode is the node name the Kubernetes tests give the agent and their
// pods: no node of that name exists, nothing runs the pods.
const kubeNode = "periscope-e2e-node"

// TestKubernetesMetadata: a real API server holds a Deployment, its
// ReplicaSet and a Pod bound to this node whose container status names a
// container ID; an HTTPS server born in that container's cgroup (cgroup v2,
// systemd driver, containerd) gets, on every span and on the RED metrics,
// the pod, namespace, ReplicaSet, Deployment and container of the pod, and
// the Deployment as service.name. Once the pod is deleted, later spans no
// longer claim it and the pod's request count stays.
func TestKubernetesMetadata(t *testing.T) {
	harness.RequireRoot(t)
	k := harness.StartKube(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const ns, deployName, rsName, hash = "shop", "storefront", "storefront-5d8f7c9b4", "5d8f7c9b4"
	podName := rsName + "-x7k2p"
	ctr := randomHex(t, 32)
	k.NewNamespace(t, ns)
	labels := map[string]string{"app": deployName}
	one := int32(1)
	deploy, err := k.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: deployName, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(labels),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	rsLabels := map[string]string{"app": deployName, "pod-template-hash": hash}
	rs, err := k.Client.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: rsName, Namespace: ns, Labels: rsLabels,
			OwnerReferences: []metav1.OwnerReference{controllerOf("apps/v1", "Deployment", deploy.Name, deploy.UID)}},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: rsLabels},
			Template: podTemplate(rsLabels),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create replicaset: %v", err)
	}
	tmpl := podTemplate(rsLabels)
	pod := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
	pod.Name, pod.Namespace = podName, ns
	pod.OwnerReferences = []metav1.OwnerReference{controllerOf("apps/v1", "ReplicaSet", rs.Name, rs.UID)}
	pod.Spec.NodeName = kubeNode
	pod, err = k.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	// What a kubelet would report once the container runs.
	pod.Status.Phase = corev1.PodRunning
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "web", Image: "example.com/storefront:1", ImageID: "example.com/storefront@sha256:" + strings.Repeat("0", 64),
		ContainerID: "containerd://" + ctr, Ready: true,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
	}}
	if pod, err = k.Client.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update pod status: %v", err)
	}
	podUID := string(pod.UID)

	// The container's cgroup, as the kubelet's systemd driver and
	// containerd name it.
	cg := makeKubeCgroup(t, "v2 systemd containerd besteffort", cgroup2Root(t),
		"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"+strings.ReplaceAll(podUID, "-", "_")+
			".slice/cri-containerd-"+ctr+".scope", ctr, podUID)

	bin := t.TempDir()
	py := harness.CopyExeTo(t, python(t), bin, "pykube")
	curl := harness.CopyExeTo(t, harness.LookTool(t, "curl"), bin, "curlkube")
	e := startAgent(t, "--include-exe", filepath.Join(bin, "*"), "--kubeconfig", k.Kubeconfig, "--node-name", kubeNode)
	waitMetric(t, e.agent, "periscope_kubernetes_pods", nil, "1 (the test's pod)", equals(1))
	if logs := e.agent.Logs(); !strings.Contains(logs, "kubernetes: watching the pods of this node") {
		t.Errorf("the agent did not log that it watches the pods:\n%s", logs)
	}

	cert, key, ca := harness.GenerateCert(t, filepath.Join(t.TempDir(), "tls"))
	srv := startInCgroup(t, cg, nil, py, testdataPath(t, "https_server.py"), cert, key)
	srv.expect("started", 20*time.Second)
	srv.send("go")
	port, err := strconv.Atoi(srv.expect("listening", 20*time.Second))
	if err != nil {
		t.Fatalf("bad port from the server: %v", err)
	}
	e.instrumented(t, srv.PID)

	// In the pod: every span and the RED metrics name it.
	const inPod = 5
	kubeRequests(t, e, curl, ca, port, inPod)
	want := map[string]string{
		"k8s.pod.name":        podName,
		"k8s.pod.uid":         podUID,
		"k8s.namespace.name":  ns,
		"k8s.replicaset.name": rsName,
		"k8s.deployment.name": deployName,
		"k8s.container.name":  "web",
		"k8s.node.name":       kubeNode,
		"container.id":        ctr,
		"service.name":        deployName,
		"service.namespace":   ns,
	}
	for _, s := range e.spans(t, inPod, byPIDs(kindServer, srv.PID)) {
		for key, v := range want {
			if got, _ := s.Resource[key].(string); got != v {
				t.Errorf("span %q: resource %s = %q, want %q; resource %v", s.Name, key, got, v, s.Resource)
			}
		}
	}
	podLabels := map[string]string{"k8s_pod_name": podName, "k8s_namespace_name": ns, "k8s_deployment_name": deployName}
	waitMetric(t, e.agent, "http_server_request_duration_seconds_count", podLabels, strconv.Itoa(inPod), equals(inPod))

	// The pod is deleted (at once: no kubelet would confirm a graceful
	// deletion); once the agent has seen it, spans no longer claim it.
	zero := int64(0)
	if err := k.Client.CoreV1().Pods(ns).Delete(ctx, podName, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatalf("delete pod: %v", err)
	}
	if _, err := k.Client.CoreV1().Pods(ns).Get(ctx, podName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("pod still there after its deletion: %v", err)
	}
	waitMetric(t, e.agent, "periscope_kubernetes_pods", nil, "0 (the pod deleted)", equals(0))
	const afterDelete = 3
	kubeRequests(t, e, curl, ca, port, afterDelete)
	all := e.spans(t, inPod+afterDelete, byPIDs(kindServer, srv.PID))
	late := 0
	for _, s := range all {
		if _, claimed := s.Resource["k8s.pod.name"]; claimed {
			continue
		}
		late++
		if got, _ := s.Resource["container.id"].(string); got != ctr {
			t.Errorf("span after the deletion: container.id %q, want %q (the cgroup still says so)", got, ctr)
		}
		if got := s.ServiceName(); got != "pykube" {
			t.Errorf("span after the deletion: service.name %q, want the executable's, pykube", got)
		}
		for key := range s.Resource {
			if strings.HasPrefix(key, "k8s.") {
				t.Errorf("span after the deletion still carries %s: %v", key, s.Resource)
			}
		}
	}
	if late != afterDelete {
		t.Errorf("%d of the %d spans after the pod's deletion carry no k8s.pod.name, want all of them", late, afterDelete)
	}
	if v := e.agent.Metric(t, "http_server_request_duration_seconds_count", podLabels); v != inPod {
		t.Errorf("the deleted pod's request count is %v, want still %d", v, inPod)
	}
}

// TestKubernetesUnreachable: with a kubeconfig whose API server does not
// exist, the agent logs one clear warning (not one per retry), retries,
// and exports spans all the same.
func TestKubernetesUnreachable(t *testing.T) {
	harness.RequireRoot(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	closed := fmt.Sprintf("https://127.0.0.1:%d", harness.FreePort(t)) // nothing listens there
	harness.WriteKubeconfig(t, kubeconfig, closed, "no-token", "")
	kubeOutage(t, kubeconfig, "cannot list the pods of this node", closed)
}

// TestKubernetesForbidden: the agent's service account before its RBAC
// rules exist. The API server (real RBAC authorization) forbids listing
// pods: the agent logs one warning saying what it needs, retries with
// backoff, and exports spans all the same. Then the ClusterRole and
// binding of deploy/kubernetes/rbac.yaml are applied, and a later retry
// succeeds: the rules the manifests ship are enough for the agent.
func TestKubernetesForbidden(t *testing.T) {
	harness.RequireRoot(t)
	k := harness.StartKube(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	harness.WriteKubeconfig(t, kubeconfig, k.Server, k.AgentToken, k.CAFile)
	e := kubeOutage(t, kubeconfig, "forbids listing the pods of this node (the agent needs get, list and watch on pods)", k.Server)

	applyRBAC(t, k, filepath.Join(harness.RepoRoot(t), "deploy", "kubernetes", "rbac.yaml"))
	deadline := time.Now().Add(90 * time.Second) // the informer's backoff grows to 30 s
	for !strings.Contains(e.agent.Logs(), "kubernetes: the API server answers again") {
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not list the pods once rbac.yaml was applied; log:\n%s", e.agent.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// With those rules the agent also reads the owners of its pods: a
	// ReplicaSet (for the Deployment) and a Job (for the CronJob).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := metav1.NamespaceDefault
	rsLabels := map[string]string{"app": "web"}
	rs, err := k.Client.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-6c9f8", Namespace: ns, Labels: rsLabels,
			OwnerReferences: []metav1.OwnerReference{controllerOf("apps/v1", "Deployment", "web", "5a1d2c3e-0000-4000-8000-000000000001")}},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: rsLabels}, Template: podTemplate(rsLabels)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create replicaset: %v", err)
	}
	jobLabels := map[string]string{"job": "report"}
	jobTemplate := podTemplate(jobLabels)
	jobTemplate.Spec.RestartPolicy = corev1.RestartPolicyNever
	manual := true // the test picks the selector: no controller adds one
	job, err := k.Client.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "report-29012345", Namespace: ns,
			OwnerReferences: []metav1.OwnerReference{controllerOf("batch/v1", "CronJob", "report", "5a1d2c3e-0000-4000-8000-000000000002")}},
		Spec: batchv1.JobSpec{Template: jobTemplate, ManualSelector: &manual, Selector: &metav1.LabelSelector{MatchLabels: jobLabels}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create job: %v", err)
	}
	for _, owned := range []struct {
		name  string
		tmpl  corev1.PodTemplateSpec
		owner metav1.OwnerReference
	}{
		{rs.Name + "-x1", podTemplate(rsLabels), controllerOf("apps/v1", "ReplicaSet", rs.Name, rs.UID)},
		{job.Name + "-y2", jobTemplate, controllerOf("batch/v1", "Job", job.Name, job.UID)},
	} {
		pod := &corev1.Pod{ObjectMeta: owned.tmpl.ObjectMeta, Spec: owned.tmpl.Spec}
		pod.Name, pod.Namespace, pod.Spec.NodeName = owned.name, ns, kubeNode
		pod.OwnerReferences = []metav1.OwnerReference{owned.owner}
		if _, err := k.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create pod %s: %v", owned.name, err)
		}
	}
	// The owners are read when the pods arrive, before they are counted.
	waitMetric(t, e.agent, "periscope_kubernetes_pods", nil, "2", equals(2))
	if logs := e.agent.Logs(); strings.Contains(logs, "cannot read the owners of pods") {
		t.Errorf("rbac.yaml does not let the agent read its pods' owners:\n%s", logs)
	}
}

// kubeOutage starts the agent with kubeconfig, whose API server does not
// serve it, and checks that spans flow without Kubernetes attributes, that
// the failed lists are counted and retried, and that one warning
// (containing want and naming server) says so.
func kubeOutage(t *testing.T, kubeconfig, want, server string) *env {
	t.Helper()
	bin := t.TempDir()
	py := harness.CopyExeTo(t, python(t), bin, "pykube")
	curl := harness.CopyExeTo(t, harness.LookTool(t, "curl"), bin, "curlkube")
	e := startAgent(t, "--include-exe", filepath.Join(bin, "*"), "--kubeconfig", kubeconfig,
		"--node-name", kubeNode, "--log-level", "debug")

	cert, key, ca := harness.GenerateCert(t, filepath.Join(t.TempDir(), "tls"))
	srv := startProc(t, nil, py, testdataPath(t, "https_server.py"), cert, key)
	srv.expect("started", 20*time.Second)
	srv.send("go")
	port, err := strconv.Atoi(srv.expect("listening", 20*time.Second))
	if err != nil {
		t.Fatalf("bad port from the server: %v", err)
	}
	e.instrumented(t, srv.PID)
	const n = 4
	kubeRequests(t, e, curl, ca, port, n)
	for _, s := range e.spans(t, n, byPIDs(kindServer, srv.PID)) {
		if s.ServiceName() != "pykube" {
			t.Errorf("span %q: service.name %q, want pykube", s.Name, s.ServiceName())
		}
		for key := range s.Resource {
			if strings.HasPrefix(key, "k8s.") {
				t.Errorf("span %q carries %s without an API server: %v", s.Name, key, s.Resource)
			}
		}
	}
	// Several failed lists by now (the informer retries with backoff)...
	waitMetric(t, e.agent, "periscope_kubernetes_api_errors_total", nil, ">= 3", func(v float64) bool { return v >= 3 })
	// ...and one warning for all of them, naming the server.
	var warnings []string
	for line := range strings.SplitSeq(e.agent.Logs(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "kubernetes") {
			warnings = append(warnings, line)
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], want) || !strings.Contains(warnings[0], server) {
		t.Errorf("want one warning %q naming %s, got %d:\n%s", want, server, len(warnings), strings.Join(warnings, "\n"))
	}
	return e
}

// applyRBAC creates the ClusterRoles and ClusterRoleBindings of a
// manifest file as the admin.
func applyRBAC(t *testing.T, k *harness.Kube, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	created := 0
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		raw, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		switch doc["kind"] {
		case "ClusterRole":
			var r rbacv1.ClusterRole
			if err := json.Unmarshal(raw, &r); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			_, err = k.Client.RbacV1().ClusterRoles().Create(ctx, &r, metav1.CreateOptions{})
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			if err := json.Unmarshal(raw, &b); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			_, err = k.Client.RbacV1().ClusterRoleBindings().Create(ctx, &b, metav1.CreateOptions{})
		default:
			continue
		}
		if err != nil {
			t.Fatalf("%s: create %s: %v", path, doc["kind"], err)
		}
		created++
	}
	if created < 2 {
		t.Fatalf("%s: %d RBAC objects, want a ClusterRole and its binding", path, created)
	}
}

// kubeRequests sends n GET /hello over one keep-alive connection from one
// curl, instrumented before it sends anything (it reads its configuration
// from stdin).
func kubeRequests(t *testing.T, e *env, curl, ca string, port, n int) {
	t.Helper()
	cli := startProc(t, nil, curl, "-K", "-")
	settled(t, e.agent, cli.PID)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "silent\nshow-error\nfail\ncacert = %q\n", ca)
	for range n {
		fmt.Fprintf(&cfg, "url = \"https://127.0.0.1:%d/hello\"\noutput = \"/dev/null\"\n", port)
	}
	if _, err := io.WriteString(cli.stdin, cfg.String()); err != nil {
		t.Fatalf("write curl's configuration: %v", err)
	}
	cli.stdin.Close()
	cli.mustSucceed(20 * time.Second)
}

func podTemplate(labels map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "example.com/storefront:1"}}},
	}
}

func controllerOf(apiVersion, kind, name string, uid types.UID) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: &yes}
}
