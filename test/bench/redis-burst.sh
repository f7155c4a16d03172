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
	abba_redis $port
	abba_watch "$agent" "$(readlink -f /proc/$srv/exe)" $((port + 1))
	before=$(abba_redis_commands $port)
	redis-benchmark -p $port -t get,set -P "$depth" -c 50 -n "$n" -q >"$work/bench.out"
	after=$(abba_redis_commands $port)
	sleep 3
	local m=$((port + 1))
	printf 'round %d %s: %s commands, %s server spans, ring drops %s, records read %s; %s\n' "$r" "$agent" \
		$((after - before)) "$(metric $m periscope_spans_total 'kind="server"')" \
		"$(metric $m periscope_events_dropped_total 'collector="sockets"')" \
		"$(metric $m periscope_events_read_total 'collector="sockets"')" "$(tr '\r' '\n' <"$work/bench.out" | grep 'requests per second' | tr '\n' ' ')"
	abba_unwatch
	abba_stop_srv
}

abba_each "$rounds" round "${agents[@]}"
