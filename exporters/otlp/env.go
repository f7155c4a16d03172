package otlp

import "github.com/periscope-apm/periscope/internal/otlpenv"

// Environment variables read by this package itself; internal/otlpenv
// reads the endpoint and protocol, the SDK exporters the rest of
// OTEL_EXPORTER_OTLP_*.
const (
	envSampler    = "OTEL_TRACES_SAMPLER"
	envSamplerArg = "OTEL_TRACES_SAMPLER_ARG"
)

// Protocols accepted in OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL.
const (
	ProtocolGRPC         = otlpenv.GRPC
	ProtocolHTTPProtobuf = otlpenv.HTTPProtobuf
)

// Enabled reports whether an OTLP traces endpoint is configured through
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.
func Enabled() bool { return otlpenv.EndpointSet(otlpenv.Traces) }

// Protocol returns the OTLP protocol selected by
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else
// grpc. Any value other than grpc or http/protobuf is an error that names
// the variable.
func Protocol() (string, error) { return otlpenv.Protocol(otlpenv.Traces) }
