package openssl

import (
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestPlanRealLibraries plans probes for the OpenSSL builds on this machine:
// Debian's libssl.so.3 (thin wrappers over internal functions) and node's
// statically linked OpenSSL. Every site must be on an emulated instruction,
// SSL_free's (the end of an SSL*'s connection) and SSL_do_handshake's (a
// connection seen from its start, for cross-node linking) among them.
func TestPlanRealLibraries(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Fatalf("probe placement is analysed on amd64 only; this is %s", runtime.GOARCH)
	}
	for _, tt := range []struct {
		path    string
		sites   int
		mention []string
	}{
		{"/usr/lib/x86_64-linux-gnu/libssl.so.3", 4, []string{"serves SSL_read and SSL_read_ex", "SSL_free+", "SSL_do_handshake+"}},
		{"/usr/bin/node", 0, []string{"SSL_free+", "SSL_do_handshake+"}},
	} {
		t.Run(tt.path, func(t *testing.T) {
			if _, err := os.Stat(tt.path); err != nil {
				t.Fatalf("%s is needed for this test (scripts/deps.sh installs it): %v", tt.path, err)
			}
			sites, err := plan(tt.path, functions)
			if err != nil {
				t.Fatal(err)
			}
			var descs []string
			for _, s := range sites {
				descs = append(descs, s.Desc)
				if !s.Cheap {
					t.Errorf("%s: site %s is single-stepped", tt.path, s.Desc)
				}
			}
			t.Logf("%s: %s", tt.path, strings.Join(descs, "; "))
			if tt.sites > 0 && len(sites) != tt.sites {
				t.Errorf("%d sites, want %d", len(sites), tt.sites)
			}
			if len(sites) == 0 {
				t.Error("no sites")
			}
			for _, m := range tt.mention {
				if !strings.Contains(strings.Join(descs, ";"), m) {
					t.Errorf("no site %q", m)
				}
			}
		})
	}
}
