package otlp

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/periscope-apm/periscope/span"
)

// refSpan converts s into the generated protobuf struct, field by field,
// as the OTLP conventions say (the reference the encoder's bytes are
// compared with).
func refSpan(s *span.Span) *tracepb.Span {
	pb := &tracepb.Span{
		TraceId: append([]byte(nil), s.TraceID[:]...), SpanId: append([]byte(nil), s.SpanID[:]...),
		Name: s.Name, Kind: spanKind(s.Kind),
		StartTimeUnixNano: unixNano(s.Start), EndTimeUnixNano: unixNano(s.End),
		Attributes: keyValues(s.Attributes),
		Status:     &tracepb.Status{},
		Flags:      flagsLocal,
	}
	if s.ParentSpanID.IsValid() {
		pb.ParentSpanId = append([]byte(nil), s.ParentSpanID[:]...)
		if s.RemoteParent {
			pb.Flags = flagsRemote
		}
	}
	for _, ev := range s.Events {
		pb.Events = append(pb.Events, &tracepb.Span_Event{Name: ev.Name, TimeUnixNano: unixNano(ev.Time), Attributes: keyValues(ev.Attributes)})
	}
	switch s.Status {
	case span.OK:
		pb.Status.Code = tracepb.Status_STATUS_CODE_OK
	case span.Error:
		pb.Status.Code, pb.Status.Message = tracepb.Status_STATUS_CODE_ERROR, s.StatusMsg
	}
	return pb
}

func randAttr(rng *rand.Rand, i int) attribute.KeyValue {
	k := fmt.Sprintf("k%d", i)
	switch rng.IntN(9) {
	case 0:
		return attribute.Int64(k, rng.Int64()-rng.Int64())
	case 1:
		return attribute.Bool(k, rng.IntN(2) == 0)
	case 2:
		return attribute.Float64(k, rng.NormFloat64())
	case 3:
		return attribute.StringSlice(k, []string{"a", "", strings.Repeat("x", rng.IntN(300))})
	case 4:
		return attribute.Int64Slice(k, []int64{-1, 0, rng.Int64()})
	case 5:
		return attribute.BoolSlice(k, []bool{true, false})
	case 6:
		return attribute.Float64Slice(k, []float64{0, rng.Float64()})
	case 7:
		return attribute.KeyValue{Key: attribute.Key(k)} // INVALID
	}
	return attribute.String(k, strings.Repeat("v", rng.IntN(200)))
}

// randSpan makes spans of every shape: root or child, local or remote
// parent, every status, events, values of every type, zero times, and
// sizes around the length prefixes' boundaries (127/128 and 16383/16384
// bytes).
func randSpan(rng *rand.Rand, p *span.Process) *span.Span {
	s := &span.Span{Kind: span.Kind(rng.IntN(6)), Process: p, Status: span.StatusCode(rng.IntN(3))}
	for j := range s.TraceID {
		s.TraceID[j] = byte(rng.Uint32())
	}
	for j := range s.SpanID {
		s.SpanID[j] = byte(rng.Uint32())
	}
	if rng.IntN(3) > 0 {
		s.ParentSpanID[0] = 1 + byte(rng.IntN(255))
		s.RemoteParent = rng.IntN(2) == 0
	}
	if rng.IntN(4) > 0 {
		s.Start = time.Unix(0, rng.Int64N(2e18))
		s.End = s.Start.Add(time.Duration(rng.IntN(1e9)))
	}
	s.Name = strings.Repeat("n", rng.IntN(40))
	if s.Status == span.Error || rng.IntN(4) == 0 {
		s.StatusMsg = strings.Repeat("e", rng.IntN(20))
	}
	for i := range rng.IntN(20) {
		s.Attributes = append(s.Attributes, randAttr(rng, i))
	}
	if rng.IntN(8) == 0 {
		s.Attributes = append(s.Attributes, attribute.String("big", strings.Repeat("b", 16200+rng.IntN(300))))
	}
	for i := range rng.IntN(3) {
		ev := span.Event{Name: fmt.Sprintf("ev%d", i)}
		if rng.IntN(2) == 0 {
			ev.Time = time.Unix(0, rng.Int64N(2e18))
		}
		for j := range rng.IntN(3) {
			ev.Attributes = append(ev.Attributes, randAttr(rng, j))
		}
		if rng.IntN(10) == 0 {
			ev.Attributes = append(ev.Attributes, attribute.String("long", strings.Repeat("l", 120+rng.IntN(20))))
		}
		s.Events = append(s.Events, ev)
	}
	return s
}

