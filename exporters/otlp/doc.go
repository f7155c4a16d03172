// Package otlp exports the agent's spans over OTLP (gRPC by default, or
// HTTP/protobuf) to an OpenTelemetry backend.
//
// The transport is the OpenTelemetry Go SDK's own client (otlptracegrpc /
// otlptracehttp), so every standard OTEL_EXPORTER_OTLP_* and
// OTEL_EXPORTER_OTLP_TRACES_* environment variable (endpoint, headers,
// insecure, timeout, certificate, compression) works unchanged. The agent's
// spans already carry their IDs and timestamps; the exporter writes each
// span once, straight into OTLP protobuf bytes with protowire (spanwire.go:
// byte for byte what proto.Marshal writes for the equivalent tracepb.Span),
// grouped by process (one resource per process, converted once and
// cached). The request handed to the client is made of reused
// ResourceSpans/ScopeSpans structs that carry the encoded spans as their
// ScopeSpans' unknown fields, which any protobuf marshaller copies as they
// are: no SDK span objects, no protobuf struct per span, no reflection per
// span and, in steady state, no allocation per span.
//
// Over gRPC the connection is retried at most 0.8 s apart, so exports
// resume within about a second of a backend's return.
//
// Export never blocks on I/O: it encodes the span into the batch being
// filled, and hands full batches to one drain goroutine that passes them
// to MaxInFlight long-lived senders, so that up to MaxInFlight requests are
// under way at once on the one connection (one hand-off per batch; a batch
// also goes when its first span has waited the batch timeout): one request
// at a time would cap the spans per second at a batch per round trip. At
// most the queue size of spans (and QueueBytes of their encoding) wait;
// when the backend is slow or down the queue fills and further spans are
// dropped and counted. A span given to Export is always exported, dropped
// and counted, queued or in flight, and the self metrics say how many are
// in each; a failed batch is counted,
// logged at most once per interval, and not retried beyond the client's
// bounded retry. After an outage the backlog is sent at a bounded pace.
//
// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG select which traces are
// exported; the ratio decision depends on the trace ID only, so all spans of
// a trace are kept or dropped together.
package otlp
