#!/usr/bin/env bash
# Server CPU per full provisioning, next to a bare in-process OpenSSL
# mutual-TLS handshake with the same certificates, from one run on this
# machine. Reproduce with:
#
#   perf/provision-cpu.sh [DEVICES] [CLIENTS]     (defaults 400 and 4)
#
# BUILD=DIR chooses the release tree (default build-perf; e.g. a
# -Dopenssl=bundled one), STORE_WRITERS=N the store's writer threads
# (store.writers; the default configuration's otherwise).
#
# It builds a release tree in build-perf/, starts dpsd (one shard, demo PKI)
# on loopback, provisions DEVICES fresh devices with dps-loadgen through the
# whole device flow (two mutual-TLS handshakes, time, ownership, cloud
# configuration with a signed token, CSR verification and certificate
# issuance, ACLs, resources, each step's record synced to RocksDB) from
# CLIENTS load-generator processes at once (so group commit shares syncs as it
# does under load), and reads dpsd's user+system CPU time from /proc before
# and after. The load generators' CPU is counted apart (the shell's reaped
# children) and printed as a ratio to the server's. It prints the CPU per
# provisioning of each thread kind (all its threads together), and for a kind
# with several threads (the store writers) the busiest one's: a thread every
# provisioning may pass through caps the node at 1 / its CPU. Thread CPU is
# read from /proc/PID/task/TID/schedstat (nanoseconds): at 10 ms per tick the
# busiest of 16 writers is a handful of ticks, and the largest of 16 such
# counts reads high.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES=${1:-400}
CLIENTS=${2:-4}
BUILD=${BUILD:-build-perf}
if [ ! -d "$BUILD" ]; then
    meson setup "$BUILD" --buildtype=release >/dev/null
fi
ninja -C "$BUILD" >/dev/null

WORK=$(mktemp -d /tmp/dps-perf.XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
PORT=$((20000 + RANDOM % 12000))
mkdir -p "$WORK/demo"
"$BUILD/dpsctl" pki "$WORK/demo/pki" --devices "$DEVICES" >/dev/null
start_dpsd() {
    "$BUILD/dpsd" --demo "$WORK/demo" --listen "127.0.0.1:$PORT" \
        --api-listen "127.0.0.1:$((PORT + 1))" --shards 1 --log-level warn >"$WORK/dpsd.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.1
    done
}
start_dpsd
if [ -n "${STORE_WRITERS:-}" ]; then
    # The first start wrote the demo configuration; the second runs it with the writers asked.
    kill -TERM "$PID"
    wait "$PID" || true
    printf 'store:\n  writers: %s\n' "$STORE_WRITERS" >>"$WORK/demo/dpsd.yaml"
    start_dpsd
fi

ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
# CPU nanoseconds per thread kind (shard, signer, store writer, RocksDB, main), as "name ns" lines.
thread_ticks() {
    task_ticks | awk '{split($1, k, "@"); sum[k[1]] += $2} END {for (n in sum) print n, sum[n]}' |
        sort
}
# CPU nanoseconds per thread, as "name@tid ns" lines: the busiest thread of a kind caps a node.
task_ticks() {
    for task in /proc/"$PID"/task/*; do
        name=$(cat "$task/comm")
        echo "${name%-[0-9]*}@${task##*/} $(awk '{print $1}' "$task/schedstat")"
    done | sort
}
# The user + system CPU seconds of the shell's reaped children (the load generators).
# (times must run in this shell, not in a $(...) subshell: it reads FILE.)
children_cpu() { awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); s += t[1] * 60 + t[2] } print s }' "$1"; }
HZ=$(getconf CLK_TCK)
NS=1000000000
# Warm up (first handshakes load code and tables), then measure.
"$BUILD/perf/dps-loadgen" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$WORK/demo/pki" \
    --devices 5 --first "$DEVICES" >/dev/null
thread_ticks >"$WORK/threads-before"
task_ticks >"$WORK/tasks-before"
before=$(ticks)
times >"$WORK/times-before"
start=$(date +%s.%N)
per_client=$(((DEVICES - 5) / CLIENTS))
pids=()
for c in $(seq 0 $((CLIENTS - 1))); do
    "$BUILD/perf/dps-loadgen" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$WORK/demo/pki" \
        --devices "$per_client" --first $((1 + c * per_client)) >"$WORK/loadgen-$c.log" &
    pids+=($!)
done
for p in "${pids[@]}"; do
    wait "$p" || { echo "a load generator failed:"; tail -3 "$WORK"/loadgen-*.log; exit 1; }
done
times >"$WORK/times-after"
end=$(date +%s.%N)
after=$(ticks)
thread_ticks >"$WORK/threads-after"
task_ticks >"$WORK/tasks-after"
kill -TERM "$PID"
wait "$PID" || true
PID=""
measured=$((per_client * CLIENTS))
provision_us=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$measured" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')
generator_us=$(awk -v a="$(children_cpu "$WORK/times-before")" -v b="$(children_cpu "$WORK/times-after")" -v n="$measured" 'BEGIN { printf "%.0f", (b - a) * 1e6 / n }')
wall=$(awk -v a="$start" -v b="$end" -v n="$measured" 'BEGIN { printf "%.1f", (b - a) * 1000 / n }')

bare=$("$BUILD/perf/bench-handshake" --pki "$WORK/demo/pki" --count 500 |
    sed -n 's/^bare_mtls_handshake_server_cpu_us=//p')
openssl_version=$("$BUILD/perf/bench-handshake" --pki "$WORK/demo/pki" --count 1 |
    sed -n 's/^openssl_version=//p')

echo "openssl=$openssl_version devices=$measured clients=$CLIENTS store_writers=${STORE_WRITERS:-default} load=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
echo "server_cpu_us_per_provisioning=$provision_us"
echo "bare_mtls_handshake_server_cpu_us=$bare"
echo "provisioning_over_one_bare_handshake=$(awk -v a="$provision_us" -v b="$bare" 'BEGIN { printf "%.2f", a / b }')"
echo "provisioning_over_two_bare_handshakes=$(awk -v a="$provision_us" -v b="$bare" 'BEGIN { printf "%.2f", a / (2 * b) }')"
echo "generator_cpu_us_per_provisioning=$generator_us (the $CLIENTS sequential dps-loadgen processes; the fleet generator's: perf/capacity.sh)"
echo "generator_over_server_per_provisioning=$(awk -v a="$generator_us" -v b="$provision_us" 'BEGIN { printf "%.2f", a / b }')"
join "$WORK/threads-before" "$WORK/threads-after" |
    awk -v hz="$NS" -v n="$measured" '{ printf "thread_cpu_us_per_provisioning[%s]=%.0f\n", $1, ($3 - $2) / hz * 1e6 / n }'
join "$WORK/tasks-before" "$WORK/tasks-after" |
    awk -v hz="$NS" -v n="$measured" '{ split($1, k, "@"); us = ($3 - $2) / hz * 1e6 / n
        threads[k[1]]++; if (us > busiest[k[1]]) busiest[k[1]] = us }
        END { for (t in threads) if (threads[t] > 1 && busiest[t] > 0)
            printf "busiest_thread_cpu_us_per_provisioning[%s]=%.0f (of %d threads)\n", t, busiest[t], threads[t] }' | sort
echo "wall_ms_per_device=$wall (loopback, generator on the same 2 cores)"
