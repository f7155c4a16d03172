#!/usr/bin/env bash
# test/bench/run.sh — `make bench [MODE=...]`: builds the agent and the
# benchmark driver (test/bench/benchtool) and runs one or more modes. Every
# mode's agent exports its spans over OTLP/gRPC to a counting receiver in a
# process of its own (benchtool receive). `benchtool -h` lists the modes; the
# table is benchModes() in test/bench/benchtool/modes.go, with each mode's
# results file and default rounds.
#
#   make bench                 MODE="go plain": the main mode (the Go hello
#                              HTTPS server, ~3 min) and nginx over plain
#                              HTTP (~3 min): test/bench/results.md and
#                              test/bench/results-plain.md
#   make bench MODE=go         one mode; MODE="go agent" several
#
# Root only (loads eBPF programs). Results name the commit they were measured
# at: the run refuses a tree with uncommitted changes (other than the results
# files themselves) unless ALLOW_DIRTY=1, and then says so in the results.
# Exits non-zero only when something failed to run; the figures are
# reported, never asserted.
#
# Environment (all optional; unset: the mode's default from the table):
#   ROUNDS=N        rounds per configuration (ABBA order in go and plain)
#   DURATION=10s    length of one wrk round
#   WARMUP=5s       wrk warm-up before the first round (0s: none)
#   SCHEMES=https   MODE=go: http, https or http,https
#   PROFILE=1       go, plain: 0 skips the pair of profiled rounds
#   WORKERS=1       nginx worker_processes
#   THREADS=2 CONNECTIONS=50   wrk -t / -c
#   PERISCOPE=path  use this agent binary instead of building bin/periscope
#                   (the results say so; AGENT_FROM=commit names its source)
#   OUT=path        markdown summary (default: the mode's results file)
#   NEW_CONNS=1     MODE=tcp: a new TLS connection per request
#   COPIES=20       MODE=memory: distinct helm copies
#   ALLOW_DIRTY=1   measure a tree with uncommitted changes
#   KEEP=1          keep the scratch directory (agent logs, perf.data, the
#                   agent's CPU profile agent.cpu.pprof)
set -euo pipefail

export PATH="$PATH:/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO="$PWD"

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "the benchmark loads eBPF programs and must run as root: run 'sudo make bench'"
for tool in go cc nginx wrk openssl bpftool getconf perf; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (bash scripts/deps.sh installs the dependencies)"
done

WORK="$(mktemp -d /tmp/periscope-bench.XXXXXX)"
DRIVER_PID=""
LAST_DRIVER=""

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	# The driver stops wrk, nginx and the agent itself; if it died without
	# doing so (killed), its pid files name what is left. Each runs in its own
	# process group, so the group goes: nginx master and workers together.
	if [ -n "$DRIVER_PID" ] && kill -0 "$DRIVER_PID" 2>/dev/null; then
		kill -TERM "$DRIVER_PID" 2>/dev/null || true
		wait "$DRIVER_PID" 2>/dev/null || true
	fi
	# MODE=linking: node A's agent and receiver, and the two namespaces
	# (named after the driver's PID; deleting them deletes their veths).
	local ns
	for f in "$WORK"/pids/a/agent "$WORK"/pids/a/receiver; do
		[ -f "$f" ] && kill -KILL -- "-$(cat "$f")" 2>/dev/null || true
	done
	if [ -n "$LAST_DRIVER" ]; then
		for ns in "pslbA$LAST_DRIVER" "pslbB$LAST_DRIVER"; do
			ip netns del "$ns" 2>/dev/null || true
		done
	fi
	local f pid
	for f in "$WORK"/pids/wrk "$WORK"/pids/agent "$WORK"/pids/nginx "$WORK"/pids/goapp "$WORK"/pids/receiver "$WORK"/pids/redis; do
		[ -f "$f" ] || continue
		pid="$(cat "$f")"
		[ -n "$pid" ] || continue
		if [ "$f" = "$WORK/pids/agent" ]; then
			kill -TERM "$pid" 2>/dev/null || true # lets the agent detach its probes
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		fi
		kill -KILL -- "-$pid" 2>/dev/null || true
		log "cleaned up leftover process group $pid ($(basename "$f"))"
	done
	if [ "${KEEP:-0}" = 1 ]; then
		log "scratch directory kept: $WORK"
	elif [ "$rc" -eq 1 ]; then
		log "failed: logs kept in $WORK (agent-*.log, nginx/logs/)"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "${PERISCOPE:-}" ]; then
	AGENT="$PERISCOPE"
	[ -x "$AGENT" ] || die "PERISCOPE=$AGENT is not an executable"
