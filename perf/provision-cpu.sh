#!/usr/bin/env bash
# Server CPU per full provisioning, next to a bare in-process OpenSSL
# mutual-TLS handshake with the same certificates, from one run on this
# machine. Reproduce with:
#
#   perf/provision-cpu.sh [DEVICES] [CLIENTS]     (defaults 400 and 4)
#
# It builds a release tree in build-perf/, starts dpsd (one shard, demo PKI)
# on loopback, provisions DEVICES fresh devices with dps-loadgen through the
# whole device flow (two mutual-TLS handshakes, time, ownership, cloud
# configuration with a signed token, CSR verification and certificate
# issuance, ACLs, resources, each step's record synced to RocksDB) from
# CLIENTS load-generator processes at once (so group commit shares syncs as it
# does under load), and reads dpsd's user+system CPU time from /proc before
# and after. The load generators' CPU is not counted. It prints the CPU per
# provisioning of each thread kind (all its threads together), and for a kind
# with several threads (the store writers) the busiest one's: a thread every
# provisioning may pass through caps the node at 1 / its CPU.
. "$(dirname "$0")/lib.sh"
DEVICES=${1:-400} CLIENTS=${2:-4}
perf_build build-perf

WORK=$(mktemp -d /tmp/dps-perf.XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
PORT=$(perf_port)
mkdir -p "$WORK/demo"
"$BUILD/dpsctl" pki "$WORK/demo/pki" --devices "$DEVICES" >/dev/null
"$BUILD/dpsd" --demo "$WORK/demo" --listen "127.0.0.1:$PORT" --shards 1 --log-level warn \
    >"$WORK/dpsd.log" 2>&1 &
PID=$!
wait_listen "$PORT" || true

# Warm up (first handshakes load code and tables), then measure.
"$BUILD/perf/dps-loadgen" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$WORK/demo/pki" \
    --devices 5 --first "$DEVICES" >/dev/null
thread_ticks "$PID" >"$WORK/threads-before"
task_ticks "$PID" >"$WORK/tasks-before"
before=$(ticks "$PID")
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
end=$(date +%s.%N)
after=$(ticks "$PID")
thread_ticks "$PID" >"$WORK/threads-after"
task_ticks "$PID" >"$WORK/tasks-after"
kill -TERM "$PID"
wait "$PID" || true
PID=""
measured=$((per_client * CLIENTS))
provision_us=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$measured" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')
wall=$(awk -v a="$start" -v b="$end" -v n="$measured" 'BEGIN { printf "%.1f", (b - a) * 1000 / n }')

bare=$("$BUILD/perf/bench-handshake" --pki "$WORK/demo/pki" --count 500 |
    sed -n 's/^bare_mtls_handshake_server_cpu_us=//p')
openssl_version=$("$BUILD/perf/bench-handshake" --pki "$WORK/demo/pki" --count 1 |
    sed -n 's/^openssl_version=//p')

echo "openssl=$openssl_version devices=$measured clients=$CLIENTS"
echo "server_cpu_us_per_provisioning=$provision_us"
echo "bare_mtls_handshake_server_cpu_us=$bare"
echo "provisioning_over_one_bare_handshake=$(awk -v a="$provision_us" -v b="$bare" 'BEGIN { printf "%.2f", a / b }')"
echo "provisioning_over_two_bare_handshakes=$(awk -v a="$provision_us" -v b="$bare" 'BEGIN { printf "%.2f", a / (2 * b) }')"
join "$WORK/threads-before" "$WORK/threads-after" |
    awk -v hz="$HZ" -v n="$measured" '{ printf "thread_cpu_us_per_provisioning[%s]=%.0f\n", $1, ($3 - $2) / hz * 1e6 / n }'
join "$WORK/tasks-before" "$WORK/tasks-after" |
    awk -v hz="$HZ" -v n="$measured" '{ split($1, k, "@"); us = ($3 - $2) / hz * 1e6 / n
        threads[k[1]]++; if (us > busiest[k[1]]) busiest[k[1]] = us }
        END { for (t in threads) if (threads[t] > 1 && busiest[t] > 0)
            printf "busiest_thread_cpu_us_per_provisioning[%s]=%.0f (of %d threads)\n", t, busiest[t], threads[t] }' | sort
echo "wall_ms_per_device=$wall (loopback, generator on the same 2 cores)"
