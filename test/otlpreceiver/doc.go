// Package otlpreceiver is an in-process OTLP receiver for tests. It serves
// the OTLP trace and metrics services over gRPC (the generated services of
// go.opentelemetry.io/proto/otlp) and over HTTP (protobuf or JSON), keeps
// everything it receives, and hands it back flattened — one Span per span,
// one Metric per data point, each with its resource attributes — so that
// tests can assert on exactly what arrived. It can also be told to fail
// requests, to stand in for a backend that is down.
package otlpreceiver
