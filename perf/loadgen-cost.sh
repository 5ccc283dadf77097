#!/usr/bin/env bash
# loadgen-cost: what dps-loadgen spends per provisioned device, against the
# server's cost, for one generator or several side by side (a build of an
# older tree, --prepare inline, ...) against the same dpsd.
#
#   perf/loadgen-cost.sh [--build DIR] [--devices N] [--rounds R] [--instructions]
#                        [--loadgen NAME=PATH[,OPTION...]]...
#
# dpsd of DIR (default build-perf) runs natively with one shard on a fresh
# demo PKI. Each generator is DIR/perf/dps-loadgen unless --loadgen names
# others: NAME=PATH, optionally followed by dps-loadgen options separated by
# commas (e.g. inline=build-perf/perf/dps-loadgen,--prepare,inline). Every
# run provisions fresh fleet identities through the whole flow.
#
# CPU (default): after a warm-up, R rounds (default 4) in which each
# generator provisions N devices (default 600) with 32 in flight on one
# thread, the order turning each round. Per generator: its CPU per
# provisioning from its report (getrusage from when its clock starts; what it
# prepared before is printed apart), dpsd's from /proc/PID/stat over the same
# runs, and generator / server (issue 12: at most 0.5). The load average is
# printed with each figure: the machine is shared, compare within a run.
#
# --instructions: each generator under callgrind instead (user-space
# instructions, which the noise cannot move), 8 in flight, twice:
#   per_device_with_setup = Ir(N) / N                       (N = --devices, default 100)
#   per_device            = (Ir(N) - Ir(N / 5)) / (N - N / 5)  (set-up and exit cancel out)
#   prepare_per_device    = of which before the run's clock (prepared_device_make, inclusive)
#   run_per_device        = per_device - prepare_per_device
# and the functions with the most inclusive instructions of the N-device run
# (LOADGEN_COST_KEEP=DIR keeps its callgrind.out files there, as NAME.out).
. "$(dirname "$0")/lib.sh"

BUILD=build-perf DEVICES="" ROUNDS=4 INSTRUCTIONS=0
declare -a NAMES=() SPECS=()
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --devices) DEVICES=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --instructions) INSTRUCTIONS=1; shift ;;
    --loadgen) NAMES+=("${2%%=*}"); SPECS+=("${2#*=}"); shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--devices N] [--rounds R] [--instructions] [--loadgen NAME=PATH[,OPTION...]]..." >&2; exit 2 ;;
    esac
done
if [ "$INSTRUCTIONS" = 1 ]; then
    command -v valgrind >/dev/null || { echo "$0 --instructions needs valgrind" >&2; exit 1; }
    DEVICES=${DEVICES:-100}
else
    DEVICES=${DEVICES:-600}
