package kube

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Pod labels the agent reads (Kubernetes' recommended labels).
const (
	LabelName    = "app.kubernetes.io/name"
	LabelVersion = "app.kubernetes.io/version"
)

// Pod is what the agent keeps of a pod. It is immutable once built: an
// update of the pod builds a new Pod, so a *Pod also names a version.
type Pod struct {
	UID       string
	Name      string
	Namespace string
	NodeName  string
	// Service is the service name the pod suggests: its
	// app.kubernetes.io/name label, else the name of its top owner
	// (Deployment, StatefulSet, DaemonSet, CronJob, Job, ReplicaSet); ""
	// for a bare pod without the label.
	Service string
	// Version is its app.kubernetes.io/version label.
	Version string
	// Attributes are the pod's resource attributes: k8s.pod.name,
	// k8s.pod.uid, k8s.namespace.name, k8s.node.name and its owners'
	// k8s.<kind>.name and k8s.<kind>.uid.
	Attributes []attribute.KeyValue
	// Containers maps the runtime's container IDs (without the
	// "containerd://" style prefix) to container names, for the regular,
	// init and ephemeral containers that have started.
	Containers map[string]string
	// IPs are the pod's addresses and its node's (status.podIPs and
	// hostIP): the addresses whose connections this node's agent
	// answers for (cross-node linking).
	IPs []netip.Addr
}

// Owner is a controller of an object: its kind, name and UID.
type Owner struct {
	Kind, Name, UID string
}

// OwnerLookup finds the controller of a ReplicaSet or a Job (the objects
// whose owners matter: a Deployment, a CronJob).
type OwnerLookup interface {
	// ControllerOf returns the controller of the object kind/namespace/name;
	// ok is false when it has none or it cannot be known.
	ControllerOf(ctx context.Context, kind, namespace, name string, pod *corev1.Pod) (owner Owner, ok bool)
}

// Resource attribute keys (OpenTelemetry semantic conventions).
const (
	keyPodName       = attribute.Key("k8s.pod.name")
	keyPodUID        = attribute.Key("k8s.pod.uid")
	keyNamespace     = attribute.Key("k8s.namespace.name")
	keyNodeName      = attribute.Key("k8s.node.name")
	keyContainerName = attribute.Key("k8s.container.name")
)

// ownerKeys are the name and UID attribute keys of each owner kind the
// conventions name.
var ownerKeys = map[string][2]attribute.Key{
	"ReplicaSet":  {"k8s.replicaset.name", "k8s.replicaset.uid"},
	"Deployment":  {"k8s.deployment.name", "k8s.deployment.uid"},
	"DaemonSet":   {"k8s.daemonset.name", "k8s.daemonset.uid"},
	"StatefulSet": {"k8s.statefulset.name", "k8s.statefulset.uid"},
	"Job":         {"k8s.job.name", "k8s.job.uid"},
	"CronJob":     {"k8s.cronjob.name", "k8s.cronjob.uid"},
}

// maxOwnerDepth bounds the walk up the owners (ReplicaSet → Deployment,
// Job → CronJob is one step; anything deeper is a custom controller).
const maxOwnerDepth = 3

// NewPod builds the agent's view of p. owners may be nil: then only the
// pod's own controller is named.
func NewPod(ctx context.Context, p *corev1.Pod, owners OwnerLookup) *Pod {
	pod := &Pod{
		UID:       string(p.UID),
		Name:      p.Name,
		Namespace: p.Namespace,
		NodeName:  p.Spec.NodeName,
		Version:   p.Labels[LabelVersion],
	}
	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs,
		keyPodName.String(p.Name),
		keyPodUID.String(string(p.UID)),
		keyNamespace.String(p.Namespace),
	)
	if p.Spec.NodeName != "" {
		attrs = append(attrs, keyNodeName.String(p.Spec.NodeName))
	}

	top := ""
	if ref := controllerRef(p.OwnerReferences); ref != nil {
		o := Owner{Kind: ref.Kind, Name: ref.Name, UID: string(ref.UID)}
		for depth := 0; depth < maxOwnerDepth; depth++ {
			if keys, known := ownerKeys[o.Kind]; known {
				attrs = append(attrs, keys[0].String(o.Name))
				if o.UID != "" {
					attrs = append(attrs, keys[1].String(o.UID))
				}
			}
			top = o.Name
			if owners == nil || (o.Kind != "ReplicaSet" && o.Kind != "Job") {
				break
			}
			parent, ok := owners.ControllerOf(ctx, o.Kind, p.Namespace, o.Name, p)
			if !ok {
				break
			}
			o = parent
		}
	}
	pod.Attributes = attrs
	pod.Service = p.Labels[LabelName]
	if pod.Service == "" {
		pod.Service = top
	}

	for _, s := range append([]string{p.Status.HostIP}, podIPs(p)...) {
		if a, err := netip.ParseAddr(s); err == nil && !slices.Contains(pod.IPs, a) {
			pod.IPs = append(pod.IPs, a)
		}
	}
	pod.Containers = make(map[string]string)
	for _, list := range [][]corev1.ContainerStatus{
		p.Status.ContainerStatuses,
		p.Status.InitContainerStatuses,
		p.Status.EphemeralContainerStatuses,
	} {
		for _, cs := range list {
			if id := ContainerID(cs.ContainerID); id != "" {
				pod.Containers[id] = cs.Name
			}
		}
	}
	return pod
}

