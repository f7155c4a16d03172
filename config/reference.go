package config

import (
	"fmt"
	"strings"
)

// descriptions says what each option does, by key. Every key of Options
// must have one: TestReference fails otherwise, and it regenerates
// docs/configuration.md from them.
var descriptions = map[string]string{
	"console":                        "Live spans on stdout: `text` (one line per span), `json` (JSON lines) or `off`.",
	"metrics_addr":                   "Address of `/metrics` (Prometheus) and `/status` (JSON); `off` disables both. Use `0.0.0.0:9464` to be scraped from elsewhere.",
	"log_level":                      "`debug`, `info`, `warn` or `error`.",
	"log_format":                     "`text` or `json` (log/slog handlers).",
	"processes.include_exe":          "Trace only executables matching these globs. A pattern with a `/` matches the whole path, one without the base name (`nginx`, `python3*`, `/usr/local/bin/*`). Empty: every process.",
	"processes.exclude_exe":          "Never trace executables matching these globs (same syntax); wins over `include_exe`.",
	"http.capture_query":             "Export query strings (`url.query`, `url.full`), with the values of `sensitive_query_params` replaced by `REDACTED`.",
	"http.capture_headers":           "Export request and response headers as span attributes (sensitive ones redacted).",
	"http.sensitive_headers":         "Headers redacted in addition to `Authorization`, `Cookie`, `Set-Cookie` and `Proxy-Authorization`, which always are.",
	"http.sensitive_query_params":    "Query parameters whose values are redacted; empty means the built-in list: token, access_token, password, passwd, secret, api_key, apikey, key, signature, sig, code, auth, session.",
	"http.idle_timeout":              "A request without a response for this long ends as an error span (`error.type=timeout`).",
	"openssl.enabled":                "The OpenSSL collector (HTTPS through libssl: nginx, curl, python, node, ...).",
	"openssl.ring_bytes":             "Size of its event ring buffer in bytes: a power of two, at least 4096.",
	"gohttp.enabled":                 "The Go `net/http` collector (servers and clients, HTTP and HTTPS, any Go build).",
	"gohttp.ring_bytes":              "Size of its event ring buffer in bytes: a power of two, at least 4096.",
	"tcp.enabled":                    "The TCP collector: retransmissions per process, peer and state (`periscope_tcp_retransmits_total`).",
	"tcp.hook":                       "The hook on `tcp_retransmit_skb` tried first, `tracepoint` or `kprobe`; the other is the fallback.",
	"tcp.max_peers":                  "Peers with retransmission series of their own (1 to 100000); the others share `network_peer_address=\"_overflow\"`.",
	"tcp.ring_bytes":                 "Size of its event ring buffer in bytes: a power of two, at least 4096.",
	"metrics.enabled":                "RED metrics from spans: `http.server.request.duration` and `http.client.request.duration` histograms, and `rpc.server.call.duration` and `rpc.client.call.duration` for gRPC.",
	"metrics.route_patterns":         "URL path templates for `http.route` (`/users/{id}/orders/{order}`, `/static/*`), tried before the heuristic that collapses numeric IDs, UUIDs and hashes.",
	"metrics.max_series_per_service": "Distinct series per service (1 to 100000); the others fold into `http.route=\"_overflow\"`.",
	"kubernetes.enabled":             "Kubernetes metadata (pod, namespace, workload) on spans and metrics: `auto` (when an in-cluster config or `kubeconfig` is found), `true` (required: fail without one) or `false`.",
	"kubernetes.kubeconfig":          "A kubeconfig file; empty means the in-cluster configuration (service account).",
	"kubernetes.node_name":           "This node's name, to watch only its pods; empty means `$NODE_NAME` (the DaemonSet sets it from the downward API), then the host name.",
}

// Reference returns the Markdown table of every option: key, environment
// variable, flag, type, default and description. docs/configuration.md
// embeds it between markers.
func Reference() (string, error) {
	var b strings.Builder
	b.WriteString("| YAML key | environment variable | flag | type | default | meaning |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	opts := Options()
	seen := make(map[string]bool, len(opts))
	var missing []string
	for _, o := range opts {
		seen[o.Key] = true
		d, ok := descriptions[o.Key]
		if !ok {
			missing = append(missing, o.Key)
			continue
		}
		flag := ""
		if o.Flag != "" {
			flag = "`--" + o.Flag + "`"
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s | `%s` | %s |\n", o.Key, o.Env, flag, o.Type, o.Default, d)
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("options without a description in config/reference.go: %s", strings.Join(missing, ", "))
	}
	for k := range descriptions {
		if !seen[k] {
			return "", fmt.Errorf("config/reference.go describes %q, which is not an option", k)
		}
	}
	return b.String(), nil
}
