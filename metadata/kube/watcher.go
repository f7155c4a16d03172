package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	// API reads the API server (NewAPI).
	API API
	// NodeName selects the pods watched (spec.nodeName); required.
	NodeName string
	// Server names the API server in log lines (e.g. its URL).
	Server string
	// Logger receives the watcher's few log lines; nil discards them.
	// client-go's own logging goes there too, at debug level.
	Logger *slog.Logger
	// Registerer gets the watcher's metrics (periscope_kubernetes_pods,
	// periscope_kubernetes_api_errors_total); nil: not registered.
	Registerer prometheus.Registerer
}

// Watcher keeps the pods of one node, indexed by container ID and pod UID.
// Lookups are safe for concurrent use and never wait for the API server.
type Watcher struct {
	cfg    WatcherConfig
	log    *slog.Logger
	owners OwnerLookup
	inf    cache.SharedIndexInformer
	// handler is the registration of the watcher's own event handler:
	// it has synced once the handler (not only the informer's store)
	// has seen the first list.
	handler cache.ResourceEventHandlerRegistration
	errs    prometheus.Counter

	mu          sync.RWMutex
	byUID       map[string]*Pod
	byContainer map[string]*Pod

	// ctx is the context of Run, for the owner lookups the event
	// handlers make.
	ctxMu sync.Mutex
	ctx   context.Context

	// health: the class of the failure last logged ("" while the API
	// server answers), so that an outage is logged once.
	healthMu sync.Mutex
	failing  string
	listed   bool
	// failed is closed at the first failed list or watch.
	failed     chan struct{}
	failedOnce sync.Once
}

// NewWatcher returns a Watcher; Run starts it.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	if cfg.API == nil {
		return nil, errors.New("kubernetes watcher: nil API")
	}
	if cfg.NodeName == "" {
		return nil, errors.New("kubernetes watcher: no node name")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{
		cfg:         cfg,
		log:         log,
		byUID:       make(map[string]*Pod),
		byContainer: make(map[string]*Pod),
		ctx:         context.Background(),
		failed:      make(chan struct{}),
	}
	w.owners = newOwnerCache(cfg.API, log)
	w.errs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "periscope_kubernetes_api_errors_total",
		Help: "Failed lists and watches of the pods of this node (the informer retries with backoff).",
	})
	if cfg.Registerer != nil {
		pods := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "periscope_kubernetes_pods",
			Help: "Pods of this node known from the Kubernetes API server.",
		}, func() float64 { return float64(w.Pods()) })
		for _, c := range []prometheus.Collector{pods, w.errs} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("kubernetes watcher: register metrics: %w", err)
			}
		}
	}

	selector := fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = selector
			list, err := cfg.API.ListPods(ctx, opts)
			if err == nil {
				w.answered(len(list.Items))
			}
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = selector
			return cfg.API.WatchPods(ctx, opts)
		},
	}
	w.inf = cache.NewSharedIndexInformerWithOptions(lw, &corev1.Pod{}, cache.SharedIndexInformerOptions{
		ObjectDescription: "pods of node " + cfg.NodeName,
	})
	if err := w.inf.SetTransform(transform); err != nil {
		return nil, fmt.Errorf("kubernetes watcher: %w", err)
	}
	if err := w.inf.SetWatchErrorHandlerWithContext(w.watchError); err != nil {
		return nil, fmt.Errorf("kubernetes watcher: %w", err)
	}
	reg, err := w.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.upsert,
		UpdateFunc: func(_, obj any) { w.upsert(obj) },
		DeleteFunc: w.delete,
	})
	if err != nil {
		return nil, fmt.Errorf("kubernetes watcher: %w", err)
	}
	w.handler = reg
	return w, nil
}

// Run watches the pods until ctx is done. The informer retries with
// backoff while the API server cannot be reached.
func (w *Watcher) Run(ctx context.Context) {
	w.ctxMu.Lock()
	w.ctx = ctx
	w.ctxMu.Unlock()
	// client-go logs through klog: send that to our logger, at debug
	// level, through the context rather than klog's global logger.
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(debugHandler{w.log.Handler()}))
	w.inf.RunWithContext(ctx)
}

// WaitSynced waits until the first list of pods has been indexed or ctx is
// done, and reports whether it was. The informer's HasSynced turns true when
// its store holds the list, before its handlers have run: the handler
// registration's HasSynced waits for our own index as well.
func (w *Watcher) WaitSynced(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), w.inf.HasSynced, w.handler.HasSynced)
}

// WaitStarted waits until the first list of pods has been indexed, a list
// or watch has failed (the watcher goes on retrying), or ctx is done; it
// reports whether the pods were indexed.
func (w *Watcher) WaitStarted(ctx context.Context) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-w.failed:
			cancel()
		case <-ctx.Done():
		}
	}()
	return w.WaitSynced(ctx)
}

