#!/bin/bash
# What the Go hello HTTPS server (test/e2e/testdata/goapp, -tags
# nethttponly, as `make bench MODE=go` runs it) pays in CPU per request,
# split by where it goes (benchtool categories: the kernel call chains of
# test/bench/benchtool/profiles.go), with no agent ("none") and with each
# AGENT, in alternating rounds (ABBA...). Each round starts a fresh server
# and agent (exporting over OTLP/gRPC to a counting receiver, as in
# `make bench`), warms up for 2 s, then runs wrk -t2 -c50 for SECONDS
# under `perf record -g -e cpu-clock -F 999 -p SERVER`; the server's CPU is
# utime+stime from /proc, divided by wrk's requests, and each category is
# its share of the samples times that. Run under the bench lock:
#
#   flock /tmp/lead/bench.lock test/bench/app-kernel.sh [-r ROUNDS] [-d SECONDS] none AGENT...
#
# Prints one line per round and category, then the median µs per request
# of each category per agent with the rounds' range.
set -eu
. "$(dirname "$0")/abba.sh"
abba_args d dur 8 "[-d SECONDS] none|AGENT..." "$@"
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
srv="" ag="" recv=""
cleanup() {
	[ -n "$ag" ] && kill "$ag" 2>/dev/null && wait "$ag" 2>/dev/null
	[ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
	[ -n "$recv" ] && kill "$recv" 2>/dev/null && wait "$recv" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
(cd "$repo/test/e2e/testdata/goapp" && GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
	go build -tags nethttponly -o "$work/goapp" .)
(cd "$repo/test/bench/benchtool" && GOFLAGS=-buildvcs=false go build -o "$work/benchtool" .)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
	-keyout "$work/k.pem" -out "$work/c.pem" 2>/dev/null
"$work/benchtool" receive >"$work/recv.out" 2>"$work/recv.log" &
recv=$!
for _ in $(seq 50); do grep -q grpc= "$work/recv.out" 2>/dev/null && break; sleep 0.2; done
grpc=$(sed -n 's/.*grpc=\([^ ]*\).*/\1/p' "$work/recv.out")
[ -n "$grpc" ] || { echo "the OTLP receiver did not start: $(cat "$work/recv.log")" >&2; exit 1; }
ticks=$(getconf CLK_TCK)
n=${#agents[@]}
results="$work/results"
for ((r = 0; r < rounds * n; r++)); do
	agent=$(abba_agent $r)
	port=$((20000 + RANDOM % 20000))
	abba_goapp $port
	if [ "$agent" != none ]; then
		OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://$grpc OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc \
			"$agent" run --console=off --include-exe "$work/goapp" --metrics-addr 127.0.0.1:$((port + 1)) >"$work/agent.log" 2>&1 &
		ag=$!
		ok=""
		for _ in $(seq 100); do # until a request makes a span
			curl -skf -o /dev/null "https://127.0.0.1:$port/hello" || true
			curl -sf "http://127.0.0.1:$((port + 1))/metrics" 2>/dev/null | grep -q '^periscope_spans_total.* [1-9]' && ok=1 && break
			sleep 0.3
		done
		[ -n "$ok" ] || { echo "round $((r + 1)): $agent made no span: $(tail -5 "$work/agent.log")" >&2; exit 1; }
	fi
	wrk -t2 -c50 -d2s "https://127.0.0.1:$port/hello" >/dev/null # warm-up
	t0=$(awk '{print $14 + $15}' /proc/$srv/stat)
	perf record -q -g -e cpu-clock -F 999 -p $srv -o "$work/round.data" -- sleep "$dur" 2>"$work/perf.log" &
	pp=$!
	reqs=$(wrk -t2 -c50 -d"${dur}s" "https://127.0.0.1:$port/hello" | awk '/requests in/{print $1}')
	t1=$(awk '{print $14 + $15}' /proc/$srv/stat)
	wait $pp
	us=$(python3 -c "print(($t1 - $t0) / $ticks * 1e6 / $reqs)")
	"$work/benchtool" categories "$work/round.data" | awk -F'\t' -v a="$agent" -v us="$us" \
		'{printf "%s\t%s\t%.3f\n", a, $3, $2 * us} END {printf "%s\ttotal (utime+stime)\t%.3f\n", a, us}' |
		tee -a "$results" | awk -F'\t' -v r=$((r + 1)) -v q="$reqs" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
		'{printf "round %d  %-28s %7.2f µs/req  %s  (%s requests, load %s)\n", r, $1, $3, $2, q, l}'
	if [ -n "$ag" ]; then kill $ag; wait $ag 2>/dev/null || true; fi
	kill $srv; wait $srv 2>/dev/null || true
	ag="" srv=""
done
echo "median µs per request by category and agent (rounds' range; load average: $(cut -d' ' -f1-3 /proc/loadavg)):"
python3 -c '
import sys, statistics, collections
d = collections.defaultdict(list)
rounds = collections.Counter()
agents = []
for line in open(sys.argv[1]):
    agent, cat, us = line.rstrip("\n").split("\t")
    if agent not in agents: agents.append(agent)
    d[(agent, cat)].append(float(us))
    if cat.startswith("total"): rounds[agent] += 1
cats = sorted({c for _, c in d}, key=lambda c: (c.startswith("total"), -statistics.median(d.get((agents[-1], c), [0]))))
for c in cats:
    cols = []
    for a in agents:
        v = d.get((a, c), []) + [0.0] * (rounds[a] - len(d.get((a, c), [])))
        cols.append(f"{statistics.median(v):6.2f} ({min(v):.2f}-{max(v):.2f})")
    print("  " + "  ".join(cols) + "  " + c)
print("  columns: " + "  ".join(agents))' "$results"
