package config

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "periscope.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadPrecedence(t *testing.T) {
	file := writeFile(t, `
console: json
metrics_addr: 127.0.0.1:9999
log_level: debug
processes:
  include_exe: [nginx, "/usr/bin/*"]
http:
  capture_query: true
  idle_timeout: 30s
openssl:
  ring_bytes: 16777216
tcp:
  hook: kprobe
  max_peers: 10
`)
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, c Config)
	}{
		{"defaults", nil, func(t *testing.T, c Config) {
			if !reflect.DeepEqual(c, Default()) {
				t.Errorf("no arguments: %+v, want the defaults %+v", c, Default())
			}
		}},
		{"file over defaults", []string{"--config", file}, func(t *testing.T, c Config) {
			if c.Console != "json" || c.MetricsAddr != "127.0.0.1:9999" || c.LogLevel != "debug" ||
				!c.HTTP.CaptureQuery || c.HTTP.IdleTimeout != 30*time.Second || c.OpenSSL.RingBytes != 16<<20 ||
				!reflect.DeepEqual(c.Processes.IncludeExe, []string{"nginx", "/usr/bin/*"}) {
				t.Errorf("file values not applied: %+v", c)
			}
			if c.TCP.Hook != "kprobe" || c.TCP.MaxPeers != 10 {
				t.Errorf("tcp values not applied: %+v", c.TCP)
			}
			if c.LogFormat != "text" || !c.OpenSSL.Enabled || !c.TCP.Enabled || c.TCP.RingBytes != 256<<10 {
				t.Errorf("keys absent from the file lost their defaults: %+v", c)
			}
		}},
		{"flags over file", []string{"--config", file, "--console", "off", "--metrics-addr", "off", "--include-exe", "curl", "--include-exe", "wget", "--exclude-exe", "wrk"}, func(t *testing.T, c Config) {
			if c.Console != "off" || c.MetricsAddr != "" {
				t.Errorf("flags did not win: console %q metrics %q", c.Console, c.MetricsAddr)
			}
			if !reflect.DeepEqual(c.Processes.IncludeExe, []string{"curl", "wget"}) || !reflect.DeepEqual(c.Processes.ExcludeExe, []string{"wrk"}) {
				t.Errorf("selection flags: %+v", c.Processes)
			}
			if c.LogLevel != "debug" {
				t.Errorf("file value not set by a flag was lost: %q", c.LogLevel)
			}
		}},
		{"empty file", []string{"--config", writeFile(t, "")}, func(t *testing.T, c Config) {
			if !reflect.DeepEqual(c, Default()) {
				t.Errorf("empty file changed the defaults: %+v", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadEnv(tt.args, nil, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // the error must name this
	}{
		{"unknown flag", []string{"--no-such-flag"}, "no-such-flag"},
		{"stray argument", []string{"extra"}, `"extra"`},
		{"bad console flag", []string{"--console", "loud"}, "console"},
		{"bad log level", []string{"--log-level", "chatty"}, "log_level"},
		{"bad log format", []string{"--log-format", "xml"}, "log_format"},
		{"bad metrics address", []string{"--metrics-addr", "nope"}, "metrics_addr"},
		{"bad glob", []string{"--include-exe", "[x"}, "processes"},
		{"missing file", []string{"--config", "/nonexistent/periscope.yaml"}, "/nonexistent/periscope.yaml"},
		{"unknown key", []string{"--config", writeFile(t, "consol: text\n")}, "consol"},
		{"unknown nested key", []string{"--config", writeFile(t, "http:\n  capture_body: true\n")}, "capture_body"},
		{"wrong type", []string{"--config", writeFile(t, "http:\n  capture_query: maybe\n")}, "maybe"},
		{"bad duration", []string{"--config", writeFile(t, "http:\n  idle_timeout: soon\n")}, "soon"},
		{"bad duration names its key", []string{"--config", writeFile(t, "http:\n  idle_timeout: soon\n")}, "http.idle_timeout"},
		{"wrong type names its key", []string{"--config", writeFile(t, "http:\n  capture_query: maybe\n")}, "http.capture_query"},
		{"unknown nested key names its path", []string{"--config", writeFile(t, "http:\n  capture_body: true\n")}, "http.capture_body"},
		{"bad list item names its index", []string{"--config", writeFile(t, "processes:\n  include_exe:\n    - nginx\n    - [a]\n")}, "processes.include_exe[1]"},
		{"negative duration", []string{"--config", writeFile(t, "http:\n  idle_timeout: -1s\n")}, "http.idle_timeout"},
		{"ring not a power of two", []string{"--config", writeFile(t, "openssl:\n  ring_bytes: 5000\n")}, "openssl.ring_bytes"},
		{"not YAML", []string{"--config", writeFile(t, "{{{")}, "periscope.yaml"},
		{"bad tcp hook", []string{"--config", writeFile(t, "tcp:\n  hook: fentry\n")}, "tcp.hook"},
		{"bad tcp fail_hook", []string{"--config", writeFile(t, "tcp:\n  fail_hook: fentry\n")}, "tcp.fail_hook"},
		{"zero tcp peers", []string{"--config", writeFile(t, "tcp:\n  max_peers: 0\n")}, "tcp.max_peers"},
		{"too many tcp peers", []string{"--config", writeFile(t, "tcp:\n  max_peers: 1000001\n")}, "tcp.max_peers"},
		{"negative max_procs", []string{"--config", writeFile(t, "max_procs: -1\n")}, "max_procs"},
		{"too many max_procs", []string{"--config", writeFile(t, "max_procs: 1025\n")}, "max_procs"},
		{"tcp ring not a power of two", []string{"--config", writeFile(t, "tcp:\n  ring_bytes: 3000\n")}, "tcp.ring_bytes"},
		{"unknown tcp key", []string{"--config", writeFile(t, "tcp:\n  max_peer: 5\n")}, "tcp.max_peer"},
		{"process metrics interval too short", []string{"--config", writeFile(t, "process_metrics:\n  interval: 10ms\n")}, "process_metrics.interval"},
		{"process metrics expiry under the interval", []string{"--config", writeFile(t, "process_metrics:\n  interval: 1m\n  expiry: 30s\n")}, "process_metrics.expiry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadEnv(tt.args, nil, io.Discard)
			if err == nil {
				t.Fatalf("Load(%q): no error", tt.args)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load(%q) = %q, want it to name %q", tt.args, err, tt.want)
			}
		})
	}
}