// Synced reports whether the first list of pods has been indexed.
func (w *Watcher) Synced() bool { return w.inf.HasSynced() && w.handler.HasSynced() }

// Pods returns how many pods are indexed.
func (w *Watcher) Pods() int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return len(w.byUID)
}

// Addresses returns the addresses of this node's pods and of the node
// itself, at most max.
func (w *Watcher) Addresses(max int) []netip.Addr {
	w.mu.RLock()
	defer w.mu.RUnlock()
	seen := make(map[netip.Addr]bool)
	var out []netip.Addr
	for _, p := range w.byUID {
		for _, a := range p.IPs {
			if !seen[a] && len(out) < max {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// Lookup returns the pod running a container (by the runtime's container
// ID) or, when the container is not known, the pod with the given UID; and
// the container's name when it was found by ID. It does not allocate.
func (w *Watcher) Lookup(containerID, podUID string) (pod *Pod, container string, ok bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if containerID != "" {
		if p := w.byContainer[containerID]; p != nil {
			return p, p.Containers[containerID], true
		}
	}
	if podUID != "" {
		if p := w.byUID[podUID]; p != nil {
			return p, "", true
		}
	}
	return nil, "", false
}

func (w *Watcher) runCtx() context.Context {
	w.ctxMu.Lock()
	defer w.ctxMu.Unlock()
	return w.ctx
}

func (w *Watcher) upsert(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	pod := NewPod(w.runCtx(), p, w.owners)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.removeLocked(pod.UID)
	w.byUID[pod.UID] = pod
	for id := range pod.Containers {
		w.byContainer[id] = pod
	}
}

func (w *Watcher) delete(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.removeLocked(string(p.UID))
}

// removeLocked forgets a pod; w.mu is held.
func (w *Watcher) removeLocked(uid string) {
	old := w.byUID[uid]
	if old == nil {
		return
	}
	delete(w.byUID, uid)
	for id := range old.Containers {
		if w.byContainer[id] == old {
			delete(w.byContainer, id)
		}
	}
}

// transform slims the pods the informer caches.
func transform(obj any) (any, error) {
	if p, ok := obj.(*corev1.Pod); ok {
		return slimPod(p), nil
	}
	return obj, nil
}

// answered records a successful list: logs the first one, and the end of
// an outage.
func (w *Watcher) answered(pods int) {
	w.healthMu.Lock()
	failing, listed := w.failing, w.listed
	w.failing, w.listed = "", true
	w.healthMu.Unlock()
	switch {
	case failing != "":
		w.log.Info("kubernetes: the API server answers again", "server", w.cfg.Server, "node", w.cfg.NodeName, "pods", pods)
	case !listed:
		w.log.Info("kubernetes: watching the pods of this node", "server", w.cfg.Server, "node", w.cfg.NodeName, "pods", pods)
	}
}

// watchError is called by the informer on every failed list or watch. The
// first failure of an outage (or a failure of another kind) is logged as a
// warning, the retries at debug level.
func (w *Watcher) watchError(_ context.Context, _ *cache.Reflector, err error) {
	class, msg := classify(err)
	if class == "" {
		w.log.Debug("kubernetes: pod watch ended; re-listing", "err", err)
		return
	}
	w.errs.Inc()
	w.failedOnce.Do(func() { close(w.failed) })
	w.healthMu.Lock()
	repeated := w.failing == class
	w.failing = class
	w.healthMu.Unlock()
	if repeated {
		w.log.Debug("kubernetes: pod list or watch failed again; retrying with backoff", "err", err)
		return
	}
	w.log.Warn("kubernetes: "+msg+"; retrying with backoff, spans carry no Kubernetes attributes meanwhile",
		"server", w.cfg.Server, "node", w.cfg.NodeName, "err", err)
}

// classify names the kind of a list or watch failure, "" for the ends of
// watches that are part of normal operation.
func classify(err error) (class, msg string) {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		apierrors.IsResourceExpired(err), apierrors.IsGone(err):
		return "", ""
	case apierrors.IsForbidden(err):
		return "forbidden", "the API server forbids listing the pods of this node (the agent needs get, list and watch on pods)"
	case apierrors.IsUnauthorized(err):
		return "unauthorized", "the API server does not accept the agent's credentials"
	}
	return "unreachable", "cannot list the pods of this node from the API server"
}

// debugHandler logs every record at debug level.
type debugHandler struct{ slog.Handler }

func (h debugHandler) Enabled(ctx context.Context, _ slog.Level) bool {
	return h.Handler.Enabled(ctx, slog.LevelDebug)
}

func (h debugHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = slog.LevelDebug
	return h.Handler.Handle(ctx, r)
}

func (h debugHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return debugHandler{h.Handler.WithAttrs(attrs)}
}

func (h debugHandler) WithGroup(name string) slog.Handler {
	return debugHandler{h.Handler.WithGroup(name)}
}
