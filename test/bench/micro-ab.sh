#!/usr/bin/env bash
# test/bench/micro-ab.sh — a Go benchmark of two or more commits in
# alternating rounds (A B B A ..., or A B C C B A ...), for same-run
# comparisons on a busy machine.
#
# usage: micro-ab.sh [-r ROUNDS] [-t BENCHTIME] -p PKG -b REGEXP COMMIT_A COMMIT_B [COMMIT_C ...]
#
# Each commit's test binary of PKG is built from `git archive` of the commit
# (the worktree is not touched); each round runs one binary with
# -test.bench REGEXP -test.benchtime BENCHTIME -test.run '^$', and prints its
# benchmark lines prefixed with "round N A|B COMMIT". Summarise with
# micro-ab-summary.awk.
set -euo pipefail
rounds=4 benchtime=200000x pkg="" bench=""
while getopts "r:t:p:b:" opt; do
	case $opt in
	r) rounds=$OPTARG ;;
	t) benchtime=$OPTARG ;;
	p) pkg=$OPTARG ;;
	b) bench=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 2 ] && [ $# -le 26 ] && [ -n "$pkg" ] && [ -n "$bench" ] || {
	echo "usage: $0 [-r ROUNDS] [-t BENCHTIME] -p PKG -b REGEXP COMMIT_A COMMIT_B [COMMIT_C ...]" >&2
	exit 2
}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
commits=("$@")
names=() forward=() backward=()
for i in "${!commits[@]}"; do
	names[i]=$(printf "\\$(printf %o $((65 + i)))")
	forward+=("$i")
	backward=("$i" "${backward[@]}")
done
for i in "${!commits[@]}"; do
	src=$work/src${names[i]}
	mkdir -p "$src"
	git -C "$repo" archive "${commits[i]}" | tar -x -C "$src"
	(cd "$src" && go test -c -o "$work/${names[i]}.test" "$pkg")
	commits[i]=$(git -C "$repo" rev-parse --short "${commits[i]}")
done
sides=""
for i in "${!commits[@]}"; do sides+=" ${names[i]}=${commits[i]}"; done
echo "# $(date -u '+%F %T') UTC load $(cut -d' ' -f1-3 /proc/loadavg)$sides bench=$bench benchtime=$benchtime"
for ((r = 0; r < rounds; r++)); do
	order=("${forward[@]}")
	((r % 2)) && order=("${backward[@]}")
	for i in "${order[@]}"; do
		"$work/${names[i]}.test" -test.run '^$' -test.bench "$bench" -test.benchtime "$benchtime" |
			awk -v p="round $((r + 1)) ${names[i]} ${commits[i]}" '/^Benchmark/ {print p, $0}'
	done
done
echo "# end $(date -u '+%F %T') UTC load $(cut -d' ' -f1-3 /proc/loadavg)"
