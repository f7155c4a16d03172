#!/usr/bin/env bash
# scripts/tools.sh NAME... — build test tools once into a cache outside the repo.
#
# Each tool lives in ${PERISCOPE_CACHE:-$HOME/.cache/periscope}/<tool>-<version>/<binary>.
# For every NAME the absolute path of the binary is printed on stdout (one per line,
# in argument order); everything else (build logs) goes to stderr.
# A tool is built only when its binary is missing. Builds happen in a temporary
# directory that is renamed into place at the end, so a killed build never leaves a
# half-written binary behind; a per-tool lock (flock) serialises concurrent callers.
#
# Tools: jaeger hey helm benchstat kube-apiserver kubectl grafana-schema grpc-js
set -euo pipefail

CACHE="${PERISCOPE_CACHE:-$HOME/.cache/periscope}"

JAEGER_VERSION=v1.76.0
HEY_VERSION=v0.1.5
HELM_VERSION=v3.22.0
# golang.org/x/perf has no tags; pin a pseudo-version the proxy serves.
BENCHSTAT_VERSION=v0.0.0-20260908200009-22c9c6c9d4da
# k8s.io/kubernetes; its staging modules (k8s.io/api, client-go, ...) are v0.<minor>.<patch>.
KUBE_VERSION=v1.33.1
# npm packages for the dashboards' type check (deploy/test): Grafana's published
# dashboard schema and the TypeScript compiler.
GRAFANA_SCHEMA_VERSION=13.2.3
TYPESCRIPT_VERSION=5.9.3
# npm @grpc/grpc-js: node's gRPC (pure JavaScript on node's http2 and OpenSSL),
# for the e2e test of a Node gRPC client.
GRPC_JS_VERSION=1.14.7

log() { printf 'tools.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null 2>&1 || {
	if [ -x /usr/local/go/bin/go ]; then PATH="/usr/local/go/bin:$PATH"; else die "go not found in PATH"; fi
}
command -v flock >/dev/null 2>&1 || die "flock not found (util-linux)"

# Builds run with a controlled environment: never in our workspace, never with the
# caller's -mod flags.
export GOWORK=off
export GOFLAGS=-buildvcs=false

# go_install_into DIR PKG@VERSION
go_install_into() {
	local dir=$1 pkg=$2
	(cd "$dir" && GOBIN="$dir" go install "$pkg") >&2
}

