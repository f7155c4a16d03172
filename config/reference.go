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
	"pprof":                          "Serve Go's runtime profiles (`/debug/pprof/`: CPU, heap, goroutines, ...) on `metrics_addr`, for measuring the agent (`make bench` takes a CPU profile this way). Off by default: anyone who reaches `metrics_addr` could then profile the agent.",
	"max_procs":                      "Processors the agent's Go code runs on at once (`GOMAXPROCS`, 1 to 1024); `0` leaves Go's default: the CPUs the agent may run on, or its cgroup's CPU limit, or `$GOMAXPROCS`. `1` keeps the agent's goroutines on one thread at a time: fewer idle threads woken to look for work on small nodes (test/bench/results-pipeline.md, cpu7), at the price of parallel work (symbol analysis beside the ring readers, garbage collection).",
	"processes.include_exe":          "Trace only executables matching these globs. A pattern with a `/` matches the whole path, one without the base name (`nginx`, `python3*`, `/usr/local/bin/*`). Empty: every process.",
	"processes.exclude_exe":          "Never trace executables matching these globs (same syntax); wins over `include_exe`.",
	"processes.command_args":         "What `process.command` and `process.command_args` keep of command lines: `redacted` (credentials replaced by `REDACTED`: values of flags and `NAME=value` arguments with sensitive names, sensitive headers after `-H`, `Bearer` tokens, URL userinfo and query values, `mysql -pSECRET`) or `off` (no arguments at all; the command stays, redacted).",
	"processes.sensitive_args":       "Names whose values are redacted on command lines (`--name=v`, `--name v`, `NAME=v`, headers named so), matched ignoring case and `-_.`, as a word of a longer name and, from five letters, inside one; empty means the built-in list: password, passwd, pass, pwd, secret, token, key, apikey, auth, credential, credentials, cookie, session, private.",
	"http.capture_query":             "Export query strings (`url.query`, `url.full`), with the values of `sensitive_query_params` replaced by `REDACTED`.",
	"http.capture_headers":           "Export request and response headers as span attributes (sensitive ones redacted).",
	"http.sensitive_headers":         "Headers redacted in addition to `Authorization`, `Cookie`, `Set-Cookie` and `Proxy-Authorization`, which always are.",
	"http.sensitive_query_params":    "Query parameters whose values are redacted; empty means the built-in list: token, access_token, password, passwd, secret, api_key, apikey, key, signature, sig, code, auth, session.",
	"http.idle_timeout":              "A request without a response for this long ends as an error span (`error.type=timeout`).",
	"openssl.enabled":                "The OpenSSL collector (HTTPS through libssl: nginx, curl, python, node, ...).",
	"openssl.ring_bytes":             "Size of its event ring buffer in bytes: a power of two, at least 4096.",
	"gohttp.enabled":                 "The Go `net/http` collector (servers and clients, HTTP and HTTPS, any Go build).",
	"gohttp.ring_bytes":              "Size of its event ring buffer in bytes: a power of two, at least 4096.",
	"gotls.enabled":                  "The Go `crypto/tls` collector: plaintext of any Go program's TLS connections (grpc-go, ...) into the protocol decoders (HTTP/1, HTTP/2, gRPC, ...). Connections whose handshake `net/http` runs are left to `gohttp` when it is enabled, and an executable whose only TLS connections are `net/http`'s gets no probe at all then.",
	"gotls.ring_bytes":               "Size of its event ring buffer in bytes: a power of two, at least 4096.",
	"symbols.cache_dir":              "Directory (created, mode 0700) where what analysing an executable or library found is kept by file identity (device, inode, size, mtime, build ID), so that a restarted agent attaches without reading its files again; `off` keeps it in memory only. Mount a host directory here in a container to keep it across pod restarts.",
	"symbols.analysis_timeout":       "The analysis of one file is given up after this long (counted in `periscope_symbol_analysis_failures_total{reason=\"timeout\"}`).",
	"tcp.enabled":                    "The TCP collector: retransmissions per process, peer and state (`periscope_tcp_retransmits_total`).",
	"tcp.hook":                       "The hook on `tcp_retransmit_skb` tried first, `tracepoint` or `kprobe`; the other is the fallback.",
	"tcp.fail_hook":                  "Testing aid: the attach of this hook (`tracepoint` or `kprobe`) fails as if the kernel refused it, so that the fallback to the other runs on any kernel. Leave empty; failing the only hook a kernel has stops the agent with that error.",
	"tcp.max_peers":                  "Peers with retransmission series of their own (1 to 100000); the others share `network_peer_address=\"_overflow\"`.",
	"tcp.ring_bytes":                 "Size of its event ring buffer in bytes: a power of two, at least 4096.",
	"plaintext.enabled":              "The sockets collector: plaintext HTTP/1.x of every process (Java, node, python, ruby, php, nginx, ...) from syscall tracepoints. TLS connections and Go programs whose `net/http` the `gohttp` collector probes are left to those collectors.",
	"plaintext.capture_bytes":        "Bytes copied from each read or write of a traced connection (16 to 4096): the request and response heads must fit; bodies are counted past it.",
	"plaintext.ignore_ports":         "Local or remote TCP ports never traced, in addition to the OTLP export path's (see `trace_export`).",
	"plaintext.trace_export":         "Trace the OTLP export path too. Off by default: the ports 4317 and 4318 and those of the `OTEL_EXPORTER_OTLP_*ENDPOINT` variables are ignored, so that exports (and a node-local collector receiving them) do not become spans that become exports.",
	"plaintext.ring_bytes":           "Size of its event ring buffer in bytes: a power of two, at least 4096.",
	"plaintext.call_slots":           "Testing aid: how many per-thread slots the syscall programs keep a call in flight in (a power of two up to 16384; 0: all 16384). Fewer make threads share slots, so that the fallback for threads whose slot is taken (the calls hash) runs on any load. Leave at 0.",
	"metrics.enabled":                "RED metrics from spans: `http.server.request.duration` and `http.client.request.duration` histograms, `rpc.server.call.duration` and `rpc.client.call.duration` for gRPC, `db.client.operation.duration` and `periscope.db.server.operation.duration` for databases.",
	"metrics.route_patterns":         "URL path templates for `http.route` (`/users/{id}/orders/{order}`, `/static/*`), tried before the heuristic that collapses numeric IDs, UUIDs and hashes.",
	"metrics.max_series_per_service": "Distinct series per service (1 to 100000); the others fold into `http.route=\"_overflow\"`.",
	"kubernetes.enabled":             "Kubernetes metadata (pod, namespace, workload) on spans and metrics: `auto` (when an in-cluster config or `kubeconfig` is found), `true` (required: fail without one) or `false`.",
	"kubernetes.kubeconfig":          "A kubeconfig file; empty means the in-cluster configuration (service account).",
	"process_metrics.enabled":        "Resource metrics of every traced process (`process.cpu.time`, `process.memory.usage`, `process.memory.virtual`, `process.thread.count`, `process.unix.file_descriptor.count`, `process.context_switches`): per workload on `/metrics`, per process over OTLP.",
	"process_metrics.interval":       "How often the traced processes are read from `/proc` (at least `100ms`).",
	"process_metrics.expiry":         "The series of a process that exited (OTLP), and of a workload whose processes all exited (`/metrics`), are dropped this long after (at least `interval`).",
	"linking.listen":                 "Address (`host:port`) this agent answers other agents' lookups on: which client span wrote a request on one of this node's sockets. Empty: off (the Helm chart sets it). Answers carry connection addresses and span IDs only, and only to requests with the token.",
	"linking.peers":                  "The other agents (`host:port` of their `linking.listen`). Each announces the addresses of its node; a server request from one of them is looked up there and becomes the child of the client span that sent it (see [cross-node traces](../README.md#traces-across-nodes)).",
	"linking.peer_selector":          "On Kubernetes: a label selector of the agents' pods (`app.kubernetes.io/name=periscope,...`; the Helm chart sets it), listed every 30 s in the agent's namespace (`$POD_NAMESPACE`), each reached at its pod IP on the port of `listen`. Each agent announces its node's pod IPs and node IP.",
	"linking.token_file":             "File holding the token agents authenticate each other with (required with `listen` or `peers`; the Helm chart generates it in a Secret). Requests without it are refused and counted (`periscope_link_requests_served_total{result=\"refused\"}`).",
	"linking.tls_cert_file":          "With `tls_key_file` and `tls_ca_file` (all three or none): mutual TLS between the agents. This agent's certificate (PEM), presented to its peers and to those that ask it; its extended key usages must include server and client authentication. The Helm chart generates a CA and a certificate in its Secret.",
	"linking.tls_key_file":           "The private key (PEM) of `tls_cert_file`.",
	"linking.tls_ca_file":            "The CA (PEM) that signs every agent's certificate: a peer whose certificate it did not sign is refused (counted `refused`). Peers are reached by pod IP, so the certificate's names are not checked, only its chain: use a CA of the agents' own.",
	"linking.wait":                   "How long a server span from another node waits for its lookup, counted from when the agent read the request, before it is exported unlinked (`periscope_link_lookups_total{result}` counts every outcome); at most `10s`.",
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
