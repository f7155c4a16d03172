package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/periscope-apm/periscope/test/e2e/harness"
)

// TestPlaintextSequenceEdges: calls that move a connection's TCP sequence
// unlike plain reads and writes are no sign of lost bytes (ring records
// dropped), which would end the requests in flight as data_lost:
//   - a read that takes a response's last bytes and the FIN behind them
//     (the server sent them in one segment and closed): the kernel moves
//     the socket's copied_seq past the FIN too;
//   - a vectored write of more buffers than the sockets collector copies
//     bytes from (a sendmsg of 41), on a keep-alive connection with more
//     responses after it: its record must still claim all its bytes.
//
// Every request gives one SERVER and one CLIENT span with its whole
// response (status 200, its body's size, no error.type), and
// periscope_data_gaps_total stays 0.
func TestPlaintextSequenceEdges(t *testing.T) {
	dir := plainDir(t)
	py := harness.LookTool(t, "/usr/bin/python3")
	curlBin := harness.CopyExe(t, "curl", "curl-seq")
	e := startAgent(t, "--include-exe", "python3*", "--include-exe", "curl-seq")

	port := harness.FreePort(t)
	srv := startProc(t, nil, py, filepath.Join(dir, "seqedges.py"), strconv.Itoa(port))
	waitListening(t, srv, port)
	url := func(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", port, path) }
	const fins, iovCurls, iovEach = 5, 3, 3
	for range fins {
		run(t, curlBin, "-sS", "-o", "/dev/null", url("/fin"))
	}
	for range iovCurls {
		var args []string
		for range iovEach {
			args = append(args, "-o", "/dev/null", url("/iov")) // one connection
		}
		run(t, curlBin, append([]string{"-sS"}, args...)...)
	}
	paths := map[string]int{"/fin": fins, "/iov": iovCurls * iovEach}
	want := []expect{
		{what: "curl -> seqedges.py", kind: kindClient, svc: "curl-seq", port: port, paths: paths},
		{what: "seqedges.py", kind: kindServer, pid: srv.PID, port: port, paths: paths},
	}
	checkPlainSpans(t, e, want)
	for _, s := range e.recv.Spans() {
		if !want[0].match(s) && !want[1].match(s) {
			continue
		}
		path := attrStr(s, "url.path")
		want := map[string]int64{"/fin": 3, "/iov": 40}[path]
		if size := attrInt(s, "http.response.body.size"); size != want || attrStr(s, "error.type") != "" {
			t.Errorf("%s span %s %s: body size %d error.type %q, want %d and none",
				s.ServiceName(), s.SpanID, path, size, attrStr(s, "error.type"), want)
		}
	}
	if v := e.agent.Metric(t, "periscope_data_gaps_total", nil); v != 0 {
		t.Errorf("periscope_data_gaps_total = %v, want 0 (no record was lost)", v)
	}
}
