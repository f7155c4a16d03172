package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// traceParentToolchains: bucket maps (Go 1.18, 1.22) and swiss tables (Go
// 1.24 and the local toolchain) for Request.Header.
var traceParentToolchains = []string{"go1.18.10", "go1.22.12", "go1.24.13", ""}

// buildTraceParentApp builds testdata/goapp under a name of its own, so that
// the agent of this test selects only the programs this test starts.
func buildTraceParentApp(t *testing.T, dir, toolchain string, stripped bool) string {
	t.Helper()
	bin := buildGoApp(t, dir, toolchain, stripped)
	renamed := filepath.Join(dir, "gotp"+strings.TrimPrefix(filepath.Base(bin), "goapp"))
	if err := os.Rename(bin, renamed); err != nil {
		t.Fatal(err)
	}
	return renamed
}

func tpHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// extraHeaders returns curl arguments adding n headers.
func extraHeaders(n int) []string {
	var args []string
	for i := 0; i < n; i++ {
		args = append(args, "-H", fmt.Sprintf("X-Extra-%02d: value-%d", i, i))
	}
	return args
}

// TestGoTraceParent: Go servers built with Go 1.18, 1.22, 1.24 and the local
// toolchain, with symbols and stripped. A request carrying a traceparent
// header gives a SERVER span with exactly that trace ID and parent span ID
// (remote parent), with few headers (the smallest map: one bucket or one
// group) and with 20 more (several buckets, a directory of tables); a
// request without it, or with an invalid one, starts a new trace. A request
// with 100 headers is more than the probe searches: it is counted as such.
func TestGoTraceParent(t *testing.T) {
	e := startAgent(t, "--include-exe", "gotp-*")
	dir := t.TempDir()
	curl := harness.LookTool(t, "curl")
	type request struct {
		path    string
		headers []string
		trace   string // the traceparent's trace ID and parent, "" for none
		parent  string
		bound   bool // more headers than the probe searches
	}
	for _, tc := range traceParentToolchains {
		for _, stripped := range []bool{false, true} {
			bin := buildTraceParentApp(t, dir, tc, stripped)
			t.Run(fmt.Sprintf("%s/stripped=%v", filepath.Base(bin), stripped), func(t *testing.T) {
				port := harness.FreePort(t)
				srv := goServer(t, bin, port)
				goInstrumented(t, e, srv.PID)

				var reqs []request
				valid := func(path string, extra int) {
					r := request{path: path, trace: tpHex(t, 16), parent: tpHex(t, 8)}
					r.headers = append([]string{"-H", "traceparent: 00-" + r.trace + "-" + r.parent + "-01"}, extraHeaders(extra)...)
					reqs = append(reqs, r)
				}
				for i := 0; i < 3; i++ {
					valid(fmt.Sprintf("/tp/few-%d", i), 0)
					valid(fmt.Sprintf("/tp/many-%d", i), 20)
					reqs = append(reqs, request{path: fmt.Sprintf("/tp/none-%d", i), headers: extraHeaders(i * 10)})
				}
				reqs = append(reqs,
					request{path: "/tp/invalid", headers: []string{"-H", "traceparent: 00-" + strings.ToUpper(tpHex(t, 16)) + "-" + tpHex(t, 8) + "-01"}},
					request{path: "/tp/other-key", headers: []string{"-H", "Tracestate: x=1", "-H", "Traceparent-X: 00-" + tpHex(t, 16) + "-" + tpHex(t, 8) + "-01"}},
					request{path: "/tp/huge", headers: extraHeaders(100), bound: true},
				)
				boundBefore := lookups(t, e, "bound")
				sent := map[string]bool{}
				for _, r := range reqs {
					args := append([]string{"-sS", "-o", "/dev/null"}, r.headers...)
					run(t, curl, append(args, fmt.Sprintf("http://127.0.0.1:%d%s", port, r.path))...)
					if r.trace != "" {
						sent[r.trace] = true
					}
				}
				// Headers that arrive after the server started reading
				// them: the map is made for one key and grows while they
				// are added. 13 keys (Host, 10 more, Traceparent,
				// Connection) are the most 2 buckets hold before growing:
				// with a random hash seed per map, a bucket overflows in
				// about 1 map in 4. Swiss: a small map turned into a table.
				for i := 0; i < 4; i++ {
					r := request{path: fmt.Sprintf("/tp/dribble-%d", i), trace: tpHex(t, 16), parent: tpHex(t, 8)}
					var rest strings.Builder
					for j := 0; j < 10; j++ {
						fmt.Fprintf(&rest, "X-Late-%02d: v\r\n", j)
					}
					fmt.Fprintf(&rest, "Traceparent: 00-%s-%s-01\r\nConnection: close\r\n\r\n", r.trace, r.parent)
					dribble(t, port, "GET "+r.path+" HTTP/1.1\r\nHost: x\r\n", rest.String())
					reqs = append(reqs, r)
					sent[r.trace] = true
				}

				spans := e.spans(t, len(reqs), byPIDs(kindServer, srv.PID))
				byPath := map[string]otlpreceiver.Span{}
				for _, s := range spans {
					byPath[attrStr(s, "url.path")] = s
				}
				for _, r := range reqs {
					s, ok := byPath[r.path]
					switch {
					case !ok:
						t.Errorf("%s: no span (spans:\n%s)", r.path, describe(spans))
					case r.trace != "":
						if s.TraceID != r.trace || s.ParentSpanID != r.parent || !s.RemoteParent {
							t.Errorf("%s: trace %s parent %s remote %v, want the header's trace %s parent %s",
								r.path, s.TraceID, s.ParentSpanID, s.RemoteParent, r.trace, r.parent)
						}
					default:
						if s.ParentSpanID != "" || sent[s.TraceID] || s.TraceID == strings.Repeat("0", 32) {
							t.Errorf("%s: trace %s parent %q, want a new trace", r.path, s.TraceID, s.ParentSpanID)
						}
					}
				}
				if t.Failed() {
					t.Logf("searches so far: found %v, absent %v, bound %v, fault %v", lookups(t, e, "found"),
						lookups(t, e, "absent"), lookups(t, e, "bound"), lookups(t, e, "fault"))
				}
				traces := counts(spans, func(s otlpreceiver.Span) string { return s.TraceID })
				if len(traces) != len(reqs) {
					t.Errorf("%d traces for %d requests: %v", len(traces), len(reqs), traces)
				}
				bound := lookups(t, e, "bound") - boundBefore
				if bound != 1 {
					t.Errorf("%v searches counted as beyond the bound, want 1 (the request with 100 headers)", bound)
				}
				if f := lookups(t, e, "fault"); f != 0 {
					t.Errorf("%v searches failed on a read of the server's memory", f)
				}
			})
		}
	}
}

