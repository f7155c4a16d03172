#!/bin/bash
# What the sockets collector costs a plain-HTTP server per request/response
# exchange, for two or more agent binaries (or "none": no agent) on the
# same load, in alternating rounds (ABBA...): test/bench/pingpong.c's
# server, traced (--include-exe), answers N requests of its client (an
# untraced copy) over one loopback connection, one read and one write each,
# and reports its own CPU time (user+system, getrusage) per exchange. The
# agent's programs run inside the server's syscalls, so their cost lands
# there; unlike system-wide BPF statistics (every process's syscalls run the
# raw tracepoint programs), the figure is the traced process's alone, and
# unlike throughput it depends little on how busy the machine is. Run under
# the bench lock:
#
#   flock /tmp/lead/bench.lock test/bench/plain-programs.sh [-r ROUNDS] [-n N] AGENT|none...
#
# Prints one line per round, then the median per agent.
set -eu
rounds=2 n=200000
while getopts r:n: opt; do
	case $opt in
	r) rounds=$OPTARG ;;
	n) n=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-r ROUNDS] [-n N] AGENT|none..." >&2; exit 2; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
srv="" ag=""
cleanup() {
	[ -n "$ag" ] && kill "$ag" 2>/dev/null && wait "$ag" 2>/dev/null
	[ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
cc -O2 -Wall -o "$work/pp-server" "$repo/test/bench/pingpong.c"
cp "$work/pp-server" "$work/pp-client"
k=$#
results="$work/results"
for ((r = 0; r < rounds * k; r++)); do
	# ABBA...: even passes in order, odd passes reversed.
	pass=$((r / k)) i=$((r % k))
	((pass % 2)) && i=$((k - 1 - i))
	agent=$(eval echo "\${$((i + 1))}")
	port=$((20000 + RANDOM % 20000))
	"$work/pp-server" server $port "$n" >"$work/srv.out" 2>&1 &
	srv=$!
	if [ "$agent" != none ]; then
		"$agent" run --console=off --include-exe "$work/pp-server" --metrics-addr 127.0.0.1:$((port + 1)) >"$work/agent.log" 2>&1 &
		ag=$!
		for _ in $(seq 100); do # until it serves /metrics, then a moment for the collectors
			curl -sf -o /dev/null "http://127.0.0.1:$((port + 1))/metrics" && break
			sleep 0.2
		done
		sleep 2
	fi
	sleep 0.2
	"$work/pp-client" client $port "$n"
	wait $srv
	srv=""
	read -r _ ns <"$work/srv.out"
	spans=-
	if [ -n "$ag" ]; then # the server spans the agent built: N when it traced them all
		sleep 1
		spans=$(curl -sf "http://127.0.0.1:$((port + 1))/metrics" |
			awk '/^periscope_spans_total\{.*kind="server"/{s += $NF} END{print s + 0}')
	fi
	printf '%s\t%s\n' "$agent" "$ns" >>"$results"
	printf 'round %d  %-40s %s ns CPU per exchange, %s server spans\n' $((r + 1)) "$agent" "$ns" "$spans"
	if [ -n "$ag" ]; then
		kill $ag; wait $ag 2>/dev/null || true
		ag=""
	fi
done
echo "median ns CPU per exchange per agent (load average: $(cut -d' ' -f1-3 /proc/loadavg)):"
python3 -c '
import sys, statistics, collections
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    agent, ns = line.split("\t")
    d[agent].append(int(ns))
for agent, v in d.items():
    print(f"  {agent}: {statistics.median(v):.0f} ns (rounds {min(v)}-{max(v)})")' "$results"
