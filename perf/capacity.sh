#!/usr/bin/env bash
# capacity: what one provisioning costs the server, next to what a bare
# mutual-TLS handshake costs OpenSSL and what HAProxy spends terminating the
# same handshakes, all from one run on this machine, as key=value lines and
# ratios. CPU is read from /proc/PID/stat (user + system), never wall time.
#
#   perf/capacity.sh [--devices N] [--handshakes N] [--concurrency C] [--build DIR]
#                    [--scaling-devices N] [--full-only]
#   perf/capacity.sh --scaling-instructions [--build DIR]
#
# Defaults (about a minute on 2 cores): 3000 devices, 3000 handshakes per
# handshake-only server, 32 devices in flight, release tree build-perf/.
# CAPACITY_SCALE=10 multiplies devices and handshakes for a bigger run.
# --full-only runs step 1 alone (a burst: perf/capacity.sh --devices 100000 --full-only).
# After step 1 it projects a node of PROJECTED_CORES cores (default 16): the
# ceiling is the lowest of cores / (all the server's CPU per provisioning) and
# 1 / the CPU per provisioning of the busiest thread of each kind that does
# not run one per core (the store writers, ...), with the minutes one such
# node needs for a million devices.
#
# 1. dpsd (demo PKI in a temp dir, --shards 1) provisions --devices fleet
#    devices through the whole flow (two mutual-TLS handshakes, time,
#    ownership, cloud configuration with a signed token, CSR verification and
#    issuance, ACLs, resources, every step synced to RocksDB), driven by
#    dps-loadgen --concurrency C --threads 1; the generator's own CPU comes
#    from its report (getrusage); dpsd's resident memory after it (VmRSS and
#    its peak VmHWM, warm-up devices included) from /proc.
# 2. dpsd again, --scenario handshake (mutual TLS with attestation, then
#    close), with identities no earlier step used (no verified-leaf cache hit).
# 3. perf/bench-handshake: the in-process bare mutual-TLS handshake with the
#    same certificates (server side verifies nothing).
# 4. Debian's HAProxy (/usr/sbin/haproxy, one thread) terminating the same
#    mutual TLS: dps-server.pem + key, client certificates verified against
#    mfg-chain.pem, TLS 1.2, the same ECDHE-ECDSA suites, P-256 only; driven
#    by the same generator in --scenario handshake with fresh identities.
# 5. Shard scaling: a dpsd with one shard and one with two, both up the whole
#    time, provision --scaling-devices fresh devices each (default: as many as
#    step 1; 0 skips the step) in four rounds that alternate which goes first;
#    the two-shard server's CPU per provisioning over the one-shard server's
#    (at most 1.05: shards share nothing on the hot path), and each server's
#    dps_attestations_total by path (full chain verifications against
#    verdicts reused) from /metrics. With perf installed, also each server's
#    system calls, context switches and fdatasync calls (the store's synced
#    commits, RocksDB's write groups) per provisioning (all its threads;
#    `perf stat -e raw_syscalls:sys_enter,context-switches,syscalls:sys_enter_fdatasync
#    -p PID` around each round): counts the load barely moves, where the CPU
#    figures do (perf/wakeups.sh breaks them down by thread kind).
#
# --scaling-pinned pins, in step 5, both servers to CPU 0 and their generator to CPU 1
# (taskset), so the two shard threads share one core and one cache while the generator keeps
# the other: on a 2-core machine the unpinned comparison also measures the generator moving
# between the shards' cores and evicting their caches, which a node with a core per shard and
# its load from elsewhere does not see. Each server's user and system CPU per provisioning are
# printed apart in both modes.
#
# --scaling-instructions runs, instead of all that, the shard comparison as a
# figure the noise cannot move: dpsd under callgrind (epoll) with one shard
# and with two, fleet load with 8 devices in flight, instructions per
# provisioning = (Ir(88 devices) - Ir(8 devices)) / 80 for each (about a
# minute with the bundled OpenSSL). What CPU time adds beyond the
# instructions' rise is the machine's (two busy shard threads on shared
# cores), not the code's.
#
# Per-thread CPU comes from /proc/PID/task/TID/schedstat (nanoseconds): at 10
# ms per tick, the busiest of 16 store writers is a handful of ticks and the
# largest of 16 such counts reads high. Every report line names the load
# average (the machine is shared).
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICES=3000 HANDSHAKES=3000 CONCURRENCY=32 BUILD=build-perf FULL_ONLY=0 SCALING_DEVICES=""
SCALING_INSTRUCTIONS=0 SCALING_PINNED=0
while [ $# -gt 0 ]; do
    case $1 in
    --scaling-instructions) SCALING_INSTRUCTIONS=1; FULL_ONLY=1; shift ;;
    --scaling-devices) SCALING_DEVICES=$2; shift 2 ;;
    --scaling-pinned) SCALING_PINNED=1; shift ;;
    --devices) DEVICES=$2; shift 2 ;;
    --handshakes) HANDSHAKES=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --full-only) FULL_ONLY=1; shift ;;
    *) echo "usage: $0 [--devices N] [--handshakes N] [--concurrency C] [--build DIR] [--scaling-devices N] [--scaling-pinned] [--full-only]" >&2; exit 2 ;;
    esac
