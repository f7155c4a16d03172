#!/usr/bin/env bash
# test/bench/run.sh — `make bench`: nginx+TLS under wrk, without and with the
# Periscope agent, rounds alternated in one run, plus the cost of one uprobe hit
# on this kernel; then the same for a Go hello-world server (HTTP and HTTPS);
# then the agent with its RED metrics off vs on (MODE=metrics below).
# Prints tables and writes test/bench/results.md (nginx section, then Go
# section) and test/bench/results-metrics.md.
#
# Root only (loads eBPF programs). Exits non-zero only when something failed to
# run; the figures are reported, never asserted. About 6–7 minutes.
#
# Environment (all optional):
#   ROUNDS=3        rounds per configuration (baseline, agent); MODE=go: 2
#   DURATION=10s    length of one wrk round; MODE=go: 8s
#   WARMUP=5s       wrk warm-up before the first round; MODE=go: 3s (per scheme)
#   WORKERS=1       nginx worker_processes
#   THREADS=2 CONNECTIONS=50   wrk -t / -c
#   PERISCOPE=path  use this agent binary instead of building bin/periscope
#   OUT=path        markdown summary (default test/bench/results.md; MODE=tcp:
#                   test/bench/results-tcp.md; MODE=metrics:
#                   test/bench/results-metrics.md)
#   MODE=agent      the nginx benchmark only (unset: MODE=agent, then MODE=go,
#                   then MODE=metrics)
#   MODE=go         the Go benchmark only: test/e2e/testdata/goapp's /hello over
#                   HTTP and HTTPS, no agent vs the agent (--include-exe goapp);
#                   rewrites only the Go section of results.md
#   MODE=tcp        instead of no agent vs the agent, the agent with its TCP
#                   collector off vs on (what the retransmit hooks cost)
#   MODE=metrics    the agent with RED metrics off vs on (metrics.enabled), wrk
#                   cycling over 1,000 routes (/r0 … /r999, ~1,000 live series):
#                   agent CPU per 1,000 spans/s, RSS, live series, and the
#                   on/off ratio of CPU per span (target: at most +10%)
#   MODE=firstspan  exec to first traced request for new processes of each kind
#                   (Go with DWARF, stripped Go, python with libssl.so, node with
#                   OpenSSL inside): p50/p99 over ROUNDS (default 10); writes
#                   test/bench/results-firstspan.md
#   MODE=memory     COPIES (default 20) distinct copies of a helm build (~110 MB,
#                   DWARF) running when the agent starts: peak and steady RSS and
#                   seconds to attach each, baseline / empty symbol cache /
#                   restarted on the cache; writes test/bench/results-memory.md
#   MODE=procmetrics  the agent with process_metrics.enabled off vs on, 100
#                   idle traced Go processes, interval 1 s, rounds ABBA: agent
#                   CPU per 100 traced processes per interval; writes
#                   test/bench/results-procmetrics.md (ROUNDS=3: 6 rounds, ~3 min)
#   NEW_CONNS=1     MODE=tcp: a new TLS connection per request (wrk -H
#                   "Connection: close"), the worst case for the TCP collector
#   MODE=plain      nginx over plain HTTP (no TLS), no agent vs the agent in ABBA
#                   order, spans and ring drops at saturation; and in each round
#                   what a process that is not HTTP pays per syscall (dd bs=1 to
#                   /dev/null, dd | dd through a pipe): test/bench/results-plain.md
#   MODE=syscall    what a process that is not HTTP pays per syscall: CPU time of
#                   dd bs=1 to /dev/null and of a pipe ping-pong; no agent, empty
#                   programs on the read/write syscall tracepoints and on the raw
#                   sys_enter/exit ones (the floors), the agent; blocks in
#                   alternating order, fastest of 5 runs per round:
#                   test/bench/results-syscall.md (ROUNDS=3: 24 rounds, ~3 min)
#   KEEP=1          keep the scratch directory (agent and nginx logs)
set -euo pipefail

export PATH="$PATH:/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO="$PWD"

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "the benchmark loads eBPF programs and must run as root: run 'sudo make bench'"
for tool in go cc nginx wrk openssl bpftool getconf; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (bash scripts/deps.sh installs the dependencies)"
done

WORK="$(mktemp -d /tmp/periscope-bench.XXXXXX)"
DRIVER_PID=""

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
	local f pid
	for f in "$WORK"/pids/wrk "$WORK"/pids/agent "$WORK"/pids/nginx "$WORK"/pids/goapp; do
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
MODES="${MODE:-agent go metrics}"
case " $MODES " in
*" go "* | *" firstspan "* | *" procmetrics "*)
	log "building the Go benchmark target (test/e2e/testdata/goapp)"
	(cd test/e2e/testdata/goapp &&
		GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -o "$WORK/goapp" . &&
		GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -ldflags='-s -w' -o "$WORK/goapp-stripped" .) ||
		die "test/e2e/testdata/goapp does not build"
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

COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ "$COMMIT" != unknown ] && [ -n "$(git status --porcelain 2>/dev/null | head -1)" ]; then
	COMMIT="$COMMIT (with uncommitted changes)"
fi

# The driver runs in the background so that this shell's traps fire at once on
# Ctrl-C / SIGTERM; the driver catches the same signals and stops nginx, goapp
# and the agent, and cleanup() mops up whatever it could not.
run_driver() { # MODE
	local mode="$1" rounds="${ROUNDS:-3}" duration="${DURATION:-10s}" warmup="${WARMUP:-5s}"
	if [ "$mode" = go ]; then
		rounds="${ROUNDS:-2}" duration="${DURATION:-8s}" warmup="${WARMUP:-3s}"
	fi
	local out="${OUT:-test/bench/results.md}"
	[ "$mode" = tcp ] && out="${OUT:-test/bench/results-tcp.md}"
	[ "$mode" = metrics ] && out="${OUT:-test/bench/results-metrics.md}"
	[ "$mode" = firstspan ] && out="${OUT:-test/bench/results-firstspan.md}" rounds="${ROUNDS:-10}"
	[ "$mode" = memory ] && out="${OUT:-test/bench/results-memory.md}"
	[ "$mode" = procmetrics ] && out="${OUT:-test/bench/results-procmetrics.md}"
	[ "$mode" = plain ] && out="${OUT:-test/bench/results-plain.md}"
	[ "$mode" = syscall ] && out="${OUT:-test/bench/results-syscall.md}"
	"$WORK/benchtool" \
		-agent "$AGENT" \
		-work "$WORK" \
		-callloop "$WORK/callloop" \
		-goapp "$WORK/goapp" \
		-helm "$HELM" \
		-copies "${COPIES:-20}" \
		-out "$out" \
		-mode "$mode" \
		-new-conns="$([ "${NEW_CONNS:-0}" = 1 ] && echo true || echo false)" \
		-rounds "$rounds" \
		-duration "$duration" \
		-warmup "$warmup" \
		-workers "${WORKERS:-1}" \
		-threads "${THREADS:-2}" \
		-connections "${CONNECTIONS:-50}" \
		-commit "$COMMIT" &
	DRIVER_PID=$!
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
	log "mode $m"
	rc=0
	run_driver "$m" || rc=$?
	[ "$rc" -eq 0 ] || exit "$rc"
done
