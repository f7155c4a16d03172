// Package e2e holds the end-to-end tests: they build the agent, load its real
// eBPF programs into this kernel, drive real programs (nginx, curl, python,
// node) and assert on exactly what arrives at a real OTLP receiver. They need
// root and fail, not skip, without it.
package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

func TestMain(m *testing.M) { harness.Main(m) }

// env is one running agent exporting to an in-test OTLP receiver.
type env struct {
	agent *harness.Agent
	recv  *otlpreceiver.Receiver
}

// startAgent starts the agent exporting to a fresh receiver and waits until
// it is ready.
func startAgent(t *testing.T, args ...string) *env {
	t.Helper()
	harness.RequireRoot(t)
	recv := otlpreceiver.Start(t)
	bin := harness.BuildAgent(t)
	a := harness.StartAgent(t, bin, append([]string{"run", "--console=json"}, args...), []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint(),
		"OTEL_EXPORTER_OTLP_INSECURE=true",
		"OTEL_BSP_SCHEDULE_DELAY=200",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatalf("agent not ready: %v", err)
	}
	return &env{agent: a, recv: recv}
}

// instrumented waits until the agent has probes on every pid.
func (e *env) instrumented(t *testing.T, pids ...int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, pid := range pids {
		if _, err := e.agent.WaitInstrumented(ctx, pid); err != nil {
			t.Fatalf("pid %d not instrumented: %v", pid, err)
		}
	}
}

// spans waits for exactly n spans matching filter: it fails if fewer arrive
// within the timeout, and also if more than n arrive during a settling
// period after the n-th.
func (e *env) spans(t *testing.T, n int, filter func(otlpreceiver.Span) bool) []otlpreceiver.Span {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := e.recv.WaitForSpans(ctx, n, filter)
	if err != nil {
		t.Fatalf("waiting for %d spans: %v; got %d:\n%s", n, err, len(got), describe(got))
	}
	time.Sleep(1500 * time.Millisecond)
	got = filterSpans(e.recv.Spans(), filter)
	if len(got) != n {
		t.Fatalf("got %d spans, want exactly %d:\n%s", len(got), n, describe(got))
	}
	return got
}

func filterSpans(all []otlpreceiver.Span, filter func(otlpreceiver.Span) bool) []otlpreceiver.Span {
	var out []otlpreceiver.Span
	for _, s := range all {
		if filter == nil || filter(s) {
			out = append(out, s)
		}
	}
	return out
}

func byService(name string, kind int) func(otlpreceiver.Span) bool {
	return func(s otlpreceiver.Span) bool { return s.ServiceName() == name && int(s.Kind) == kind }
}

const (
	kindServer = 2
	kindClient = 3
)

func describe(spans []otlpreceiver.Span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "  %s kind=%d %q status=%s code=%v path=%v trace=%s parent=%s\n", s.ServiceName(), s.Kind, s.Name,
			s.Status, s.Attributes["http.response.status_code"], s.Attributes["url.path"], s.TraceID, s.ParentSpanID)
	}
	return b.String()
}

// attrInt reads an integer attribute.
func attrInt(s otlpreceiver.Span, key string) int64 {
	v, _ := s.Attributes[key].(int64)
	return v
}

func attrStr(s otlpreceiver.Span, key string) string {
	v, _ := s.Attributes[key].(string)
	return v
}

// counts tallies spans by a key.
func counts(spans []otlpreceiver.Span, key func(otlpreceiver.Span) string) map[string]int {
	m := make(map[string]int)
	for _, s := range spans {
		m[key(s)]++
	}
	return m
}

func sortedKeys(m map[string]int) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// run runs a command and fails the test with its output if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
