#!/usr/bin/env bash
# wakeups: system calls and context switches per provisioning, per thread kind
# (shard, store writer, signer, ...), for one or several builds and shard
# counts side by side in one run, with the CPU per provisioning next to them.
# A count per provisioning barely moves with the machine's load, where CPU
# does: it shows what the hand-offs between threads cost (a futex wake per
# request, an eventfd per result) apart from the noise.
#
#   perf/wakeups.sh [--devices N] [--concurrency C] [--rounds R] [--shards "1 2"]
#                   [--io-backend io_uring|epoll] [--strace] BUILD [BUILD...]
#
# Defaults: 400 devices per round, 32 in flight, 2 rounds, shards "1 2", io_uring. Each BUILD
# is a built release tree (dpsd, dpsctl and perf/dps-loadgen in it; nothing is built here, so a
# copy of another tree's binaries works as a baseline). Every server (BUILD x shards) is started
# at once on one demo PKI, warmed up with 200 devices, then each provisions fresh fleet devices
# (dps-loadgen, --threads 1) in rounds that rotate which server goes first. Around each round,
# `perf stat --per-thread -e raw_syscalls:sys_enter,context-switches -p PID` counts every
# thread's system calls and context switches (software events and tracepoints: no hardware
# counters needed); /proc/PID/stat gives the CPU. --strace adds, for the last server only, one
# more round under `strace -c` on its shard threads: system calls by name (slow; its CPU figure
# is not reported).
# shellcheck source=perf/lib.sh
source "$(dirname "$0")/lib.sh"

DEVICES=400 CONCURRENCY=32 ROUNDS=2 SHARDS="1 2" BACKEND=io_uring STRACE=0 BUILDS=()
while [ $# -gt 0 ]; do
    case $1 in
    --devices) DEVICES=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --shards) SHARDS=$2; shift 2 ;;
    --io-backend) BACKEND=$2; shift 2 ;;
    --strace) STRACE=1; shift ;;
    -*) echo "usage: $0 [--devices N] [--concurrency C] [--rounds R] [--shards LIST] [--io-backend NAME] [--strace] BUILD..." >&2; exit 2 ;;
    *) BUILDS+=("$1"); shift ;;
    esac
