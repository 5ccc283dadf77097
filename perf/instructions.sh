#!/usr/bin/env bash
# Instructions per provisioning and per handshake: figures the machine's
# noise cannot move.
#
#   perf/instructions.sh [BUILD]        (default build-perf, a release build made if absent)
#
# 1. Runs dpsd under valgrind's callgrind (epoll backend: valgrind does not
#    support io_uring; one shard; log level warn) twice on a fresh demo PKI:
#    once provisioning 1 device, once 40, each device through the whole flow
#    with the sequential device simulator. Start-up, the first device's
#    one-time work and shutdown are in both runs, so
#
#      instructions per provisioning = (Ir(40 devices) - Ir(1 device)) / 39
#
#    counts what one more device costs the server, every thread included.
# 2. The same with handshakes only (dps-loadgen --scenario handshake, one at
#    a time, fresh identities: mutual TLS with attestation, then close):
#    dpsd's instructions per handshake, attestation included.
# 3. perf/bench-handshake under callgrind, counting only its server side
#    (--toggle-collect on its bench_server_* functions), for each variant
#    (plain OpenSSL, plain OpenSSL verifying the chain, tls.c bare, tls.c
#    with libssl's standard chain verification, tls.c with attestation), 12
#    handshakes against 2: instructions per handshake.
# 4. The generator: dps-loadgen under callgrind (fleet mode, one device at a
#    time, one thread, identities made beforehand) provisions 1 fresh device,
#    then 40, against a dpsd running natively: instructions per provisioning
#    on the device side, (Ir(40) - Ir(1)) / 39 again.
# 5. perf/floors.sh with these figures: the floor of each ratio from the
#    instructions of the cryptography the protocol requires.
#
# It prints the figures with the OpenSSL the build runs, the ratios the
# performance work is judged by (provisioning / two bare handshakes, dpsd
# handshake / bare, bare / plain, generator / server), and the ten functions
# that take the most of the 40-device run (callgrind_annotate, self cost).
# User-space instructions only: the kernel's share (sockets, syscalls) is not
# counted. Needs valgrind (apt-get install valgrind).
#
# INSTRUCTIONS_KEEP=DIR keeps the provisioning runs' callgrind.out files
# there, for callgrind_annotate --inclusive=yes and the like.
# INSTRUCTIONS_HANDSHAKES=0 skips parts 2 to 5.
source "$(dirname "$0")/lib.sh"
command -v valgrind >/dev/null || {
    echo "perf/instructions.sh needs valgrind: apt-get install valgrind" >&2
    exit 1
}
perf_build "${1:-build-perf}" dpsd dpsctl perf/dps-loadgen perf/bench-handshake \
    perf/bench-primitives
HANDSHAKES=${INSTRUCTIONS_HANDSHAKES:-1}

