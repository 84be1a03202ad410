#!/usr/bin/env bash
# Start-up cost of a tracing session, as root on a release build: `tests/bench/startup.sh [RUNS]`.
# Per run: exec → every program verified and attached (the moment the tracer says so), then
# the whole run (start, a 1 ms trace, detach) with its CPU time and peak RSS. Wall time
# depends on what else the CPUs do; user + sys is the work itself (sys: mostly the kernel's
# verifier; RUST_LOG=tracer=debug prints each step's time and each program's).
set -euo pipefail
tracer=${TRACER_BIN:-$(dirname "$0")/../../target/release/tracer}
for _ in $(seq "${1:-5}"); do
    start=$(date +%s%N)
    while IFS= read -r line; do
        if [[ $line == *"hooks attached"* ]]; then
            printf 'attached after %d ms   ' $((($(date +%s%N) - start) / 1000000))
        fi
    done < <("$tracer" record --duration 1ms --no-sweep -o /dev/null 2>&1)
    /usr/bin/time -f "whole run: wall %e s  user %U s  sys %S s  peak RSS %M KiB" \
        "$tracer" record --duration 1ms --no-sweep -o /dev/null 2>&1 | tail -1
done