done
[ ${#BUILDS[@]} -gt 0 ] || { echo "$0: name at least one built tree" >&2; exit 2; }
for build in "${BUILDS[@]}"; do
    for binary in dpsd dpsctl perf/dps-loadgen; do
        [ -x "$build/$binary" ] || { echo "$0: $build/$binary is missing" >&2; exit 2; }
    done
done
command -v perf >/dev/null || { echo "$0: needs perf (linux-perf)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/dps-wakeups.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
LOADGEN=${BUILDS[0]}/perf/dps-loadgen
WARMUP=200
"${BUILDS[0]}/dpsctl" pki "$WORK/pki" --devices 5 >/dev/null
SERVERS=()
for build in "${BUILDS[@]}"; do
    for shards in $SHARDS; do
        SERVERS+=("$build|$shards")
    done
done
TOTAL=$((WARMUP + ${#SERVERS[@]} * (ROUNDS + STRACE) * DEVICES))
"$LOADGEN" gen --pki "$WORK/pki" --devices "$TOTAL" >/dev/null

# fleet PORT FIRST COUNT NAME: COUNT full provisionings against PORT, report in $WORK/NAME.json.
fleet() {
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$1" --pki "$WORK/pki" --first "$2" \
        --devices "$3" --scenario full --concurrency "$CONCURRENCY" --threads 1 \
        --max-attempts 1 --timeout 60 --report "$WORK/$4.json" >"$WORK/$4.log" 2>&1 || {
        echo "$0: dps-loadgen ($4) failed:" >&2
        tail -5 "$WORK/$4.log" >&2
        exit 1
    }
}
report() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$1" "$2"; }

PORTS=()
for index in "${!SERVERS[@]}"; do
    IFS='|' read -r build shards <<<"${SERVERS[$index]}"
    port=$(($(perf_port) & ~1))
    mkdir -p "$WORK/server-$index"
    cp -r "$WORK/pki" "$WORK/server-$index/pki"
    "$build/dpsd" --demo "$WORK/server-$index" --listen "127.0.0.1:$port" \
        --api-listen "127.0.0.1:$((port + 1))" --shards "$shards" --io-backend "$BACKEND" \
        --log-level warn >"$WORK/server-$index.log" 2>&1 &
    PIDS+=($!)
    PORTS+=("$port")
done
for index in "${!SERVERS[@]}"; do
    wait_listen "${PORTS[$index]}"
    fleet "${PORTS[$index]}" 1 "$WARMUP" "warmup-$index"
done

first=$((WARMUP + 1))
for round in $(seq 1 "$ROUNDS"); do
    count=${#SERVERS[@]}
    for step in $(seq 0 $((count - 1))); do
        index=$(((step + round - 1) % count))
        pid=${PIDS[$index]}
        perf stat --per-thread -x, -e raw_syscalls:sys_enter,context-switches -p "$pid" \
            -o "$WORK/perf-$index-$round.csv" &
        perf_pid=$!
        sleep 0.2 # perf attaches to every thread
        before=$(ticks "$pid")
        fleet "${PORTS[$index]}" "$first" "$DEVICES" "round-$index-$round"
        after=$(ticks "$pid")
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        first=$((first + DEVICES))
        succeeded=$(report "$WORK/round-$index-$round.json" "r['devices']['succeeded']")
        p50=$(report "$WORK/round-$index-$round.json" "r['latency_ms']['end_to_end']['p50']")
        p99=$(report "$WORK/round-$index-$round.json" "r['latency_ms']['end_to_end']['p99']")
        echo "$index $succeeded $((after - before)) $p50 $p99" >>"$WORK/rounds"
        # "comm-tid,count,,event,...": kinds are the thread names less their number.
        awk -F, -v index_="$index" '$2 ~ /^[0-9]+$/ {
                name = $1; sub(/-[0-9]+$/, "", name); sub(/-[0-9]+$/, "", name)
                event = $4 == "context-switches" ? "cs" : "syscalls"
                print index_, name, event, $2 }' "$WORK/perf-$index-$round.csv" >>"$WORK/counts"
    done
done
load=$(cut -d' ' -f1-3 /proc/loadavg)

echo "devices_per_round=$DEVICES rounds=$ROUNDS concurrency=$CONCURRENCY io_backend=$BACKEND cores=$(nproc) load=\"$load\""
for index in "${!SERVERS[@]}"; do
    IFS='|' read -r build shards <<<"${SERVERS[$index]}"
    read -r done_total ticks_total p50s p99s < <(awk -v i="$index" '$1 == i {
            d += $2; t += $3; p50 = p50 (p50 ? "/" : "") $4; p99 = p99 (p99 ? "/" : "") $5 }
        END { print d, t, p50, p99 }' "$WORK/rounds")
    label="$build,shards=$shards"
    awk -v i="$index" -v n="$done_total" -v label="$label" '$1 == i {
            sum[$2 " " $3] += $4; all[$3] += $4; kinds[$2] = 1 }
        END {
            for (k in kinds) if (sum[k " syscalls"] + sum[k " cs"] > 0)
                printf "wakeups[%s][%s] syscalls_per_provisioning=%.1f context_switches_per_provisioning=%.1f\n",
                    label, k, sum[k " syscalls"] / n, sum[k " cs"] / n
            printf "wakeups[%s][all] syscalls_per_provisioning=%.1f context_switches_per_provisioning=%.1f\n",
                label, all["syscalls"] / n, all["cs"] / n
        }' "$WORK/counts" | sort
    awk -v t="$ticks_total" -v hz="$HZ" -v n="$done_total" -v label="$label" -v p50="$p50s" -v p99="$p99s" \
        'BEGIN { printf "cpu[%s] server_cpu_us_per_provisioning=%.0f devices=%d latency_ms p50=%s p99=%s (per round)\n",
                 label, t / hz * 1e6 / n, n, p50, p99 }'
done

if [ "$STRACE" = 1 ]; then
    index=$((${#SERVERS[@]} - 1))
    pid=${PIDS[$index]}
    tids=$(for task in /proc/"$pid"/task/*; do
        case $(cat "$task/comm") in dps-shard*) printf -- '-p %s ' "${task##*/}" ;; esac
    done)
    # shellcheck disable=SC2086
    strace -c -o "$WORK/strace.txt" $tids &
    strace_pid=$!
    sleep 0.5
    fleet "${PORTS[$index]}" "$first" "$DEVICES" "strace"
    kill -INT "$strace_pid"
    wait "$strace_pid" || true
    succeeded=$(report "$WORK/strace.json" "r['devices']['succeeded']")
    echo "strace[${SERVERS[$index]/|/,shards=}] shard threads, system calls per provisioning by name:"
    # "% time seconds usecs/call calls [errors] syscall"
    awk -v n="$succeeded" '$4 ~ /^[0-9]+$/ && $NF ~ /^[a-z_0-9]+$/ && $NF != "total" {
            printf "  %s %.2f\n", $NF, $4 / n }' \
        "$WORK/strace.txt" | sort -k2 -nr
fi
