#!/usr/bin/env bash
# What joining a cluster costs, side by side in one run (issue 11,
# "Benchmark"). Reproduce with:
#
#   perf/cluster-cpu.sh [DEVICES] [ROUNDS]     (defaults 400 and 3)
#
# It builds a release tree in build-perf/ and starts, on one demo PKI, a
# single node (no cluster section) and a cluster node (--redis, one
# redis-server on loopback without persistence), one shard each, both running
# the whole time. Rounds alternate: DEVICES fresh devices (new device ids, so
# every one is a new cluster-wide claim) through the full flow against the
# single node, then DEVICES others against the cluster node, ROUNDS times.
# For each round it reads the node's user+system CPU from /proc/PID/stat and
# Redis's own CPU (INFO cpu, microseconds); for cluster rounds also the
# commands Redis processed, by name (INFO commandstats after CONFIG RESETSTAT,
# this script's own INFO and CONFIG left out). Redis's CPU while only the
# single node works is its idle cost (its timers, the cluster node's periodic
# checks): per second of wall time, it is subtracted from the cluster rounds'.
# The load generator's CPU is not counted. Then bench-redis --script claim
# gives Redis's CPU per claim, one at a time and pipelined (16 in flight: what
# many busy nodes amount to), and the arithmetic: how many nodes one Redis
# primary (one thread, so one core) can coordinate.
. "$(dirname "$0")/lib.sh"
DEVICES=${1:-400} ROUNDS=${2:-3}
perf_build build-perf
LOADGEN=$BUILD/perf/dps-loadgen

