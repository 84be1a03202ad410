#!/usr/bin/env bash
# Start-up cost of a tracing session: exec → every program verified and attached → a 1 ms
# trace → detach. Run as root on a release build: `tests/bench/startup.sh [RUNS]`.
# Wall time depends on what else the CPUs do; user + sys is the work itself (sys: mostly
# the kernel's verifier; RUST_LOG=tracer=debug prints each step's time and each program's).
set -euo pipefail
tracer=${TRACER_BIN:-$(dirname "$0")/../../target/release/tracer}
for _ in $(seq "${1:-5}"); do
    /usr/bin/time -f "wall %e s  user %U s  sys %S s  peak RSS %M KiB" \
        "$tracer" record --duration 1ms --no-sweep -o /dev/null 2>&1 | tail -1
done
