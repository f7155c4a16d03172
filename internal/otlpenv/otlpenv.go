// Package otlpenv reads the OTEL_EXPORTER_OTLP_* variables that the
// agent's two OTLP exporters (traces and metrics) interpret themselves;
// the OpenTelemetry SDK exporters read the rest.
package otlpenv

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Protocols accepted in OTEL_EXPORTER_OTLP_(<SIGNAL>_)PROTOCOL.
const (
	GRPC         = "grpc"
	HTTPProtobuf = "http/protobuf"
)

// Signal is the part of a signal-specific variable's name that names the
// signal.
type Signal string

// The signals the agent exports.
const (
	Traces  Signal = "TRACES"
	Metrics Signal = "METRICS"
)

const prefix = "OTEL_EXPORTER_OTLP_"

// keys returns a variable's signal-specific name, then its general one,
// in the order they are looked up.
func (s Signal) keys(name string) [2]string {
	return [2]string{prefix + string(s) + "_" + name, prefix + name}
}

// EndpointSet reports whether an endpoint is configured for the signal:
// OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT.
func EndpointSet(s Signal) bool {
	for _, key := range s.keys("ENDPOINT") {
		if strings.TrimSpace(os.Getenv(key)) != "" {
			return true
		}
	}
	return false
}

// Protocol returns the protocol selected by
// OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL,
// else grpc. Any value other than grpc or http/protobuf is an error that
// names the variable.
func Protocol(s Signal) (string, error) {
	for _, key := range s.keys("PROTOCOL") {
		v := strings.TrimSpace(os.Getenv(key))
		if v == "" {
			continue
		}
		switch v {
		case GRPC, HTTPProtobuf:
			return v, nil
		}
		return "", fmt.Errorf("%s=%q: unsupported OTLP protocol (want %q or %q)", key, v, GRPC, HTTPProtobuf)
	}
	return GRPC, nil
}

// Default OTLP ports (the OpenTelemetry Collector's receivers).
const (
	GRPCPort = 4317
	HTTPPort = 4318
)

// ExportPorts returns the ports of the OTLP export path: the standard
// receiver ports and those of the configured endpoints, for every signal.
// The sockets collector leaves their connections alone, so that exports
// do not become spans that become exports.
func ExportPorts() []uint16 {
	ports := []uint16{GRPCPort, HTTPPort}
	for _, s := range []Signal{Traces, Metrics} {
		for _, key := range s.keys("ENDPOINT") {
			if p := endpointPort(os.Getenv(key)); p != 0 && !slices.Contains(ports, p) {
				ports = append(ports, p)
			}
		}
	}
	return ports
}

// endpointPort is the port of an endpoint URL ("http://collector:4318",
// "collector:4317"); 0 when it names none.
func endpointPort(v string) uint16 {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if !strings.Contains(v, "://") {
		v = "//" + v
	}
	u, err := url.Parse(v)
	if err != nil {
		return 0
	}
	p, err := strconv.ParseUint(u.Port(), 10, 16)
	if err != nil {
		return 0
	}
	return uint16(p)
}
