#!/usr/bin/env bash
# Device-id bindings are unique across a cluster (issue 11): two demo nodes
# on the same PKI, each with its own store, share one redis-server started
# here on loopback.
#
# 1. D claimed through node A by identity 1; the same D through node B by
#    identity 2 is refused (4.03, no certificate, no token).
# 2. Redis loses everything (FLUSHALL): node A re-seeds its bindings on its
#    own, and the second claim is still refused through either node.
# 3. Redis stopped: a new claim waits (5.03, policy closed), a renewal of a
#    bound device goes on, the status says degraded; Redis back: the new
#    claim succeeds without restarting dpsd.
#    A connection that leaves while its claim waits for a stalled Redis,
#    with a reload meanwhile, harms nothing (ASan checks at every stop).
# 4. A claim Redis lost (node A away, Redis flushed, D given to identity 2
#    through B) meets A's binding at A's re-seed: a conflict, counted, shown
#    in GET /api/v1/bindings, and new claims of D are refused everywhere.
# 5. Releasing D through node B's API frees it cluster-wide (Redis and node
#    A's own copy).
# 6. bindingsWhenRedisDown: local binds without Redis, counts it, and the
#    re-seed carries the binding into Redis when it is back.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"

plan 31
require_tools redis-server redis-cli

D=7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d

# device PORT N [loadgen options]: demo identity N through the node on PORT.
device() {
    local port=$1 n=$2
    shift 2
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$port" --pki "$DEMO/pki" --ca "$DEMO/pki/dps-root.pem" \
        --first "$n" --devices 1 "$@"
}

redis_has() { [ "$(redis-cli -p "$REDIS_PORT" exists "$1")" = 1 ]; }

in_shell "redis-server starts on loopback" start_redis
in_shell "node a starts (demo PKI, its own store)" \
    start_node a "$PORT_A" "$API_A" --redis "127.0.0.1:$REDIS_PORT"
in_shell "node b starts on the same PKI with its own store" \
    start_node b "$PORT_B" "$API_B" --redis "127.0.0.1:$REDIS_PORT" --data-dir "$WORK/b-data"
TOKEN=$(cat "$DEMO/pki/operator.token")
OWNER_KEY=b80c8fef-a677-5340-85fb-2c162d75df03 # the demo owner "1"

# ---- 1. One device id, two nodes ----
check "identity 1 claims D through node a" device "$PORT_A" 1 --di "$D" --out "$WORK/out1"
check "redis holds the binding" redis_has "dps:binding:$OWNER_KEY:$D"
# X-Dps-Forwarded: node b's own store, not the whole cluster's list.
check "identity 2 claiming D through node b gets 4.03, no token and no certificate" \
    sh -c "'$LOADGEN' --endpoint coaps+tcp://127.0.0.1:$PORT_B --pki '$DEMO/pki' \
             --ca '$DEMO/pki/dps-root.pem' --first 2 --devices 1 --di $D --expect-code cloud=4.03 &&
           curl -sS -H 'Authorization: Bearer $TOKEN' -H 'X-Dps-Forwarded: 1' http://127.0.0.1:$API_B/api/v1/issuance |
             jq -e -s 'all(.[]; .result.deviceId != \"$D\")' >/dev/null &&
           curl -sS -H 'Authorization: Bearer $TOKEN' -H 'X-Dps-Forwarded: 1' http://127.0.0.1:$API_B/api/v1/bindings |
             jq -e -s 'length == 0' >/dev/null"

# ---- 2. Redis comes back empty ----
redis-cli -p "$REDIS_PORT" flushall >/dev/null
check "node a re-seeds redis from its store on its own" \
    wait_for redis_has "dps:binding:$OWNER_KEY:$D"
check "the second claim is still refused through node b" \
    device "$PORT_B" 2 --di "$D" --expect-code cloud=4.03
check "and through node a" device "$PORT_A" 2 --di "$D" --expect-code cloud=4.03
if stop_node b &&
    start_node b "$PORT_B" "$API_B" --redis "127.0.0.1:$REDIS_PORT" --data-dir "$WORK/b-data"; then
    ok "node b restarts (clean exit under ASan)"