// TestGoTraceParentChain: curl → Go handler → Go downstream, on this node.
// The handler forwards the traceparent curl gave it in another header, so
// that the downstream request carries a traceparent naming a span the agent
// never saw. The downstream SERVER span takes its trace and parent from the
// header, although the agent also sees the CLIENT span on the other end of
// its connection: the header is what the caller declared. Without the
// header, the 4-tuple link makes it the CLIENT span's child (TestGoChain).
func TestGoTraceParentChain(t *testing.T) {
	e := startAgent(t, "--include-exe", "gotp-*")
	dir := t.TempDir()
	bin := buildTraceParentApp(t, dir, "", false)
	leafPort, midPort := harness.FreePort(t), harness.FreePort(t)
	leaf := goServer(t, bin, leafPort)
	mid := goServer(t, bin, midPort, "-downstream", fmt.Sprintf("http://127.0.0.1:%d", leafPort))
	goInstrumented(t, e, leaf.PID, mid.PID)
	curl := harness.LookTool(t, "curl")
	trace, parent := tpHex(t, 16), tpHex(t, 8)
	run(t, curl, "-sS", "-o", "/dev/null", "-H", "X-Forward-Traceparent: 00-"+trace+"-"+parent+"-01",
		fmt.Sprintf("http://127.0.0.1:%d/chain", midPort))

	midServer := e.spans(t, 1, byPIDs(kindServer, mid.PID))[0]
	midClient := e.spans(t, 1, byPIDs(kindClient, mid.PID))[0]
	leafServer := e.spans(t, 1, byPIDs(kindServer, leaf.PID))[0]
	if midClient.ParentSpanID != midServer.SpanID || midClient.TraceID != midServer.TraceID {
		t.Errorf("downstream call: trace %s parent %s, want the child of the handler's span %s", midClient.TraceID, midClient.ParentSpanID, midServer.SpanID)
	}
	if midServer.TraceID == trace || midServer.ParentSpanID != "" {
		t.Errorf("handler span: trace %s parent %q, want a new trace (curl sent no traceparent)", midServer.TraceID, midServer.ParentSpanID)
	}
	if leafServer.TraceID != trace || leafServer.ParentSpanID != parent || !leafServer.RemoteParent {
		t.Errorf("downstream span: trace %s parent %s remote %v, want the header's trace %s parent %s",
			leafServer.TraceID, leafServer.ParentSpanID, leafServer.RemoteParent, trace, parent)
	}
}

// dribble sends an HTTP request in two writes 100 ms apart and reads the
// response to its end.
func dribble(t *testing.T, port int, first, rest string) {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, first); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := io.WriteString(c, rest); err != nil {
		t.Fatal(err)
	}
	resp, err := io.ReadAll(c)
	if err != nil || !strings.HasPrefix(string(resp), "HTTP/1.1 404") {
		t.Fatalf("response %q, %v", resp, err)
	}
}

// goInstrumented waits until the Go collector has probes on each process
// (the OpenSSL collector, which attaches to the same programs, may be first).
func goInstrumented(t *testing.T, e *env, pids ...int) {
	t.Helper()
	probedBy(t, e, "gohttp", pids...)
}

// probedBy waits until collector has probes on every pid.
func probedBy(t *testing.T, e *env, collector string, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, pid := range pids {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, err := e.agent.Status(ctx)
			cancel()
			if err == nil && slices.ContainsFunc(st.Processes, func(p harness.AgentProcess) bool {
				return p.PID == pid && slices.Contains(p.Collectors, collector)
			}) {
				break
			}
			if time.Now().After(deadline) {
				var seen []harness.AgentProcess
				if err == nil {
					seen = st.Processes
				}
				t.Fatalf("pid %d has no %s probes (status error %v; processes with probes: %+v)", pid, collector, err, seen)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// lookups reads periscope_go_traceparent_lookups_total for one result (0
// before the first search with that result).
func lookups(t *testing.T, e *env, result string) float64 {
	t.Helper()
	const name = "periscope_go_traceparent_lookups_total"
	fams := e.agent.MetricFamilies(t)
	if _, ok := fams[name]; !ok {
		return 0
	}
	v, err := harness.SumMetric(fams, name, map[string]string{"result": result})
	if err != nil {
		t.Fatalf("metric %s: %v", name, err)
	}
	return v
}
