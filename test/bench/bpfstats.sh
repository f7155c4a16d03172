# test/bench/bpfstats.sh — sourced by the scripts that read the kernel's BPF
# run-time statistics of one agent's programs (gohttp-programs.sh,
# plain-programs.sh).
#
# bpfstats_on DIR: turns the statistics on for the caller's run: a
# BPF_ENABLE_STATS descriptor held open by a background process (its PID in
# BPFSTATS_PID: the caller kills it on exit), reference-counted by the
# kernel, so someone else writing kernel.bpf_stats_enabled=0 meanwhile does
# not stop them; else the sysctl (BPFSTATS_OLD: the value to restore).
#
# bpfstats_snap AGENT_PID TYPES [PREFIX]: prints {name: [run_cnt,
# run_time_ns]} (JSON) of that agent's programs (their ids from its
# /proc/PID/fdinfo, so other agents on the machine do not count) of a
# bpftool type in TYPES (comma-separated) whose names start with PREFIX.

BPFSTATS_PID="" BPFSTATS_OLD=""

bpfstats_on() {
	# BPF_ENABLE_STATS (cmd 32) with type BPF_STATS_RUN_TIME (0): the
	# statistics stay on while the returned descriptor is open.
	python3 -c '
import ctypes, os, struct, time
nr = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine)
libc = ctypes.CDLL(None, use_errno=True)
attr = ctypes.create_string_buffer(struct.pack("I", 0), 8)
fd = libc.syscall(nr, 32, attr, 4) if nr else -1
print("fd" if fd >= 0 else "none", flush=True)
time.sleep(86400)' >"$1/stats" &
	BPFSTATS_PID=$!
	for _ in $(seq 50); do [ -s "$1/stats" ] && break; sleep 0.1; done
	if ! grep -q fd "$1/stats"; then
		BPFSTATS_OLD=$(sysctl -n kernel.bpf_stats_enabled)
		sysctl -qw kernel.bpf_stats_enabled=1
	fi
}

# bpfstats_off stops what bpfstats_on started.
bpfstats_off() {
	[ -n "$BPFSTATS_PID" ] && kill "$BPFSTATS_PID" 2>/dev/null && wait "$BPFSTATS_PID" 2>/dev/null
	[ -n "$BPFSTATS_OLD" ] && sysctl -qw kernel.bpf_stats_enabled="$BPFSTATS_OLD"
	BPFSTATS_PID="" BPFSTATS_OLD=""
}

bpfstats_snap() {
	local ids
	ids=$(cat /proc/"$1"/fdinfo/* 2>/dev/null | awk '/^prog_id:/{print $2}' | sort -u | tr '\n' ' ')
	bpftool prog show -j | python3 -c '
import json, sys
mine = set(int(x) for x in sys.argv[1].split())
out = {}
for p in json.load(sys.stdin):
    if p["id"] in mine and p.get("type") in sys.argv[2].split(",") and p.get("name", "").startswith(sys.argv[3]):
        c = out.setdefault(p["name"], [0, 0])
        c[0] += p.get("run_cnt", 0)
        c[1] += p.get("run_time_ns", 0)
print(json.dumps(out))' "$ids" "$2" "${3:-}"
}
