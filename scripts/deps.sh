#!/usr/bin/env bash
# scripts/deps.sh — install the Debian packages that the build, the tests and the
# benchmarks need. Idempotent: installs only what is missing (running `apt-get
# update` once first), prints what it installs, never prompts.
#
# Services: Debian's nginx, prometheus and etcd-server packages would start system
# daemons (nginx on port 80, prometheus on 9090, etcd on 2379). We start our own
# instances on free loopback ports, so the install runs with a policy-rc.d that
# forbids service starts, and a system nginx left running from an earlier install
# is stopped.
set -euo pipefail

# nginx and bpftool live in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin:/usr/local/go/bin"

log() { printf 'deps.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Debian package names (see DESIGN.md §8).
PACKAGES=(
	# build
	make git clang-19 llvm-19 bpftool libbpf-dev
	# symbols tests compare against objdump and strip binaries
	binutils gcc
	# test targets and tools
	nginx curl wrk nghttp2-client nftables openssl python3 jq iproute2 util-linux ca-certificates
	# plaintext HTTP of every runtime (the sockets collector's tests): java, ruby
	# WEBrick, php -S, python3-requests for Debian's /usr/bin/python3
	openjdk-17-jdk-headless ruby ruby-webrick php-cli python3-requests
	# pre-fork server (master listens, workers accept): gunicorn for /usr/bin/python3
	gunicorn
	# gRPC targets: grpcio for /usr/bin/python3 (links the system libssl.so.3)
	python3-grpcio
	# later issues: metrics and Kubernetes API tests
	prometheus etcd-server
	# other kernels under qemu (make test-kernels, scripts/kernels.sh)
	qemu-system-x86 debootstrap cpio kmod e2fsprogs xz-utils
	# database protocols: the servers and clients of scripts/dbcapture/capture.sh
	# and of the database end-to-end tests (the unit tests replay committed
	# captures and need none of them)
	postgresql mariadb-server mariadb-client redis-server redis-tools
	python3-psycopg2 python3-pymysql python3-redis
)

is_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

missing=()
for p in "${PACKAGES[@]}"; do
	is_installed "$p" || missing+=("$p")
done

# node 20 usually comes preinstalled at /usr/bin/node (with OpenSSL 3.0 linked in);
# only fall back to Debian's nodejs package when there is no node at all.
if command -v node >/dev/null 2>&1; then
	log "node present: $(command -v node) $(node --version 2>/dev/null || echo '?')"
else
	is_installed nodejs || missing+=(nodejs)
fi
# npm installs @grafana/schema and typescript for the dashboards' type check
# (scripts/tools.sh grafana-schema); Debian packages it apart from nodejs.
if ! command -v npm >/dev/null 2>&1; then
	is_installed npm || missing+=(npm)
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	if [ ${#missing[@]} -gt 0 ]; then
		command -v sudo >/dev/null 2>&1 || die "not root and no sudo; cannot install: ${missing[*]}"
		SUDO=(sudo)
	fi
fi

if [ ${#missing[@]} -gt 0 ]; then
	log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Keep package maintainer scripts from starting daemons.
	policy=/usr/sbin/policy-rc.d
	if [ ! -e "$policy" ]; then
		"${SUDO[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
		trap '"${SUDO[@]}" rm -f "$policy"' EXIT
	fi
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"${missing[@]}" >&2
	log "installed: ${missing[*]}"
else
	log "all packages present"
fi

# A system nginx (Debian's service, listening on port 80) is of no use to us and
# would only confuse process discovery: stop it if it runs.
if [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
	log "stopping the system nginx (pid $(cat /run/nginx.pid))"
	"${SUDO[@]}" nginx -s quit 2>/dev/null || "${SUDO[@]}" kill "$(cat /run/nginx.pid)" || true
fi

# Sanity checks: the tools the build and the tests call by name.
for tool in clang-19 llc-19 bpftool nginx curl wrk h2load nft openssl python3 jq node npm prometheus promtool etcd ip flock git make \
	qemu-system-x86_64 debootstrap cpio depmod mkfs.ext4; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found after install"
done
# Go is not a Debian package here (bookworm's is too old): the machine provides it.
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
	die "no Go toolchain (go in PATH or /usr/local/go/bin/go); go.mod needs $(sed -n 's/^go //p' "$(dirname "$0")/../go.mod" 2>/dev/null || echo 'a recent one')"
fi
[ -f /usr/include/bpf/bpf_helpers.h ] || die "libbpf headers missing (/usr/include/bpf/bpf_helpers.h)"
log "ok"
