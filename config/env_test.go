package config

import (
	"io"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// samples holds, for every option, three valid values that differ from the
// default and from each other: one for the file, one for the environment,
// one for the flag. A new option without samples fails TestEveryOption.
var samples = map[string][3]string{
	"console":                        {"json", "off", "text"},
	"metrics_addr":                   {"127.0.0.1:1", "0.0.0.0:2", "[::1]:3"},
	"log_level":                      {"debug", "warn", "error"},
	"log_format":                     {"json", "text", "json"},
	"pprof":                          {"true", "false", "true"},
	"max_procs":                      {"1", "2", "4"},
	"processes.include_exe":          {"a", "b,c", "d"},
	"processes.exclude_exe":          {"x", "y", "z"},
	"processes.command_args":         {"off", "redacted", "off"},
	"processes.sensitive_args":       {"a", "b,c", "d"},
	"http.capture_query":             {"true", "false", "true"},
	"http.capture_headers":           {"true", "false", "true"},
	"http.sensitive_headers":         {"X-A", "X-B,X-C", ""},
	"http.sensitive_query_params":    {"a", "b", ""},
	"http.idle_timeout":              {"30s", "1m0s", "3s"},
	"openssl.enabled":                {"false", "true", ""},
	"openssl.ring_bytes":             {"8192", "16384", ""},
	"gohttp.enabled":                 {"false", "true", ""},
	"gohttp.ring_bytes":              {"8192", "16384", ""},
	"gotls.enabled":                  {"false", "true", ""},
	"gotls.ring_bytes":               {"8192", "16384", ""},
	"symbols.cache_dir":              {"/a", "/b", "/c"},
	"symbols.analysis_timeout":       {"1s", "2s", "3s"},
	"tcp.enabled":                    {"false", "true", ""},
	"tcp.hook":                       {"kprobe", "tracepoint", ""},
	"tcp.fail_hook":                  {"kprobe", "tracepoint", ""},
	"tcp.max_peers":                  {"10", "20", ""},
	"tcp.ring_bytes":                 {"8192", "16384", ""},
	"plaintext.enabled":              {"false", "true", ""},
	"plaintext.capture_bytes":        {"512", "1024", ""},
	"plaintext.ignore_ports":         {"8080", "9090,9091", "1"},
	"plaintext.trace_export":         {"true", "false", "true"},
	"plaintext.ring_bytes":           {"8192", "16384", ""},
	"plaintext.call_slots":           {"1", "2", ""},
	"metrics.enabled":                {"false", "true", ""},
	"metrics.route_patterns":         {"/a/{id}", "/b/{id},/c/*", "/d"},
	"metrics.max_series_per_service": {"10", "20", ""},
	"kubernetes.enabled":             {"true", "false", ""},
	"kubernetes.kubeconfig":          {"/a", "/b", "/c"},
	"kubernetes.node_name":           {"n1", "n2", "n3"},
	"linking.listen":                 {"0.0.0.0:7071", "[::]:7072", ""},
	"linking.peers":                  {"10.0.0.2:7071", "a:1,b:2", ""},
	"linking.token_file":             {"/a", "/b", ""},
	"linking.peer_selector":          {"app=a", "app=b,x=y", ""},
	"linking.tls_cert_file":          {"/a", "/b", ""},
	"linking.tls_key_file":           {"/a", "/b", ""},
	"linking.tls_ca_file":            {"/a", "/b", ""},
	"linking.wait":                   {"100ms", "2s", ""},
	"process_metrics.enabled":        {"false", "true", ""},
	"process_metrics.interval":       {"1s", "2s", ""},
	"process_metrics.expiry":         {"10m0s", "20m0s", ""},
}

// yamlDoc writes key: value as a nested YAML document.
func yamlDoc(key, value, typ string) string {
	parts := strings.Split(key, ".")
	var b strings.Builder
	for i, p := range parts[:len(parts)-1] {
		b.WriteString(strings.Repeat("  ", i) + p + ":\n")
	}
	v := `"` + value + `"`
	switch typ {
	case "bool", "int", "duration":
		v = value
	case "list":
		items := strings.Split(value, ",")
		for i := range items {
			items[i] = `"` + items[i] + `"`
		}
		v = "[" + strings.Join(items, ", ") + "]"
	}
	b.WriteString(strings.Repeat("  ", len(parts)-1) + parts[len(parts)-1] + ": " + v + "\n")
	return b.String()
}

// TestEveryOption sets every option in the file, then the environment, then
// the flag, and checks that each later source wins.
func TestEveryOption(t *testing.T) {
	for _, o := range Options() {
		t.Run(o.Key, func(t *testing.T) {
			s, ok := samples[o.Key]
			if !ok {
				t.Fatalf("no sample values for %q in env_test.go", o.Key)
			}
			get := func(c Config) string {
				return formatValue(reflect.ValueOf(c).FieldByIndex(o.index))
			}
			want := func(v string) string {
				var c Config
				if err := o.setValue(&c, v); err != nil {
					t.Fatalf("sample %q: %v", v, err)
				}
				return get(c)
			}
			file := writeFile(t, yamlDoc(o.Key, s[0], o.Type))
			env := []string{o.Env + "=" + s[1], "UNRELATED=1"}

			c, err := LoadEnv([]string{"--config", file}, nil, io.Discard)
			if err != nil {
				t.Fatalf("file: %v", err)
			}
			if got := get(c); got != want(s[0]) || got == o.Default {
				t.Errorf("file %q: got %s, want %s (default %s)", s[0], got, want(s[0]), o.Default)
			}
			c, err = LoadEnv([]string{"--config", file}, env, io.Discard)
			if err != nil {
				t.Fatalf("env: %v", err)
			}
			if got := get(c); got != want(s[1]) {
				t.Errorf("env %s=%q over the file: got %s, want %s", o.Env, s[1], got, want(s[1]))
			}
			if o.Flag == "" {
				return
			}
			var args []string
			for _, v := range strings.Split(s[2], ",") {
				args = append(args, "--"+o.Flag, v)
			}
			c, err = LoadEnv(append([]string{"--config", file}, args...), env, io.Discard)
			if err != nil {
				t.Fatalf("flag: %v", err)
			}
			if got := get(c); got != want(s[2]) {
				t.Errorf("flag %v over env and file: got %s, want %s", args, got, want(s[2]))
			}
		})
	}
}

func TestEnvErrors(t *testing.T) {
	tests := []struct {
		name string
		env  string
		want []string // the error names all of these
	}{
		{"unknown variable", "PERISCOPE_TCP_MAX_PEER=3", []string{"PERISCOPE_TCP_MAX_PEER", "unknown"}},
		{"not a number", "PERISCOPE_TCP_MAX_PEERS=many", []string{"tcp.max_peers", "PERISCOPE_TCP_MAX_PEERS", `"many"`}},
		{"not a boolean", "PERISCOPE_OPENSSL_ENABLED=yes please", []string{"openssl.enabled", "PERISCOPE_OPENSSL_ENABLED"}},
		{"not a duration", "PERISCOPE_HTTP_IDLE_TIMEOUT=soon", []string{"http.idle_timeout", `"soon"`}},
		{"out of range", "PERISCOPE_TCP_MAX_PEERS=0", []string{"tcp.max_peers"}},
		{"not one of", "PERISCOPE_CONSOLE=loud", []string{"console", `"loud"`}},
		{"bad address", "PERISCOPE_METRICS_ADDR=nope", []string{"metrics_addr"}},
		{"bad route pattern", "PERISCOPE_METRICS_ROUTE_PATTERNS=/a,b", []string{"metrics.route_patterns[1]"}},
		{"bad kubernetes mode", "PERISCOPE_KUBERNETES_ENABLED=maybe", []string{"kubernetes.enabled"}},
		{"link wait zero", "PERISCOPE_LINKING_WAIT=0s", []string{"linking.wait"}},
		{"link wait too long", "PERISCOPE_LINKING_WAIT=1m", []string{"linking.wait"}},
		{"bad link listen", "PERISCOPE_LINKING_LISTEN=7071", []string{"linking.listen"}},
		{"bad link peer", "PERISCOPE_LINKING_PEERS=a:1,b", []string{"linking.peers[1]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadEnv(nil, []string{tt.env}, io.Discard)
			if err == nil {
				t.Fatalf("%s: no error", tt.env)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: %q does not name %s", tt.env, err, w)
				}
			}
		})
	}
}

