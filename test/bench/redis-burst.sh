#!/bin/bash
# Ring records lost at Redis saturation, for two or more agent binaries in
# alternating rounds (ABBA...): redis-server on loopback (no persistence),
# traced (--include-exe), under redis-benchmark -t get,set -P DEPTH -c 50
# (untraced) for -n commands a round; then the agent's own counters from
# /metrics: ring records dropped by the sockets collector (ring full),
# records read, and SERVER spans built against the commands the server
# counted (INFO stats). A focused check of completeness at pipeline depth
# 16 (make bench MODE=redis measures throughput and CPU too):
#
#   flock /tmp/lead/bench.lock test/bench/redis-burst.sh [-r ROUNDS] [-n N] AGENT...
set -eu
. "$(dirname "$0")/abba.sh"
abba_args n n 4000000 "[-n N] AGENT..." "$@"
abba_begin
depth=${DEPTH:-16}

metric() { # metric PORT NAME LABEL_FILTER: the sum of the samples
	curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" -v f="$3" '$1 ~ "^"m"({|$)" && index($1, f) {s += $NF} END{printf "%d", s}'
}

round() {
	local r=$1 agent=$2 port=$((20000 + RANDOM % 20000)) before after
	redis-server --port $port --save '' --appendonly no --daemonize no >"$work/redis.log" 2>&1 &
	srv=$!
	until redis-cli -p $port ping >/dev/null 2>&1; do sleep 0.1; done
	"$agent" run --console=off --include-exe "$(readlink -f /proc/$srv/exe)" --metrics-addr 127.0.0.1:$((port + 1)) >"$work/agent.log" 2>&1 &
	ag=$!
	for _ in $(seq 100); do
		curl -sf -o /dev/null "http://127.0.0.1:$((port + 1))/metrics" && break
		sleep 0.2
	done
	sleep 2
	before=$(redis-cli -p $port info stats | awk -F: '/^total_commands_processed/{print $2+0}')
	redis-benchmark -p $port -t get,set -P "$depth" -c 50 -n "$n" -q >"$work/bench.out"
	after=$(redis-cli -p $port info stats | awk -F: '/^total_commands_processed/{print $2+0}')
	sleep 3
	local m=$((port + 1))
	printf 'round %d %s: %s commands, %s server spans, ring drops %s, records read %s; %s\n' "$r" "$agent" \
		$((after - before)) "$(metric $m periscope_spans_total 'kind="server"')" \
		"$(metric $m periscope_events_dropped_total 'collector="sockets"')" \
		"$(metric $m periscope_events_read_total 'collector="sockets"')" "$(tr '\r' '\n' <"$work/bench.out" | grep 'requests per second' | tr '\n' ' ')"
	kill $ag
	wait $ag 2>/dev/null || true
	ag=""
	kill $srv
	wait $srv 2>/dev/null || true
	srv=""
}

abba_each "$rounds" round "${agents[@]}"
