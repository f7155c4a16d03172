package otlp

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/periscope-apm/periscope/span"
)

// sampler decides which spans are exported, from the trace ID alone so that
// every span of a trace gets the same decision on every node.
//
// span.Span does not carry the sampled flag of an incoming traceparent, so
// the parentbased_* samplers treat a remote parent as sampled (the W3C
// default for propagated traces) and keep its span; spans with a local
// parent or none get the root sampler's decision on the trace ID, which is
// the decision their local root got.
type sampler struct {
	name        string
	parentBased bool
	// bound: keep when the trace ID's low 63 bits are below it. Spans are
	// kept always when all is set and never when bound is zero.
	all   bool
	bound uint64
}

// keep reports whether s should be exported.
func (sm sampler) keep(s *span.Span) bool {
	if sm.parentBased && s.RemoteParent && s.ParentSpanID.IsValid() {
		return true
	}
	if sm.all {
		return true
	}
	// The same computation as the OpenTelemetry SDKs' TraceIDRatioBased, so
	// that our decisions agree with theirs for the same ratio.
	x := binary.BigEndian.Uint64(s.TraceID[8:16]) >> 1
	return x < sm.bound
}

// ratioSampler keeps the given fraction of traces.
func ratioSampler(name string, parentBased bool, fraction float64) sampler {
	sm := sampler{name: name, parentBased: parentBased}
	switch {
	case fraction >= 1:
		sm.all = true
	case fraction <= 0:
		sm.bound = 0
	default:
		sm.bound = uint64(fraction * (1 << 63))
	}
	return sm
}

// samplerFromEnv reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG. As
// the OpenTelemetry specification asks, an unknown sampler or an invalid
// ratio is not fatal: it yields the default (parentbased_always_on, or a
// ratio of 1) and a non-nil warning to log.
func samplerFromEnv() (sampler, error) {
	name := strings.ToLower(strings.TrimSpace(os.Getenv(envSampler)))
	arg := strings.TrimSpace(os.Getenv(envSamplerArg))
	switch name {
	case "", "parentbased_always_on":
		return ratioSampler("parentbased_always_on", true, 1), nil
	case "always_on":
		return ratioSampler(name, false, 1), nil
	case "always_off":
		return ratioSampler(name, false, 0), nil
	case "parentbased_always_off":
		return ratioSampler(name, true, 0), nil
	case "traceidratio", "parentbased_traceidratio":
		ratio, err := parseRatio(arg)
		return ratioSampler(name, name != "traceidratio", ratio), err
	}
	return ratioSampler("parentbased_always_on", true, 1),
		fmt.Errorf("%s=%q: unsupported sampler, using parentbased_always_on", envSampler, name)
}

func parseRatio(arg string) (float64, error) {
	if arg == "" {
		return 1, nil
	}
	r, err := strconv.ParseFloat(arg, 64)
	if err != nil || r < 0 || r > 1 || r != r {
		return 1, fmt.Errorf("%s=%q: want a ratio in [0, 1], using 1", envSamplerArg, arg)
	}
	return r, nil
}
