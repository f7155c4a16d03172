#!/bin/bash
# Uprobe program runs per request of a Go HTTPS server whose only crypto/tls
# connections are net/http's (test/e2e/testdata/gohttps), under wrk, for each
# agent binary given: the runs of the agent's own programs (their ids from
# the agent's /proc/PID/fdinfo, so other agents on the machine do not count)
# from `bpftool prog show` with kernel.bpf_stats_enabled=1 (restored after).
# Run under the bench lock: flock /tmp/lead/bench.lock test/bench/nethttp-tls-hits.sh AGENT...
# Counts, not timings: throughput is not measured here.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$repo/test/e2e/testdata/gohttps" && GOWORK=off CGO_ENABLED=0 go build -o "$work/gohttps" .)
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$work/k.pem" -out "$work/c.pem" -days 1 2>/dev/null
. "$repo/test/bench/bpfstats.sh"
snap() { # snap AGENT_PID: run_cnt by program name of that agent's uprobe programs
	bpfstats_snap "$1" kprobe | python3 -c 'import json, sys; print(json.dumps({k: v[0] for k, v in json.load(sys.stdin).items()}))'
}
for agent in "$@"; do
	port=$((20000 + RANDOM % 20000))
	"$work/gohttps" server 127.0.0.1:$port "$work/c.pem" "$work/k.pem" >"$work/srv.log" 2>&1 &
	srv=$!
	"$agent" run --console=off --include-exe gohttps --metrics-addr 127.0.0.1:$((port + 1)) >"$work/agent.log" 2>&1 &
	ag=$!
	sleep 6
	curl -sk "https://127.0.0.1:$port/item/0" >/dev/null
	sleep 1
	old=$(sysctl -n kernel.bpf_stats_enabled)
	sysctl -qw kernel.bpf_stats_enabled=1
	a=$(snap $ag)
	reqs=$(wrk -t1 -c4 -d4s "https://127.0.0.1:$port/item/1" | awk '/requests in/{print $1}')
	b=$(snap $ag)
	sysctl -qw kernel.bpf_stats_enabled="$old"
	echo "agent $agent: $reqs requests (wrk -t1 -c4 -d4s, HTTP/1.1 keep-alive)"
	python3 -c '
import json, sys
a, b, r = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
tot = 0
for k in sorted(b):
    d = b[k] - a.get(k, 0)
    tot += d
    if d:
        print(f"  {k}: {d / r:.3f} per request")
print(f"  all: {tot / r:.3f} uprobe program runs per request")' "$a" "$b" "$reqs"
	grep -o 'msg="crypto/tls left to gohttp[^"]*"' "$work/agent.log" | head -1 || true
	kill $ag; wait $ag 2>/dev/null || true
	kill $srv; wait $srv 2>/dev/null || true
done
