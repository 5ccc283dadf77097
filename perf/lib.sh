# Shared by the perf scripts (sourced first): strict mode, the source root as the working folder,
# a release build, loopback ports and the CPU a process and its threads spent, read from /proc.
set -euo pipefail
cd "$(dirname "$0")/.."


# perf_build DIR [TARGET...]: a release tree in DIR (set up when missing), built (only TARGETs
# when given); BUILD names it.
perf_build() {
    BUILD=$1
    shift
    [ -d "$BUILD" ] || meson setup "$BUILD" --buildtype=release >/dev/null
    ninja -C "$BUILD" "$@" >/dev/null
}

# perf_port: a port below the kernel's ephemeral range (32768-60999).
perf_port() { echo $((20000 + RANDOM % 12000)); }

# wait_listen PORT: until something listens on 127.0.0.1:PORT (30 s at most).
wait_listen() {
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}

HZ=$(getconf CLK_TCK)
# ticks PID: user+system CPU ticks of the process.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# thread_ticks PID: "name ticks" per thread kind (shard, signer, store writer, RocksDB, main).
thread_ticks() {
    for task in /proc/"$1"/task/*; do
        name=$(cat "$task/comm")
        echo "${name%-[0-9]*} $(awk '{print $14 + $15}' "$task/stat")"
    done | awk '{sum[$1] += $2} END {for (n in sum) print n, sum[n]}' | sort
}
# task_ticks PID: "name@tid ticks" per thread: a kind with several threads (the store writers) is
# capped by its busiest one.
task_ticks() {
    for task in /proc/"$1"/task/*; do
        name=$(cat "$task/comm")
        echo "${name%-[0-9]*}@${task##*/} $(awk '{print $14 + $15}' "$task/stat")"
    done | sort
}
# callgrind_total FILE: the total instructions of a callgrind output file.
callgrind_total() {
    sed -n 's/^summary: *//p; s/^totals: *//p' "$1" | head -1 | awk '{print $1}'
}
