package main

import (
	"context"
	"net"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// exportRequest has 2 resources: 3 spans (2 server) in 2 scopes, and 1
// client span.
func exportRequest() *coltracepb.ExportTraceServiceRequest {
	span := func(k tracepb.Span_SpanKind) *tracepb.Span {
		return &tracepb.Span{Name: "GET /x", Kind: k, TraceId: make([]byte, 16), SpanId: make([]byte, 8), Attributes: nil}
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{
		{ScopeSpans: []*tracepb.ScopeSpans{
			{Spans: []*tracepb.Span{span(tracepb.Span_SPAN_KIND_SERVER), span(tracepb.Span_SPAN_KIND_INTERNAL)}},
			{Spans: []*tracepb.Span{span(tracepb.Span_SPAN_KIND_SERVER)}},
		}},
		{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span(tracepb.Span_SPAN_KIND_CLIENT)}}}},
	}}
}

func TestScanExport(t *testing.T) {
	b, err := proto.Marshal(exportRequest())
	if err != nil {
		t.Fatal(err)
	}
	c, err := scanExport(b)
	want := recvCounts{Exports: 1, ResourceSpans: 2, Spans: 4, ServerSpans: 2, Bytes: uint64(len(b))}
	if err != nil || c != want {
		t.Fatalf("scanExport = %+v, %v; want %+v", c, err, want)
	}
	if c, err := scanExport(nil); err != nil || c.Spans != 0 {
		t.Errorf("empty request: %+v, %v", c, err)
	}
	if _, err := scanExport(b[:len(b)-3]); err == nil {
		t.Error("a truncated request scanned without error")
	}
}

// TestReceiverCountsRealClient serves the receiver's codec and sends it
// what the OTLP/gRPC client stubs send.
func TestReceiverCountsRealClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &countingTraceServer{}
	gs := grpc.NewServer(grpc.ForceServerCodec(exportCodec{}))
	gs.RegisterService(&traceServiceDesc, ts)
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := coltracepb.NewTraceServiceClient(conn)
	for range 3 {
		if _, err := client.Export(context.Background(), exportRequest()); err != nil {
			t.Fatalf("Export: %v", err)
		}
	}
	size := uint64(proto.Size(exportRequest()))
	if got, want := ts.counts(), (recvCounts{Exports: 3, ResourceSpans: 6, Spans: 12, ServerSpans: 6, Bytes: 3 * size}); got != want {
		t.Errorf("counts = %+v, want %+v", got, want)
	}
}

// FuzzScanExport: any bytes scan without panicking, and what a scan
// counts fits in them (a span takes at least its tag and length).
func FuzzScanExport(f *testing.F) {
	b, _ := proto.Marshal(exportRequest())
	f.Add(b)
	f.Add([]byte{0x0a, 0x02, 0x12, 0x00})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := scanExport(b)
		if err == nil && (c.Spans > uint64(len(b)) || c.ServerSpans > c.Spans || c.ResourceSpans > uint64(len(b))) {
			t.Fatalf("%d bytes counted as %+v", len(b), c)
		}
	})
}
