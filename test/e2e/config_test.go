package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
)

// TestBadConfig: `periscope run` with a garbage flag, config file or OTEL_*
// variable exits with status 2 at once, before starting anything, and
// says on stderr which flag, key or variable is wrong.
func TestBadConfig(t *testing.T) {
	bin := harness.BuildAgent(t)
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	missing := filepath.Join(dir, "no-such-dir", "periscope.yaml")
	cases := []struct {
		name string
		args []string
		env  []string
		want []string // all must appear on stderr
	}{
		{name: "unknown flag", args: []string{"--no-such-flag"}, want: []string{"no-such-flag"}},
		{name: "flag with a bad value", args: []string{"--console=loud"}, want: []string{"console", `"loud"`}},
		{name: "unexpected argument", args: []string{"extra"}, want: []string{`"extra"`}},
		{name: "bad exe pattern", args: []string{"--include-exe", "[nginx"}, want: []string{"[nginx"}},
		{name: "missing config file", args: []string{"--config", missing}, want: []string{missing}},
		{name: "unknown key", args: []string{"--config", file("unknown.yaml", "console: json\nno_such_key: 1\n")},
			want: []string{"no_such_key"}},
		{name: "unknown nested key", args: []string{"--config", file("nested.yaml", "http:\n  capture_querys: true\n")},
			want: []string{"capture_querys"}},
		{name: "bad value", args: []string{"--config", file("loud.yaml", "console: loud\n")},
			want: []string{"console", `"loud"`}},
		{name: "bad duration", args: []string{"--config", file("duration.yaml", "http:\n  idle_timeout: soon\n")},
			want: []string{"http.idle_timeout", "soon"}},
		{name: "bad ring size", args: []string{"--config", file("ring.yaml", "openssl:\n  ring_bytes: 1000\n")},
			want: []string{"openssl.ring_bytes", "1000"}},
		{name: "not YAML", args: []string{"--config", file("garbage.yaml", "\x00\x01{{{:")}, want: []string{"garbage.yaml"}},
		{name: "bad OTLP protocol", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL=carrier-pigeon"},
			want: []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"}},
		{name: "bad OTLP protocol without endpoint", env: []string{"OTEL_EXPORTER_OTLP_PROTOCOL=carrier-pigeon"},
			want: []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"}},
		{name: "bad OTLP traces protocol", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=smoke-signals"},
			want: []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "smoke-signals"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A free port, so that an agent that wrongly starts does not
			// collide with anything; the output names no other flag.
			args := append([]string{"run"}, c.args...)
			args = append(args, "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)))
			// An agent that wrongly starts is stopped cleanly after 10 s.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
			cmd.WaitDelay = 15 * time.Second
			cmd.Env = append(withoutOTEL(os.Environ()), c.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			start := time.Now()
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("periscope %s: %v after %v, want exit status 2\nstderr:\n%s", strings.Join(args, " "), err,
					time.Since(start).Round(time.Millisecond), stderr.String())
			}
			for _, w := range c.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not name %q:\n%s", w, stderr.String())
				}
			}
			if strings.Contains(stderr.String(), "agent running") || strings.Contains(stderr.String(), "collector started") {
				t.Errorf("the agent started before failing:\n%s", stderr.String())
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout is not empty:\n%s", stdout.String())
			}
		})
	}
}

func withoutOTEL(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "OTEL_") {
			out = append(out, kv)
		}
	}
	return out
}
