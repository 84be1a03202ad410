#!/bin/sh
# Runs the real-kernel check inside each VM that `cargo xtask kernels` boots (and, for
# `--kernel host`, on this machine). The host judges the run only by the files written here:
# the VM tool's exit status means nothing (it can be 255 on success).
#
# usage: run-check.sh OUTDIR TIMEOUT_SECS CHECK [ARGS...]
#
# OUTDIR is the VM's only writable host directory. Written there, in this order:
#   started     when this script began (the kernel booted and ran us)
#   uname       `uname -r` of the kernel we run on
#   facts       a few facts about the machine (mounts, memory, clock, entropy), for diagnosis
#   guest.log   this script's own messages
#   check.log   the check's stdout and stderr
#   exit        the check's exit status (124: killed by the timeout), written last
# The check writes OUTDIR/result.json (and whatever else it wants to keep) itself.
set -u
out=$1
limit=$2
shift 2

date +%s.%N > "$out/started"
exec > "$out/guest.log" 2>&1
uname -r > "$out/uname"

# virtme-ng mounts these and brings lo up; do it again in case a version does not (idempotent,
# so this also runs unchanged on the host).
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
mountpoint -q /sys/kernel/debug || mount -t debugfs nodev /sys/kernel/debug
ip link set lo up

{
    echo "uname: $(uname -a)"
    echo "cpus: $(nproc)"
    echo "date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
    echo "clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
    echo "entropy_avail: $(cat /proc/sys/kernel/random/entropy_avail)"
    echo "btf: $(ls -l /sys/kernel/btf/vmlinux 2>&1)"
    echo "lsm: $(cat /sys/kernel/security/lsm 2>&1)"
    echo "lockdown: $(cat /sys/kernel/security/lockdown 2>&1)"
    free -m
    for path in / /tmp /run /sys/fs/cgroup "$out"; do
        echo "$path on: $(findmnt -n -o TARGET,FSTYPE,OPTIONS -T "$path")"
    done
} > "$out/facts" 2>&1

export RUST_BACKTRACE=1
echo "running (limit ${limit}s): $*"
timeout -k 10 "$limit" "$@" > "$out/check.log" 2>&1
rc=$?
echo "exit status $rc"
echo "$rc" > "$out/exit.partial" && mv "$out/exit.partial" "$out/exit"
sync