// controllerRef returns the managing controller among refs, else the
// first owner, else nil.
func controllerRef(refs []metav1.OwnerReference) *metav1.OwnerReference {
	for i := range refs {
		if c := refs[i].Controller; c != nil && *c {
			return &refs[i]
		}
	}
	if len(refs) > 0 {
		return &refs[0]
	}
	return nil
}

// ContainerID returns the runtime's container ID of a container status's
// containerID field: "containerd://abc", "cri-o://abc" and "docker://abc"
// all give "abc".
func ContainerID(statusID string) string {
	if _, id, ok := strings.Cut(statusID, "://"); ok {
		return id
	}
	return statusID
}

// deploymentOfReplicaSet guesses the Deployment of a ReplicaSet from
// names alone, for when the ReplicaSet cannot be read: a Deployment names
// its ReplicaSets "<deployment>-<pod-template-hash>" and labels their pods
// with the hash.
func deploymentOfReplicaSet(rsName string, pod *corev1.Pod) (string, bool) {
	if pod == nil {
		return "", false
	}
	hash := pod.Labels["pod-template-hash"]
	if hash == "" {
		return "", false
	}
	name, ok := strings.CutSuffix(rsName, "-"+hash)
	return name, ok && name != ""
}

func podIPs(p *corev1.Pod) []string {
	out := make([]string, 0, len(p.Status.PodIPs)+1)
	out = append(out, p.Status.PodIP)
	for _, ip := range p.Status.PodIPs {
		out = append(out, ip.IP)
	}
	return out
}

// slimPod keeps what NewPod reads of a pod, so that the informer's cache
// holds little per pod.
func slimPod(p *corev1.Pod) *corev1.Pod {
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:              p.Name,
			Namespace:         p.Namespace,
			UID:               p.UID,
			ResourceVersion:   p.ResourceVersion,
			DeletionTimestamp: p.DeletionTimestamp,
			OwnerReferences:   p.OwnerReferences,
		},
		Spec: corev1.PodSpec{NodeName: p.Spec.NodeName},
	}
	for _, k := range []string{LabelName, LabelVersion, "pod-template-hash"} {
		if v, ok := p.Labels[k]; ok {
			if out.Labels == nil {
				out.Labels = make(map[string]string, 3)
			}
			out.Labels[k] = v
		}
	}
	slim := func(in []corev1.ContainerStatus) []corev1.ContainerStatus {
		if len(in) == 0 {
			return nil
		}
		s := make([]corev1.ContainerStatus, len(in))
		for i, cs := range in {
			s[i] = corev1.ContainerStatus{Name: cs.Name, ContainerID: cs.ContainerID}
		}
		return s
	}
	out.Status.ContainerStatuses = slim(p.Status.ContainerStatuses)
	out.Status.InitContainerStatuses = slim(p.Status.InitContainerStatuses)
	out.Status.EphemeralContainerStatuses = slim(p.Status.EphemeralContainerStatuses)
	out.Status.PodIP, out.Status.PodIPs, out.Status.HostIP = p.Status.PodIP, p.Status.PodIPs, p.Status.HostIP
	return out
}
