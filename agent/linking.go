package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/periscope-apm/periscope/config"
	"github.com/periscope-apm/periscope/correlator"
	"github.com/periscope-apm/periscope/linking"
	"github.com/periscope-apm/periscope/metadata/kube"
)

// linker is this agent's side of cross-node linking: the client of the
// other agents (given to the correlator) and the server answering them
// (started once the correlator exists).
type linker struct {
	cfg    config.Linking
	kube   config.Kube
	token  string
	client *linking.Client
	log    *slog.Logger
	reg    prometheus.Registerer
	ln     net.Listener
}

// Peer discovery on Kubernetes: the agents' pods are listed this often
// (more often while none is found), at most maxPeers of them.
const (
	peerListInterval = 30 * time.Second
	peerRetry        = 5 * time.Second
	maxPeers         = 5000
)

// newLinker reads the token and listens; it returns nil when linking is
// off.
func newLinker(cfg config.Linking, kcfg config.Kube, log *slog.Logger, reg prometheus.Registerer) (*linker, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	if cfg.TokenFile == "" {
		return nil, &UsageError{errors.New("linking.token_file: required with linking.listen, peers or peer_selector (agents answer only agents)")}
	}
	if cfg.PeerSelector != "" && cfg.Listen == "" {
		return nil, &UsageError{errors.New("linking.peer_selector: needs linking.listen (its port is the peers' port)")}
	}
	b, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		return nil, &UsageError{fmt.Errorf("linking.token_file: %w", err)}
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return nil, &UsageError{fmt.Errorf("linking.token_file: %s is empty", cfg.TokenFile)}
	}
	l := &linker{cfg: cfg, kube: kcfg, token: token, log: log, reg: reg}
	if len(cfg.Peers) > 0 || cfg.PeerSelector != "" {
		l.client, err = linking.NewClient(linking.ClientConfig{Peers: cfg.Peers, Token: token, Wait: cfg.Wait, Logger: log, Registerer: reg})
		if err != nil {
			return nil, &UsageError{fmt.Errorf("linking.peers: %w", err)}
		}
	}
	if cfg.Listen != "" {
		if l.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			l.close()
			return nil, &UsageError{fmt.Errorf("linking.listen: %w", err)}
		}
	}
	return l, nil
}

// correlatorLinker returns what the correlator looks up with (nil without
// peers).
func (l *linker) correlatorLinker() correlator.Linker {
	if l == nil || l.client == nil {
		return nil
	}
	return l.client
}

// start runs the client and serves the answers of ans until ctx is done;
// pods, when known, adds this node's pod and node addresses to what the
// server announces. stop waits for everything.
func (l *linker) start(ctx context.Context, ans linking.Answerer, pods *kube.Watcher) (stop func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 3)
	n := 0
	goRun := func(f func()) {
		n++
		go func() {
			defer func() { done <- struct{}{} }()
			f()
		}()
	}
	var srv *linking.Server
	if l.ln != nil {
		srv, err = linking.NewServer(linking.ServerConfig{Token: l.token, Answerer: ans, Addresses: announced(pods), Logger: l.log, Registerer: l.reg})
		if err != nil {
			cancel()
			l.close()
			return nil, err
		}
		goRun(func() {
			if err := srv.Serve(l.ln); err != nil && !errors.Is(err, net.ErrClosed) {
				l.log.Error("linking server", "err", err)
			}
		})
		l.log.Info("answering other agents' lookups", "addr", l.ln.Addr().String())
	}
	if l.client != nil {
		goRun(func() { l.client.Run(cctx) })
		l.log.Info("linking spans across nodes", "peers", len(l.cfg.Peers), "peer_selector", l.cfg.PeerSelector, "wait", l.cfg.Wait)
	}
	if l.cfg.PeerSelector != "" {
		api, err := l.kubeAPI()
		if err != nil {
			cancel()
			l.close()
			return nil, err
		}
		goRun(func() { l.discover(cctx, api) })
	}
	return func() {
		cancel()
		if srv != nil {
			srv.Stop()
		}
		for range n {
			<-done
		}
		l.close()
	}, nil
}

// announced is what this agent answers for: its interfaces' addresses
// and, on Kubernetes, its node's pods' and the node's.
func announced(pods *kube.Watcher) linking.AddressSource {
	if pods == nil {
		return linking.InterfaceAddresses
	}
	return func() []netip.Addr {
		out := linking.InterfaceAddresses()
		return append(out, pods.Addresses(linking.MaxAddresses-len(out))...)
	}
}

func (l *linker) kubeAPI() (kube.API, error) {
	rc, err := kubeRESTConfig(l.kube)
	if err != nil {
		return nil, &UsageError{fmt.Errorf("linking.peer_selector: %w", err)}
	}
	rc.UserAgent = "periscope/" + Version()
	api, err := kube.NewAPI(rc)
	if err != nil {
		return nil, &UsageError{fmt.Errorf("linking.peer_selector: %w", err)}
	}
	return api, nil
}

// discover lists the agents' pods and makes them the peers, until ctx is
// done.
func (l *linker) discover(ctx context.Context, api kube.API) {
	_, port, _ := net.SplitHostPort(l.cfg.Listen)
	opts := metav1.ListOptions{LabelSelector: l.cfg.PeerSelector, ResourceVersion: "0"}
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		opts.FieldSelector = "metadata.namespace=" + ns
	}
	for {
		next := peerListInterval
		pods, err := api.ListPods(ctx, opts)
		if err != nil {
			l.log.Warn("linking: list the agents' pods", "selector", l.cfg.PeerSelector, "err", err)
			next = peerRetry
		} else {
			peers := peerAddrs(pods.Items, port, linking.InterfaceAddresses())
			if err := l.client.SetPeers(peers); err != nil {
				l.log.Warn("linking: peers", "err", err)
			}
			if len(peers) == 0 {
				next = peerRetry
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}

// peerAddrs returns host:port of the running pods, this agent's own
// excepted.
func peerAddrs(pods []corev1.Pod, port string, self []netip.Addr) []string {
	var out []string
	for _, p := range pods {
		a, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || containsAddr(self, a) {
			continue
		}
		if len(out) == maxPeers {
			break
		}
		out = append(out, net.JoinHostPort(a.String(), port))
	}
	return out
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, b := range list {
		if b == a {
			return true
		}
	}
	return false
}

func (l *linker) close() {
	if l.client != nil {
		l.client.Close()
	}
	if l.ln != nil {
		l.ln.Close()
	}
}