func TestEnvReserved(t *testing.T) {
	c, err := LoadEnv(nil, []string{"PERISCOPE_CACHE=/tmp/x", "PERISCOPE_E2E_CAPS=bpf", "PERISCOPEX=1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("reserved variables changed the configuration: %+v", c)
	}
	c, err = LoadEnv(nil, []string{"PERISCOPE_METRICS_ADDR=off"}, io.Discard)
	if err != nil || c.MetricsAddr != "" {
		t.Errorf("PERISCOPE_METRICS_ADDR=off: %q, %v", c.MetricsAddr, err)
	}
}

// TestDocExample loads the complete example file of docs/configuration.md:
// it must parse and give exactly the defaults.
func TestDocExample(t *testing.T) {
	b, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatal("docs/configuration.md has no yaml example")
	}
	c, err := LoadEnv([]string{"--config", writeFile(t, string(m[1]))}, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	// The file spells empty lists as [], which decode as empty, not nil.
	for _, l := range []*[]string{&c.Processes.IncludeExe, &c.Processes.ExcludeExe, &c.Processes.SensitiveArgs, &c.HTTP.SensitiveHeaders, &c.HTTP.SensitiveQueryParams, &c.Plaintext.IgnorePorts, &c.Metrics.RoutePatterns} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	if !reflect.DeepEqual(c, d) {
		t.Errorf("the documented example is not the defaults:\n got %+v\nwant %+v", c, d)
	}
}
