package otlpenv

import (
	"strings"
	"testing"
)

// FuzzProtocol: OTEL_EXPORTER_OTLP_*PROTOCOL and *ENDPOINT values select
// one of the two protocols or are an error.
func FuzzProtocol(f *testing.F) {
	f.Add("grpc", " http/protobuf ", "http://127.0.0.1:4317")
	f.Add("", "http/json", " ")
	f.Add("\x00", "GRPC", "")
	f.Fuzz(func(t *testing.T, general, traces, endpoint string) {
		if strings.ContainsRune(general+traces+endpoint, 0) {
			return // no environment holds a NUL
		}
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", general)
		t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", traces)
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
		for _, s := range []Signal{Traces, Metrics} {
			p, err := Protocol(s)
			if err == nil && p != GRPC && p != HTTPProtobuf {
				t.Fatalf("Protocol(%v) = %q", s, p)
			}
			_ = EndpointSet(s)
		}
	})
}
