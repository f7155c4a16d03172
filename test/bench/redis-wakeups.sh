#!/bin/bash
# What a traced redis-server pays for the agent's ring wake-ups, for two or
# more agent binaries in alternating rounds (ABBA...): redis-server on
# loopback (no persistence), traced (--include-exe), under redis-benchmark
# -t get,set -P DEPTH -c 50 (untraced) for -n commands a round, with
# `perf stat -p` counting irq_vectors:irq_work_entry (each forced ring
# wake-up is one, in the context of the process whose syscall sent the
# record) in the server's context. Prints per round and medians per agent:
# commands per second, the server's CPU (utime+stime) per command and
# irq_work interrupts per command. A focused check; make bench MODE=redis
# measures the whole picture.
#
#   flock /tmp/lead/bench.lock test/bench/redis-wakeups.sh [-r ROUNDS] [-n N] AGENT...
#   DEPTH=16 (default)
set -eu
. "$(dirname "$0")/abba.sh"
abba_args n n 2000000 "[-n N] AGENT..." "$@"
abba_begin
depth=${DEPTH:-16}
tck=$(getconf CLK_TCK)
results="$work/results"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

round() {
	local r=$1 agent=$2 port=$((20000 + RANDOM % 20000)) c0 c1 t0 t1 w0 w1 irq
	abba_redis $port
	abba_watch "$agent" "$(readlink -f /proc/$srv/exe)" $((port + 1))
	perf stat -e irq_vectors:irq_work_entry -x, -o "$work/perf.out" -p $srv &
	local pf=$!
	sleep 0.5
	c0=$(abba_redis_commands $port) t0=$(cpu_ticks $srv) w0=$(date +%s.%N)
	redis-benchmark -p $port -t get,set -P "$depth" -c 50 -n "$n" -q >/dev/null
	c1=$(abba_redis_commands $port) t1=$(cpu_ticks $srv) w1=$(date +%s.%N)
	kill -INT $pf
	wait $pf 2>/dev/null || true
	irq=$(awk -F, '/irq_work_entry/{print $1}' "$work/perf.out")
	echo "$agent $((c1 - c0)) $(echo "$w1 - $w0" | bc) $((t1 - t0)) $irq" >>"$results"
	echo "round $r $agent: $((c1 - c0)) commands, $irq irq_work" >&2
	abba_unwatch
	abba_stop_srv
}

abba_each "$rounds" round "${agents[@]}"
echo "raw (agent commands seconds cpu_ticks irq_work), CLK_TCK $tck, depth $depth:"
cat "$results"
echo "medians per agent (load average: $(cut -d' ' -f1-3 /proc/loadavg)):"
python3 -c '
import sys, statistics, collections
tck = int(sys.argv[2])
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    a, c, s, t, i = line.split()
    c, s, t, i = int(c), float(s), int(t), int(i)
    d[a].append((c / s, t / tck / c * 1e6, i / c))
for a, rows in d.items():
    out = []
    for name, k, fmt in (("commands/s", 0, "%.0f"), ("server CPU us/command", 1, "%.3f"), ("irq_work/command", 2, "%.4f")):
        v = [r[k] for r in rows]
        out.append(f"{name} {fmt % statistics.median(v)} (rounds {fmt % min(v)}-{fmt % max(v)})")
    print(f"  {a}: " + ", ".join(out))
' "$results" "$tck"
