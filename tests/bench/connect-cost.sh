#!/usr/bin/env bash
# Kernel time per refused connect, per program, as root:
#   tests/bench/connect-cost.sh [CONNECTS] [TRACER...]
# For each tracer binary given (default: the release build), in turn and ROUNDS times
# (default 4, alternating, as these machines are shared and noisy): `tracer record` runs
# while a loop in a fresh network namespace connects CONNECTS times (default 15000) to a
# closed port on loopback; bpf_stats (turned on for the run) gives each program's run time.
# Prints a line per program, then the total per connect. Compare binaries within one run.
set -euo pipefail
connects=${1:-15000}
shift || true
tracers=("$@")
[[ ${#tracers[@]} -gt 0 ]] || tracers=("$(dirname "$0")/../../target/release/tracer")
ns=cc-$$
dir=$(mktemp -d)
stats_was=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
    pkill -INT -f "record -o $dir/" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    sysctl -qw kernel.bpf_stats_enabled="$stats_was"
    rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
sysctl -qw kernel.bpf_stats_enabled=1

# name -> "run_time_ns run_cnt" of the loaded tr_* programs.
snapshot() {
    bpftool -j prog show | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    if p.get("name", "").startswith("tr_"):
        print(p["name"], p.get("run_time_ns", 0), p.get("run_cnt", 0))'
}

for round in $(seq "${ROUNDS:-4}"); do
    for tracer in "${tracers[@]}"; do
        "$tracer" record --no-sweep -o "$dir/trace.jsonl" >"$dir/out" 2>&1 &
        pid=$!
        for _ in $(seq 100); do grep -q "hooks attached" "$dir/out" && break; sleep 0.1; done
        snapshot >"$dir/before"
        ip netns exec "$ns" python3 -c "
import socket
for _ in range($connects):
    s = socket.socket()
    try:
        s.connect(('127.0.0.1', 9))
    except OSError:
        pass
    s.close()"
        snapshot >"$dir/after"
        kill -INT "$pid"
        wait "$pid" || true
        echo "== round $round: $tracer"
        python3 - "$dir/before" "$dir/after" "$connects" <<'EOF'
import sys
def read(path):
    return {n: (int(t), int(c)) for n, t, c in (l.split() for l in open(path))}
before, after, n = read(sys.argv[1]), read(sys.argv[2]), int(sys.argv[3])
total = 0
for name in sorted(after):
    t = after[name][0] - before.get(name, (0, 0))[0]
    c = after[name][1] - before.get(name, (0, 0))[1]
    if c:
        total += t
        print(f"  {name:26} calls/connect {c / n:5.2f}  ns/call {t / c:6.0f}  ns/connect {t / n:6.0f}")
print(f"  kernel ns per connect: {total / n:.0f}")
EOF
    done
done
