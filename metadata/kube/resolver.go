package kube

import (
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"

	"github.com/periscope-apm/periscope/span"
)

// ProcessResolver names the process behind a PID (metadata.Processes).
type ProcessResolver interface {
	Process(pid uint32) *span.Process
}

// PodLookup finds the pod of a container or a pod UID (a *Watcher).
type PodLookup interface {
	Lookup(containerID, podUID string) (pod *Pod, container string, ok bool)
}

// maxComposed bounds the identities a Resolver keeps.
const maxComposed = 1 << 16

const unknownServiceName = "unknown_service"

// Resource attribute keys a Resolver reads or sets besides the k8s.* ones.
const (
	keyContainerID      = attribute.Key("container.id")
	keyServiceNamespace = attribute.Key("service.namespace")
	keyServiceVersion   = attribute.Key("service.version")
	keyExecutableName   = attribute.Key("process.executable.name")
)

// Resolver decorates process identities with the Kubernetes pod they run
// in. It implements the correlator's and the metrics' ProcessResolver.
//
// Each call looks the pod up again, so an identity follows its pod: a pod
// deleted, or updated, changes the identity of the next call. The
// identities it builds are cached per process and pod version (a *Pod), so
// that a call costs two map lookups under read locks and allocates nothing,
// and the same *span.Process is returned while nothing changes (exporters
// cache resources by it).
type Resolver struct {
	base ProcessResolver
	pods PodLookup

	mu    sync.RWMutex
	cache map[uint32]composed
}

// composed is the identity built for a process from base identity, pod and
// container.
type composed struct {
	base      *span.Process
	pod       *Pod
	container string
	out       *span.Process
}

// NewResolver returns a Resolver adding what pods knows to the identities
// of base.
func NewResolver(base ProcessResolver, pods PodLookup) *Resolver {
	return &Resolver{base: base, pods: pods, cache: make(map[uint32]composed)}
}

// Process returns the identity of a process: base's, with the pod's
// attributes when the process's container or pod is known.
func (r *Resolver) Process(pid uint32) *span.Process {
	b := r.base.Process(pid)
	if b == nil || (b.ContainerID == "" && b.PodUID == "") {
		return b
	}
	pod, container, ok := r.pods.Lookup(b.ContainerID, b.PodUID)
	if !ok {
		return b
	}
	r.mu.RLock()
	c, hit := r.cache[pid]
	r.mu.RUnlock()
	if hit && c.base == b && c.pod == pod && c.container == container {
		return c.out
	}
	out := Decorate(b, pod, container)
	r.mu.Lock()
	if len(r.cache) >= maxComposed {
		clear(r.cache)
	}
	r.cache[pid] = composed{base: b, pod: pod, container: container, out: out}
	r.mu.Unlock()
	return out
}

// Decorate returns a copy of b carrying the attributes of pod and
// container (its name; "" when not known). The pod's k8s.* attributes
// replace the process's own; service.name, service.namespace and
// service.version are the process's when it set them (OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES), else the pod's (app.kubernetes.io/name label
// or owner name, namespace, app.kubernetes.io/version label).
func Decorate(b *span.Process, pod *Pod, container string) *span.Process {
	out := *b
	attrs := make([]attribute.KeyValue, 0, len(b.Attributes)+len(pod.Attributes)+4)
	hasContainerID, hasNamespace, hasVersion := false, false, false
	for _, kv := range b.Attributes {
		if replaced(kv.Key, pod) || (kv.Key == keyContainerName && container != "") {
			continue
		}
		switch kv.Key {
		case keyContainerID:
			hasContainerID = true
		case keyServiceNamespace:
			hasNamespace = true
		case keyServiceVersion:
			hasVersion = true
		}
		attrs = append(attrs, kv)
	}
	if !hasContainerID && b.ContainerID != "" {
		attrs = append(attrs, keyContainerID.String(b.ContainerID))
	}
	attrs = append(attrs, pod.Attributes...)
	if container != "" {
		attrs = append(attrs, keyContainerName.String(container))
	}
	if !hasNamespace && pod.Namespace != "" {
		attrs = append(attrs, keyServiceNamespace.String(pod.Namespace))
	}
	if !hasVersion && pod.Version != "" {
		attrs = append(attrs, keyServiceVersion.String(pod.Version))
	}
	out.Attributes = attrs
	if !namedByProcess(b) && pod.Service != "" {
		out.ServiceName = pod.Service
	}
	return &out
}

// replaced reports whether the pod's attributes replace the process's
// attribute key.
func replaced(k attribute.Key, pod *Pod) bool {
	if !strings.HasPrefix(string(k), "k8s.") {
		return false
	}
	for _, kv := range pod.Attributes {
		if kv.Key == k {
			return true
		}
	}
	return false
}

// namedByProcess reports whether a process named its service itself
// (OTEL_SERVICE_NAME or service.name in OTEL_RESOURCE_ATTRIBUTES): the
// resolver otherwise names it after its executable, or unknown_service.
// A process that named itself exactly as its executable counts as unnamed;
// the outcome differs only in that the pod's name wins.
func namedByProcess(b *span.Process) bool {
	if b.ServiceName == "" || b.ServiceName == unknownServiceName {
		return false
	}
	for _, kv := range b.Attributes {
		if kv.Key == keyExecutableName {
			return kv.Value.AsString() != b.ServiceName
		}
	}
	return true
}
