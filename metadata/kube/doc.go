// Package kube adds Kubernetes identity to the processes the agent traces.
//
// A Watcher keeps one informer on the Pods of this node (a spec.nodeName
// field selector) and indexes them by container ID (the runtime's ID from
// status.containerStatuses, without its "containerd://" style prefix) and by
// pod UID. Owners are resolved upwards: a ReplicaSet to its Deployment and a
// Job to its CronJob, with one cached GET per owner.
//
// A Resolver wraps the agent's process resolver (metadata.Processes): a
// process whose cgroup names a container or a pod that the Watcher knows gets
// the pod's resource attributes (k8s.pod.name, k8s.namespace.name,
// k8s.deployment.name, ...) and a service.name that follows the pod unless
// the process named itself (OTEL_SERVICE_NAME). The identity follows the pod:
// once the pod is deleted, the process's later spans no longer claim it.
//
// The API server being unreachable or refusing access never blocks spans: the
// informer retries with backoff, the failure is logged once per outage, and
// processes keep their plain identity meanwhile.
package kube
