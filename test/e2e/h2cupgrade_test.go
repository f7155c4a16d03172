package e2e

import (
	"fmt"
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// TestCurlH2CUpgrade: curl --http2 on http:// URLs asks the server to
// switch to HTTP/2 with "Upgrade: h2c"; golang.org/x/net/http2/h2c's
// handler accepts (101) and serves the request as stream 1 of the HTTP/2
// connection, and curl's next requests on that connection as streams 3,
// 5, ... 4 GETs on one connection and 2 on connections of their own:
//   - gohttp off (the Go server is plain bytes to the agent, like any
//     runtime's h2c server; the sockets collector sees both ends): exactly
//     6 SERVER and 6 CLIENT spans, HTTP/2, status 200, right paths, each
//     server span the child of its client span — the upgrading request is
//     one span, ended by its HTTP/2 response;
//   - gohttp on (the default): the server's upgrading request goes through
//     net/http and its streams through x/net/http2's server, neither of
//     which the sockets collector traces there (README); curl's 6 CLIENT
//     spans are still exact.
func TestCurlH2CUpgrade(t *testing.T) {
	bin := buildGRPCGo(t, t.TempDir())
	for _, tc := range []struct {
		name   string
		env    []string
		server bool // the server's spans are checked
	}{{"gohttp-off", []string{"PERISCOPE_GOHTTP_ENABLED=false"}, true}, {"gohttp-on", nil, false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := startAgentOTLP(t, tc.env, "--include-exe", "grpcgo", "--include-exe", "curl")
			srv := startProc(t, []string{"OTEL_SERVICE_NAME=h2c-server"}, bin, "-mode", "h2c-server")
			portStr := srv.expect("listening", 30*time.Second)
			port, err := strconv.Atoi(portStr)
			if err != nil {
				t.Fatalf("bad port from the server: %v", err)
			}
			e.instrumented(t, srv.PID)
			curl := harness.LookTool(t, "curl")
			base := "http://127.0.0.1:" + portStr
			var urls []string
			for i := range 4 {
				urls = append(urls, fmt.Sprintf("%s/h2c/%d", base, i))
			}
			out := run(t, curl, append([]string{"-sS", "--http2", "-w", "%{http_version} "}, keepAliveArgs(urls)...)...)
			for i := 4; i < 6; i++ {
				out += run(t, curl, "-sS", "--http2", "-w", "%{http_version} ", "-o", "/dev/null", fmt.Sprintf("%s/h2c/%d", base, i))
			}
			if out != "2 2 2 2 2 2 " {
				t.Fatalf("curl's HTTP versions %q: the server did not upgrade every connection", out)
			}
			const n = 6
			want := map[string]int{}
			for i := range n {
				want[fmt.Sprintf("GET /h2c/%d 200 2", i)] = 1
			}
			key := func(s otlpreceiver.Span) string {
				return fmt.Sprintf("%s %s %d %s", attrStr(s, "http.request.method"), attrStr(s, "url.path"),
					attrInt(s, "http.response.status_code"), attrStr(s, "network.protocol.version"))
			}
			client := e.spans(t, n, byPort("curl", kindClient, port))
			if got := counts(client, key); !maps.Equal(got, want) {
				t.Errorf("curl spans %v, want %v", got, want)
			}
			if !tc.server {
				return
			}
			server := e.spans(t, n, byPIDs(kindServer, srv.PID))
			if got := counts(server, key); !maps.Equal(got, want) {
				t.Errorf("server spans %v, want %v", got, want)
			}
			checkParents(t, server, client)
		})
	}
}

// TestCurlH2CUpgradeDeclined: curl --http2 on http:// URLs against nginx
// over plain HTTP, which ignores "Upgrade: h2c" and answers in HTTP/1.1:
// the connection stays HTTP/1.1, so 3 GETs on one connection are exactly
// 3 SERVER spans for nginx and 3 CLIENT spans for curl, HTTP/1.1, linked.
func TestCurlH2CUpgradeDeclined(t *testing.T) {
	ngxBin := harness.CopyExe(t, "nginx", "nginx-h2cup")
	curlBin := harness.CopyExe(t, "curl", "curl-h2cup")
	e := startAgent(t, "--include-exe", "nginx-h2cup", "--include-exe", "curl-h2cup")
	port := harness.FreePort(t)
	ngx := harness.StartNginx(t, harness.NginxOptions{Exe: ngxBin, Workers: 1, ExtraHTTPConfig: fmt.Sprintf(`
    server {
        listen 127.0.0.1:%d;
        location = /ok { return 200 "ok\n"; }
    }`, port)})
	e.instrumented(t, ngx.WorkerPIDs...)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	out := run(t, curlBin, append([]string{"-sS", "--http2", "-w", "%{http_version} "},
		keepAliveArgs([]string{base + "/ok", base + "/missing", base + "/ok"})...)...)
	if out != "1.1 1.1 1.1 " {
		t.Fatalf("curl's HTTP versions %q, want 1.1 (nginx declines the upgrade)", out)
	}
	const n = 3
	server := e.spans(t, n, byPIDs(kindServer, ngx.WorkerPIDs...))
	client := e.spans(t, n, byPort("curl-h2cup", kindClient, port))
	want := map[string]int{"GET /ok 200 1.1": 2, "GET /missing 404 1.1": 1}
	for _, set := range [][]otlpreceiver.Span{server, client} {
		got := counts(set, func(s otlpreceiver.Span) string {
			return fmt.Sprintf("%s %s %d %s", attrStr(s, "http.request.method"), attrStr(s, "url.path"),
				attrInt(s, "http.response.status_code"), attrStr(s, "network.protocol.version"))
		})
		if !maps.Equal(got, want) {
			t.Errorf("spans %v, want %v", got, want)
		}
	}
	checkParents(t, server, client)
}