else not_ok "node b restarts (clean exit under ASan)"; fi
check "after node b's restart too" device "$PORT_B" 2 --di "$D" --expect-code cloud=4.03

# ---- 3. Redis away ----
stop_redis
wait_for sh -c "curl -s http://127.0.0.1:$API_B/metrics | grep -q 'dps_redis_up{shard=\"0\"} 0'"
check "without redis a new claim gets 5.03 (closed policy)" \
    device "$PORT_B" 3 --expect-code cloud=5.03
check "a renewal of a bound device still works" device "$PORT_A" 1 --di "$D" --renew
check "the status says degraded, /readyz stays ready" \
    sh -c "curl -sS -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$API_B/api/v1/status |
             jq -e '.degraded == true and .redis.state == \"down\" and .ready == true' >/dev/null &&
           curl -sf http://127.0.0.1:$API_B/readyz >/dev/null &&
           grep -q 'msg=\"redis down\"' '$WORK/b.log'"
start_redis >/dev/null
wait_for sh -c "curl -s http://127.0.0.1:$API_B/metrics | grep -q 'dps_redis_up{shard=\"1\"} 1' &&
                curl -s http://127.0.0.1:$API_B/metrics | grep -q 'dps_redis_up{shard=\"0\"} 1'"
check "redis back: the new claim succeeds without restarting dpsd" device "$PORT_B" 3

# ---- A connection that leaves and a reload while a claim waits for Redis (ASan watches) ----
E=3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f
CLOUD_HEX=a1626469$(printf '7824%s' "$(printf '%s' "$E" | od -An -tx1 | tr -d ' \n')")
kill -STOP "$REDIS_PID"
"$PROBE" --endpoint "127.0.0.1:$PORT_B" --ca "$DEMO/pki/dps-root.pem" --cert "$DEMO/pki/devices/device-0005.pem" \
    --key "$DEMO/pki/devices/device-0005.key" --post /api/v1/provisioning/cloud-configuration \
    --content-format 60 --payload-hex "$CLOUD_HEX" --drop >"$WORK/drop.out" 2>&1
kill -HUP "$PID_b"
sleep 1
kill -CONT "$REDIS_PID"
wait_for sh -c "curl -s http://127.0.0.1:$API_B/metrics | grep -q 'dps_redis_up{shard=\"1\"} 1' &&
                curl -s http://127.0.0.1:$API_B/metrics | grep -q 'dps_redis_up{shard=\"0\"} 1'"
check "a claim whose connection left during a reload, Redis stalled, harms nothing" \
    sh -c "grep -q dropped '$WORK/drop.out' && kill -0 $PID_b && grep -q 'msg=\"redis down\"' '$WORK/b.log'"
check "and the same identity then gets its id" device "$PORT_B" 5 --di "$E"

# ---- 4. A claim Redis lost meets its twin at the re-seed ----
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {s += $2} END {print s + 0}'; }
if stop_node a; then ok "node a stops cleanly"; else not_ok "node a stops cleanly"; fi
redis-cli -p "$REDIS_PORT" flushall >/dev/null
check "with node a away and redis empty, identity 2 gets D through node b" device "$PORT_B" 2 --di "$D"
in_shell "node a comes back (its re-seed finds D bound twice)" \
    start_node a "$PORT_A" "$API_A" --redis "127.0.0.1:$REDIS_PORT"
