package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/periscope-apm/periscope/config"
	"github.com/periscope-apm/periscope/metadata"
	"github.com/periscope-apm/periscope/metadata/kube"
)

// kubeSyncWait bounds the wait for the first list of pods at start (cut
// short by a failure): spans never wait for the API server, but those of
// the first seconds get their pods when it answers quickly.
const kubeSyncWait = 5 * time.Second

// newKubeResolver returns the process resolver of the pipeline: procs,
// decorated with the pods of this node when cfg asks for Kubernetes
// metadata and a cluster is found (in-cluster config, or cfg.Kubeconfig).
// Off a cluster with enabled "auto" it returns procs and logs one line.
// pods is the watcher of this node's pods (nil without). stop ends the pod
// watch; it is never nil.
func newKubeResolver(ctx context.Context, cfg config.Kube, procs *metadata.Processes, log *slog.Logger, reg prometheus.Registerer) (res kube.ProcessResolver, pods *kube.Watcher, stop func(), err error) {
	noop := func() {}
	if cfg.Enabled == "false" {
		return procs, nil, noop, nil
	}
	rc, err := kubeRESTConfig(cfg)
	if errors.Is(err, rest.ErrNotInCluster) && cfg.Enabled != "true" {
		log.Info("kubernetes: not in a cluster and no kubeconfig: no Kubernetes attributes")
		return procs, nil, noop, nil
	}
	if err != nil {
		return nil, nil, nil, &UsageError{err}
	}
	rc.UserAgent = "periscope/" + Version()
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	api, err := kube.NewAPI(rc)
	if err != nil {
		return nil, nil, nil, &UsageError{fmt.Errorf("kubernetes: client for %s: %w", rc.Host, err)}
	}
	node, err := kubeNodeName(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	w, err := kube.NewWatcher(kube.WatcherConfig{API: api, NodeName: node, Server: rc.Host, Logger: log, Registerer: reg})
	if err != nil {
		return nil, nil, nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(wctx)
	}()
	stop = func() {
		cancel()
		<-done
	}
	sctx, scancel := context.WithTimeout(ctx, kubeSyncWait)
	defer scancel()
	if !w.WaitStarted(sctx) {
		log.Debug("kubernetes: pods not listed yet; going on without them", "waited", kubeSyncWait)
	}
	return kube.NewResolver(procs, w), w, stop, nil
}

// kubeRESTConfig loads the kubeconfig file of cfg, else the in-cluster
// config (rest.ErrNotInCluster off a cluster).
func kubeRESTConfig(cfg config.Kube) (*rest.Config, error) {
	if cfg.Kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubernetes: kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
		return rc, nil
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("kubernetes: no kubeconfig given and %w", err)
		}
		return nil, fmt.Errorf("kubernetes: in-cluster config: %w", err)
	}
	return rc, nil
}

// kubeNodeName is cfg.NodeName, else $NODE_NAME (the downward API), else
// the host name.
func kubeNodeName(cfg config.Kube) (string, error) {
	if cfg.NodeName != "" {
		return cfg.NodeName, nil
	}
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n, nil
	}
	n, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("kubernetes: node name: no node_name, no $NODE_NAME and %w", err)
	}
	return n, nil
}
