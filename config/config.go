// Package config holds the agent's configuration: defaults, then a YAML file
// (--config), then PERISCOPE_* environment variables, then command-line
// flags, each overriding the one before. The standard OTEL_* environment
// variables are read by the exporters themselves. Unknown keys and bad
// values are errors that name the key. docs/configuration.md, generated from
// Options and descriptions, lists every key.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/periscope-apm/periscope/discovery"
)

// Config is the agent's configuration. YAML keys are the field tags.
type Config struct {
	// Console prints live spans: "text" (one line per span), "json" (JSON
	// lines) or "off".
	Console string `yaml:"console"`
	// MetricsAddr serves /metrics and /status; "" disables it.
	MetricsAddr string `yaml:"metrics_addr"`
	LogLevel    string `yaml:"log_level"`  // debug, info, warn, error
	LogFormat   string `yaml:"log_format"` // text, json
	// Pprof serves Go's profiles under /debug/pprof/ on MetricsAddr (off
	// by default: a CPU profile costs CPU and shows code paths).
	Pprof bool `yaml:"pprof"`
	// MaxProcs caps the processors the agent's Go code runs on at once
	// (runtime.GOMAXPROCS); 0 leaves Go's default (the CPUs the agent may
	// use, its cgroup's CPU limit, or $GOMAXPROCS).
	MaxProcs int `yaml:"max_procs"`

	Processes Processes `yaml:"processes"`
	HTTP      HTTP      `yaml:"http"`
	OpenSSL   OpenSSL   `yaml:"openssl"`
	GoHTTP    GoHTTP    `yaml:"gohttp"`
	GoTLS     GoTLS     `yaml:"gotls"`
	Symbols   Symbols   `yaml:"symbols"`
	TCP       TCP       `yaml:"tcp"`
	Plaintext Plaintext `yaml:"plaintext"`
	Metrics   Metrics   `yaml:"metrics"`
	Kube      Kube      `yaml:"kubernetes"`
	Linking   Linking   `yaml:"linking"`

	ProcessMetrics ProcessMetrics `yaml:"process_metrics"`
}

// ProcessMetrics configures the resource metrics (CPU, memory, threads,
// file descriptors, context switches) of the traced processes.
type ProcessMetrics struct {
	Enabled bool `yaml:"enabled"`
	// Interval is how often the traced processes are read.
	Interval time.Duration `yaml:"interval"`
	// Expiry drops the series of a process (OTLP) or workload
	// (Prometheus) this long after its last process exited.
	Expiry time.Duration `yaml:"expiry"`
}

// Metrics configures the request (RED) metrics derived from spans.
type Metrics struct {
	Enabled bool `yaml:"enabled"`
	// RoutePatterns are URL path templates ("/users/{id}/orders/{order}",
	// "/static/*") tried before the heuristic that collapses identifiers.
	RoutePatterns []string `yaml:"route_patterns"`
	// MaxSeriesPerService caps the distinct series of one service; the
	// others fold into http.route="_overflow".
	MaxSeriesPerService int `yaml:"max_series_per_service"`
}

// Kube configures Kubernetes metadata.
type Kube struct {
	// Enabled is "auto" (in-cluster config or Kubeconfig when present,
	// else none), "true" (a config must be found) or "false".
	Enabled string `yaml:"enabled"`
	// Kubeconfig is a kubeconfig file; "" means in-cluster config.
	Kubeconfig string `yaml:"kubeconfig"`
	// NodeName is this node's name; "" means $NODE_NAME, then the host
	// name.
	NodeName string `yaml:"node_name"`
}

// Linking configures cross-node linking: agents ask each other for the
// client spans of server requests from other nodes.
type Linking struct {
	// Listen is the address this agent answers lookups on; "" is off.
	Listen string `yaml:"listen"`
	// Peers are the other agents, host:port.
	Peers []string `yaml:"peers"`
	// PeerSelector finds the other agents on Kubernetes: a label
	// selector of their pods, reached at their pod IPs on Listen's port.
	PeerSelector string `yaml:"peer_selector"`
	// TokenFile holds the token agents authenticate each other with.
	TokenFile string `yaml:"token_file"`
	// TLSCertFile, TLSKeyFile and TLSCAFile, all three or none, make the
	// agents talk mutual TLS: each presents its certificate, signed by
	// the CA, and accepts only peers whose certificate the CA signed.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	TLSCAFile   string `yaml:"tls_ca_file"`
	// Wait bounds how long a server span waits for its lookup.
	Wait time.Duration `yaml:"wait"`
}