# ---------------------------------------------------------------------------
# jaeger
#
# Jaeger v2 (module v1.76.0) is an OpenTelemetry Collector distribution. Built from
# a copy of the module source (`go install` refuses it: go.mod has a replace
# directive). Build here: ~290 s on 2 CPUs with a cold module cache, ~2.3 GB RAM;
# the stripped binary is ~85 MB.
#
# What was verified on this machine (2026-11):
# - No flags: the embedded all-in-one config (cmd/jaeger/internal/all-in-one.yaml),
#   in-memory storage. Listens on 127.0.0.1 ("localhost") for OTLP gRPC 4317, OTLP
#   HTTP 4318, sampling 5778/5779, own metrics 8888, zipkin 9411, health 13133
#   (+13132), jaeger 14250/14268 (+UDP 6831/6832), expvar 27777, zpages 27778; and on
#   ALL interfaces for the query API/UI :16686 and query gRPC :16685. It also traces
#   itself (jaeger_query enable_tracing) to 127.0.0.1:4317, and with that on a
#   SIGINT/SIGTERM shutdown takes ~10 s while the exporter retries.
# - JAEGER_LISTEN_HOST=127.0.0.1 sets the host of every built-in endpoint except the
#   two query ones.
# - `--set=KEY=VALUE` (OTel collector syntax) overrides the built-in config without
#   any --config, e.g.
#     jaeger --set=receivers.otlp.protocols.grpc.endpoint=127.0.0.1:24317 \
#            --set=extensions.jaeger_query.http.endpoint=127.0.0.1:26686 \
#            --set=extensions.jaeger_query.grpc.endpoint=127.0.0.1:26685
#   but every other fixed port above stays, so two such instances collide.
# - `--config FILE` replaces the built-in config entirely. This is what
#   test/e2e/harness (RunJaeger) does: only the components below, all on 127.0.0.1
#   free ports (verified: exactly 5 listening sockets, all loopback), ready in
#   ~0.1 s, stops in well under a second:
#
#   service:
#     extensions: [jaeger_storage, jaeger_query, healthcheckv2]
#     pipelines:
#       traces: {receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter]}
#     telemetry:
#       metrics: {level: none}             # no :8888 listener
#       logs: {level: info}
#   extensions:
#     healthcheckv2:
#       use_v2: true
#       http: {endpoint: 127.0.0.1:HEALTH_PORT}   # GET /status -> 200 when up
#     jaeger_query:
#       enable_tracing: false              # no self-traces to 127.0.0.1:4317
#       storage: {traces: mem}
#       http: {endpoint: 127.0.0.1:QUERY_HTTP_PORT}
#       grpc: {endpoint: 127.0.0.1:QUERY_GRPC_PORT}
#     jaeger_storage:
#       backends: {mem: {memory: {max_traces: 100000}}}
#   receivers:
#     otlp:
#       protocols:
#         grpc: {endpoint: 127.0.0.1:OTLP_GRPC_PORT}
#         http: {endpoint: 127.0.0.1:OTLP_HTTP_PORT}
#   processors:
#     batch: {timeout: 200ms}
#   exporters:
#     jaeger_storage_exporter: {trace_storage: mem}
#
# Query API: GET /api/services, GET /api/traces?service=S&start=US&end=US&limit=N
# (start/end in µs since the epoch; defaults: the last 2 days, limit 100). Trace
# IDs whose high 64 bits are zero come back shortened to 16 hex digits.
# ---------------------------------------------------------------------------
build_jaeger() {
	local out=$1
	local json dir
	json=$(cd "$out" && go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION") ||
		die "go mod download github.com/jaegertracing/jaeger@$JAEGER_VERSION failed"
	dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	[ -n "$dir" ] && [ -d "$dir" ] || die "could not find jaeger module dir in: $json"
	log "jaeger: copying $dir"
	cp -a "$dir" "$out/src"
	chmod -R u+w "$out/src"
	log "jaeger: go build ./cmd/jaeger (takes several minutes, ~2.3 GB RAM)"
	local start=$SECONDS
	(cd "$out/src" && go build -trimpath -ldflags='-s -w' -o "$out/jaeger" ./cmd/jaeger) >&2
	log "jaeger: built in $((SECONDS - start)) s"
	rm -rf "$out/src"
}

build_hey() { go_install_into "$1" "github.com/rakyll/hey@$HEY_VERSION"; }
build_helm() { go_install_into "$1" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"; }
build_benchstat() { go_install_into "$1" "golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION"; }

# ---------------------------------------------------------------------------
# kube-apiserver, kubectl
#
# Built from the k8s.io/kubernetes module, which is not meant to be depended on:
# its go.mod replaces every staging module (k8s.io/api, k8s.io/client-go, ...) with
# ./staging/src/k8s.io/X, directories the module zip does not contain, and it ships
# a go.work. So: copy the module dir, delete go.work, point each staging module at
# its published version (v1.33.1 -> v0.33.1) and build with GOWORK=off -mod=mod.
# kube-apiserver: ~170 s on 2 idle CPUs with a cold build cache (721 s measured
# with other builds running), 95 MB; kubectl afterwards reuses most of the
# compiled packages (same -trimpath build cache keys): 141 s, 75 MB. Neither
# carries a version (`kubectl version` says v0.0.0-master), which nothing here
# reads. Started by test/e2e/harness (StartKube, Kube.Kubectl): an API server
# with etcd (Debian etcd-server) is ready in ~3 s.
# ---------------------------------------------------------------------------
# kube_src OUT — prepares a buildable copy of k8s.io/kubernetes in OUT/src.
kube_src() {
	local out=$1
	local json dir staging
	json=$(cd "$out" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION") ||
		die "go mod download k8s.io/kubernetes@$KUBE_VERSION failed"
	dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	[ -n "$dir" ] && [ -d "$dir" ] || die "could not find kubernetes module dir in: $json"
	log "kubernetes: copying $dir"
	cp -a "$dir" "$out/src"
	chmod -R u+w "$out/src"
	rm -f "$out/src/go.work" "$out/src/go.work.sum"
	staging="v0.${KUBE_VERSION#v1.}"
	# Every module the go.mod replaces with ./staging/src/k8s.io/X.
	local mods
	mods=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$out/src/go.mod")
	[ -n "$mods" ] || die "kubernetes go.mod lists no staging replacements"
	local args=() m
	for m in $mods; do args+=("-replace=$m=$m@$staging"); done
	(cd "$out/src" && go mod edit "${args[@]}") >&2
	log "kubernetes: $(printf '%s\n' "$mods" | wc -l) staging modules pinned to $staging"
}

# kube_build OUT CMD — builds ./cmd/CMD of k8s.io/kubernetes into OUT/CMD.
kube_build() {
	local out=$1 cmd=$2
	kube_src "$out"
	log "kubernetes: go build ./cmd/$cmd (takes minutes)"
	local start=$SECONDS
	(cd "$out/src" && go build -mod=mod -trimpath -ldflags='-s -w' -o "$out/$cmd" "./cmd/$cmd") >&2
	log "kubernetes: $cmd built in $((SECONDS - start)) s"
	rm -rf "$out/src"
}

build_kube-apiserver() { kube_build "$1" kube-apiserver; }
build_kubectl() { kube_build "$1" kubectl; }

# ---------------------------------------------------------------------------
# grafana-schema: @grafana/schema and typescript from npm, for
# `tsc --noEmit --strict` over the Grafana dashboards (deploy/test). The
# "binary" is the node_modules directory itself (ensure keeps only that entry);
# tsc is node_modules/.bin/tsc. --ignore-scripts: nothing runs at install.
# ---------------------------------------------------------------------------
build_grafana-schema() {
	local out=$1
	command -v npm >/dev/null 2>&1 || die "npm not found (Debian: nodejs/npm; scripts/deps.sh)"
	(cd "$out" && printf '{"private": true}\n' > package.json &&
		npm install --no-audit --no-fund --ignore-scripts --no-package-lock \
			"@grafana/schema@$GRAFANA_SCHEMA_VERSION" "typescript@$TYPESCRIPT_VERSION") >&2
	[ -x "$out/node_modules/.bin/tsc" ] || die "npm installed no node_modules/.bin/tsc"
}

# ---------------------------------------------------------------------------
# grpc-js: @grpc/grpc-js from npm; the "binary" is node_modules (as for
# grafana-schema). --ignore-scripts: nothing runs at install.
# ---------------------------------------------------------------------------
build_grpc-js() {
	local out=$1
	command -v npm >/dev/null 2>&1 || die "npm not found (Debian: nodejs/npm; scripts/deps.sh)"
	(cd "$out" && printf '{"private": true}\n' > package.json &&
		npm install --no-audit --no-fund --ignore-scripts --no-package-lock "@grpc/grpc-js@$GRPC_JS_VERSION") >&2
	[ -f "$out/node_modules/@grpc/grpc-js/package.json" ] || die "npm installed no @grpc/grpc-js"
	chmod 755 "$out/node_modules"
}

# ensure TOOL VERSION BINARY — prints the path of the binary, building it if needed.
ensure() {
	local tool=$1 version=$2 bin=$3
	local final="$CACHE/$tool-$version"
	local path="$final/$bin"
	if [ -x "$path" ]; then
		printf '%s\n' "$path"
		return 0
	fi
	mkdir -p "$CACHE"
	local lock="$CACHE/.$tool-$version.lock"
	(
		flock 9
		if [ -x "$path" ]; then exit 0; fi # another caller built it meanwhile
		# A directory without the binary is a leftover of something odd: replace it.
		if [ -e "$final" ]; then rm -rf "$final"; fi
		# Leftovers of killed builds (we hold the lock: nobody else is building).
		for old in "$CACHE/.tmp-$tool-$version."*; do
			if [ -e "$old" ]; then
				log "removing leftover $old"
				chmod -R u+w "$old" 2>/dev/null || true
				rm -rf "$old"
			fi
		done
		local tmp
		tmp=$(mktemp -d "$CACHE/.tmp-$tool-$version.XXXXXX")
		# shellcheck disable=SC2064
		trap "chmod -R u+w '$tmp' 2>/dev/null; rm -rf '$tmp'" EXIT
		log "building $tool $version into $final"
		"build_$tool" "$tmp"
		[ -x "$tmp/$bin" ] || die "$tool build produced no $bin"
		# Keep only the binary in the final directory.
		find "$tmp" -mindepth 1 -maxdepth 1 ! -name "$bin" -exec rm -rf {} +
		chmod 755 "$tmp"
		mv -T "$tmp" "$final"
		trap - EXIT
		log "$tool $version ready: $path"
	) 9>"$lock"
	[ -x "$path" ] || die "$tool: $path missing after build"
	printf '%s\n' "$path"
}

[ $# -gt 0 ] || die "usage: $0 TOOL... (jaeger hey helm benchstat kube-apiserver kubectl grafana-schema grpc-js)"

for name in "$@"; do
	case "$name" in
	jaeger) ensure jaeger "$JAEGER_VERSION" jaeger ;;
	hey) ensure hey "$HEY_VERSION" hey ;;
	helm) ensure helm "$HELM_VERSION" helm ;;
	benchstat) ensure benchstat "$BENCHSTAT_VERSION" benchstat ;;
	kube-apiserver) ensure kube-apiserver "$KUBE_VERSION" kube-apiserver ;;
	kubectl) ensure kubectl "$KUBE_VERSION" kubectl ;;
	grafana-schema) ensure grafana-schema "$GRAFANA_SCHEMA_VERSION-ts$TYPESCRIPT_VERSION" node_modules ;;
	grpc-js) ensure grpc-js "$GRPC_JS_VERSION" node_modules ;;
	*) die "unknown tool '$name' (known: jaeger hey helm benchstat kube-apiserver kubectl grafana-schema grpc-js)" ;;
	esac
done
