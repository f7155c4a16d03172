package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/periscope-apm/periscope/config"
	"github.com/periscope-apm/periscope/linking"
	"github.com/periscope-apm/periscope/metadata/kube"
)

func TestPeerAddrs(t *testing.T) {
	pod := func(ip string, phase corev1.PodPhase, deleting bool) corev1.Pod {
		p := corev1.Pod{Status: corev1.PodStatus{PodIP: ip, Phase: phase}}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{}
		}
		return p
	}
	pods := []corev1.Pod{
		pod("10.0.0.1", corev1.PodRunning, false),
		pod("10.0.0.2", corev1.PodRunning, false), // this agent
		pod("10.0.0.3", corev1.PodPending, false),
		pod("10.0.0.4", corev1.PodRunning, true),
		pod("", corev1.PodRunning, false),
		pod("fd00::5", corev1.PodRunning, false),
	}
	got := peerAddrs(pods, "7071", []netip.Addr{netip.MustParseAddr("10.0.0.2")})
	if want := []string{"10.0.0.1:7071", "[fd00::5]:7071"}; !reflect.DeepEqual(got, want) {
		t.Errorf("peers %v, want %v", got, want)
	}
}

// podsAPI lists fixed pods and records the options it was asked with.
type podsAPI struct {
	kube.API
	pods []corev1.Pod
	opts chan metav1.ListOptions
}

func (a *podsAPI) ListPods(_ context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	select {
	case a.opts <- opts:
	default:
	}
	return &corev1.PodList{Items: a.pods}, nil
}

func TestDiscoverPeers(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "obs")
	client, err := linking.NewClient(linking.ClientConfig{Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	l := &linker{cfg: config.Linking{Listen: "0.0.0.0:7071", PeerSelector: "app=periscope"}, client: client, log: slog.New(slog.DiscardHandler)}
	api := &podsAPI{opts: make(chan metav1.ListOptions, 1), pods: []corev1.Pod{
		{Status: corev1.PodStatus{PodIP: "10.9.0.1", Phase: corev1.PodRunning}},
		{Status: corev1.PodStatus{PodIP: "10.9.0.2", Phase: corev1.PodRunning}},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.discover(ctx, api); close(done) }()
	opts := <-api.opts
	for deadline := time.Now().Add(5 * time.Second); client.Peers() != 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d peers, want 2", client.Peers())
		}
	}
	cancel()
	<-done
	if opts.LabelSelector != "app=periscope" || opts.FieldSelector != "metadata.namespace=obs" {
		t.Errorf("listed pods with %+v", opts)
	}
}

func TestNewLinkerUsageErrors(t *testing.T) {
	dir := t.TempDir()
	token, empty := dir+"/token", dir+"/empty"
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  config.Linking
		want string
	}{
		{"no token", config.Linking{Peers: []string{"a:1"}}, "linking.token_file: required"},
		{"missing token file", config.Linking{Peers: []string{"a:1"}, TokenFile: dir + "/none"}, "no such file"},
		{"empty token", config.Linking{Peers: []string{"a:1"}, TokenFile: empty}, "is empty"},
		{"selector without listen", config.Linking{PeerSelector: "app=x", TokenFile: token}, "needs linking.listen"},
		{"half of TLS", config.Linking{Peers: []string{"a:1"}, TokenFile: token, TLSCertFile: "/c"}, "all three or none"},
		{"bad TLS files", config.Linking{Peers: []string{"a:1"}, TokenFile: token, TLSCertFile: "/c", TLSKeyFile: "/k", TLSCAFile: "/a"}, "certificate"},
	} {
		_, err := newLinker(tc.cfg, config.Kube{}, slog.New(slog.DiscardHandler), nil)
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a usage error with %q", tc.name, err, tc.want)
		}
	}
	l, err := newLinker(config.Linking{Wait: time.Second}, config.Kube{}, slog.New(slog.DiscardHandler), nil)
	if l != nil || err != nil {
		t.Errorf("linking off: %v %v", l, err)
	}
}