done
SCALE=${CAPACITY_SCALE:-1}
DEVICES=$((DEVICES * SCALE))
HANDSHAKES=$((HANDSHAKES * SCALE))
SCALING_DEVICES=$(((${SCALING_DEVICES:-$DEVICES}) / 4 * 4))
[ "$FULL_ONLY" = 1 ] && HANDSHAKES=0 && SCALING_DEVICES=0
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
if [ "$FULL_ONLY" = 0 ] && [ ! -x "$HAPROXY" ]; then
    echo "capacity.sh compares with Debian's HAProxy: apt-get install haproxy (or set HAPROXY=path)" >&2
    exit 2
fi

if [ ! -d "$BUILD" ]; then
    meson setup "$BUILD" --buildtype=release >/dev/null
fi
ninja -C "$BUILD" dpsd dpsctl perf/dps-loadgen perf/bench-handshake >/dev/null
LOADGEN=$BUILD/perf/dps-loadgen

WORK=$(mktemp -d /tmp/dps-capacity.XXXXXX)
PID="" PID_ONE="" PID_TWO=""
stop() {
    for p in $PID $PID_ONE $PID_TWO; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    PID="" PID_ONE="" PID_TWO=""
}
trap 'stop; rm -rf "$WORK"' EXIT
load() { cut -d' ' -f1-3 /proc/loadavg; }
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
user_system() { awk '{print $14, $15}' "/proc/$1/stat"; }
wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "capacity: nothing listens on port $1" >&2
    return 1
}
per() { awk -v t="$1" -v hz="$HZ" -v n="$2" 'BEGIN { printf "%.0f", (n > 0 ? t / hz * 1e6 / n : 0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
# report FILE EXPR: a Python expression over the dps-loadgen JSON report r (jq may be absent).
report() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$1" "$2"; }
NS=1000000000
# "name ns" per thread kind of process $1 (shard, signer, store writer, ...).
thread_ticks() {
    task_ticks "$1" |
        awk '{split($1, k, "@"); sum[k[1]] += $2} END {for (n in sum) print n, sum[n]}' | sort
}
# "name@tid ns" per thread of process $1: a kind with several threads (the store writers) is
# capped by its busiest one.
task_ticks() {
    for task in /proc/"$1"/task/*; do
        name=$(cat "$task/comm")
        echo "${name%-[0-9]*}@${task##*/} $(awk '{print $1}' "$task/schedstat")"
    done | sort
}
# run_fleet NAME PORT FIRST COUNT SCENARIO: dps-loadgen against 127.0.0.1:PORT, report in $WORK/NAME.json.
# LOADGEN_PREFIX: words run before dps-loadgen (taskset -c 1 with --scaling-pinned).
run_fleet() {
    # shellcheck disable=SC2086
    ${LOADGEN_PREFIX:-} "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$2" --pki "$PKI" --first "$3" --devices "$4" \
        --scenario "$5" --concurrency "$CONCURRENCY" --threads 1 --max-attempts 1 --timeout 60 \
        --report "$WORK/$1.json" >"$WORK/$1.log" 2>&1 || {
        echo "capacity: dps-loadgen ($1) failed:" >&2
        tail -5 "$WORK/$1.log" >&2
        exit 1
    }
}

