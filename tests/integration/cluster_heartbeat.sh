#!/usr/bin/env bash
# Heartbeats keep one Redis connection (issue 11, weak point of the first
# version, which opened one per beat): over ten beats of an idle node, Redis's
# INFO stats total_connections_received grows by at most two, and the node
# says it opened one. Redis restarted: the beats connect again on their own
# (with back-off while Redis is away) and the node is listed again; it
# withdraws its entry when it stops, with no ASan report.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"

cluster_prelude 7

metric() { curl -s "http://127.0.0.1:$API_A/metrics" | awk -v m="$1" '$1 == m {s += $2} END {print s + 0}'; }
connections_received() {
    redis-cli -p "$REDIS_PORT" info stats | tr -d '\r' | awk -F: '$1 == "total_connections_received" {print $2}'
}
# wait_beats N: up to 60 s until dps_cluster_heartbeats_total reaches N.
wait_beats() {
    for _ in $(seq 1 600); do
        [ "$(metric dps_cluster_heartbeats_total)" -ge "$1" ] && return 0
        sleep 0.1
    done
    echo "# only $(metric dps_cluster_heartbeats_total) beats"
    return 1
}
listed() { [ "$(redis-cli -p "$REDIS_PORT" exists dps:node:a)" = 1 ]; }

start_redis
# The demo writes its configuration at the first start. A long command timeout keeps the shards'
# clients from reconnecting on a starved machine, which would add connections that are not the
# beats'.
start_node a "$PORT_A" "$API_A" >/dev/null && stop_node a
printf 'cluster:\n  commandTimeout: 2s\n' >>"$DEMO/dpsd.yaml"
if start_node a "$PORT_A" "$API_A" --redis "127.0.0.1:$REDIS_PORT" && wait_beats 2; then
    ok "a node joins and beats"
else
    not_ok "a node joins and beats"
    finish
fi

# The node's other clients (its shards', the configuration sync's) connect once and stay: the
# difference over ten beats is what the beats opened.
before=$(connections_received)
beats=$(metric dps_cluster_heartbeats_total)
in_shell "ten more beats" wait_beats $((beats + 10))
after=$(connections_received)
check "Redis received at most 2 connections over 10 beats (got $((after - before)), redis-cli's own included)" \
    test $((after - before)) -le 2
check "the beats opened one connection" test "$(metric dps_cluster_heartbeat_connections_total)" = 1

# Redis away for a while, then back on the same port, empty: the beats reconnect by themselves.
stop_redis
for _ in $(seq 1 100); do
    [ "$(metric dps_cluster_heartbeat_failures_total)" -ge 2 ] && break
    sleep 0.1
done
start_redis
reconnected() {
    for _ in $(seq 1 300); do
        listed && [ "$(metric dps_cluster_heartbeat_connections_total)" -ge 2 ] && return 0
        sleep 0.1
    done
    return 1
}
in_shell "after a Redis restart the node is listed again, on a new connection" reconnected
# The shards' clients reconnect on their own schedule meanwhile: follow the beats' connection by
# its name.
session_id() {
    redis-cli -p "$REDIS_PORT" client list | tr -d '\r' |
        sed -n 's/^id=\([0-9]*\) .* name=dps-admin-session .*/\1/p'
}
first_id=$(session_id)
beats=$(metric dps_cluster_heartbeats_total)
wait_beats $((beats + 5)) >/dev/null
check "and keeps that one over 5 beats (client id $first_id, then $(session_id))" \
    sh -c "[ -n '$first_id' ] && [ '$first_id' = '$(session_id)' ] && [ $(metric dps_cluster_heartbeat_connections_total) = 2 ]"

stop_status=0
stop_node a || stop_status=$?
check "the node stops cleanly (exit $stop_status) and withdraws its entry" \
    sh -c "[ $stop_status = 0 ] && [ \"\$(redis-cli -p $REDIS_PORT exists dps:node:a)\" = 0 ]"
finish
