package e2e

import (
	"testing"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// TestNginxCurlHTTP2Large: two 1 MiB responses and a small one on one HTTP/2
// connection give exactly 3 SERVER and 3 CLIENT spans with status 200. A
// TLS call carries several DATA frames of a large body and only its first
// 4 KiB and last 128 bytes are captured, so a frame header (the one with
// END_STREAM, maybe) can go by unseen: such a span says so
// (periscope.http2.frames_lost) and ends when its end is known at last (the
// connection's close); its body size is then absent, never wrong. A span
// without that mark is complete.
func TestNginxCurlHTTP2Large(t *testing.T) {
	e := startAgent(t)
	ngx := harness.StartNginx(t, harness.NginxOptions{HTTP2: true})
	e.instrumented(t, ngx.WorkerPIDs...)
	curl := harness.LookTool(t, "curl")
	base := []string{"-sS", "--http2", "--cacert", ngx.CAFile}
	run(t, curl, append(base, keepAliveArgs([]string{ngx.URL + "/1m.bin", ngx.URL + "/1m.bin", ngx.URL + "/index.html"})...)...)
	for _, set := range [][]otlpreceiver.Span{e.spans(t, 3, byPort("nginx", kindServer, ngx.Port)), e.spans(t, 3, byPort("curl", kindClient, ngx.Port))} {
		for _, s := range set {
			lost := s.Attributes["periscope.http2.frames_lost"] == true
			size, hasSize := s.Attributes["http.response.body.size"]
			if attrInt(s, "http.response.status_code") != 200 || lost && hasSize {
				t.Errorf("%s %q: %v", s.ServiceName(), s.Name, s.Attributes)
			}
			if !lost && (s.Status != "UNSET" || attrStr(s, "url.path") == "/1m.bin" && size != int64(harness.NginxBigFileSize)) {
				t.Errorf("%s %q not marked frames_lost but status %s: %v", s.ServiceName(), s.Name, s.Status, s.Attributes)
			}
			if lost && s.Status == "ERROR" && attrStr(s, "error.type") != "connection_closed" {
				t.Errorf("%s %q: error.type %q", s.ServiceName(), s.Name, attrStr(s, "error.type"))
			}
			if attrStr(s, "url.path") == "/index.html" && (lost || s.Status != "UNSET") {
				t.Errorf("%s: the small response after the large ones is not complete: %v", s.ServiceName(), s.Attributes)
			}
		}
	}
}
