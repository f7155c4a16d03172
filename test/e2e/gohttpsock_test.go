package e2e

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/periscope-apm/periscope/test/e2e/harness"
)

// TestGoServerSocketPerConn: a Go server's goroutines come and go with its
// connections, and a new connection's goroutine often reuses an old one's g
// (gohttp keeps each goroutine's last socket in its servers entry): curl
// makes one connection after another from ports it is told, three requests
// each (the third finds the socket its goroutine's entry keeps), over HTTP and HTTPS, and every SERVER span must carry the port of
// the connection its request came on.
func TestGoServerSocketPerConn(t *testing.T) {
	const conns = 6
	e := startAgent(t, "--include-exe", "goapp-*")
	dir := t.TempDir()
	cert, key, ca := harness.GenerateCert(t, dir)
	bin := buildGoApp(t, dir, "", false)
	curl := harness.LookTool(t, "curl")
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			port := harness.FreePort(t)
			var extra []string
			if scheme == "https" {
				extra = []string{"-tls-cert", cert, "-tls-key", key}
			}
			srv := goServer(t, bin, port, extra...)
			goInstrumented(t, e, srv.PID)
			want := map[string]int64{} // url.path: client port
			for i := range conns {
				local := harness.FreePort(t)
				args := []string{"-sf", "--cacert", ca, "--local-port", strconv.Itoa(local)}
				for _, r := range "abc" {
					path := fmt.Sprintf("/item/%s-%d-%c", scheme, i, r)
					want[path] = int64(local)
					args = append(args, "-o", "/dev/null", fmt.Sprintf("%s://127.0.0.1:%d%s", scheme, port, path))
				}
				run(t, curl, args...)
			}
			spans := e.spans(t, len(want), byPIDs(kindServer, srv.PID))
			seen := map[string]bool{}
			for _, s := range spans {
				path := attrStr(s, "url.path")
				port, ok := want[path]
				if !ok || seen[path] {
					t.Errorf("server span %q: path %q unexpected or seen twice", s.Name, path)
					continue
				}
				seen[path] = true
				if got := attrInt(s, "client.port"); got != port || attrStr(s, "client.address") != "127.0.0.1" {
					t.Errorf("server span for %s: client %s:%d, want 127.0.0.1:%d", path, attrStr(s, "client.address"), got, port)
				}
			}
		})
	}
}
