#!/usr/bin/env bash
# test/bench/redis-floor.sh — how much of Redis's throughput the syscall
# tracepoints take before the agent does any work: redis-benchmark -P 1
# against one redis-server with nothing attached (baseline), with empty
# tp_btf programs on raw_syscalls:sys_enter and sys_exit (floor: `benchtool
# floorhold`, the agent's dispatchers' type and places, doing nothing), and
# with the agent (tracing redis-server, exporting to a counting receiver), in
# rotations A B C C B A ... Prints one line per round and a summary: each
# configuration's median requests/s and its ratio to the baseline, with the
# half-range of the per-rotation ratios.
#
# usage (root, from the repository): test/bench/redis-floor.sh [ROTATIONS] [REQUESTS]
set -euo pipefail
rotations=${1:-4} requests=${2:-200000}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
[ "$(id -u)" -eq 0 ] || { echo "redis-floor: must run as root" >&2; exit 1; }
for t in redis-server redis-benchmark redis-cli curl; do
	command -v $t >/dev/null || { echo "redis-floor: $t not found (scripts/deps.sh)" >&2; exit 1; }
done
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/periscope" ./cmd/periscope
go build -o "$work/benchtool" ./test/bench/benchtool

port=16379
server=$(readlink -f "$(command -v redis-server)")
redis-server --port $port --save '' --appendonly no --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
until redis-cli -p $port ping >/dev/null 2>&1; do sleep 0.1; done

"$work/benchtool" receive >"$work/recv.out" 2>&1 &
pids+=($!)
until grep -q grpc= "$work/recv.out"; do sleep 0.1; done
grpc=$(sed -n 's/^grpc=\([^ ]*\) .*/\1/p' "$work/recv.out")

# rps runs redis-benchmark once and prints its requests/s over SET and GET.
rps() {
	redis-benchmark -p $port -t get,set -P 1 -c 50 -n "$1" -q --csv |
		awk -F'"' 'NR > 1 { s += $4; n++ } END { printf "%.0f\n", s / n }'
}

holder=""
attach() {
	case $1 in
	baseline) holder="" ;;
	floor)
		"$work/benchtool" floorhold >"$work/hold.out" 2>&1 &
		holder=$!
		until grep -q attached "$work/hold.out"; do
			kill -0 $holder 2>/dev/null || { cat "$work/hold.out" >&2; exit 1; }
			sleep 0.1
		done
		;;
	agent)
		OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://$grpc "$work/periscope" run --console=off \
			--include-exe "$server" --metrics-addr 127.0.0.1:19464 >"$work/agent.log" 2>&1 &
		holder=$!
		until curl -sf http://127.0.0.1:19464/status | grep -q '"ready": *true'; do
			kill -0 $holder 2>/dev/null || { tail "$work/agent.log" >&2; exit 1; }
			sleep 0.2
		done
		;;
	esac
	[ -z "$holder" ] || rps 20000 >/dev/null # warm-up with the programs attached
}
# spans prints the agent's server spans built so far (the agent round must
# trace what it runs against).
spans() {
	curl -sf http://127.0.0.1:19464/metrics |
		awk '/^periscope_spans_total/ && /kind="server"/ { s += $NF } END { printf "%.0f\n", s }'
}
detach() {
	[ "$1" != agent ] || echo "  the agent built $(spans) server spans"
	[ -z "$holder" ] || { kill "$holder"; wait "$holder" 2>/dev/null || true; }
	holder=""
}

configs=(baseline floor agent)
declare -A all
for ((r = 1; r <= rotations; r++)); do
	order=("${configs[@]}")
	((r % 2)) || order=(agent floor baseline)
	for c in "${order[@]}"; do
		attach "$c"
		v=$(rps "$requests")
		detach "$c"
		all[$c]+="$v "
		echo "rotation $r $c $v requests/s"
	done
done
echo
echo "commit $(git rev-parse --short HEAD), $(date -u '+%F %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
for c in "${configs[@]}"; do
	echo "$c ${all[$c]} | ${all[baseline]}"
done | awk '
	{ n = 0; for (i = 2; $i != "|"; i++) v[++n] = $i; for (j = 1; j <= n; j++) b[j] = $(i + j)
	  asort(v, s); med = (n % 2) ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2
	  lo = 1e9; hi = 0; for (j = 1; j <= n; j++) { q = v[j] / b[j]; if (q < lo) lo = q; if (q > hi) hi = q }
	  printf "%-8s median %7.0f requests/s  ratio to baseline per rotation %.1f-%.1f%% (mid %.1f +- %.1f)\n", $1, med, 100 * lo, 100 * hi, 50 * (lo + hi), 50 * (hi - lo) }'