else
	log "building bin/periscope"
	go build -o bin/periscope ./cmd/periscope || die "the agent does not build"
	AGENT="$REPO/bin/periscope"
fi
log "building the benchmark driver and the uprobe micro-benchmark target"
go build -o "$WORK/benchtool" ./test/bench/benchtool
cc -O2 -Wall -o "$WORK/callloop" test/bench/callloop.c
MODES="${MODE:-go plain}"
case " $MODES " in
*" go "* | *" firstspan "* | *" procmetrics "*)
	# -tags nethttponly: without the tests' own TLS dialer, net/http is
	# goapp's only crypto/tls user, so gotls leaves it unprobed as it
	# leaves any such program (results-gotls-nethttp.md).
	log "building the Go benchmark target (test/e2e/testdata/goapp, -tags nethttponly)"
	(cd test/e2e/testdata/goapp &&
		GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -tags nethttponly -o "$WORK/goapp" . &&
		GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -tags nethttponly -ldflags='-s -w' -o "$WORK/goapp-stripped" .) ||
		die "test/e2e/testdata/goapp does not build"
	;;
esac

case " $MODES " in
*" grpc "*)
	log "building the gRPC benchmark target (test/e2e/testdata/grpcgo)"
	(cd test/e2e/testdata/grpcgo &&
		GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -o "$WORK/grpcgo" .) ||
		die "test/e2e/testdata/grpcgo does not build"
	;;
esac

HELM=""
case " $MODES " in
*" memory "*)
	log "building helm (scripts/tools.sh; cached in ~/.cache/periscope)"
	HELM="$(bash scripts/tools.sh helm | tail -1)"
	[ -x "$HELM" ] || die "scripts/tools.sh helm gave no binary"
	;;
esac

# Results name the commit they measure, so the tree must be that commit:
# uncommitted changes (the results files aside) stop the run.
COMMIT="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
DIRTY="$(git status --porcelain --untracked-files=no 2>/dev/null | grep -v ' test/bench/results[^ ]*\.md$' || true)"
if [ "$COMMIT" != unknown ] && [ -n "$DIRTY" ]; then
	if [ "${ALLOW_DIRTY:-0}" != 1 ]; then
		die "uncommitted changes (results name the commit they measure): commit them, or ALLOW_DIRTY=1 for a trial run
$DIRTY"
	fi
	COMMIT="$COMMIT with uncommitted changes (ALLOW_DIRTY=1: not reproducible from the commit)"
fi
COMMIT="$COMMIT ($(git log -1 --format='%cd, %s' --date=format:'%Y-%m-%d %H:%M' 2>/dev/null || true))"
if [ -n "${PERISCOPE:-}" ]; then
	COMMIT="$COMMIT — the agent NOT built from it: PERISCOPE=$PERISCOPE${AGENT_FROM:+, built from $AGENT_FROM}"
fi

# The driver runs in the background so that this shell's traps fire at once on
# Ctrl-C / SIGTERM; the driver catches the same signals and stops nginx, goapp
# and the agent, and cleanup() mops up whatever it could not.
run_driver() { # MODE
	"$WORK/benchtool" \
		-agent "$AGENT" \
		-work "$WORK" \
		-callloop "$WORK/callloop" \
		-goapp "$WORK/goapp" \
		-helm "$HELM" \
		-grpcgo "$WORK/grpcgo" \
		-copies "${COPIES:-20}" \
		-out "${OUT:-}" \
		-mode "$1" \
		-new-conns="$([ "${NEW_CONNS:-0}" = 1 ] && echo true || echo false)" \
		-schemes "${SCHEMES:-https}" \
		-profile="$([ "${PROFILE:-1}" = 0 ] && echo false || echo true)" \
		-rounds "${ROUNDS:-0}" \
		-duration "${DURATION:-0s}" \
		-warmup "${WARMUP:--1s}" \
		-workers "${WORKERS:-1}" \
		-threads "${THREADS:-2}" \
		-connections "${CONNECTIONS:-50}" \
		-commit "$COMMIT" &
	DRIVER_PID=$!
	LAST_DRIVER=$DRIVER_PID
	set +e
	wait "$DRIVER_PID"
	local rc=$?
	# A trapped signal interrupts wait; wait again for the driver's own exit code.
	while kill -0 "$DRIVER_PID" 2>/dev/null; do
		wait "$DRIVER_PID"
		rc=$?
	done
	set -e
	DRIVER_PID=""
	return "$rc"
}

for m in $MODES; do
	log "mode $m (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	t0=$SECONDS
	rc=0
	run_driver "$m" || rc=$?
	[ "$rc" -eq 0 ] || exit "$rc"
	log "mode $m took $((SECONDS - t0)) s"
done
