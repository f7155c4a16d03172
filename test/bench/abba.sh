# test/bench/abba.sh — sourced by the scripts that compare agents in
# alternating rounds (gohttp-programs.sh, plain-programs.sh, syscall-cost.sh,
# the redis-*.sh, ...): their option parsing, work directory, cleanup, round
# order, and starting and stopping the agent and the servers, said once.
#
# abba_args FLAG NAME DEFAULT USAGE "$@": parses -r ROUNDS (rounds, default
# 2) and -FLAG VALUE (into the variable NAME, default DEFAULT); the other
# arguments, at least one, go in agents (else "usage: $0 [-r ROUNDS] USAGE",
# exit 2).
#
# abba_begin: sets repo and work (a temporary directory), sources
# bpfstats.sh and turns the statistics on; on exit the processes in ag and
# srv (PIDs, if set) are killed, the statistics turned off and work removed.
#
# abba_agent R: prints the agent of round R (0-based): even passes over
# agents in order, odd passes reversed (ABBA...).
#
# abba_each ROUNDS FN AGENT...: calls FN N AGENT for every round of ROUNDS
# passes over the agents in abba_agent's order, N counting rounds from 1
# (for the scripts that keep their own options: agent-idle.sh,
# fixed-rate.sh).
#
# abba_goapp PORT: starts $work/goapp serving HTTPS on 127.0.0.1:PORT with
# $work/c.pem and $work/k.pem (srv: its PID) and waits until it serves.
#
# abba_watch AGENT EXE PORT: starts AGENT tracing EXE (--include-exe), its
# /metrics on 127.0.0.1:PORT (ag: its PID), waits until it serves them,
# then 2 s for its collectors to attach. abba_unwatch stops it.
#
# abba_redis PORT: starts redis-server on 127.0.0.1:PORT, no persistence
# (srv: its PID), and waits until it answers; abba_redis_commands PORT
# prints the commands it has processed (INFO stats). abba_stop_srv stops
# the server.

abba_args() {
	local flag=$1 name=$2 def=$3 usage=$4 opt OPTIND=1
	shift 4
	rounds=2
	printf -v "$name" %s "$def"
	while getopts "r:$flag:" opt; do
		case $opt in
		r) rounds=$OPTARG ;;
		"$flag") printf -v "$name" %s "$OPTARG" ;;
		*) exit 2 ;;
		esac
	done
	shift $((OPTIND - 1))
	[ $# -ge 1 ] || { echo "usage: $0 [-r ROUNDS] $usage" >&2; exit 2; }
	agents=("$@")
}

abba_begin() {
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	work=$(mktemp -d)
	. "$repo/test/bench/bpfstats.sh"
	srv="" ag=""
	trap abba_cleanup EXIT
	bpfstats_on "$work"
}

abba_cleanup() {
	[ -n "$ag" ] && kill "$ag" 2>/dev/null && wait "$ag" 2>/dev/null
	[ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
	bpfstats_off
	rm -rf "$work"
}

abba_agent() {
	local k=${#agents[@]} pass i
	pass=$(($1 / k)) i=$(($1 % k))
	((pass % 2)) && i=$((k - 1 - i))
	echo "${agents[i]}"
}

abba_each() {
	local rounds=$1 fn=$2 r
	shift 2
	local agents=("$@")
	for ((r = 0; r < rounds * ${#agents[@]}; r++)); do
		"$fn" $((r + 1)) "$(abba_agent $r)"
	done
}

abba_goapp() {
	"$work/goapp" server 127.0.0.1:$1 -tls-cert "$work/c.pem" -tls-key "$work/k.pem" >"$work/srv.log" 2>&1 &
	srv=$!
	for _ in $(seq 50); do # until it serves
		curl -skf -o /dev/null "https://127.0.0.1:$1/hello" && break
		sleep 0.2
	done
}

abba_watch() {
	"$1" run --console=off --include-exe "$2" --metrics-addr 127.0.0.1:$3 >"$work/agent.log" 2>&1 &
	ag=$!
	for _ in $(seq 100); do # until it serves /metrics, then a moment for the collectors
		curl -sf -o /dev/null "http://127.0.0.1:$3/metrics" && break
		sleep 0.2
	done
	sleep 2
}

abba_unwatch() {
	kill $ag
	wait $ag 2>/dev/null || true
	ag=""
}

abba_redis() {
	redis-server --port $1 --save '' --appendonly no --daemonize no >"$work/redis.log" 2>&1 &
	srv=$!
	until redis-cli -p $1 ping >/dev/null 2>&1; do sleep 0.1; done
}

abba_redis_commands() { redis-cli -p "$1" info stats | awk -F: '/^total_commands_processed/{print $2+0}'; }

abba_stop_srv() {
	kill $srv
	wait $srv 2>/dev/null || true
	srv=""
}
