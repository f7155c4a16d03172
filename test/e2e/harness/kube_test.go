package harness

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestStartKube: the API server stores pods (admission needs the default
// ServiceAccount the harness creates), and kubectl's server-side dry run
// rejects an unknown field.
func TestStartKube(t *testing.T) {
	k := StartKube(t)
	k.NewNamespace(t, "harness")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "harness"},
		Spec:       corev1.PodSpec{NodeName: "n", Containers: []corev1.Container{{Name: "c", Image: "example/c:1"}}},
	}
	if _, err := k.Client.CoreV1().Pods("harness").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	out, err := k.Kubectl(t, "get", "pods", "-n", "harness", "-o", "name")
	if err != nil || strings.TrimSpace(out) != "pod/p" {
		t.Fatalf("kubectl get pods: %v: %q", err, out)
	}
	bad := t.TempDir() + "/bad.yaml"
	writeFile(t, bad, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: harness}\ndata: {a: b}\nbogus: 1\n", 0o644)
	out, err = k.Kubectl(t, "apply", "--dry-run=server", "--validate=strict", "-f", bad)
	if err == nil || !strings.Contains(out, "bogus") {
		t.Fatalf("kubectl apply --dry-run=server of an unknown field: err %v, output %q; want a rejection naming it", err, out)
	}
}