WORK=$(mktemp -d /tmp/dps-instructions.XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
"$BUILD/dpsctl" pki "$WORK/pki" --devices 45 >/dev/null

# run NAME N [LOADGEN OPTIONS]: N devices against dpsd under callgrind, prints the run's
# total instructions.
run() {
    local name=$1 n=$2 dir=$WORK/run-$1 port
    shift 2
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
        --devices "$n" --timeout 120 "$@" >"$dir/loadgen.log" 2>&1 ||
        { echo "run $name: the devices did not finish:" >&2; tail -3 "$dir/loadgen.log" >&2; exit 1; }
    kill -TERM "$PID"
    wait "$PID" || true
    PID=""
    callgrind_total "$dir/callgrind.out"
}

# bench VARIANT N: the server side of N handshakes (and the warm-up) of bench-handshake's VARIANT.
bench() {
    local out=$WORK/bench-$1-$2.out
    valgrind --tool=callgrind --callgrind-out-file="$out" --collect-atstart=no \
        --toggle-collect='bench_server_*' "$BUILD/perf/bench-handshake" --pki "$WORK/pki" \
        --count "$2" --variants "$1" >"$WORK/bench-$1-$2.log" 2>&1 ||
        { echo "bench-handshake $1 failed:" >&2; tail -3 "$WORK/bench-$1-$2.log" >&2; exit 1; }
    callgrind_total "$out"
}

# generator N FIRST PORT: dps-loadgen under callgrind provisions N fleet devices from FIRST, one
# at a time, against the dpsd on PORT; prints the generator's total instructions.
generator() {
    local out=$WORK/generator-$1.out
    valgrind --tool=callgrind --callgrind-out-file="$out" "$BUILD/perf/dps-loadgen" \
        --endpoint "coaps+tcp://127.0.0.1:$3" --pki "$WORK/run-generator/pki" --devices "$1" \
        --first "$2" --concurrency 1 --threads 1 --timeout 120 >"$WORK/generator-$1.log" 2>&1 ||
        { echo "generator $1: the devices did not finish:" >&2; tail -3 "$WORK/generator-$1.log" >&2; exit 1; }
    callgrind_total "$out"
}

# generator_pair: part 4's two runs against one native dpsd, into generator_one and
# generator_forty.
generator_pair() {
    local dir=$WORK/run-generator port
    mkdir -p "$dir"
    cp -r "$WORK/pki" "$dir/pki"
    "$BUILD/perf/dps-loadgen" gen --pki "$dir/pki" --devices 41 >/dev/null
    port=$((20000 + RANDOM % 12000 & ~1))
    "$BUILD/dpsd" --demo "$dir" --listen "127.0.0.1:$port" --api-listen "127.0.0.1:$((port + 1))" \
        --shards 1 --io-backend epoll --log-level warn >"$dir/dpsd.log" 2>&1 &
    PID=$!
    wait_listen "$port"
    generator_one=$(generator 1 1 "$port")
    generator_forty=$(generator 40 2 "$port")
    kill -TERM "$PID"
    wait "$PID" || true
    PID=""
}

one=$(run 1 1)
forty=$(run 40 40)
openssl_version=$("$BUILD/dpsd" --version 2>/dev/null | sed -n 's/^\(OpenSSL [0-9.]*\).*/\1/p' | head -1 || true)
awk -v a="$one" -v b="$forty" -v v="${openssl_version:-unknown OpenSSL}" 'BEGIN {
    printf "openssl=%s\n", v
    printf "instructions_1_device=%d\ninstructions_40_devices=%d\n", a, b
    printf "instructions_per_provisioning=%.2fM\n", (b - a) / 39 / 1e6
}'
if [ "$HANDSHAKES" != 0 ]; then
    handshake_one=$(run handshake-1 1 --scenario handshake --concurrency 1 --threads 1 --max-attempts 1)
    handshake_forty=$(run handshake-40 40 --scenario handshake --concurrency 1 --threads 1 --max-attempts 1)
    declare -A per
    for variant in plain plain_verify bare bare_verify attested; do
        few=$(bench "$variant" 2)
        many=$(bench "$variant" 12)
        per[$variant]=$(awk -v a="$few" -v b="$many" 'BEGIN { printf "%.0f", (b - a) / 10 }')
    done
    generator_pair
    per[dpsd]=$(awk -v a="$handshake_one" -v b="$handshake_forty" 'BEGIN { printf "%.0f", (b - a) / 39 }')
    per[provisioning]=$(awk -v a="$one" -v b="$forty" 'BEGIN { printf "%.0f", (b - a) / 39 }')
    per[generator]=$(awk -v a="$generator_one" -v b="$generator_forty" 'BEGIN { printf "%.0f", (b - a) / 39 }')
    awk -v dpsd="${per[dpsd]}" -v provisioning="${per[provisioning]}" \
        -v plain="${per[plain]}" -v plain_verify="${per[plain_verify]}" -v bare="${per[bare]}" \
        -v bare_verify="${per[bare_verify]}" -v attested="${per[attested]}" \
        -v generator="${per[generator]}" 'BEGIN {
        printf "instructions_per_handshake_dpsd=%.2fM (attestation included)\n", dpsd / 1e6
        printf "instructions_per_handshake_plain=%.2fM\n", plain / 1e6
        printf "instructions_per_handshake_plain_verify=%.2fM\n", plain_verify / 1e6
        printf "instructions_per_handshake_bare=%.2fM\n", bare / 1e6
        printf "instructions_per_handshake_bare_verify=%.2fM\n", bare_verify / 1e6
        printf "instructions_per_handshake_attested=%.2fM\n", attested / 1e6
        printf "instructions_per_provisioning_generator=%.2fM\n", generator / 1e6
        printf "ratio_bare_to_plain=%.3f\n", bare / plain
        printf "ratio_attested_to_bare=%.3f\n", attested / bare
        printf "ratio_dpsd_handshake_to_bare=%.3f\n", dpsd / bare
        printf "ratio_dpsd_handshake_to_bare_verify=%.3f\n", dpsd / bare_verify
        printf "ratio_provisioning_to_two_bare=%.3f\n", provisioning / (2 * bare)
        printf "ratio_provisioning_to_two_bare_verify=%.3f\n", provisioning / (2 * bare_verify)
        printf "ratio_generator_to_server=%.3f\n", generator / provisioning
    }'
    perf/floors.sh "$BUILD" provisioning="${per[provisioning]}" dpsd_handshake="${per[dpsd]}" \
        plain="${per[plain]}" bare="${per[bare]}" bare_verify="${per[bare_verify]}" \
        generator="${per[generator]}"
fi
if [ -n "${INSTRUCTIONS_KEEP:-}" ]; then
    mkdir -p "$INSTRUCTIONS_KEEP"
    cp "$WORK/run-1/callgrind.out" "$INSTRUCTIONS_KEEP/callgrind-1.out"
    cp "$WORK/run-40/callgrind.out" "$INSTRUCTIONS_KEEP/callgrind-40.out"
fi
echo "top functions of the 40-device run (self instructions):"
callgrind_annotate --threshold=100 "$WORK/run-40/callgrind.out" 2>/dev/null |
    awk '/^-+$/ {rule++; next} rule >= 3 && NF > 0' | head -10
