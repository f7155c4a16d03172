#!/bin/bash
# The agent's CPU per span at a FIXED request rate, for two or more agents in
# alternating rounds (ABBA...): the Go hello-world HTTPS server
# (test/e2e/testdata/goapp, -tags nethttponly, as MODE=go builds it) under
# `benchtool pace` (RATE requests/s over CONNS keep-alive connections), the
# agent selecting only goapp and exporting over OTLP/gRPC to `benchtool
# receive` in a process of its own. At a fixed rate the agent's per-second
# costs (timers, ticks, scavenger) weigh the same in every round, so builds
# compare even when the machine's load lets wrk reach different rates.
#
#   test/bench/fixed-rate.sh [-r ROUNDS] [-R RATE] [-c CONNS] [-d SECONDS] AGENT...
#
# AGENT is a periscope binary, optionally preceded by environment
# assignments in one word: "GOMAXPROCS=1 /tmp/new". Per round: the agent
# starts, is ready, 3 s of load unmeasured, then SECONDS of load measured plus
# 2 s for the last spans; printed: spans received (server), requests sent,
# the agent's CPU (utime+stime over the window, 10 ms ticks) per span and in
# % of one core, its voluntary context switches per second, its VmHWM.
# LOGS=DIR keeps each round's agent log there (agent-N.log: with
# GODEBUG=gctrace=1,scavtrace=1 in AGENT, the collector's and scavenger's
# lines). Root (the agent loads its programs).
set -eu
rounds=2 rate=4000 conns=16 dur=20
while getopts r:R:c:d: opt; do
	case $opt in
	r) rounds=$OPTARG ;;
	R) rate=$OPTARG ;;
	c) conns=$OPTARG ;;
	d) dur=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-r ROUNDS] [-R RATE] [-c CONNS] [-d SECONDS] AGENT..." >&2; exit 2; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
ag="" srv="" rcv=""
cleanup() { # each step whatever the one before returned (set -e)
	[ -z "$ag" ] || { kill -INT "$ag"; wait "$ag"; } 2>/dev/null || true
	[ -z "$srv" ] || { kill "$srv"; wait "$srv"; } 2>/dev/null || true
	[ -z "$rcv" ] || { kill "$rcv"; wait "$rcv"; } 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
gobuild() { (cd "$1" && GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build "${@:3}" -o "$2" .); }
gobuild "$repo/test/e2e/testdata/goapp" "$work/goapp" -tags nethttponly
gobuild "$repo/test/bench/benchtool" "$work/benchtool"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
	-keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
port=$((20000 + RANDOM % 10000)) mport=$((30000 + RANDOM % 10000))
"$work/goapp" server "127.0.0.1:$port" -tls-cert "$work/cert.pem" -tls-key "$work/key.pem" >"$work/goapp.log" 2>&1 &
srv=$!
"$work/benchtool" receive >"$work/recv.out" 2>"$work/recv.log" &
rcv=$!
for _ in $(seq 50); do grep -q http= "$work/recv.out" 2>/dev/null && break; sleep 0.2; done
grpc=$(sed -n 's/.*grpc=\([^ ]*\).*/\1/p' "$work/recv.out") http=$(sed -n 's/.*http=\([^ ]*\).*/\1/p' "$work/recv.out")
[ -n "$http" ] || { echo "receiver did not start" >&2; exit 1; }
url="https://127.0.0.1:$port/hello"
for _ in $(seq 50); do curl -skf "$url" >/dev/null && break; sleep 0.2; done
served() { curl -sf "http://$http/counts" | sed -n 's/.*"server_spans":\([0-9]*\).*/\1/p'; }
ticks() { awk '{ print $14 + $15 }' /proc/"$1"/stat; }
switches() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches/ { s += $2 } END { print s }'; }
hwm() { awk '/^VmHWM/ { print $2 }' /proc/"$1"/status; }
echo "# fixed-rate: $rate req/s over $conns connections, ${dur}s per round, goapp HTTPS; load $(cut -d' ' -f1-3 /proc/loadavg)"

round() { # round N AGENT
	# shellcheck disable=SC2086 # AGENT's words: assignments, then the binary
	env OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://$grpc" OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc $2 \
		run --console=off --include-exe "$work/goapp" --metrics-addr "127.0.0.1:$mport" >"$work/agent.log" 2>&1 &
	ag=$!
	for _ in $(seq 120); do
		curl -sf "http://127.0.0.1:$mport/status" | grep -q '"ready":true' && break
		kill -0 "$ag" 2>/dev/null || { cat "$work/agent.log" >&2; exit 1; }
		sleep 0.5
	done
	"$work/benchtool" pace -url "$url" -rate "$rate" -conns "$conns" -duration 3s >/dev/null
	sleep 1
	local s0 c0 w0 s1 c1 w1 out
	s0=$(served) c0=$(ticks "$ag") w0=$(switches "$ag")
	out=$("$work/benchtool" pace -url "$url" -rate "$rate" -conns "$conns" -duration "${dur}s")
	sleep 2
	s1=$(served) c1=$(ticks "$ag") w1=$(switches "$ag")
	local h
	h=$(hwm "$ag")
	kill -INT "$ag"
	wait "$ag" 2>/dev/null || true
	ag=""
	[ -z "${LOGS:-}" ] || cp "$work/agent.log" "$LOGS/agent-$1.log"
	local spans=$((s1 - s0))
	printf 'round %d [%s]: %d spans, %s, %.2f us/span, %.1f%% of a core, %d wake-ups/s, VmHWM %.1f MiB, load %s\n' \
		"$1" "$2" "$spans" "$out" "$(echo "($c1 - $c0) * 10000 / $spans" | bc -l)" \
		"$(echo "($c1 - $c0) / ($dur + 2)" | bc -l)" $(((w1 - w0) / (dur + 2))) "$(echo "$h / 1024" | bc -l)" \
		"$(cut -d' ' -f1 /proc/loadavg)"
}

. "$(dirname "$0")/abba.sh"
abba_each "$rounds" round "$@"