// The encoder writes each span byte for byte as proto.Marshal writes the
// equivalent tracepb.Span.
func TestAppendSpanMatchesProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	opts := proto.MarshalOptions{Deterministic: true}
	for i := range 3000 {
		s := randSpan(rng, nil)
		want, err := opts.Marshal(&tracepb.ScopeSpans{Spans: []*tracepb.Span{refSpan(s)}})
		if err != nil {
			t.Fatal(err)
		}
		prefix := []byte("kept")
		got := appendSpan(append([]byte(nil), prefix...), s)
		if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) {
			t.Fatalf("span %d (%d attributes, %d events): wrote %d bytes %x\nwant %d bytes %x",
				i, len(s.Attributes), len(s.Events), len(got)-len(prefix), got[len(prefix):], len(want), want)
		}
	}
}

// A batch of spans of several processes, as the transport marshals it,
// decodes into the request the generated types describe: one resource per
// process, the spans of each in order; and the next batch reuses the
// structs without keeping anything of the last.
func TestEncoderBatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	env := resource.NewSchemaless(attribute.String("deployment.environment", "test"))
	enc := newEncoder(env, "v1.2.3")
	procs := []*span.Process{
		{PID: 1, ServiceName: "a", Attributes: []attribute.KeyValue{attribute.String("host.name", "n")}},
		{PID: 2, ServiceName: "b"},
		nil,
	}
	b := &batch{}
	for batch := range 20 {
		var want []*tracepb.ResourceSpans
		groups := map[*span.Process]*tracepb.ResourceSpans{}
		for range rng.IntN(60) {
			p := procs[rng.IntN(len(procs))]
			s := randSpan(rng, p)
			enc.add(b, s)
			g := groups[p]
			if g == nil {
				r := mergedResource(env, p)
				g = &tracepb.ResourceSpans{
					Resource:   enc.resource(p).pb,
					SchemaUrl:  r.SchemaURL(),
					ScopeSpans: []*tracepb.ScopeSpans{{Scope: enc.scope}},
				}
				groups[p] = g
				want = append(want, g)
			}
			g.ScopeSpans[0].Spans = append(g.ScopeSpans[0].Spans, refSpan(s))
		}
		b.seal()
		wire, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: b.rss})
		if err != nil {
			t.Fatal(err)
		}
		b.reset()
		var got coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(wire, &got); err != nil {
			t.Fatalf("batch %d: %v", batch, err)
		}
		if w := (&coltracepb.ExportTraceServiceRequest{ResourceSpans: want}); !proto.Equal(&got, w) {
			t.Fatalf("batch %d: decoded\n%v\nwant\n%v", batch, &got, w)
		}
		if len(got.ProtoReflect().GetUnknown()) != 0 {
			t.Fatalf("batch %d: unknown fields left after decoding", batch)
		}
	}
}

// TestShortKVBoundary: attributes around the one-byte-length fast path's
// bounds (key plus string value of shortKV bytes; keys that leave no room
// for a 10-byte varint) are written as proto.Marshal writes them.
func TestShortKVBoundary(t *testing.T) {
	opts := proto.MarshalOptions{Deterministic: true}
	for _, klen := range []int{0, 1, 50, 108, 109, 110, 111, 112, 119, 120, 121, 130} {
		key := strings.Repeat("k", klen)
		var attrs []attribute.KeyValue
		for total := shortKV - 3; total <= shortKV+3; total++ {
			if v := total - klen; v >= 0 {
				attrs = append(attrs, attribute.String(key, strings.Repeat("v", v)))
			}
		}
		for _, x := range []int64{0, 127, 128, 200, 65535, 1 << 40, -1} {
			attrs = append(attrs, attribute.Int64(key, x))
		}
		s := &span.Span{Name: "x", Attributes: attrs}
		want, err := opts.Marshal(&tracepb.ScopeSpans{Spans: []*tracepb.Span{refSpan(s)}})
		if err != nil {
			t.Fatal(err)
		}
		if got := appendSpan(nil, s); !bytes.Equal(got, want) {
			t.Errorf("key of %d bytes: wrote %x\nwant %x", klen, got, want)
		}
	}
}