# instructions SHARDS DEVICES: dpsd under callgrind provisions DEVICES fleet devices; prints its Ir.
instructions() {
    local dir=$WORK/instructions-$1-$2 port=$((20000 + RANDOM % 12000 & ~1)) pid
    mkdir -p "$dir"
    cp -r "$WORK/pki" "$dir/pki"
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" "$BUILD/dpsd" \
        --demo "$dir" --listen "127.0.0.1:$port" --api-listen "127.0.0.1:$((port + 1))" \
        --shards "$1" --io-backend epoll --log-level warn >"$dir/dpsd.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$port" --pki "$dir/pki" --first 1 --devices "$2" \
        --concurrency 8 --threads 1 --max-attempts 1 --timeout 300 >"$dir/loadgen.log" 2>&1 || {
        echo "capacity: dps-loadgen under callgrind failed:" >&2
        tail -3 "$dir/loadgen.log" >&2
        kill -9 "$pid"
        exit 1
    }
    kill -TERM "$pid"
    wait "$pid" || true
    sed -n 's/^summary: *//p; s/^totals: *//p' "$dir/callgrind.out" | head -1 | awk '{print $1}'
}
if [ "$SCALING_INSTRUCTIONS" = 1 ]; then
    command -v valgrind >/dev/null || { echo "--scaling-instructions needs valgrind" >&2; exit 2; }
    "$BUILD/dpsctl" pki "$WORK/pki" --devices 5 >/dev/null
    "$LOADGEN" gen --pki "$WORK/pki" --devices 88 >/dev/null
    for shards in 1 2; do
        small=$(instructions "$shards" 8)
        large=$(instructions "$shards" 88)
        awk -v a="$small" -v b="$large" -v s="$shards" \
            'BEGIN { printf "shards_%d_instructions_per_provisioning=%.2fM\n", s, (b - a) / 80 / 1e6 }' |
            tee -a "$WORK/instructions.txt"
    done
    awk -F= '{ sub(/M$/, "", $2); v[NR] = $2 } END { printf "shards_2_over_1_instructions_per_provisioning=%.3f\n", v[2] / v[1] }' \
        "$WORK/instructions.txt"
    exit 0
fi

PORT=$((20000 + RANDOM % 20000))
mkdir -p "$WORK/demo"
"$BUILD/dpsd" --demo "$WORK/demo" --listen "127.0.0.1:$PORT" --shards 1 --log-level warn \
    >"$WORK/dpsd.log" 2>&1 &
PID=$!
wait_port "$PORT"
PKI=$WORK/demo/pki
WARMUP=200
# Identities: warm-up, full flow, dpsd handshakes, HAProxy handshakes, each its own range.
FULL_FIRST=$((WARMUP + 1))
DPSD_HS_FIRST=$((FULL_FIRST + DEVICES))
HAPROXY_FIRST=$((DPSD_HS_FIRST + HANDSHAKES))
SCALING_FIRST=$((HAPROXY_FIRST + HANDSHAKES))
TOTAL=$((SCALING_FIRST + 2 * SCALING_DEVICES - 1))
"$LOADGEN" gen --pki "$PKI" --devices "$TOTAL" >"$WORK/gen.log"
echo "# $(cat "$WORK/gen.log")"

