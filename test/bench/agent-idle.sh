#!/bin/bash
# What an idle agent costs: its wake-ups per second (the voluntary context
# switches of all its threads: each is a thread going to sleep, in the
# network poller or a futex, after the Go scheduler found nothing to run)
# and its CPU (utime+stime, clock ticks of 10 ms), over SECONDS once it is
# ready, for two or more agent binaries in alternating rounds (ABBA...).
# Nothing is traced (--include-exe names a program that does not run), so
# what is counted is the agent's own periodic work: its ring readers'
# timers, the correlator's ticks, the collectors' housekeeping. Context
# switches are counted, not timed, so they depend far less on how busy the
# machine is than CPU does. Root (loads the agent's programs):
#
#   test/bench/agent-idle.sh [-r ROUNDS] [-d SECONDS] AGENT...
set -eu
rounds=2 dur=30
while getopts r:d: opt; do
	case $opt in
	r) rounds=$OPTARG ;;
	d) dur=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-r ROUNDS] [-d SECONDS] AGENT..." >&2; exit 2; }
work=$(mktemp -d)
ag=""
cleanup() {
	[ -n "$ag" ] && kill -INT "$ag" 2>/dev/null && wait "$ag" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
port=$((20000 + RANDOM % 10000))
switches() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches/ { s += $2 } END { print s }'; }
ticks() { awk '{ print $14 + $15 }' /proc/"$1"/stat; }

round() { # round N AGENT
	"$2" run --console=off --include-exe "$work/none" --metrics-addr "127.0.0.1:$port" >"$work/agent.log" 2>&1 &
	ag=$!
	for _ in $(seq 120); do
		curl -sf "http://127.0.0.1:$port/status" >/dev/null 2>&1 && break
		kill -0 "$ag" 2>/dev/null || { cat "$work/agent.log" >&2; exit 1; }
		sleep 0.5
	done
	curl -sf "http://127.0.0.1:$port/status" >/dev/null || { echo "agent $2 not ready" >&2; exit 1; }
	sleep 3
	local s0 c0 s1 c1
	s0=$(switches "$ag") c0=$(ticks "$ag")
	sleep "$dur"
	s1=$(switches "$ag") c1=$(ticks "$ag")
	kill -INT "$ag"
	wait "$ag" 2>/dev/null || true
	ag=""
	printf 'round %d %s: %d wake-ups/s, %.2f%% of a CPU, load %s\n' "$1" "$2" $(((s1 - s0) / dur)) \
		"$(echo "($c1 - $c0) / $dur" | bc -l)" "$(cut -d' ' -f1 /proc/loadavg)"
}

. "$(dirname "$0")/abba.sh"
abba_each "$rounds" round "$@"
