#!/usr/bin/env bash
# Same-run A/B of the OTLP exporter's CPU per span (BenchmarkExport and
# BenchmarkAppendSpan in exporters/otlp): builds the test binary at two commits and runs them in
# ABBA order, ROUNDS times each, printing one line per run.
#
#   test/bench/export-ab.sh BASE NEW [ROUNDS] [SPANS]
#
# Run it alone on the machine (flock /tmp/lead/bench.lock ... on the shared
# VM). cpu-ns/span is getrusage CPU of the whole process (Export and the
# sender goroutine) per span.
set -euo pipefail
base=$1 new=$2 rounds=${3:-4} spans=${4:-1000000}
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'for c in base new; do git -C "$root" worktree remove --force "$tmp/$c" 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
for c in base new; do
	git -C "$root" worktree add --quiet --detach "$tmp/$c" "${!c}"
	# The benchmark file as of NEW, so that both sides run the same one.
	git -C "$root" show "$new:exporters/otlp/bench_test.go" >"$tmp/$c/exporters/otlp/bench_test.go"
	(cd "$tmp/$c" && go test -c -o "$tmp/$c.test" ./exporters/otlp)
done
echo "# base $(git -C "$root" rev-parse --short "$base"), new $(git -C "$root" rev-parse --short "$new"); load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$rounds"); do
	order="base new"
	if ((r % 2 == 0)); then order="new base"; fi
	for c in $order; do
		GOMAXPROCS=2 "$tmp/$c.test" -test.run '^$' -test.bench BenchmarkExport -test.benchtime "${spans}x" |
			awk -v c="$c" -v r="$r" '/^BenchmarkExport/ {print "round", r, c, $1, $5, "cpu-ns/span", $7, "B/op", $9, "allocs/op"}'
		GOMAXPROCS=2 "$tmp/$c.test" -test.run '^$' -test.bench BenchmarkAppendSpan -test.benchtime "${spans}x" |
			awk -v c="$c" -v r="$r" '/^BenchmarkAppendSpan/ {print "round", r, c, $1, $3, "ns/span", $5, "B/op", $7, "allocs/op"}'
	done
done
echo "# load $(cut -d' ' -f1-3 /proc/loadavg)"
