#!/bin/bash
# The system calls owner identity costs, counted by strace over a refused-connect storm from
# processes in three cgroups created after the tracer started (a containerd container of a
# named pod, a docker container, nginx.service). BENCHMARKS.md, "Owner identity".
#
#   cargo build --release -p tracer -p tracer-tests --bin tracer --bin tcp-peer
#   sudo tests/bench/identity-syscalls.sh 1000; sudo tests/bench/identity-syscalls.sh 10000
#
# Needs root, strace, nsenter. Leaves strace.txt, trace.jsonl and tracer.err in
# target/bench/identity-N/.
set -euo pipefail
N=${1:?connects per owner}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$REPO/target/bench/identity-$N
T=$REPO/target/release/tracer
P=$REPO/target/release/tcp-peer
mkdir -p "$OUT"
U=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
ROOT=$U/trc-$$-idbench
NS=trc-$$-idbench
PODS=$OUT/pods
UID1=0b8e5c2a-1f3d-4c6b-9a7e-2d4f6b8a0c1e
CGS=(
  "$ROOT/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID1//-/_}.slice/cri-containerd-$(printf 'a1%.0s' {1..32}).scope"
  "$ROOT/system.slice/docker-$(printf 'f0%.0s' {1..32}).scope"
  "$ROOT/system.slice/nginx.service"
)
cleanup() {
  ip netns del "$NS" 2>/dev/null || true
  find "$ROOT" -depth -type d -exec rmdir {} \; 2>/dev/null || true
}
trap cleanup EXIT
mkdir -p "$PODS/payments_api-7f9c_$UID1"
ip netns add "$NS"
ip -n "$NS" link set lo up
INODE=$(stat -L -c %i "/run/netns/$NS")
rm -f "$OUT/tracer.err"
RUST_LOG=tracer::session=debug strace -f -c -o "$OUT/strace.txt" \
  "$T" record -o "$OUT/trace.jsonl" --ring-buffer 256M --no-sweep --netns "$INODE" \
  --pod-log-dir "$PODS" 2> "$OUT/tracer.err" &
STRACE=$!
until grep -q "tracing TCP" "$OUT/tracer.err" 2>/dev/null; do sleep 0.5; done
pids=()
for cg in "${CGS[@]}"; do
  mkdir -p "$cg"
  bash -c "echo \$\$ > '$cg/cgroup.procs'; exec nsenter --net=/run/netns/$NS '$P' connect 127.0.0.1:9 --times $N" \
    < /dev/null > /dev/null &
  pids+=($!)
done
wait "${pids[@]}"
sleep 2
kill -INT "$(pgrep -P $STRACE -x tracer)"
wait $STRACE || true
grep -E "recorded|cgroup identity" "$OUT/tracer.err"
echo "identity system calls:"
grep -wE "open_by_handle_at|name_to_handle_at|readlink|getdents64" "$OUT/strace.txt"
grep -wE "write|total" "$OUT/strace.txt"
