#!/usr/bin/env bash
# Instructions per provisioning: a figure the machine's noise cannot move.
#
#   perf/instructions.sh [BUILD]        (default build-perf, a release build made if absent)
#
# Runs dpsd under valgrind's callgrind (epoll backend: valgrind does not
# support io_uring; one shard; log level warn) twice on a fresh demo PKI:
# once provisioning 1 device, once 40, each device through the whole flow
# with the sequential device simulator. Start-up, the first device's
# one-time work and shutdown are in both runs, so
#
#   instructions per provisioning = (Ir(40 devices) - Ir(1 device)) / 39
#
# counts what one more device costs the server, every thread included. It
# prints the figure with the OpenSSL the build runs, and the ten functions
# that take the most of the 40-device run (callgrind_annotate, inclusive of
# nothing: self cost). Needs valgrind (apt-get install valgrind).
# INSTRUCTIONS_KEEP=DIR keeps both runs' callgrind.out files there, for
# callgrind_annotate --inclusive=yes and the like.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-perf}
command -v valgrind >/dev/null || {
    echo "perf/instructions.sh needs valgrind: apt-get install valgrind" >&2
    exit 1
}
if [ ! -d "$BUILD" ]; then
    meson setup "$BUILD" --buildtype=release >/dev/null
fi
ninja -C "$BUILD" dpsd dpsctl perf/dps-loadgen >/dev/null

WORK=$(mktemp -d /tmp/dps-instructions.XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
"$BUILD/dpsctl" pki "$WORK/pki" --devices 45 >/dev/null

# run N: provisions N devices under callgrind, prints the run's total instructions.
run() {
    local n=$1 dir=$WORK/run-$1 port
    mkdir -p "$dir"
    cp -r "$WORK/pki" "$dir/pki"
    port=$((20000 + RANDOM % 12000 & ~1))
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
        "$BUILD/dpsd" --demo "$dir" --listen "127.0.0.1:$port" --api-listen "127.0.0.1:$((port + 1))" \
        --shards 1 --io-backend epoll --log-level warn >"$dir/dpsd.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    "$BUILD/perf/dps-loadgen" --endpoint "coaps+tcp://127.0.0.1:$port" --pki "$dir/pki" \
        --devices "$n" --timeout 120 >"$dir/loadgen.log" 2>&1 ||
        { echo "run $n: the devices did not provision:" >&2; tail -3 "$dir/loadgen.log" >&2; exit 1; }
    kill -TERM "$PID"
    wait "$PID" || true
    PID=""
    sed -n 's/^summary: *//p; s/^totals: *//p' "$dir/callgrind.out" | head -1 | awk '{print $1}'
}

one=$(run 1)
forty=$(run 40)
openssl_version=$("$BUILD/dpsd" --version 2>/dev/null | sed -n 's/^\(OpenSSL [0-9.]*\).*/\1/p' | head -1 || true)
awk -v a="$one" -v b="$forty" -v v="${openssl_version:-unknown OpenSSL}" 'BEGIN {
    printf "openssl=%s\n", v
    printf "instructions_1_device=%d\ninstructions_40_devices=%d\n", a, b
    printf "instructions_per_provisioning=%.2fM\n", (b - a) / 39 / 1e6
}'
if [ -n "${INSTRUCTIONS_KEEP:-}" ]; then
    mkdir -p "$INSTRUCTIONS_KEEP"
    cp "$WORK/run-1/callgrind.out" "$INSTRUCTIONS_KEEP/callgrind-1.out"
    cp "$WORK/run-40/callgrind.out" "$INSTRUCTIONS_KEEP/callgrind-40.out"
fi
echo "top functions of the 40-device run (self instructions):"
callgrind_annotate --threshold=100 "$WORK/run-40/callgrind.out" 2>/dev/null |
    awk '/^-+$/ {rule++; next} rule >= 3 && NF > 0' | head -10
