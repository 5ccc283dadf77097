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
#
# Both nodes run with a signing rate (SIGNING_RATE, default 1000/s, above
# what this machine provisions, so it never refuses): the cluster node takes
# it in leases from Redis, as a cluster would. Redis's work then has two
# parts: per provisioning (the claim, the leases: counted from the node's
# dps_rate_redis_round_trips_total) and per node per second whatever the
# load (the heartbeat, the configuration sync's poll, the re-seed marker's
# check, the idle lease registration), measured while only the single node
# works. Round trips are the commands the node sent (EVALSHA, the marker's
# EXISTS, the heartbeat's pipelined SET and SADD counted once); the
# commands Redis runs inside scripts are listed apart.
. "$(dirname "$0")/lib.sh"
DEVICES=${1:-400}
ROUNDS=${2:-3}
SIGNING_RATE=${SIGNING_RATE:-1000}
perf_build build-perf
LOADGEN=$BUILD/perf/dps-loadgen

WORK=$(mktemp -d /tmp/dps-perf.XXXXXX)
PIDS=()
# (|| true: under set -e a killed process's status would end the trap, and the script, with 137.)
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

REDIS_PORT=$(perf_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --logfile "$WORK/redis.log" </dev/null >/dev/null 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_listen "$REDIS_PORT"
# Redis's own cost with no node connected (its timers): 5 s of it, per second.
# Redis's CPU so far, in microseconds.
redis_cpu_now() { redis-cli -p "$REDIS_PORT" info cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.0f", s * 1e6}'; }
baseline_before=$(redis_cpu_now)
sleep 5
baseline_us=$((($(redis_cpu_now) - baseline_before) / 5))

SINGLE_PORT=$(perf_port)
CLUSTER_PORT=$(perf_port)
CLUSTER_API=$(perf_port)
# The demo writes its configuration at its first start; the signing rate goes in before the runs.
"$BUILD/dpsd" --demo "$WORK/demo" --listen "127.0.0.1:$SINGLE_PORT" --shards 1 --log-level warn \
    --api-listen "127.0.0.1:$(perf_port)" --data-dir "$WORK/first-data" >"$WORK/first.log" 2>&1 &
FIRST_PID=$!
wait_listen "$SINGLE_PORT"
kill -TERM "$FIRST_PID"
wait "$FIRST_PID" || true
printf 'limits:\n  signingRate: %s\n  signingBurst: %s\n' "$SIGNING_RATE" "$SIGNING_RATE" >>"$WORK/demo/dpsd.yaml"
"$BUILD/dpsd" --demo "$WORK/demo" --listen "127.0.0.1:$SINGLE_PORT" --shards 1 --log-level warn \
    --api-listen "127.0.0.1:$(perf_port)" \
    --data-dir "$WORK/single-data" >"$WORK/single.log" 2>&1 &
SINGLE_PID=$!
PIDS+=("$SINGLE_PID")
wait_listen "$SINGLE_PORT"
"$BUILD/dpsd" --demo "$WORK/demo" --listen "127.0.0.1:$CLUSTER_PORT" --shards 1 --log-level warn \
    --api-listen "127.0.0.1:$CLUSTER_API" \
    --data-dir "$WORK/cluster-data" --redis "127.0.0.1:$REDIS_PORT" --node n1 \
    >"$WORK/cluster.log" 2>&1 &
CLUSTER_PID=$!
PIDS+=("$CLUSTER_PID")
wait_listen "$CLUSTER_PORT"
PKI=$WORK/demo/pki
"$LOADGEN" gen --pki "$PKI" --devices $(((2 * ROUNDS + 1) * DEVICES)) >/dev/null

redis_info() { redis-cli -p "$REDIS_PORT" info "$1" | tr -d '\r'; }
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
single_leases=0 single_beats=0 cluster_leases=0 cluster_beats=0
# The cluster node's counter NAME (its /metrics, summed over labels).
metric() {
    curl -s "http://127.0.0.1:$CLUSTER_API/metrics" | awk -v m="$1" '$1 ~ "^" m "({|$)" {s += $2} END {printf "%d", s}'
}
# Redis's commands since the last CONFIG RESETSTAT, "name calls" (this script's own left out).
commands() {
    redis_info commandstats | sed -n 's/^cmdstat_\([a-z|]*\):calls=\([0-9]*\),.*/\1 \2/p' |
        grep -v -E '^(info|config)'
}
measure() {
    local -n wall=${1}_wall redis=${1}_redis node_ticks=${1}_ticks leases=${1}_leases beats=${1}_beats
    local port=$2 pid=$3 ticks_before us_before start leases_before beats_before
    redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
    leases_before=$(metric dps_rate_redis_round_trips_total)
    beats_before=$(metric dps_cluster_heartbeats_total)
    ticks_before=$(ticks "$pid")
    us_before=$(redis_cpu_now)
    start=$(now)
    run "$port" "$first"
    wall=$(awk -v a="$start" -v b="$(now)" -v w="$wall" 'BEGIN {print w + b - a}')
    redis=$((redis + $(redis_cpu_now) - us_before))
    node_ticks=$((node_ticks + $(ticks "$pid") - ticks_before))
    commands >>"$WORK/commands-$1"
    leases=$((leases + $(metric dps_rate_redis_round_trips_total) - leases_before))
    beats=$((beats + $(metric dps_cluster_heartbeats_total) - beats_before))
    first=$((first + DEVICES))
}
: >"$WORK/commands-single"
: >"$WORK/commands-cluster"
thread_ticks "$SINGLE_PID" >"$WORK/single-threads-before"
thread_ticks "$CLUSTER_PID" >"$WORK/cluster-threads-before"
for round in $(seq 1 "$ROUNDS"); do
    # Odd rounds start with the single node, even ones with the cluster node: neither is always
    # the one that runs on a bigger store or a warmer cache.
    [ $((round % 2)) = 0 ] || measure single "$SINGLE_PORT" "$SINGLE_PID"
    measure cluster "$CLUSTER_PORT" "$CLUSTER_PID"
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

# name calls, summed: "name calls, ..." for awk.
by_name() { awk '{c[$1] += $2} END {for (k in c) printf "%s %d, ", k, c[k]}' "$1" | sed 's/, $//'; }

awk -v hz="$HZ" -v n="$measured" -v st="$single_ticks" -v ct="$cluster_ticks" \
    -v rus="$cluster_redis" -v rate="$pipelined_rate" -v sus="$pipelined_server_us" \
    -v ous="$one_server_us" -v idle="$single_redis" -v sw="$single_wall" -v cw="$cluster_wall" \
    -v cnames="$(by_name "$WORK/commands-cluster")" -v inames="$(by_name "$WORK/commands-single")" \
    -v leases="$cluster_leases" -v beats="$cluster_beats" -v ileases="$single_leases" \
    -v ibeats="$single_beats" -v devices="$DEVICES" -v rounds="$ROUNDS" \
    -v signing="$SIGNING_RATE" -v baseline="$baseline_us" 'function parse(text, into,    pairs, kv, i) {
        split(text, pairs, ", ")
        for (i in pairs) { split(pairs[i], kv, " "); into[kv[1]] = kv[2] + 0 }
    }
    function listed(into, per,    k, out) {
        out = ""
        for (k in into) out = out sprintf("%s%s %.2f", out == "" ? "" : ", ", k, into[k] / per)
        return out
    }
    BEGIN {
    parse(cnames, busy); parse(inames, quiet)
    single = st / hz * 1e6 / n; cluster = ct / hz * 1e6 / n
    # While only the single node works, Redis serves the idle cluster node: its cost per second,
    # beyond the cost of Redis alone (measured before any node started).
    idle_us = idle / sw - baseline
    redis_raw = rus / n; redis = (rus - (idle_us + baseline) * cw) / n
    # The idle node per second: every top-level call (EVALSHA of the sync poll and of the lease
    # registration, the marker EXISTS, the heartbeat pipeline once).
    idle_trips = (quiet["evalsha"] + quiet["exists"] + ibeats) / sw
    # Busy: each provisioning is a new device, so one claim (inside it EXISTS, 2 GET, 2 SET); the
    # leases are the node counter; what is left of EVALSHA and EXISTS is the periodic work.
    claims = n; periodic = busy["evalsha"] + busy["exists"] + beats - 2 * claims - leases
    trips = (busy["evalsha"] + busy["exists"] + beats - claims) / n
    printf "devices=%d rounds=%d signing_rate=%d/s (each round: %d through the single node and %d through the cluster node, in turn first)\n", devices, rounds, signing, devices, devices
    printf "single_node_cpu_us_per_provisioning=%.0f\n", single
    printf "cluster_node_cpu_us_per_provisioning=%.0f\n", cluster
    printf "cluster_over_single=%+.1f%%\n", (cluster / single - 1) * 100
    printf "redis_round_trips_per_provisioning=%.2f (claim 1.00, leases %.3f, periodic %.3f: the node'"'"'s %.1f calls/s over %.0f s of runs)\n", trips, leases / n, periodic / n, periodic / cw, cw
    printf "redis_commands_per_provisioning_while_busy, inside scripts included: %s\n", listed(busy, n)
    printf "redis_idle_node_round_trips_per_second=%.1f (heartbeats %.2f/s, lease registrations %.2f/s; commands/s: %s)\n", idle_trips, ibeats / sw, ileases / sw, listed(quiet, sw)
    printf "redis_cpu_us_per_provisioning=%.1f (%.1f before subtracting the idle node'"'"'s %.0f us/s and Redis'"'"'s own %.0f us/s)\n", redis, redis_raw, idle_us, baseline
    printf "redis_claim_server_cpu_us=%s one at a time, %s pipelined (bench-redis --script claim, %s claims/s from one client)\n", ous, sus, rate
    # One Redis primary is one thread: at most one core of Redis CPU per second. Each node costs
    # its idle work plus its provisionings.
    node = 16 * 1e6 / cluster
    per_node = node * redis + idle_us
    budget = 1e6 - baseline
    printf "provisionings_per_second_of_a_16_core_node=%.0f\n", node
    printf "redis_cpu_us_per_second_per_busy_16_core_node=%.0f (%.0f x %.1f + %.0f idle)\n", per_node, node, redis, idle_us
    printf "provisionings_per_second_one_redis_core_sustains=%.0f (as measured here), %.0f (claims pipelined)\n", budget / redis, budget / sus
    printf "nodes_one_redis_coordinates=%.1f (as measured here), %.1f (claims pipelined, idle cost as measured), each at 16 cores\n", budget / per_node, budget / (node * sus + idle_us)
}'
for mode in single cluster; do
    join "$WORK/$mode-threads-before" "$WORK/$mode-threads-after" |
        awk -v hz="$HZ" -v n="$measured" -v mode="$mode" '$3 > $2 {
            printf "%s_thread_cpu_us_per_provisioning[%s]=%.0f\n", mode, $1, ($3 - $2) / hz * 1e6 / n }'
done