# 1. the full flow
run_fleet warmup "$PORT" 1 "$WARMUP" full
thread_ticks "$PID" >"$WORK/threads-before"
task_ticks "$PID" >"$WORK/tasks-before"
before=$(ticks "$PID")
run_fleet full "$PORT" "$FULL_FIRST" "$DEVICES" full
after=$(ticks "$PID")
full_load=$(load)
# The server's memory once every device so far (warm-up included) is provisioned: resident and peak.
rss=$(awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { printf "%d (peak %d)", r, h }' "/proc/$PID/status")
thread_ticks "$PID" >"$WORK/threads-after"
task_ticks "$PID" >"$WORK/tasks-after"
provisioned=$(report "$WORK/full.json" "r['devices']['succeeded']")
provision_us=$(per $((after - before)) "$provisioned")
cpu_per_success="round((r['cpu']['user_seconds'] + r['cpu']['system_seconds']) * 1e6 / r['devices']['succeeded'])"
generator_us=$(report "$WORK/full.json" "$cpu_per_success")

wall=$(report "$WORK/full.json" "round(r['wall_seconds'], 1)")
rate=$(report "$WORK/full.json" "round(r['throughput_per_second'], 1)")
p50=$(report "$WORK/full.json" "r['latency_ms']['end_to_end']['p50']")
p99=$(report "$WORK/full.json" "r['latency_ms']['end_to_end']['p99']")
p999=$(report "$WORK/full.json" "r['latency_ms']['end_to_end']['p99_9']")
full_flow() {
    echo "server_cpu_us_per_provisioning=$provision_us (load $full_load)"
    join "$WORK/threads-before" "$WORK/threads-after" |
        awk -v hz="$NS" -v n="$provisioned" '{ printf "thread_cpu_us_per_provisioning[%s]=%.0f\n", $1, ($3 - $2) / hz * 1e6 / n }'
    echo "server_rss_kb=$rss after $((WARMUP + provisioned)) devices"
    echo "generator_cpu_us_per_provisioning=$generator_us"
    echo "generator_over_server_per_provisioning=$(ratio "$generator_us" "$provision_us")"
    echo "full_flow_rate_per_s=$rate (p50 ${p50} ms, p99 ${p99} ms, p99.9 ${p999} ms, ${wall} s; generator and server share the cores)"
    projection
}
# A node of PROJECTED_CORES cores (default 16): shards and signers run one per core and scale;
# every other thread (a store writer, RocksDB's, the API's, main) is one that provisionings
# pass through: its CPU takes cores like the shards', and the busiest thread of each kind caps
# the node. The ceiling is the lowest of cores / all the server's CPU per provisioning and
# 1 / each kind's busiest thread's CPU.
projection() {
    join "$WORK/tasks-before" "$WORK/tasks-after" |
        awk -v hz="$NS" -v n="$provisioned" -v cores="${PROJECTED_CORES:-16}" '
        { split($1, k, "@"); us = ($3 - $2) / hz * 1e6 / n
          if (k[1] == "dps-shard" || k[1] == "dps-signer") scaling += us
          else if (us > 0) { scaling += us; kind[k[1]] += us; if (us > serial[k[1]]) serial[k[1]] = us } }
        END {
            ceiling = scaling > 0 ? cores * 1e6 / scaling : 0; limit = "cores"
            for (t in serial) { c = 1e6 / serial[t]; if (ceiling == 0 || c < ceiling) { ceiling = c; limit = t } }
            printf "projection_cores=%d all_threads_cpu_us_per_provisioning=%.0f\n", cores, scaling
            for (t in serial) printf "projection_serial_thread_cpu_us[%s]=%.0f (busiest thread; all of the kind %.0f; caps a node at %.0f/s)\n", t, serial[t], kind[t], 1e6 / serial[t]
            printf "projection_node_ceiling_per_s=%.0f (limited by %s)\n", ceiling, limit
            if (ceiling > 0) printf "projection_minutes_per_million_devices=%.1f\n", 1e6 / ceiling / 60
        }'
}
if [ "$FULL_ONLY" = 1 ]; then
    echo "cores=$(nproc) devices=$provisioned/$DEVICES concurrency=$CONCURRENCY load=\"$(load)\""
    full_flow
    exit 0
fi

# 2. dpsd, handshake only
before=$(ticks "$PID")
run_fleet dpsd-handshake "$PORT" "$DPSD_HS_FIRST" "$HANDSHAKES" handshake
after=$(ticks "$PID")
dpsd_handshakes=$(report "$WORK/dpsd-handshake.json" "r['devices']['succeeded']")
dpsd_handshake_us=$(per $((after - before)) "$dpsd_handshakes")
generator_handshake_us=$(report "$WORK/dpsd-handshake.json" "$cpu_per_success")
stop

# 3. the bare in-process handshake
"$BUILD/perf/bench-handshake" --pki "$PKI" --count 1000 >"$WORK/bench.txt"
bare=$(sed -n 's/^bare_mtls_handshake_server_cpu_us=//p' "$WORK/bench.txt")
openssl_version=$(sed -n 's/^openssl_version=//p' "$WORK/bench.txt")

# 4. HAProxy terminating the same mutual TLS
HPORT=$((PORT + 1))
cat "$PKI/dps-server.pem" "$PKI/dps-server.key" >"$WORK/haproxy-server.pem"
cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 30s
frontend dps
    bind 127.0.0.1:$HPORT ssl crt $WORK/haproxy-server.pem ca-file $PKI/mfg-chain.pem verify required ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.2 ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-SHA384 curves P-256
    http-request return status 200
EOF
"$HAPROXY" -c -q -f "$WORK/haproxy.cfg"
"$HAPROXY" -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PID=$!
wait_port "$HPORT" || { cat "$WORK/haproxy.log" >&2; exit 1; }
run_fleet haproxy-warmup "$HPORT" 1 "$WARMUP" handshake
before=$(ticks "$PID")
run_fleet haproxy-handshake "$HPORT" "$HAPROXY_FIRST" "$HANDSHAKES" handshake
after=$(ticks "$PID")
haproxy_handshakes=$(report "$WORK/haproxy-handshake.json" "r['devices']['succeeded']")
haproxy_handshake_us=$(per $((after - before)) "$haproxy_handshakes")
haproxy_version=$("$HAPROXY" -v | sed -n '1s/^HAProxy version \([^ ]*\).*/\1/p')
stop

# attestation_paths API_PORT: dps_attestations_total by path, from the server's /metrics.
attestation_paths() {
    curl -s "http://127.0.0.1:$1/metrics" |
        awk '$1 ~ /^dps_attestations_total/ { p = $1; sub(/.*path="/, "", p); sub(/".*/, "", p); s[p] += $2 }
             END { printf "shards_1_attestations_full=%d shards_1_attestations_cache=%d\n", s["full"], s["cache"] }'
}

# 5. one shard against two, side by side, rounds alternating
scaling() {
    local port_one=$((PORT + 2)) port_two=$((PORT + 4)) ticks_one=0 ticks_two=0 done_one=0 done_two=0
    local per_round=$((SCALING_DEVICES / 4)) first=$SCALING_FIRST server_cpu=() generator_cpu=()
    local user_one=0 system_one=0 user_two=0 system_two=0
    if [ "$SCALING_PINNED" = 1 ]; then
        server_cpu=(taskset -c 0) generator_cpu=(taskset -c 1)
    fi
    for shards in 1 2; do
        mkdir -p "$WORK/shards-$shards"
        cp -r "$PKI" "$WORK/shards-$shards/pki"
    done
    "${server_cpu[@]}" "$BUILD/dpsd" --demo "$WORK/shards-1" --listen "127.0.0.1:$port_one" \
        --api-listen "127.0.0.1:$((port_one + 1))" --shards 1 --log-level warn \
        >"$WORK/shards-1.log" 2>&1 &
    PID_ONE=$!
    "${server_cpu[@]}" "$BUILD/dpsd" --demo "$WORK/shards-2" --listen "127.0.0.1:$port_two" \
        --api-listen "127.0.0.1:$((port_two + 1))" --shards 2 --log-level warn \
        >"$WORK/shards-2.log" 2>&1 &
    PID_TWO=$!
    wait_port "$port_one"
    wait_port "$port_two"
    # The warm-up identities: each server has its own store, so both may use the same ones.
    run_fleet shards-1-warmup "$port_one" 1 "$WARMUP" full
    run_fleet shards-2-warmup "$port_two" 1 "$WARMUP" full
    for round in 1 2 3 4; do
        local order="1 2"
        [ $((round % 2)) = 0 ] && order="2 1"
        for shards in $order; do
            local pid=$PID_ONE port=$port_one
            [ "$shards" = 2 ] && pid=$PID_TWO port=$port_two
            local before after succeeded
            local perf_pid=""
            if command -v perf >/dev/null; then
                perf stat -x, -e raw_syscalls:sys_enter,context-switches,syscalls:sys_enter_fdatasync \
                    -p "$pid" -o "$WORK/shards-$shards-$round.perf" &
                perf_pid=$!
                sleep 0.2 # attached to every thread before the round starts
            fi
            thread_ticks "$pid" >"$WORK/shards-$shards-$round.before"
            local user0 system0 user1 system1
            read -r user0 system0 < <(user_system "$pid")
            before=$(ticks "$pid")
            LOADGEN_PREFIX="${generator_cpu[*]}" run_fleet "shards-$shards-$round" "$port" "$first" \
                "$per_round" full
            after=$(ticks "$pid")
            read -r user1 system1 < <(user_system "$pid")
            if [ -n "$perf_pid" ]; then
                kill -INT "$perf_pid"
                wait "$perf_pid" || true
                awk -F, '$1 ~ /^[0-9]+$/ { print ($3 == "context-switches" ? "context_switches" : $3 ~ /fdatasync/ ? "fdatasync" : "syscalls"), $1 }' \
                    "$WORK/shards-$shards-$round.perf" >>"$WORK/shards-$shards.wakeups"
            fi
            thread_ticks "$pid" >"$WORK/shards-$shards-$round.after"
            join "$WORK/shards-$shards-$round.before" "$WORK/shards-$shards-$round.after" |
                awk '{print $1, $3 - $2}' >>"$WORK/shards-$shards.kinds"
            succeeded=$(report "$WORK/shards-$shards-$round.json" "r['devices']['succeeded']")
            first=$((first + per_round))
            if [ "$shards" = 1 ]; then
                ticks_one=$((ticks_one + after - before)) done_one=$((done_one + succeeded))
                user_one=$((user_one + user1 - user0)) system_one=$((system_one + system1 - system0))
            else
                ticks_two=$((ticks_two + after - before)) done_two=$((done_two + succeeded))
                user_two=$((user_two + user1 - user0)) system_two=$((system_two + system1 - system0))
            fi
        done
    done
    scaling_one_us=$(per "$ticks_one" "$done_one")
    scaling_two_us=$(per "$ticks_two" "$done_two")
    scaling_load=$(load)
    scaling_split_one="user $(per "$user_one" "$done_one") system $(per "$system_one" "$done_one")"
    scaling_split_two="user $(per "$user_two" "$done_two") system $(per "$system_two" "$done_two")"
    for shards in 1 2; do
        local n=$done_one
        [ "$shards" = 2 ] && n=$done_two
        awk -v ns="$NS" -v n="$n" -v s="$shards" '{sum[$1] += $2}
            END {for (k in sum) if (sum[k] > 0) printf "shards_%s_thread_cpu_us_per_provisioning[%s]=%.0f\n", s, k, sum[k] / ns * 1e6 / n}' \
            "$WORK/shards-$shards.kinds" | sort >"$WORK/shards-$shards.report"
        if [ -s "$WORK/shards-$shards.wakeups" ]; then
            awk -v n="$n" -v s="$shards" '{ sum[$1] += $2 }
                END { printf "shards_%s_syscalls_per_provisioning=%.1f shards_%s_context_switches_per_provisioning=%.1f shards_%s_fdatasync_per_provisioning=%.2f\n",
                      s, sum["syscalls"] / n, s, sum["context_switches"] / n, s, sum["fdatasync"] / n }' \
                "$WORK/shards-$shards.wakeups" >>"$WORK/shards-$shards.report"
        fi
    done
    # Chains verified in full against verdicts reused, summed over the shards (warm-up included):
    # a device's second connection should cost no chain verification, whatever shard it lands on.
    attestation_paths "$((port_one + 1))" >>"$WORK/shards-1.report"
    attestation_paths "$((port_two + 1))" | sed 's/shards_1_/shards_2_/g' >>"$WORK/shards-2.report"
    stop
}
if [ "$SCALING_DEVICES" -gt 0 ]; then
    scaling
fi

echo "openssl=$openssl_version haproxy=$haproxy_version cores=$(nproc) devices=$provisioned handshakes=$dpsd_handshakes concurrency=$CONCURRENCY load=\"$(load)\""
full_flow
echo "bare_mtls_handshake_server_cpu_us=$bare"
echo "dpsd_handshake_server_cpu_us=$dpsd_handshake_us"
echo "haproxy_handshake_server_cpu_us=$haproxy_handshake_us"
echo "generator_cpu_us_per_handshake=$generator_handshake_us"
echo "provisioning_over_one_bare_handshake=$(ratio "$provision_us" "$bare")"
echo "provisioning_over_two_bare_handshakes=$(ratio "$provision_us" $((2 * bare)))"
echo "dpsd_handshake_over_bare_handshake=$(ratio "$dpsd_handshake_us" "$bare")"
echo "dpsd_handshake_over_haproxy_handshake=$(ratio "$dpsd_handshake_us" "$haproxy_handshake_us")"
echo "provisioning_over_haproxy_handshake=$(ratio "$provision_us" "$haproxy_handshake_us")"
echo "generator_over_server_per_handshake=$(ratio "$generator_handshake_us" "$dpsd_handshake_us")"
if [ "$SCALING_DEVICES" -gt 0 ]; then
    pinned=""
    [ "$SCALING_PINNED" = 1 ] && pinned=", pinned: servers on CPU 0, generator on CPU 1"
    echo "shards_1_server_cpu_us_per_provisioning=$scaling_one_us ($scaling_split_one; devices $SCALING_DEVICES, four rounds alternating with the two-shard server$pinned, load $scaling_load)"
    echo "shards_2_server_cpu_us_per_provisioning=$scaling_two_us ($scaling_split_two)"
    echo "shards_2_over_1_server_cpu_per_provisioning=$(ratio "$scaling_two_us" "$scaling_one_us") (at most 1.05 when shards scale)"
    cat "$WORK/shards-1.report" "$WORK/shards-2.report"
fi
