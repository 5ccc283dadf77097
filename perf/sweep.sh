#!/usr/bin/env bash
# sweep: capacity planning with dps-loadgen. Steps the offered rate (open
# loop, devices started per second) from --from to --to by --step, each for
# --step-duration seconds, until the end-to-end p99 or the error rate
# crosses its objective; reports the knee (the highest offered rate that met
# both), draws throughput and p99 against offered load with gnuplot, and
# turns the knee into a recommendation: devices/s per server core (measured
# from the server's CPU with --server-pid, else knee / --server-cores) and
# the nodes a burst of --burst-devices in --burst-minutes needs.
#
# usage: perf/sweep.sh --endpoint URI [--endpoint URI...] --pki DIR
#            --from R0 --to R1 --step dR --step-duration S
#            [--p99-ms 1000] [--max-error-rate 0.01] [--out DIR] [--format svg|png]
#            [--server-pid PID | --server-cores N] [--burst-devices 1000000]
#            [--burst-minutes 10] [--loadgen PATH] [-- extra dps-loadgen options]
# Writes DIR/sweep.dat, DIR/step-RATE.json, DIR/sweep.svg (or .png), DIR/summary.txt.
set -eu

endpoints=() pki="" from="" to="" step="" step_duration="" p99_ms=1000 max_error_rate=0.01
out=sweep-out format=svg server_pid="" server_cores=$(nproc) burst_devices=1000000
burst_minutes=10 loadgen="" extra=()

die() {
    echo "sweep: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    --endpoint) endpoints+=(--endpoint "$2"); shift 2 ;;
    --pki) pki=$2; shift 2 ;;
    --from) from=$2; shift 2 ;;
    --to) to=$2; shift 2 ;;
    --step) step=$2; shift 2 ;;
    --step-duration) step_duration=$2; shift 2 ;;
    --p99-ms) p99_ms=$2; shift 2 ;;
    --max-error-rate) max_error_rate=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --format) format=$2; shift 2 ;;
    --server-pid) server_pid=$2; shift 2 ;;
    --server-cores) server_cores=$2; shift 2 ;;
    --burst-devices) burst_devices=$2; shift 2 ;;
    --burst-minutes) burst_minutes=$2; shift 2 ;;
    --loadgen) loadgen=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown option $1 (see the comment at the top of $0)" ;;
    esac
done
[ ${#endpoints[@]} -gt 0 ] && [ -n "$pki" ] && [ -n "$from" ] && [ -n "$to" ] &&
    [ -n "$step" ] && [ -n "$step_duration" ] || die "--endpoint, --pki, --from, --to, --step and --step-duration are required"
case $format in svg | png) ;; *) die "--format is svg or png" ;; esac
awk -v s="$step" 'BEGIN { exit !(s > 0) }' || die "--step must be positive"
if [ -z "$loadgen" ]; then
    for candidate in "$(dirname "$0")/../build/dps-loadgen" "$(command -v dps-loadgen || true)"; do
        if [ -x "$candidate" ]; then loadgen=$candidate; break; fi
    done
fi
[ -x "$loadgen" ] || die "dps-loadgen not found: pass --loadgen PATH"
command -v jq >/dev/null || die "jq is needed"
mkdir -p "$out"

# CPU ticks (user + system) the server process has used so far.
server_ticks() {
    awk '{ print $14 + $15 }' "/proc/$server_pid/stat"
}
ticks_per_second=$(getconf CLK_TCK)

