package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/periscope-apm/periscope/config"
	"github.com/periscope-apm/periscope/metadata"
)

// TestNewKubeResolverOffCluster: without a cluster, "auto" and "false" give
// the plain resolver, "true" and a kubeconfig that cannot be read are
// usage errors. (The tests do not run in a pod: no in-cluster config.)
func TestNewKubeResolverOffCluster(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	procs := metadata.NewProcesses(metadata.ProcessesConfig{})
	missing := filepath.Join(t.TempDir(), "no-such-kubeconfig")
	for _, tc := range []struct {
		name      string
		cfg       config.Kube
		wantPlain bool
	}{
		{"auto", config.Kube{Enabled: "auto"}, true},
		{"false", config.Kube{Enabled: "false", Kubeconfig: missing}, true},
		{"true", config.Kube{Enabled: "true"}, false},
		{"missing kubeconfig", config.Kube{Enabled: "auto", Kubeconfig: missing}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _, stop, err := newKubeResolver(context.Background(), tc.cfg, procs, slog.New(slog.DiscardHandler), nil)
			if tc.wantPlain {
				if err != nil || res != procs {
					t.Fatalf("got %T, %v; want the plain resolver", res, err)
				}
				stop()
				return
			}
			var usage *UsageError
			if !errors.As(err, &usage) {
				t.Fatalf("err = %v, want a usage error", err)
			}
		})
	}
}

func TestKubeNodeName(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg, env, want string
	}{
		{"from-config", "from-env", "from-config"},
		{"", "from-env", "from-env"},
		{"", "", host},
	} {
		t.Setenv("NODE_NAME", tc.env)
		got, err := kubeNodeName(config.Kube{NodeName: tc.cfg})
		if err != nil || got != tc.want {
			t.Errorf("node name (config %q, $NODE_NAME %q) = %q, %v; want %q", tc.cfg, tc.env, got, err, tc.want)
		}
	}
}