check "the conflict is in redis, counted and logged by node a" \
    sh -c "for _ in \$(seq 1 100); do [ \"\$(redis-cli -p $REDIS_PORT exists dps:conflict:$OWNER_KEY:$D)\" = 1 ] && break; sleep 0.1; done
           [ \"\$(redis-cli -p $REDIS_PORT exists dps:conflict:$OWNER_KEY:$D)\" = 1 ] &&
           curl -s http://127.0.0.1:$API_A/metrics | grep -q '^dps_binding_conflicts_total 1' &&
           grep -q 'msg=\"binding conflict\"' '$WORK/a.log'"
check "a new claim of D is refused through either node" \
    sh -c "'$LOADGEN' --endpoint coaps+tcp://127.0.0.1:$PORT_A --pki '$DEMO/pki' --ca '$DEMO/pki/dps-root.pem' \
             --first 4 --devices 1 --di $D --expect-code cloud=4.03 &&
           '$LOADGEN' --endpoint coaps+tcp://127.0.0.1:$PORT_B --pki '$DEMO/pki' --ca '$DEMO/pki/dps-root.pem' \
             --first 4 --devices 1 --di $D --expect-code cloud=4.03"
check "renewals of both records are refused too, through either node" \
    sh -c "'$LOADGEN' --endpoint coaps+tcp://127.0.0.1:$PORT_A --pki '$DEMO/pki' --ca '$DEMO/pki/dps-root.pem' \
             --first 1 --devices 1 --di $D --renew --expect-code credentials=4.03 &&
           '$LOADGEN' --endpoint coaps+tcp://127.0.0.1:$PORT_B --pki '$DEMO/pki' --ca '$DEMO/pki/dps-root.pem' \
             --first 2 --devices 1 --di $D --renew --expect-code credentials=4.03"
# Each node holds its claimant's binding; the list through either node shows both, marked (once
# node a's first heartbeat since its restart has listed it for node b's fan-out).
check "GET /api/v1/bindings shows the conflict to the owner on both nodes" \
    wait_for sh -c "curl -sS -H 'Authorization: Bearer $TOKEN' 'http://127.0.0.1:$API_A/api/v1/bindings?deviceIdFilter=$D' |
             jq -e -s 'length == 2 and all(.[]; .result.conflict == true)' >/dev/null &&
           curl -sS -H 'Authorization: Bearer $TOKEN' 'http://127.0.0.1:$API_B/api/v1/bindings?deviceIdFilter=$D' |
             jq -e -s 'length == 2 and all(.[]; .result.conflict == true)' >/dev/null"

# ---- 5. Release through one node frees D cluster-wide ----
expect_output "the owner releases D through node b" '^\{"count":1\}$' \
    curl -sS -X DELETE -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_B/api/v1/bindings?deviceIdFilter=$D"
check "redis forgets D and node a drops its own copy" \
    wait_for sh -c "[ \"\$(redis-cli -p $REDIS_PORT exists dps:binding:$OWNER_KEY:$D dps:conflict:$OWNER_KEY:$D)\" = 0 ] &&
                    curl -sS -H 'Authorization: Bearer $TOKEN' 'http://127.0.0.1:$API_A/api/v1/bindings?deviceIdFilter=$D' |
                      jq -e -s 'length == 0' >/dev/null"
check "then identity 4 gets D through node a" device "$PORT_A" 4 --di "$D"

# ---- bindingsWhenRedisDown: local ----
F=6e7f8a9b-0c1d-4e2f-8a3b-4c5d6e7f8a9b
cp "$DEMO/dpsd.yaml" "$DEMO/local.yaml"
printf 'cluster:\n  bindingsWhenRedisDown: local\n' >>"$DEMO/local.yaml"
stop_node b
NODE_CONFIG="$DEMO/local.yaml" in_shell "node b restarts with the local policy" \
    start_node b "$PORT_B" "$API_B" --redis "127.0.0.1:$REDIS_PORT" --data-dir "$WORK/b-data"
stop_redis
wait_for sh -c "curl -s http://127.0.0.1:$API_B/metrics | grep -q 'dps_redis_up{shard=\"0\"} 0'"
check "without redis a new claim binds locally, counted" \
    sh -c "'$LOADGEN' --endpoint coaps+tcp://127.0.0.1:$PORT_B --pki '$DEMO/pki' --ca '$DEMO/pki/dps-root.pem' \
             --first 6 --devices 1 --di $F &&
           curl -s http://127.0.0.1:$API_B/metrics | grep -q '^dps_bindings_unreconciled_total 1' &&
           grep -q 'msg=\"binding made without redis\"' '$WORK/b.log'"
start_redis >/dev/null
check "redis back (empty): node b's re-seed carries the local binding" \
    wait_for redis_has "dps:binding:$OWNER_KEY:$F"

if stop_node a && stop_node b; then ok "both nodes stop cleanly"; else not_ok "both nodes stop cleanly"; fi
finish
