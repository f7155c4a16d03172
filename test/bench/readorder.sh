#!/bin/bash
# Issue 15's question, measured (test/bench/readorder): can a Go HTTP/1
# server request take its start from the read that brings its bytes, so
# that it costs one uprobe hit instead of two?
#
#   test/bench/readorder.sh order
#     goapp (HTTPS and plain, test/e2e/testdata/goapp) under wrk: keep-alive,
#     a new connection per request, and 4 pipelined requests per write;
#     readorder traces ServeHTTP, finishRequest, read and
#     tcp_rcv_space_adjust and says who read each request's first bytes.
#
#   test/bench/readorder.sh cost [-r ROUNDS] [-R RATE] [-d SECONDS] MODE...
#     goapp HTTPS (-tags nethttponly, as MODE=go builds it) under
#     `benchtool pace` at RATE requests/s over 16 keep-alive connections;
#     rounds in ABBA order over MODE (none, two, one: readorder -mode), the
#     server's CPU (utime+stime, 10 ms ticks) per request in each.
#
#   test/bench/readorder.sh readcost [-r ROUNDS] [-n EXCHANGES]
#     what the read-side program alone (readorder -mode rcv, on the traced
#     process's sockets: the path where its socket entry is found) adds to
#     each read: test/bench/pingpong.c's server CPU per exchange (one read,
#     one write) without it and with it, in ABBA rounds, the kernel's BPF
#     statistics off (each run would pay their clock reads).
# Root.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
srv="" srv2="" ro=""
cleanup() {
	for p in $ro $srv $srv2; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
gobuild() { (cd "$1" && GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build "${@:3}" -o "$2" .); }
gobuild "$repo/test/e2e/testdata/goapp" "$work/goapp" -tags nethttponly
gobuild "$repo/test/bench/readorder" "$work/readorder"
gobuild "$repo/test/bench/benchtool" "$work/benchtool"
clang-19 -O2 -g -target bpf -D__TARGET_ARCH_x86 -I"$repo/bpf/headers" \
	-c "$repo/test/bench/readorder/bpf/readorder.bpf.c" -o "$work/readorder.o"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/k.pem" -out "$work/c.pem" -days 1 \
	-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 2>/dev/null
port=$((20000 + RANDOM % 10000))
"$work/goapp" server "127.0.0.1:$port" -tls-cert "$work/c.pem" -tls-key "$work/k.pem" >"$work/srv.log" 2>&1 &
srv=$!
for _ in $(seq 50); do curl -skf -o /dev/null "https://127.0.0.1:$port/hello" && break; sleep 0.2; done
echo "# readorder $1 at $(git -C "$repo" rev-parse --short HEAD), $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"

order() {
	"$work/goapp" server "127.0.0.1:$((port + 1))" >"$work/srv2.log" 2>&1 &
	srv2=$!
	for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$((port + 1))/hello" && break; sleep 0.2; done
	echo 'wrk.headers["Connection"] = "close"' >"$work/close.lua"
	cat >"$work/pipeline.lua" <<'LUA'
init = function(args)
   local r = {}
   for i = 1, 4 do r[i] = wrk.format(nil, "/hello") end
   req = table.concat(r)
end
request = function() return req end
LUA
	local name pid url extra
	while read -r name pid url extra; do
		"$work/readorder" -obj "$work/readorder.o" -bin "$work/goapp" -pid "$pid" -for 9s >"$work/ro.txt" 2>&1 &
		ro=$!
		sleep 2
		# shellcheck disable=SC2086
		wrk -t2 -c20 -d5s $extra "$url" | grep -E 'requests in'
		wait "$ro"
		ro=""
		echo "## $name"
		cat "$work/ro.txt"
	done <<LIST
https-keepalive $srv https://127.0.0.1:$port/hello
plain-keepalive $srv2 http://127.0.0.1:$((port + 1))/hello
plain-new-connection-each $srv2 http://127.0.0.1:$((port + 1))/hello -s $work/close.lua
https-new-connection-each $srv https://127.0.0.1:$port/hello -s $work/close.lua
plain-pipelined-4 $srv2 http://127.0.0.1:$((port + 1))/hello -s $work/pipeline.lua
https-pipelined-4 $srv https://127.0.0.1:$port/hello -s $work/pipeline.lua
LIST
}

summary() { # FILE UNIT: each mode's "server X us/UNIT": mean +- sd, median, min
	local m
	for m in $(sed -n 's/^round [0-9]* \[\([a-z]*\)\].*/\1/p' "$1" | sort -u); do
		sed -n "s/^round [0-9]* \[$m\]:.* server \([0-9.]*\) us.*/\1/p" "$1" | sort -g |
			awk -v m="$m" -v u="$2" '{ v[NR] = $1; s += $1; q += $1 * $1 }
				END { mean = s / NR; sd = NR > 1 ? sqrt((q - NR * mean * mean) / (NR - 1)) : 0
					med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
					printf "mode %s: %d rounds, server %.3f +- %.3f us/%s, median %.3f, min %.3f\n", m, NR, mean, sd, u, med, v[1] }'
	done
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

cost_round() { # N MODE
	local url="https://127.0.0.1:$port/hello"
	"$work/readorder" -obj "$work/readorder.o" -bin "$work/goapp" -pid "$srv" -mode "$2" -for "$((dur + 5))s" >"$work/ro.txt" 2>&1 &
	ro=$!
	for _ in $(seq 50); do grep -q attached "$work/ro.txt" && break; sleep 0.1; done
	"$work/benchtool" pace -url "$url" -rate "$rate" -conns 16 -duration 2s >/dev/null
	local c0 c1 out ok
	c0=$(ticks "$srv")
	out=$("$work/benchtool" pace -url "$url" -rate "$rate" -conns 16 -duration "${dur}s")
	c1=$(ticks "$srv")
	wait "$ro"
	ro=""
	ok=${out#*ok=}
	ok=${ok%% *}
	printf 'round %d [%s]: %s, server %.2f us/request, load %s; %s\n' "$1" "$2" "$out" \
		"$(echo "($c1 - $c0) * 10000 / $ok" | bc -l)" "$(cut -d' ' -f1 /proc/loadavg)" \
		"$(grep '^prog' "$work/ro.txt" | tr '\n' ';')"
}

readcost_round() { # N MODE
	local p=$((port + 2)) out
	"$work/pp-server" server "$p" "$n" >"$work/pp.txt" &
	local pp=$!
	"$work/readorder" -obj "$work/readorder.o" -pid "$pp" -mode "$2" -stats=false -for 600s >"$work/ro.txt" 2>&1 &
	ro=$!
	for _ in $(seq 50); do grep -q attached "$work/ro.txt" && break; sleep 0.1; done
	sleep 0.2
	"$work/pp-client" client "$p" "$n" >/dev/null
	wait "$pp"
	kill -INT "$ro" && wait "$ro" || true
	ro=""
	read -r _ out <"$work/pp.txt"
	printf 'round %d [%s]: server %.3f us/exchange, load %s\n' "$1" "$2" "$(echo "$out / 1000" | bc -l)" \
		"$(cut -d' ' -f1 /proc/loadavg)"
}

case $1 in
order) order ;;
readcost)
	shift
	rounds=3 n=200000
	OPTIND=1
	while getopts r:n: opt; do
		case $opt in
		r) rounds=$OPTARG ;;
		n) n=$OPTARG ;;
		*) exit 2 ;;
		esac
	done
	cc -O2 -Wall -o "$work/pp-server" "$repo/test/bench/pingpong.c"
	cp "$work/pp-server" "$work/pp-client"
	echo "# pingpong: $n exchanges per round"
	. "$repo/test/bench/abba.sh"
	abba_each "$rounds" readcost_round none rcv | tee "$work/rounds.txt"
	summary "$work/rounds.txt" exchange
	;;
cost)
	shift
	rounds=3 rate=3000 dur=10
	OPTIND=1
	while getopts r:R:d: opt; do
		case $opt in
		r) rounds=$OPTARG ;;
		R) rate=$OPTARG ;;
		d) dur=$OPTARG ;;
		*) exit 2 ;;
		esac
	done
	shift $((OPTIND - 1))
	echo "# $rate req/s over 16 keep-alive connections, ${dur}s per round"
	. "$repo/test/bench/abba.sh"
	abba_each "$rounds" cost_round "$@" | tee "$work/rounds.txt"
	summary "$work/rounds.txt" request
	;;
*) echo "usage: $0 order | cost [-r ROUNDS] [-R RATE] [-d SECONDS] MODE... | readcost [-r ROUNDS] [-n EXCHANGES]" >&2; exit 2 ;;
esac
