#!/bin/bash
# What the agent's syscall programs (sys_enter, sys_exit) cost per run, by
# whose syscall it is, for two or more agent binaries in alternating rounds
# (ABBA...), from the kernel's BPF run-time statistics (bpfstats.sh). Each
# round starts the agent tracing test/bench/pingpong.c's server only
# (--include-exe) and runs, one after the other:
#
#   pipe       dd copying /dev/zero to /dev/null in 64-byte calls: an
#              untraced process's reads and writes on files
#   tcp-other  pingpong over loopback TCP, server and client both untraced
#              (an untraced copy of the server): the load generator's case
#   tcp-traced pingpong with the traced server: its reads and writes are
#              copied; the untraced client's half is taken out with
#              tcp-other's figure per run (both ends make the same calls)
#
# and prints ns per run of each program for each. The statistics are
# system-wide: anything else running meanwhile counts too, so run it under
# the bench lock on a quiet machine:
#
#   flock /tmp/lead/bench.lock test/bench/syscall-cost.sh [-r ROUNDS] [-n N] AGENT...
set -eu
. "$(dirname "$0")/abba.sh"
abba_args n n 200000 "[-n N] AGENT..." "$@"
abba_begin
cc -O2 -Wall -o "$work/pp-server" "$repo/test/bench/pingpong.c"
cp "$work/pp-server" "$work/pp-client"
cp "$work/pp-server" "$work/pp-other"
results="$work/results"

snap() { # snap AGENT_PID: "enter_cnt enter_ns exit_cnt exit_ns"
	bpfstats_snap "$1" tracing,raw_tracepoint sys_e | python3 -c '
import json, sys
d = json.load(sys.stdin)
e = [v for k, v in d.items() if k.startswith("sys_enter")]
x = [v for k, v in d.items() if k.startswith("sys_exit")]
print(sum(v[0] for v in e), sum(v[1] for v in e), sum(v[0] for v in x), sum(v[1] for v in x))'
}

# measure AGENT WORKLOAD CMD...: runs CMD, appends "AGENT WORKLOAD" and
# the four counters' differences to results.
measure() {
	local agent=$1 load=$2 before after
	shift 2
	before=$(snap "$ag")
	"$@"
	after=$(snap "$ag")
	echo "$agent $load $(awk -v a="$before" -v b="$after" 'BEGIN{split(a, x); split(b, y); print y[1]-x[1], y[2]-x[2], y[3]-x[3], y[4]-x[4]}')" >>"$results"
}

pingpong() { # pingpong SERVER_BINARY PORT
	"$1" server "$2" "$n" >/dev/null &
	srv=$!
	sleep 0.2
	"$work/pp-client" client "$2" "$n"
	wait $srv
	srv=""
}

round() {
	local r=$1 agent=$2 port=$((20000 + RANDOM % 20000))
	abba_watch "$agent" "$work/pp-server" $((port + 1))
	measure "$agent" pipe dd if=/dev/zero of=/dev/null bs=64 count=$((n * 10)) status=none
	measure "$agent" tcp-other pingpong "$work/pp-other" $port
	measure "$agent" tcp-traced pingpong "$work/pp-server" $((port + 2))
	abba_unwatch
	echo "round $r done: $agent" >&2
}

abba_each "$rounds" round "${agents[@]}"
echo "raw (agent workload enter_runs enter_ns exit_runs exit_ns):"
cat "$results"
echo "medians per agent, ns per run (load average: $(cut -d' ' -f1-3 /proc/loadavg)):"
python3 -c '
import sys, statistics, collections
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    agent, load, ec, et, xc, xt = line.split()
    d[(agent, load)].append((int(ec), int(et), int(xc), int(xt)))
agents = list(dict.fromkeys(k[0] for k in d))
def per_run(rows, i):
    return [r[i + 1] / r[i] for r in rows if r[i]]
for a in agents:
    other = d[(a, "tcp-other")]
    for load in ("pipe", "tcp-other", "tcp-traced"):
        rows = d[(a, load)]
        parts = []
        for name, i in (("enter", 0), ("exit", 2)):
            v = per_run(rows, i)
            if load == "tcp-traced":
                # the untraced client made half the runs, at the tcp-other cost
                v = [(r[i + 1] - r[i] / 2 * o[i + 1] / o[i]) / (r[i] / 2) for r, o in zip(rows, other) if r[i] and o[i]]
                name += " (traced end)"
            parts.append(f"{name} {statistics.median(v):.0f} (rounds {min(v):.0f}-{max(v):.0f})")
        print(f"  {a} {load}: " + ", ".join(parts))
' "$results"
