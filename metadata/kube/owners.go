package kube

import (
	"context"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Owner lookups: how long one may take, how long an answer is kept, and
// how many are kept.
const (
	ownerGetTimeout  = 5 * time.Second
	ownerNegativeTTL = time.Minute
	maxOwnerEntries  = 4096
)

// ownerCache finds the controllers of ReplicaSets and Jobs with one GET per
// object, cached: a ReplicaSet's Deployment does not change, and the pods
// of one ReplicaSet ask for the same one. When the GET fails for another
// reason than "not found" (the agent may not be allowed to read
// ReplicaSets), a ReplicaSet's Deployment is guessed from the names, and
// the failure is logged once.
type ownerCache struct {
	api API
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	entries map[ownerKey]ownerEntry
	warned  bool
}

type ownerKey struct{ kind, namespace, name string }

type ownerEntry struct {
	owner   Owner
	ok      bool
	expires time.Time // zero: kept
}

// newOwnerCache returns an ownerCache; log may be nil.
func newOwnerCache(api API, log *slog.Logger) *ownerCache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ownerCache{api: api, log: log, now: time.Now, entries: make(map[ownerKey]ownerEntry)}
}

// ControllerOf implements OwnerLookup.
func (c *ownerCache) ControllerOf(ctx context.Context, kind, namespace, name string, pod *corev1.Pod) (Owner, bool) {
	key := ownerKey{kind, namespace, name}
	c.mu.Lock()
	e, hit := c.entries[key]
	c.mu.Unlock()
	if hit && (e.expires.IsZero() || c.now().Before(e.expires)) {
		return e.owner, e.ok
	}

	refs, err := c.get(ctx, kind, namespace, name)
	switch {
	case err == nil:
		e = ownerEntry{}
		if ref := controllerRef(refs); ref != nil {
			e.owner = Owner{Kind: ref.Kind, Name: ref.Name, UID: string(ref.UID)}
			e.ok = true
		}
	case apierrors.IsNotFound(err):
		e = ownerEntry{expires: c.now().Add(ownerNegativeTTL)}
	default:
		c.warnOnce(kind, err)
		e = ownerEntry{expires: c.now().Add(ownerNegativeTTL)}
		if kind == "ReplicaSet" {
			if d, ok := deploymentOfReplicaSet(name, pod); ok {
				e.owner, e.ok = Owner{Kind: "Deployment", Name: d}, true
			}
		}
	}
	c.mu.Lock()
	if len(c.entries) >= maxOwnerEntries {
		clear(c.entries)
	}
	c.entries[key] = e
	c.mu.Unlock()
	return e.owner, e.ok
}

// get reads the owner references of a ReplicaSet or a Job.
func (c *ownerCache) get(ctx context.Context, kind, namespace, name string) ([]metav1.OwnerReference, error) {
	ctx, cancel := context.WithTimeout(ctx, ownerGetTimeout)
	defer cancel()
	switch kind {
	case "ReplicaSet":
		rs, err := c.api.GetReplicaSet(ctx, namespace, name)
		if err != nil {
			return nil, err
		}
		return rs.OwnerReferences, nil
	case "Job":
		job, err := c.api.GetJob(ctx, namespace, name)
		if err != nil {
			return nil, err
		}
		return job.OwnerReferences, nil
	}
	return nil, nil
}

func (c *ownerCache) warnOnce(kind string, err error) {
	c.mu.Lock()
	warned := c.warned
	c.warned = true
	c.mu.Unlock()
	if warned {
		c.log.Debug("kubernetes: reading a pod's owner", "kind", kind, "err", err)
		return
	}
	c.log.Warn("kubernetes: cannot read the owners of pods (needs get on replicasets and jobs); "+
		"Deployments are guessed from ReplicaSet names, CronJobs are not named", "kind", kind, "err", err)
}