// Enabled tells whether this agent links across nodes.
func (l Linking) Enabled() bool { return l.Listen != "" || len(l.Peers) > 0 || l.PeerSelector != "" }

// Processes selects the processes to trace.
type Processes struct {
	IncludeExe []string `yaml:"include_exe"`
	ExcludeExe []string `yaml:"exclude_exe"`
	// CommandArgs is what process identities keep of command lines:
	// "redacted" (credentials replaced by REDACTED) or "off" (no
	// process.command_args at all).
	CommandArgs string `yaml:"command_args"`
	// SensitiveArgs replace the default names whose values are redacted
	// on command lines.
	SensitiveArgs []string `yaml:"sensitive_args"`
}

// Selector returns the process selector.
func (p Processes) Selector() discovery.Selector {
	return discovery.Selector{Include: p.IncludeExe, Exclude: p.ExcludeExe}
}

// HTTP configures what the agent keeps of HTTP messages.
type HTTP struct {
	// CaptureQuery exports query strings (sensitive values redacted).
	CaptureQuery bool `yaml:"capture_query"`
	// CaptureHeaders exports request and response headers (sensitive
	// values redacted).
	CaptureHeaders bool `yaml:"capture_headers"`
	// SensitiveHeaders are redacted in addition to Authorization, Cookie,
	// Set-Cookie and Proxy-Authorization, which always are.
	SensitiveHeaders []string `yaml:"sensitive_headers"`
	// SensitiveQueryParams replace the default list of query parameters
	// whose values are redacted.
	SensitiveQueryParams []string `yaml:"sensitive_query_params"`
	// IdleTimeout ends requests that wait longer than this for their
	// response.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// OpenSSL configures the OpenSSL collector.
type OpenSSL struct {
	Enabled bool `yaml:"enabled"`
	// RingBytes is the size of its event ring buffer.
	RingBytes int `yaml:"ring_bytes"`
}

// GoHTTP configures the Go net/http collector.
type GoHTTP struct {
	Enabled bool `yaml:"enabled"`
	// RingBytes is the size of its event ring buffer.
	RingBytes int `yaml:"ring_bytes"`
}

// GoTLS configures the Go crypto/tls collector.
type GoTLS struct {
	Enabled bool `yaml:"enabled"`
	// RingBytes is the size of its event ring buffer.
	RingBytes int `yaml:"ring_bytes"`
}

// Symbols configures the analysis of executables and libraries.
type Symbols struct {
	// CacheDir keeps what analysing a file found, by file identity, across
	// restarts of the agent; "off" keeps it in memory only.
	CacheDir string `yaml:"cache_dir"`
	// AnalysisTimeout gives up the analysis of one file after this long.
	AnalysisTimeout time.Duration `yaml:"analysis_timeout"`
}

// TCP configures the TCP collector (retransmissions).
type TCP struct {
	Enabled bool `yaml:"enabled"`
	// Hook is the hook on tcp_retransmit_skb tried first, "tracepoint" or
	// "kprobe"; the other one is the fallback.
	Hook string `yaml:"hook"`
	// FailHook makes that hook's attach fail as a kernel refusal would
	// ("", "tracepoint" or "kprobe"): a testing aid, so that the fallback
	// runs on any kernel. Empty in production.
	FailHook string `yaml:"fail_hook"`
	// MaxPeers caps the peers with retransmission series of their own;
	// the others are counted under one overflow peer.
	MaxPeers int `yaml:"max_peers"`
	// RingBytes is the size of its event ring buffer.
	RingBytes int `yaml:"ring_bytes"`
}

// Plaintext configures the sockets collector: plaintext HTTP/1.x of every
// process, from syscall tracepoints.
type Plaintext struct {
	Enabled bool `yaml:"enabled"`
	// CaptureBytes is how many bytes of each read or write are copied.
	CaptureBytes int `yaml:"capture_bytes"`
	// IgnorePorts are local or remote TCP ports never traced.
	IgnorePorts []string `yaml:"ignore_ports"`
	// TraceExport traces the OTLP export path too (its ports are ignored
	// otherwise).
	TraceExport bool `yaml:"trace_export"`
	// RingBytes is the size of its event ring buffer (default
	// plaintextRingBytes).
	RingBytes int `yaml:"ring_bytes"`
	// CallSlots is a testing aid: how many of the programs' per-thread
	// call slots threads share (0: all).
	CallSlots int `yaml:"call_slots"`
}

// plaintextRingBytes is the sockets collector's default ring: 8 MiB. The
// kernel maps the whole ring into the agent when its reader starts, so
// every MiB of it is a MiB of the agent's memory (RSS) from the start: 32
// MiB (no record lost at Redis saturation, pipeline depth 16, on a busy
// 2-core node: test/bench/results-redis17.md) made an idle agent's RSS 58
// MiB instead of 41, over #15's 64 MiB at load. A node whose records come
// faster than the agent reads them for longer than the ring holds (~0.4 s
// at 20 MB/s) raises plaintext.ring_bytes; what is lost is counted
// (periscope_events_dropped_total).
const plaintextRingBytes = 8 << 20

// Ports returns IgnorePorts as numbers.
func (p Plaintext) Ports() ([]uint16, error) {
	out := make([]uint16, 0, len(p.IgnorePorts))
	for _, s := range p.IgnorePorts {
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("plaintext.ignore_ports: %q is not a port number", s)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		Console:     "text",
		MetricsAddr: "127.0.0.1:9464",
		LogLevel:    "info",
		LogFormat:   "text",
		Processes:   Processes{CommandArgs: "redacted"},
		HTTP:        HTTP{IdleTimeout: 2 * time.Minute},
		OpenSSL:     OpenSSL{Enabled: true, RingBytes: 4 << 20},
		GoHTTP:      GoHTTP{Enabled: true, RingBytes: 2 << 20},
		GoTLS:       GoTLS{Enabled: true, RingBytes: 4 << 20},
		Symbols:     Symbols{CacheDir: "/var/cache/periscope/symbols", AnalysisTimeout: 10 * time.Second},
		TCP:         TCP{Enabled: true, Hook: "tracepoint", MaxPeers: 1024, RingBytes: 256 << 10},
		Plaintext:   Plaintext{Enabled: true, CaptureBytes: maxCaptureBytes, RingBytes: plaintextRingBytes},
		Metrics:     Metrics{Enabled: true, MaxSeriesPerService: 2000},
		Kube:        Kube{Enabled: "auto"},
		Linking:     Linking{Wait: 300 * time.Millisecond},

		ProcessMetrics: ProcessMetrics{Enabled: true, Interval: 15 * time.Second, Expiry: 5 * time.Minute},
	}
}

// ErrHelp is returned when -h or --help was asked for.
var ErrHelp = flag.ErrHelp

// Load builds the configuration of `periscope run` from its arguments and
// the process's environment. Usage goes to out.
func Load(args []string, out io.Writer) (Config, error) {
	return LoadEnv(args, os.Environ(), out)
}

// LoadEnv builds the configuration from the defaults, then the YAML file of
// --config, then the PERISCOPE_* variables of environ ("KEY=value"), then
// the other flags: each overrides the ones before. Usage goes to out.
func LoadEnv(args []string, environ []string, out io.Writer) (Config, error) {
	cfg := Default()
	fs := flag.NewFlagSet("periscope run", flag.ContinueOnError)
	fs.SetOutput(out)
	path := fs.String("config", "", "YAML configuration `file` (docs/configuration.md)")
	fs.String("console", "", "live spans on stdout: text, json or off (default text)")
	fs.String("metrics-addr", "", "`address` for /metrics and /status; \"off\" disables (default 127.0.0.1:9464)")
	fs.String("log-level", "", "debug, info, warn or error (default info)")
	fs.String("log-format", "", "text or json (default text)")
	fs.String("kubeconfig", "", "kubeconfig `file` for Kubernetes metadata (default: in-cluster config)")
	fs.String("node-name", "", "this node's `name` (default $NODE_NAME, then the host name)")
	lists := map[string]*stringList{"route-pattern": {}, "include-exe": {}, "exclude-exe": {}}
	fs.Var(lists["route-pattern"], "route-pattern", "URL path `template` for http.route, e.g. /users/{id} (repeatable)")
	fs.Var(lists["include-exe"], "include-exe", "trace only executables matching `glob` (repeatable)")
	fs.Var(lists["exclude-exe"], "exclude-exe", "never trace executables matching `glob` (repeatable)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *path != "" {
		if err := cfg.loadFile(*path); err != nil {
			return cfg, err
		}
	}
	if err := cfg.applyEnv(environ); err != nil {
		return cfg, err
	}
	byKey := make(map[string]Option)
	for _, o := range Options() {
		byKey[o.Key] = o
	}
	var flagErr error
	fs.Visit(func(f *flag.Flag) {
		key, ok := flags[f.Name]
		if !ok || flagErr != nil {
			return
		}
		o := byKey[key]
		if l, ok := lists[f.Name]; ok {
			reflect.ValueOf(&cfg).Elem().FieldByIndex(o.index).Set(reflect.ValueOf([]string(*l)))
			return
		}
		if err := o.setValue(&cfg, f.Value.String()); err != nil {
			flagErr = fmt.Errorf("%s (flag --%s): %w", key, f.Name, err)
		}
	})
	if flagErr != nil {
		return cfg, flagErr
	}
	if cfg.Symbols.CacheDir == "off" {
		cfg.Symbols.CacheDir = ""
	}
	if cfg.MetricsAddr == "off" {
		cfg.MetricsAddr = ""
	}
	return cfg, cfg.Validate()
}

func (c *Config) loadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return fmt.Errorf("config file %s: %s", path, nameKeys(b, te.Errors))
		}
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// nameKeys rewrites yaml's "line N: ..." errors (unknown fields, values of
// the wrong type) as "KEY (line N): ...", KEY being the dotted path of the
// key on that line, so that the message names what is wrong.
func nameKeys(doc []byte, errs []string) string {
	var root yaml.Node
	paths := make(map[int]string)
	if yaml.Unmarshal(doc, &root) == nil {
		keyPaths(&root, "", paths)
	}
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e
		var line int
		if _, err := fmt.Sscanf(e, "line %d:", &line); err != nil {
			continue
		}
		if key, ok := paths[line]; ok {
			out[i] = key + " (" + e + ")"
		}
	}
	return strings.Join(out, "; ")
}