fi
perf_build "$BUILD" dpsd perf/dps-loadgen
if [ ${#NAMES[@]} = 0 ]; then
    NAMES=(this) SPECS=("$BUILD/perf/dps-loadgen")
fi

WORK=$(mktemp -d /tmp/dps-loadgen-cost.XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
PORT=$(perf_port)
"$BUILD/dpsd" --demo "$WORK/demo" --listen "127.0.0.1:$PORT" --api-listen "127.0.0.1:$((PORT + 1))" \
    --shards 1 --log-level warn >"$WORK/dpsd.log" 2>&1 &
PID=$!
wait_listen "$PORT"
PKI=$WORK/demo/pki
WARMUP=100
if [ "$INSTRUCTIONS" = 1 ]; then
    RUNS=$((${#NAMES[@]} * 2))
else
    RUNS=$((${#NAMES[@]} * ROUNDS))
fi
IFS=, read -ra FIRST_SPEC <<<"${SPECS[0]}"
"${FIRST_SPEC[0]}" gen --pki "$PKI" --devices $((WARMUP + RUNS * DEVICES)) >/dev/null
NEXT=$((WARMUP + 1))
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "# dpsd of $BUILD ($("$BUILD/dpsd" --version 2>/dev/null | head -1)), load $(load)"

# fleet SPEC COUNT CONCURRENCY OUT [WRAPPER...]: one generator run on fresh identities.
fleet() {
    local spec=$1 count=$2 concurrency=$3 out=$4
    shift 4
    IFS=, read -ra argv <<<"$spec"
    "$@" "${argv[0]}" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$PKI" --first "$NEXT" \
        --devices "$count" --concurrency "$concurrency" --threads 1 --max-attempts 1 \
        --timeout 300 --report "$out.json" "${argv[@]:1}" >"$out.log" 2>&1 ||
        { echo "dps-loadgen ($spec) failed:" >&2; tail -3 "$out.log" >&2; exit 1; }
    NEXT=$((NEXT + count))
}
report() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$1" "$2"; }

if [ "$INSTRUCTIONS" = 1 ]; then
    total() { sed -n 's/^summary: *//p; s/^totals: *//p' "$1" | head -1 | awk '{print $1}'; }
    # inclusive FILE FUNCTION: the function's inclusive instructions (0 when it never ran).
    inclusive() {
        callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
            awk -v f="$2" '$0 ~ (":" f "( |$)") { gsub(",", "", $1); print $1; found = 1; exit }
                END { if (!found) print 0 }' || true
    }
    small=$((DEVICES / 5))
    for i in "${!NAMES[@]}"; do
        name=${NAMES[$i]}
        for count in "$small" "$DEVICES"; do
            fleet "${SPECS[$i]}" "$count" 8 "$WORK/$name-$count" \
                valgrind --tool=callgrind --callgrind-out-file="$WORK/$name-$count.out"
        done
        awk -v n="$name" -v a="$(total "$WORK/$name-$small.out")" -v s="$small" -v d="$DEVICES" \
            -v b="$(total "$WORK/$name-$DEVICES.out")" \
            -v p="$(inclusive "$WORK/$name-$DEVICES.out" prepared_device_make)" \
            -v q="$(inclusive "$WORK/$name-$small.out" prepared_device_make)" 'BEGIN {
            per = (b - a) / (d - s); prepare = (p - q) / (d - s)
            printf "%s_instructions_per_device_with_setup=%.2fM\n", n, b / d / 1e6
            printf "%s_instructions_per_device=%.2fM\n", n, per / 1e6
            printf "%s_instructions_prepare_per_device=%.2fM\n", n, prepare / 1e6
            printf "%s_instructions_run_per_device=%.2fM\n", n, (per - prepare) / 1e6
        }'
        echo "# $name: the functions with the most inclusive instructions, $DEVICES devices"
        callgrind_annotate --inclusive=yes --threshold=100 "$WORK/$name-$DEVICES.out" 2>/dev/null |
            awk '/^-+$/ {rule++; next} rule >= 3 && NF > 0' | head -40 | sed 's/^/#   /' || true
        [ -z "${LOADGEN_COST_KEEP:-}" ] || cp "$WORK/$name-$DEVICES.out" "$LOADGEN_COST_KEEP/$name.out"
    done
    exit 0
fi

fleet "${SPECS[0]}" "$WARMUP" 32 "$WORK/warmup"
declare -A generator_us system_us server_ticks prepare_us succeeded
for i in "${!NAMES[@]}"; do
    generator_us[$i]=0 system_us[$i]=0 server_ticks[$i]=0 prepare_us[$i]=0 succeeded[$i]=0
done
for round in $(seq 1 "$ROUNDS"); do
    for turn in "${!NAMES[@]}"; do
        i=$(((turn + round) % ${#NAMES[@]}))
        out=$WORK/${NAMES[$i]}-$round
        before=$(ticks "$PID")
        fleet "${SPECS[$i]}" "$DEVICES" 32 "$out"
        after=$(ticks "$PID")
        server_ticks[$i]=$((server_ticks[$i] + after - before))
        generator_us[$i]=$(report "$out.json" \
            "${generator_us[$i]} + (r['cpu']['user_seconds'] + r['cpu']['system_seconds']) * 1e6")
        system_us[$i]=$(report "$out.json" "${system_us[$i]} + r['cpu']['system_seconds'] * 1e6")
        prepare_us[$i]=$(report "$out.json" "${prepare_us[$i]} + r['cpu'].get('prepare_seconds', 0) * 1e6")
        succeeded[$i]=$(report "$out.json" "${succeeded[$i]} + r['devices']['succeeded']")
    done
    echo "# round $round done, load $(load)"
done
for i in "${!NAMES[@]}"; do
    awk -v n="${NAMES[$i]}" -v g="${generator_us[$i]}" -v p="${prepare_us[$i]}" -v hz="$HZ" \
        -v k="${system_us[$i]}" \
        -v t="${server_ticks[$i]}" -v s="${succeeded[$i]}" -v l="$(load)" 'BEGIN {
        server = t / hz * 1e6 / s
        printf "%s_generator_cpu_us_per_provisioning=%.0f (system %.0f; before the clock: %.0f)\n", n, g / s, k / s, p / s
        printf "%s_server_cpu_us_per_provisioning=%.0f\n", n, server
        printf "%s_generator_over_server=%.2f (%d devices, load %s)\n", n, g / s / server, s, l
    }'
done
