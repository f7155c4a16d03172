#!/bin/bash
# What gohttp's uprobe programs cost per run inside the Go hello HTTPS server
# (test/e2e/testdata/goapp, -tags nethttponly, as `make bench MODE=go` runs
# it), and what the raw syscall pair costs per run (system-wide: wrk's
# syscalls count too), for two or more agent binaries on the same load, in alternating rounds
# (ABBA...): the kernel's own BPF run-time statistics (run_cnt, run_time_ns
# with BPF_STATS enabled through kernel.bpf_stats_enabled, restored after)
# of each agent's programs (their ids from the agent's /proc/PID/fdinfo, so
# other agents on the machine do not count), divided by the runs and by
# wrk's requests. Statistics are enabled by a BPF_ENABLE_STATS descriptor
# held open for the run (reference-counted by the kernel: someone else
# writing kernel.bpf_stats_enabled=0 meanwhile does not stop them), else by
# the sysctl. A round whose runs per request fall below 1 had its counting
# stopped, or probes missing, for part of it. Per-run time does not depend on how busy the machine is
# the way throughput does, which makes it an A/B measure for a shared
# machine. Run under the bench lock:
#
#   flock /tmp/lead/bench.lock test/bench/gohttp-programs.sh [-r ROUNDS] [-d SECONDS] AGENT...
#
# Prints one line per round and program, then the median ns/run of each
# program per agent.
set -eu
. "$(dirname "$0")/abba.sh"
abba_args d dur 5 "[-d SECONDS] AGENT..." "$@"
abba_begin
(cd "$repo/test/e2e/testdata/goapp" && GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
	go build -tags nethttponly -o "$work/goapp" .)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
	-keyout "$work/k.pem" -out "$work/c.pem" 2>/dev/null
# snap AGENT_PID: {name: [run_cnt, run_time_ns]} of that agent's uprobe
# programs and of its raw syscall pair (sys_enter*, sys_exit*).
snap() {
	python3 -c 'import json, sys; d = json.loads(sys.argv[1]); d.update(json.loads(sys.argv[2])); print(json.dumps(d))' \
		"$(bpfstats_snap "$1" kprobe)" "$(bpfstats_snap "$1" raw_tracepoint,tracing sys_)"
}
n=${#agents[@]}
results="$work/results"
for ((r = 0; r < rounds * n; r++)); do
	agent=$(abba_agent $r)
	port=$((20000 + RANDOM % 20000))
	abba_goapp $port
	"$agent" run --console=off --include-exe "$work/goapp" --metrics-addr 127.0.0.1:$((port + 1)) >"$work/agent.log" 2>&1 &
	ag=$!
	for _ in $(seq 100); do # until gohttp's server probe is attached
		[ "$(snap $ag)" != "{}" ] && grep -q go_serve_http <<<"$(snap $ag)" && break
		sleep 0.2
	done
	wrk -t2 -c50 -d1s "https://127.0.0.1:$port/hello" >/dev/null # warm-up
	a=$(snap $ag)
	reqs=$(wrk -t2 -c50 -d"${dur}s" "https://127.0.0.1:$port/hello" | awk '/requests in/{print $1}')
	b=$(snap $ag)
	python3 -c '
import json, sys
a, b, r, name = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for k in sorted(b):
    c = b[k][0] - a.get(k, [0, 0])[0]
    t = b[k][1] - a.get(k, [0, 0])[1]
    if c:
        print(f"{name}\t{k}\t{c / r:.3f}\t{t / c:.0f}")' "$a" "$b" "$reqs" "$agent" | tee -a "$results" |
		awk -v r=$((r + 1)) -v q="$reqs" '{printf "round %d  %-40s %-20s runs/req %s  ns/run %s  (%s requests)\n", r, $1, $2, $3, $4, q}'
	kill $ag; wait $ag 2>/dev/null || true
	kill $srv; wait $srv 2>/dev/null || true
	ag="" srv=""
done
echo "median ns/run per program and agent (load average: $(cut -d' ' -f1-3 /proc/loadavg)):"
python3 -c '
import sys, statistics, collections
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    agent, prog, runs, ns = line.split("\t")
    d[(agent, prog)].append(int(ns))
for (agent, prog), v in sorted(d.items()):
    print(f"  {agent}  {prog}: {statistics.median(v):.0f} ns/run (rounds {min(v)}-{max(v)})")' "$results"