data=$out/sweep.dat
echo "# offered_per_s throughput_per_s p99_ms p50_ms error_rate generator_ms_per_device server_ms_per_device" >"$data"
knee="" knee_throughput="" knee_server_ms="" crossed="" first=1
rate=$from
while awk -v r="$rate" -v t="$to" 'BEGIN { exit !(r <= t + 1e-9) }'; do
    report=$out/step-$rate.json
    before=""
    [ -n "$server_pid" ] && before=$(server_ticks)
    # Each step gets fresh device identities, so no step re-provisions another's devices.
    "$loadgen" "${endpoints[@]}" --pki "$pki" --rate "$rate" --duration "$step_duration" \
        --first "$first" --max-attempts 1 --report "$report" "${extra[@]}" >"$out/step-$rate.log" 2>&1 || true
    [ -s "$report" ] || die "no report for rate $rate (see $out/step-$rate.log)"
    server_ms=""
    if [ -n "$server_pid" ]; then
        after=$(server_ticks)
        server_ms=$(jq -r --argjson t $((after - before)) --argjson hz "$ticks_per_second" \
            'if .devices.succeeded > 0 then $t / $hz * 1000 / .devices.succeeded else 0 end' "$report")
    fi
    read -r throughput p99 p50 error_rate generator_ms started < <(jq -r \
        '[.throughput_per_second, .latency_ms.end_to_end.p99, .latency_ms.end_to_end.p50,
          .error_rate, .cpu.ms_per_device, .devices.started] | @tsv' "$report")
    first=$((first + started))
    printf '%s %s %s %s %s %s %s\n' "$rate" "$throughput" "$p99" "$p50" "$error_rate" \
        "$generator_ms" "${server_ms:-NaN}" >>"$data"
    printf 'offered %8.1f/s  throughput %8.1f/s  p99 %9.1f ms  errors %6.2f%%\n' "$rate" \
        "$throughput" "$p99" "$(awk -v e="$error_rate" 'BEGIN { print e * 100 }')"
    if awk -v p="$p99" -v e="$error_rate" -v P="$p99_ms" -v E="$max_error_rate" \
        'BEGIN { exit !(p > P || e > E) }'; then
        crossed=$rate
        break
    fi
    knee=$rate knee_throughput=$throughput knee_server_ms=$server_ms
    rate=$(awk -v r="$rate" -v s="$step" 'BEGIN { print r + s }')
done

chart=$out/sweep.$format
if command -v gnuplot >/dev/null; then
    if [ "$format" = png ]; then terminal="pngcairo size 900,560"; else terminal="svg size 900,560"; fi
    gnuplot -e "set terminal $terminal" >/dev/null 2>&1 || terminal=$format
    gnuplot <<EOF
set terminal $terminal
set output '$chart'
set title 'dps-loadgen sweep: throughput and p99 against offered load'
set xlabel 'offered load (devices/s)'
set ylabel 'throughput (devices/s)'
set y2label 'end-to-end p99 (ms)'
set ytics nomirror
set y2tics
set grid
set key top left
plot '$data' using 1:2 with linespoints title 'throughput' axes x1y1, \
     '$data' using 1:3 with linespoints title 'p99' axes x1y2, \
     $p99_ms with lines dashtype 2 title 'p99 objective' axes x1y2
EOF
else
    echo "sweep: gnuplot not installed, no chart (deploy/install-deps.sh installs gnuplot-nox)" >&2
    chart=""
fi

{
    echo "objective: end-to-end p99 <= $p99_ms ms, error rate <= $max_error_rate"
    if [ -z "$knee" ]; then
        echo "knee: none: the first step ($from/s) already missed the objective"
    else
        if [ -n "$crossed" ]; then
            echo "knee: $knee devices/s offered ($knee_throughput/s achieved); $crossed/s missed the objective"
        else
            echo "knee: >= $knee devices/s offered ($knee_throughput/s achieved); --to reached without crossing"
        fi
        if [ -n "$knee_server_ms" ] && awk -v m="$knee_server_ms" 'BEGIN { exit !(m > 0) }'; then
            per_core=$(awk -v m="$knee_server_ms" 'BEGIN { printf "%.0f", 1000 / m }')
            echo "server CPU at the knee: $knee_server_ms ms per provisioning -> about $per_core devices/s per core"
        else
            per_core=$(awk -v t="$knee_throughput" -v c="$server_cores" 'BEGIN { printf "%.0f", t / c }')
            echo "per core: about $per_core devices/s (knee throughput over $server_cores server cores; pass --server-pid to measure)"
        fi
        node_rate=$knee_throughput
        if [ -n "$knee_server_ms" ] && awk -v m="$knee_server_ms" 'BEGIN { exit !(m > 0) }'; then
            node_rate=$(awk -v p="$per_core" -v c="$server_cores" 'BEGIN { print p * c }')
        fi
        awk -v n="$burst_devices" -v m="$burst_minutes" -v r="$node_rate" 'BEGIN {
            need = n / (m * 60)
            nodes = (r > 0) ? int(need / r) + ((need / r) > int(need / r)) : 0
            printf "burst: %d devices in %g minutes needs %.0f devices/s: %d node(s) of %.0f devices/s each\n", n, m, need, nodes, r
        }'
    fi
    [ -n "$chart" ] && echo "chart: $chart"
    echo "data: $data"
} | tee "$out/summary.txt"
