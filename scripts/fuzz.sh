#!/usr/bin/env bash
# Runs every fuzz target of the module (a `func FuzzXxx` in a _test.go file
# outside test/e2e) as a fuzzer for FUZZTIME each (default 30s), one after
# the other, with FUZZPARALLEL workers (default 2). A crash fails the run
# and leaves its input under the package's testdata/fuzz/FuzzXxx/: add it
# to the commit with the fix. The committed corpora also run as plain tests
# in `make unit-test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
FUZZPARALLEL=${FUZZPARALLEL:-2}

targets=$(grep -rE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . | grep -v '^./test/e2e/' |
	sed -E 's|^\./(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*|\1 \2|' | sort)
if [ -z "$targets" ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
n=$(wc -l <<<"$targets")
start=$SECONDS
echo "fuzz: $n targets, $FUZZTIME each"
while read -r dir target; do
	echo "fuzz: ./$dir $target"
	$GO test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -parallel "$FUZZPARALLEL" "./$dir"
done <<<"$targets"
echo "fuzz: $n targets passed in $((SECONDS - start))s"
