#!/usr/bin/env bash
# The shards' Redis client counters on /metrics (issue 11): one demo node with
# two shards on a redis-server started here. Every counter of struct
# redis_stats is there for each shard; commands and replies move when a device
# provisions; a stalled Redis (SIGSTOP) moves unavailable and timeouts, and
# Redis woken again (SIGCONT) moves connects. Then the node stops while
# /metrics is scraped in a loop: the counters belong to the shard's cluster,
# not to the Redis client the shard destroys on its way out, and ASan (the
# node's exit status) says nothing was read after it was freed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"

cluster_prelude 8

COUNTERS="commands replies unavailable busy timeouts late late_replies connects noscript_reloads failovers"

# metric NAME: the sum over the shards of the series NAME{shard="..."}.
metric() {
    curl -s --max-time 10 "http://127.0.0.1:$API_A/metrics" |
        awk -v m="$1" 'index($1, m "{shard=") == 1 {s += $2} END {print s + 0}'
}
# poll COMMAND...: wait_for, six times over (about a minute: the machine may be loaded).
poll() {
    for _ in 1 2 3 4 5 6; do wait_for "$@" && return 0; done
    return 1
}
above() { [ "$(metric "$1")" -gt "$2" ]; }
device() {
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT_A" --pki "$PKI" --ca "$PKI/dps-root.pem" \
        --first "$1" --devices 1 "${@:2}"
}
all_up() {
    local page
    page=$(curl -s --max-time 10 "http://127.0.0.1:$API_A/metrics")
    grep -q 'dps_redis_up{shard="0"} 1' <<<"$page" && grep -q 'dps_redis_up{shard="1"} 1' <<<"$page"
}
# every_series: each counter (a counter type) and the in-flight gauge, for both shards.
every_series() {
    local page name shard
    page=$(curl -s --max-time 10 "http://127.0.0.1:$API_A/metrics")
    for name in $COUNTERS; do
        grep -qx "# TYPE dps_redis_${name}_total counter" <<<"$page" || return 1
        for shard in 0 1; do
            grep -Eq "^dps_redis_${name}_total\{shard=\"$shard\"\} [0-9]+$" <<<"$page" || return 1
        done
    done
    grep -qx '# TYPE dps_redis_in_flight gauge' <<<"$page" &&
        grep -Eq '^dps_redis_in_flight\{shard="0"\} [0-9]+$' <<<"$page" &&
        grep -Eq '^dps_redis_in_flight\{shard="1"\} [0-9]+$' <<<"$page"
}

in_shell "redis-server starts on loopback" start_redis
if start_node a "$PORT_A" "$API_A" --redis "127.0.0.1:$REDIS_PORT" && poll all_up; then
    ok "a node with two shards starts, both clients ready"
else
    not_ok "a node with two shards starts, both clients ready"
    finish
fi
check "every Redis client counter and the in-flight gauge, per shard" every_series

commands=$(metric dps_redis_commands_total)
replies=$(metric dps_redis_replies_total)
check "a device provisions (its claim goes through Redis)" device 1
check "commands and replies move" \
    sh -c "[ $(metric dps_redis_commands_total) -gt $commands ] &&
           [ $(metric dps_redis_replies_total) -gt $replies ]"

unavailable=$(metric dps_redis_unavailable_total)
timeouts=$(metric dps_redis_timeouts_total)
connects=$(metric dps_redis_connects_total)
kill -STOP "$REDIS_PID"
# A new claim meets the stalled Redis (its answer, 5.03 or not, does not matter here).
device 2 >/dev/null 2>&1
if poll above dps_redis_unavailable_total "$unavailable" &&
    poll above dps_redis_timeouts_total "$timeouts"; then
    ok "Redis stalled (SIGSTOP): unavailable and timeouts move"
else
    not_ok "Redis stalled (SIGSTOP): unavailable and timeouts move"
    curl -s "http://127.0.0.1:$API_A/metrics" | grep '^dps_redis' | sed 's/^/# /'
fi
kill -CONT "$REDIS_PID"
if poll all_up && poll above dps_redis_connects_total "$connects"; then
    ok "Redis woken (SIGCONT): both clients ready again, connects moves"
else
    not_ok "Redis woken (SIGCONT): both clients ready again, connects moves"
    curl -s "http://127.0.0.1:$API_A/metrics" | grep '^dps_redis' | sed 's/^/# /'
fi

# Scrape as fast as the API answers while the node stops; ASan fails the exit on a stale read.
(while kill -0 "$PID_a" 2>/dev/null; do
    curl -s --max-time 5 "http://127.0.0.1:$API_A/metrics" >/dev/null && echo >>"$WORK/scrapes"
done) &
SCRAPER=$!
CLUSTER_PIDS+=("$SCRAPER")
poll sh -c "[ \$(wc -l <'$WORK/scrapes') -ge 3 ]"
status=0
stop_node a || status=$?
wait "$SCRAPER" 2>/dev/null
if [ "$status" = 0 ]; then
    ok "the node stops cleanly while /metrics is scraped (no use after free)"
else
    not_ok "the node stops cleanly while /metrics is scraped (no use after free)"
    echo "# dpsd exit status $status"
    tail -30 "$WORK/a.log" | sed 's/^/# /'
fi
finish
