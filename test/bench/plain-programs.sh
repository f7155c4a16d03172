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
# unlike throughput it depends little on how busy the machine is. Also the
# kernel's BPF run-time statistics of the agent's syscall programs (their ids
# from the agent's /proc/PID/fdinfo; statistics on through a
# BPF_ENABLE_STATS descriptor held for the run): runs and time per exchange
# (system-wide: the client's syscalls, and any other process's, run them
# too; 8 runs per exchange when nothing else makes syscalls) and ns per run.
# Run under the bench lock:
#
#   flock /tmp/lead/bench.lock test/bench/plain-programs.sh [-r ROUNDS] [-n N] AGENT|none...
#
# Prints one line per round, then the median per agent.
set -eu
. "$(dirname "$0")/abba.sh"
abba_args n n 200000 "[-n N] AGENT|none..." "$@"
abba_begin
snap() { # snap AGENT_PID: "run_cnt run_time_ns" of that agent's sys_enter/sys_exit programs
	bpfstats_snap "$1" tracing,raw_tracepoint sys_e |
		python3 -c 'import json, sys; v = json.load(sys.stdin).values(); print(sum(x[0] for x in v), sum(x[1] for x in v))'
}
cc -O2 -Wall -o "$work/pp-server" "$repo/test/bench/pingpong.c"
cp "$work/pp-server" "$work/pp-client"
k=${#agents[@]}
results="$work/results"
for ((r = 0; r < rounds * k; r++)); do
	agent=$(abba_agent $r)
	port=$((20000 + RANDOM % 20000))
	"$work/pp-server" server $port "$n" >"$work/srv.out" 2>&1 &
	srv=$!
	if [ "$agent" != none ]; then
		abba_watch "$agent" "$work/pp-server" $((port + 1))
	fi
	sleep 0.2
	before="0 0" after="0 0"
	[ -n "$ag" ] && before=$(snap $ag)
	"$work/pp-client" client $port "$n"
	wait $srv
	srv=""
	read -r _ ns <"$work/srv.out"
	spans=- progs="-"
	if [ -n "$ag" ]; then # the server spans the agent built: N when it traced them all
		after=$(snap $ag)
		progs=$(awk -v a="$before" -v b="$after" -v n="$n" 'BEGIN{split(a, x); split(b, y); c = y[1] - x[1]; t = y[2] - x[2];
			printf "%.2f runs, %.0f ns in the programs per exchange, %.0f ns/run", c / n, t / n, c ? t / c : 0}')
		sleep 1
		spans=$(curl -sf "http://127.0.0.1:$((port + 1))/metrics" |
			awk '/^periscope_spans_total\{.*kind="server"/{s += $NF} END{print s + 0}')
	fi
	printf '%s\t%s\t%s\n' "$agent" "$ns" "$(awk -v a="$before" -v b="$after" -v n="$n" 'BEGIN{split(a, x); split(b, y); printf "%.0f", (y[2] - x[2]) / n}')" >>"$results"
	printf 'round %d  %-40s %s ns CPU per exchange, %s; %s server spans\n' $((r + 1)) "$agent" "$ns" "$progs" "$spans"
	[ -n "$ag" ] && abba_unwatch
done
echo "medians per agent (load average: $(cut -d' ' -f1-3 /proc/loadavg)):"
python3 -c '
import sys, statistics, collections
d = collections.defaultdict(lambda: ([], []))
for line in open(sys.argv[1]):
    agent, ns, prog = line.split("\t")
    d[agent][0].append(int(ns))
    d[agent][1].append(int(prog))
for agent, (v, p) in d.items():
    print(f"  {agent}: {statistics.median(v):.0f} ns CPU per exchange (rounds {min(v)}-{max(v)}), "
          f"{statistics.median(p):.0f} ns in the syscall programs per exchange (rounds {min(p)}-{max(p)})")' "$results"