// keyPaths records the dotted path of every mapping key (and sequence
// item) by the line it starts on.
func keyPaths(n *yaml.Node, prefix string, out map[int]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			keyPaths(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + p
			}
			out[k.Line] = p
			keyPaths(v, p, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			if _, ok := out[c.Line]; !ok {
				out[c.Line] = p
			}
			keyPaths(c, p, out)
		}
	}
}

// Validate reports the first bad value, naming its key.
func (c Config) Validate() error {
	oneOf := func(key, v string, allowed ...string) error {
		if !slices.Contains(allowed, v) {
			return fmt.Errorf("%s: %q is not one of %s", key, v, strings.Join(allowed, ", "))
		}
		return nil
	}
	if err := oneOf("console", c.Console, "text", "json", "off"); err != nil {
		return err
	}
	if err := oneOf("log_level", c.LogLevel, "debug", "info", "warn", "error"); err != nil {
		return err
	}
	if err := oneOf("log_format", c.LogFormat, "text", "json"); err != nil {
		return err
	}
	if c.MaxProcs < 0 || c.MaxProcs > maxMaxProcs {
		return fmt.Errorf("max_procs: %d is not between 0 and %d", c.MaxProcs, maxMaxProcs)
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("metrics_addr: %w", err)
		}
	}
	if err := c.Processes.Selector().Validate(); err != nil {
		return fmt.Errorf("processes: %w", err)
	}
	if err := oneOf("processes.command_args", c.Processes.CommandArgs, "redacted", "off"); err != nil {
		return err
	}
	if c.Symbols.AnalysisTimeout <= 0 {
		return fmt.Errorf("symbols.analysis_timeout: must be positive, not %s", c.Symbols.AnalysisTimeout)
	}
	if c.HTTP.IdleTimeout <= 0 {
		return fmt.Errorf("http.idle_timeout: must be positive, not %s", c.HTTP.IdleTimeout)
	}
	if c.OpenSSL.RingBytes < 4096 || c.OpenSSL.RingBytes&(c.OpenSSL.RingBytes-1) != 0 {
		return fmt.Errorf("openssl.ring_bytes: %d is not a power of two of at least 4096", c.OpenSSL.RingBytes)
	}
	if c.GoHTTP.RingBytes < 4096 || c.GoHTTP.RingBytes&(c.GoHTTP.RingBytes-1) != 0 {
		return fmt.Errorf("gohttp.ring_bytes: %d is not a power of two of at least 4096", c.GoHTTP.RingBytes)
	}
	if c.GoTLS.RingBytes < 4096 || c.GoTLS.RingBytes&(c.GoTLS.RingBytes-1) != 0 {
		return fmt.Errorf("gotls.ring_bytes: %d is not a power of two of at least 4096", c.GoTLS.RingBytes)
	}
	if err := oneOf("tcp.hook", c.TCP.Hook, "tracepoint", "kprobe"); err != nil {
		return err
	}
	if err := oneOf("tcp.fail_hook", c.TCP.FailHook, "", "tracepoint", "kprobe"); err != nil {
		return err
	}
	if c.TCP.MaxPeers < 1 || c.TCP.MaxPeers > maxTCPPeers {
		return fmt.Errorf("tcp.max_peers: %d is not between 1 and %d", c.TCP.MaxPeers, maxTCPPeers)
	}
	if c.TCP.RingBytes < 4096 || c.TCP.RingBytes&(c.TCP.RingBytes-1) != 0 {
		return fmt.Errorf("tcp.ring_bytes: %d is not a power of two of at least 4096", c.TCP.RingBytes)
	}
	if c.Plaintext.CaptureBytes < 16 || c.Plaintext.CaptureBytes > maxCaptureBytes {
		return fmt.Errorf("plaintext.capture_bytes: %d is not between 16 and %d", c.Plaintext.CaptureBytes, maxCaptureBytes)
	}
	if _, err := c.Plaintext.Ports(); err != nil {
		return err
	}
	if c.Plaintext.RingBytes < 4096 || c.Plaintext.RingBytes&(c.Plaintext.RingBytes-1) != 0 {
		return fmt.Errorf("plaintext.ring_bytes: %d is not a power of two of at least 4096", c.Plaintext.RingBytes)
	}
	if c.Plaintext.CallSlots < 0 || c.Plaintext.CallSlots&(c.Plaintext.CallSlots-1) != 0 {
		return fmt.Errorf("plaintext.call_slots: %d is not 0 or a power of two", c.Plaintext.CallSlots)
	}
	if c.Metrics.MaxSeriesPerService < 1 || c.Metrics.MaxSeriesPerService > maxSeriesPerService {
		return fmt.Errorf("metrics.max_series_per_service: %d is not between 1 and %d", c.Metrics.MaxSeriesPerService, maxSeriesPerService)
	}
	for i, p := range c.Metrics.RoutePatterns {
		if p == "" || p[0] != '/' {
			return fmt.Errorf("metrics.route_patterns[%d]: %q does not start with /", i, p)
		}
	}
	if err := oneOf("kubernetes.enabled", c.Kube.Enabled, "auto", "true", "false"); err != nil {
		return err
	}
	if err := c.Linking.validate(); err != nil {
		return err
	}
	if c.ProcessMetrics.Interval < time.Second/10 {
		return fmt.Errorf("process_metrics.interval: %s is shorter than 100ms", c.ProcessMetrics.Interval)
	}
	if c.ProcessMetrics.Expiry < c.ProcessMetrics.Interval {
		return fmt.Errorf("process_metrics.expiry: %s is shorter than process_metrics.interval (%s)", c.ProcessMetrics.Expiry, c.ProcessMetrics.Interval)
	}
	return nil
}

func (l Linking) validate() error {
	if l.Wait <= 0 || l.Wait > maxLinkWait {
		return fmt.Errorf("linking.wait: %s is not between 0 and %s", l.Wait, maxLinkWait)
	}
	if l.Listen != "" {
		if _, _, err := net.SplitHostPort(l.Listen); err != nil {
			return fmt.Errorf("linking.listen: %w", err)
		}
	}
	for i, p := range l.Peers {
		if _, port, err := net.SplitHostPort(p); err != nil || port == "" {
			return fmt.Errorf("linking.peers[%d]: %q is not host:port", i, p)
		}
	}
	return nil
}

// maxLinkWait bounds linking.wait: spans are held that long.
const maxLinkWait = 10 * time.Second

// maxSeriesPerService bounds metrics.max_series_per_service.
const maxSeriesPerService = 100000

// maxTCPPeers bounds tcp.max_peers: each peer may hold a series per
// process and state.
const maxTCPPeers = 100000

// maxCaptureBytes is DATA_CAP of bpf/periscope.h.
const maxCaptureBytes = 4096

// maxMaxProcs bounds max_procs: more processors than any node has is a typo.
const maxMaxProcs = 1024

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
