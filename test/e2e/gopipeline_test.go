package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// TestGoServerPipelined: HTTP/1 requests pipelined on one connection (all
// written at once, so that most arrive with an earlier request's bytes and
// net/http's background reader may take the next one's first byte), over
// HTTP and HTTPS, alternating /chain (whose handler calls a downstream
// server) and /item: one SERVER span per request, all on the connection's
// port, one after another (each starts no earlier than the previous one
// ended: net/http serves them in turn), and each /chain span the parent of
// exactly one CLIENT span, which lies within it. Issue 15's one-hit path
// (a request's start from the read that brings its bytes) must keep this.
func TestGoServerPipelined(t *testing.T) {
	const n = 8 // requests per connection, half of them /chain
	e := startAgent(t, "--include-exe", "goapp-*")
	dir := t.TempDir()
	cert, key, ca := harness.GenerateCert(t, dir)
	bin := buildGoApp(t, dir, "", false)
	leafPort := harness.FreePort(t)
	leaf := goServer(t, bin, leafPort)
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			port := harness.FreePort(t)
			extra := []string{"-downstream", fmt.Sprintf("http://127.0.0.1:%d", leafPort)}
			if scheme == "https" {
				extra = append(extra, "-tls-cert", cert, "-tls-key", key)
			}
			srv := goServer(t, bin, port, extra...)
			goInstrumented(t, e, srv.PID, leaf.PID)
			local := pipeline(t, scheme, ca, port, n)
			servers := e.spans(t, n, byPIDs(kindServer, srv.PID))
			clients := e.spans(t, n/2, byPIDs(kindClient, srv.PID))
			checkPipelined(t, servers, clients, local)
		})
	}
}

// pipeline writes n requests at once on one connection to 127.0.0.1:port
// and reads their n responses; it returns the connection's local port.
func pipeline(t *testing.T, scheme, ca string, port, n int) int {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var c net.Conn
	var err error
	if scheme == "https" {
		pem, rerr := os.ReadFile(ca)
		if rerr != nil {
			t.Fatal(rerr)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		c, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", pipelinedPath(i), addr)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatalf("write: %v", err)
	}
	r := bufio.NewReader(c)
	for i := range n {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("response %d (%s): status %d, %v", i, pipelinedPath(i), resp.StatusCode, err)
		}
	}
	return c.LocalAddr().(*net.TCPAddr).Port
}

func pipelinedPath(i int) string {
	if i%2 == 0 {
		return "/chain"
	}
	return fmt.Sprintf("/item/pipe-%d", i)
}

func checkPipelined(t *testing.T, servers, clients []otlpreceiver.Span, local int) {
	t.Helper()
	sort.Slice(servers, func(i, j int) bool { return servers[i].Start.Before(servers[j].Start) })
	byID := map[string]otlpreceiver.Span{}
	for i, s := range servers {
		byID[s.SpanID] = s
		if want := pipelinedPath(i); attrStr(s, "url.path") != want {
			t.Errorf("server span %d: path %q, want %q (in order)", i, attrStr(s, "url.path"), want)
		}
		if got := attrInt(s, "client.port"); got != int64(local) {
			t.Errorf("server span %d (%s): client.port %d, want %d", i, s.Name, got, local)
		}
		if s.End.Before(s.Start) {
			t.Errorf("server span %d (%s) ends before it starts", i, s.Name)
		}
		if i > 0 && s.Start.Before(servers[i-1].End) {
			t.Errorf("server span %d (%s) starts at %v, before the previous one ended (%v)", i, s.Name,
				s.Start.Format(time.RFC3339Nano), servers[i-1].End.Format(time.RFC3339Nano))
		}
	}
	children := map[string]int{}
	for _, c := range clients {
		p, ok := byID[c.ParentSpanID]
		if !ok || attrStr(p, "url.path") != "/chain" || p.TraceID != c.TraceID {
			t.Errorf("client span %q: parent %q is not a /chain server span of the connection", c.Name, c.ParentSpanID)
			continue
		}
		children[p.SpanID]++
		if c.Start.Before(p.Start) || c.End.After(p.End) {
			t.Errorf("client span %q [%v, %v] is not within its parent [%v, %v]", c.Name, c.Start, c.End, p.Start, p.End)
		}
	}
	for _, s := range servers {
		if attrStr(s, "url.path") == "/chain" && children[s.SpanID] != 1 {
			t.Errorf("/chain server span %s has %d client children, want 1", s.SpanID, children[s.SpanID])
		}
	}
}
