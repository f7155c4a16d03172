package config

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// FuzzLoad: a configuration file and PERISCOPE_* variables, whatever they
// hold, give a valid configuration or an error, never a panic.
func FuzzLoad(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("..", "docs", "configuration.md")); err == nil {
		if m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindSubmatch(b); m != nil {
			f.Add(string(m[1]), "PERISCOPE_TCP_MAX_PEERS=10\nPERISCOPE_PROCESSES_INCLUDE_EXE=nginx,python3*")
		}
	}
	f.Add("processes:\n  include_exe: [nginx, \"/usr/bin/*\"]\ntcp: {max_peers: 0}\n", "PERISCOPE_HTTP_IDLE_TIMEOUT=-1s")
	f.Add("http:\n  idle_timeout: 1h\nmetrics:\n  route_patterns: [/a/{id}]\n", "PERISCOPE_CONSOLE=json\nPERISCOPE_X=1")
	f.Add("a: &a [*a]\n", "PERISCOPE_PROCESSES_COMMAND_ARGS=off")
	f.Add("kubernetes: {enabled: 3}\n- x", "PERISCOPE_OPENSSL_RING_BYTES=99999999999999999999")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, doc, env string) {
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadEnv([]string{"--config", path}, strings.Split(env, "\n"), io.Discard)
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("loaded a configuration that does not validate: %v", verr)
			}
		}
	})
}