WORK=$(mktemp -d /tmp/dps-perf.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$WORK"' EXIT

REDIS_PORT=$(perf_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --logfile "$WORK/redis.log" </dev/null >/dev/null 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_listen "$REDIS_PORT"

SINGLE_PORT=$(perf_port)
CLUSTER_PORT=$(perf_port)
"$BUILD/dpsd" --demo "$WORK/demo" --listen "127.0.0.1:$SINGLE_PORT" --shards 1 --log-level warn \
    --api-listen "127.0.0.1:$(perf_port)" \
    --data-dir "$WORK/single-data" >"$WORK/single.log" 2>&1 &
SINGLE_PID=$!
PIDS+=("$SINGLE_PID")
wait_listen "$SINGLE_PORT"
"$BUILD/dpsd" --demo "$WORK/demo" --listen "127.0.0.1:$CLUSTER_PORT" --shards 1 --log-level warn \
    --api-listen "127.0.0.1:$(perf_port)" \
    --data-dir "$WORK/cluster-data" --redis "127.0.0.1:$REDIS_PORT" --node n1 \
    >"$WORK/cluster.log" 2>&1 &
CLUSTER_PID=$!
PIDS+=("$CLUSTER_PID")
wait_listen "$CLUSTER_PORT"
PKI=$WORK/demo/pki
"$LOADGEN" gen --pki "$PKI" --devices $(((2 * ROUNDS + 1) * DEVICES)) >/dev/null

redis_info() { redis-cli -p "$REDIS_PORT" info "$1" | tr -d '\r'; }
# Redis's CPU in microseconds and the commands it processed so far.
redis_cpu_us() { redis_info cpu | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.0f", s * 1e6}'; }
now() { date +%s.%N; }

# run PORT FIRST: DEVICES devices from FIRST through the full flow, 16 in flight.
run() {
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$1" --pki "$PKI" --devices "$DEVICES" \
        --first "$2" --concurrency 16 --threads 1 --timeout 60 >"$WORK/loadgen.log" 2>&1 ||
        { echo "the load generator failed:" >&2; tail -5 "$WORK/loadgen.log" >&2; exit 1; }
}

# Warm both nodes up (code, tables, the first sync), then alternate.
first=1
run "$SINGLE_PORT" $first
run "$CLUSTER_PORT" $((first + DEVICES / 2))
first=$((DEVICES + 1))
# measure NAME PORT PID: one run from $first against the node on PORT (process PID); adds the
# node's CPU ticks, Redis's CPU (us) and the wall time (s) to NAME_ticks, NAME_redis, NAME_wall.
single_ticks=0 single_redis=0 single_wall=0 cluster_ticks=0 cluster_redis=0 cluster_wall=0
measure() {
    local -n wall=${1}_wall redis=${1}_redis node_ticks=${1}_ticks
    local port=$2 pid=$3 ticks_before us_before start
    ticks_before=$(ticks "$pid")
    us_before=$(redis_cpu_us)
    start=$(now)
    run "$port" "$first"
    wall=$(awk -v a="$start" -v b="$(now)" -v w="$wall" 'BEGIN {print w + b - a}')
    redis=$((redis + $(redis_cpu_us) - us_before))
    node_ticks=$((node_ticks + $(ticks "$pid") - ticks_before))
    first=$((first + DEVICES))
}
: >"$WORK/commands"
thread_ticks "$SINGLE_PID" >"$WORK/single-threads-before"
thread_ticks "$CLUSTER_PID" >"$WORK/cluster-threads-before"
for round in $(seq 1 "$ROUNDS"); do
    # Odd rounds start with the single node, even ones with the cluster node: neither is always
    # the one that runs on a bigger store or a warmer cache.
    [ $((round % 2)) = 0 ] || measure single "$SINGLE_PORT" "$SINGLE_PID"
    redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
    measure cluster "$CLUSTER_PORT" "$CLUSTER_PID"
    redis_info commandstats | sed -n 's/^cmdstat_\([a-z|]*\):calls=\([0-9]*\),.*/\1 \2/p' |
        grep -v -E '^(info|config)' >>"$WORK/commands"
    [ $((round % 2)) = 1 ] || measure single "$SINGLE_PORT" "$SINGLE_PID"
    echo "round $round: single $((single_ticks * 1000000 / HZ / (round * DEVICES))) us," \
        "cluster $((cluster_ticks * 1000000 / HZ / (round * DEVICES))) us per provisioning (so far)" >&2
done
measured=$((ROUNDS * DEVICES))
thread_ticks "$SINGLE_PID" >"$WORK/single-threads-after"
thread_ticks "$CLUSTER_PID" >"$WORK/cluster-threads-after"
bench=$("$BUILD/perf/bench-redis" --seconds 3 --script claim 2>&1)
pipelined_rate=$(printf '%s\n' "$bench" | awk '/^calls\/s/ {print $3}')
one_server_us=$(printf '%s\n' "$bench" | awk '/^server CPU per call/ {print $6}')
pipelined_server_us=$(printf '%s\n' "$bench" | awk '/^server CPU per call/ {print $7}')

redis_cmds=$(awk '{s += $2} END {print s + 0}' "$WORK/commands")
by_name=$(awk -v n="$measured" '{c[$1] += $2} END {for (k in c) printf "%s %.2f, ", k, c[k] / n}' \
    "$WORK/commands" | sed 's/, $//')

awk -v hz="$HZ" -v n="$measured" -v st="$single_ticks" -v ct="$cluster_ticks" \
    -v rus="$cluster_redis" -v rc="$redis_cmds" -v rate="$pipelined_rate" -v sus="$pipelined_server_us" \
    -v ous="$one_server_us" \
    -v idle="$single_redis" -v sw="$single_wall" -v cw="$cluster_wall" -v names="$by_name" \
    -v devices="$DEVICES" -v rounds="$ROUNDS" 'BEGIN {
    single = st / hz * 1e6 / n; cluster = ct / hz * 1e6 / n
    idle_per_second = idle / sw
    redis_raw = rus / n; redis = (rus - idle_per_second * cw) / n; trips = rc / n
    split(names, pairs, ", ")
    for (i in pairs) { split(pairs[i], kv, " "); per[kv[1]] = kv[2] }
    evalsha = per["evalsha"]; marker = per["exists"] - evalsha
    printf "devices=%d rounds=%d (each round: %d through the single node and %d through the cluster node, in turn first)\n", devices, rounds, devices, devices
    printf "single_node_cpu_us_per_provisioning=%.0f\n", single
    printf "cluster_node_cpu_us_per_provisioning=%.0f\n", cluster
    printf "cluster_over_single=%+.1f%%\n", (cluster / single - 1) * 100
    # The claim script runs EXISTS, 2 GET and 2 SET inside Redis: counted by name, not round trips.
    printf "redis_round_trips_per_provisioning=%.2f (EVALSHA of the claim script %.2f, periodic EXISTS of the re-seed marker %.2f)\n", evalsha + marker, evalsha, marker
    printf "redis_commands_per_provisioning=%.2f, inside scripts included (%s)\n", trips, names
    printf "redis_cpu_us_per_provisioning=%.1f (%.1f before subtracting its idle %.0f us/s)\n", redis, redis_raw, idle_per_second
    printf "redis_claim_server_cpu_us=%s one at a time, %s pipelined (bench-redis --script claim, %s claims/s from one client)\n", ous, sus, rate
    # One Redis primary is one thread: at most one core of Redis CPU per second.
    node = 16 * 1e6 / cluster
    printf "provisionings_per_second_of_a_16_core_node=%.0f\n", node
    printf "provisionings_per_second_one_redis_core_sustains=%.0f (as measured here), %.0f (claims pipelined)\n", 1e6 / redis, 1e6 / sus
    printf "nodes_one_redis_coordinates=%.1f (as measured here), %.1f (claims pipelined), each at 16 cores\n", 1e6 / redis / node, 1e6 / sus / node
}'
for mode in single cluster; do
    join "$WORK/$mode-threads-before" "$WORK/$mode-threads-after" |
        awk -v hz="$HZ" -v n="$measured" -v mode="$mode" '$3 > $2 {
            printf "%s_thread_cpu_us_per_provisioning[%s]=%.0f\n", mode, $1, ($3 - $2) / hz * 1e6 / n }'
done
