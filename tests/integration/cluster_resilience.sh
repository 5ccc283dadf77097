#!/usr/bin/env bash
# A cluster loses its coordination in the middle of a run (issue 11): two
# demo nodes on the same PKI, fleets of devices through both, and Redis taken
# away under them. Nothing is restarted by hand; every device finishes.
#
# 1. Redis stopped mid-run (no persistence: it comes back empty): no crash,
#    both nodes report degraded (status and metrics) while /readyz stays
#    ready, new claims get 5.03 and finish once Redis is back (the devices
#    wait Max-Age and retry), devices bound before renew meanwhile, and the
#    nodes re-seed Redis with every binding they hold.
# 2. Sentinel failover mid-run: a primary, a replica and three sentinels on
#    loopback; the nodes find the primary through the sentinels. The primary
#    is killed; the replica is promoted, the nodes follow it, every device
#    finishes, and every binding of the run, made before the failover or
#    after, is in the new primary.
# 3. kill -9 of one node mid-run through HAProxy (send-proxy-v2, health
#    checks on /readyz through the API port, as deploy/cluster/haproxy.cfg):
#    the devices retry and finish through the other node, and every
#    certificate the devices received (serials, from dps-loadgen --issued) is
#    in the issuance log of exactly one node: the killed node's store read
#    offline (dpsctl --data) right after the crash, the other's through its API.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"

require_tools redis-server redis-cli redis-sentinel haproxy jq
plan 25

OWNER_KEY=b80c8fef-a677-5340-85fb-2c162d75df03 # the demo owner "1"
BOUND=60                            # devices bound before case 1's outage
N=${CLUSTER_DEVICES:-200}           # devices in each run that something breaks in the middle of

# wait_up_to SECONDS COMMAND...: until COMMAND succeeds, tried again until SECONDS have passed.
wait_up_to() {
    local end=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $end ] || return 1
        sleep 0.1
    done
}

# fleet NAME [loadgen options]: devices through both nodes in the background (each device
# keeps one node), report in $WORK/NAME.json, output in $WORK/NAME.out, pid in FLEET_<NAME>.
fleet() {
    local name=$1
    shift
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT_A" --endpoint "coaps+tcp://127.0.0.1:$PORT_B" \
        --pki "$PKI" --ca "$PKI/dps-root.pem" --threads 1 --timeout 90 --max-attempts 4 \
        --report "$WORK/$name.json" "$@" >"$WORK/$name.out" 2>&1 &
    eval "FLEET_$name=$!"
    CLUSTER_PIDS+=("$!")
}

# fleet_done NAME DEVICES: the fleet exits 0 within 180 s, and all DEVICES succeeded.
fleet_done() {
    local pid status=0
    eval "pid=\$FLEET_$1"
    for _ in $(seq 1 1800); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" || status=$?
    grep -E '^(provisioned|renewed|devices|fleet)' "$WORK/$1.out" | sed 's/^/# /'
    if [ $status != 0 ] ||
        ! jq -e ".devices.succeeded == $2 and .devices.failed == 0" "$WORK/$1.json" >/dev/null; then
        echo "exit status $status"
        tail -30 "$WORK/$1.out"
        return 1
    fi
}

metric_sum() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 ~ "^"m"([{]|$)" {s += $2} END {print s + 0}'; }
issued() { echo $(($(metric_sum "$API_A" dps_certificates_issued_total) + $(metric_sum "$API_B" dps_certificates_issued_total))); }
issued_at_least() { [ "$(issued)" -ge "$1" ]; }
# redis_up API_PORT 0|1: every shard of the node reports it.
redis_up() {
    curl -s "http://127.0.0.1:$1/metrics" |
        awk -v want="$2" '/^dps_redis_up[{]/ {n++; if ($2 != want) bad = 1} END {exit bad || n == 0}'
}
both_redis_up() { redis_up "$API_A" "$1" && redis_up "$API_B" "$1"; }
status_of() { curl -sS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$1/api/v1/status"; }

# degraded_everywhere: both nodes say degraded (Redis down) and ready, and logged why.
degraded_everywhere() {
    local api
    for api in "$API_A" "$API_B"; do
        status_of "$api" | jq -e '.degraded == true and .ready == true and .redis.state == "down"' ||
            return 1
        curl -sf "http://127.0.0.1:$api/readyz" >/dev/null || return 1
    done
    grep -q 'msg="redis down"' "$WORK/a.log" && grep -q 'msg="redis down"' "$WORK/b.log"
}

# bindings_in PORT MIN: the nodes hold at least MIN bindings (each store, through its API) and
# every one has its key in the Redis on PORT.
bindings_in() {
    local port=$1 count missing
    (curl -sS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_A/api/v1/bindings"
        curl -sS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_B/api/v1/bindings") |
        jq -r '.result.deviceId' | sort -u >"$WORK/bound.txt"
    count=$(wc -l <"$WORK/bound.txt")
    missing=$(sed "s/^/EXISTS dps:binding:$OWNER_KEY:/" "$WORK/bound.txt" | redis-cli -p "$port" |
        grep -vc '^1$')
    echo "# bindings $count, missing from redis on $port: $missing"
    [ "$count" -ge "$2" ] && [ "$missing" = 0 ]
}

# transient_seen NAME: the fleet met 5.03 and waited its Max-Age.
transient_seen() { jq -e '.coap_codes["5.03"] > 0 and .transient_retries > 0' "$WORK/$1.json"; }

# ---- 1. Redis stopped in the middle of a run ----
REDIS_PORT=$(free_port)
start_redis "$REDIS_PORT" && REDIS_MAIN=$REDIS_PID &&
    start_node a "$PORT_A" "$API_A" --redis "127.0.0.1:$REDIS_PORT" &&
    start_node b "$PORT_B" "$API_B" --redis "127.0.0.1:$REDIS_PORT" --data-dir "$WORK/b-data" ||
    { not_ok "redis and two nodes start"; finish; }
ok "redis and two nodes start (one demo PKI, a store each)"
TOKEN=$(cat "$PKI/operator.token")
"$LOADGEN" gen --pki "$PKI" --devices $((BOUND + 3 * N)) >/dev/null

fleet bound --first 1 --devices $BOUND --concurrency 8
in_shell "$BOUND devices provision through both nodes before the outage" fleet_done bound $BOUND

BEFORE=$(issued)
fleet outage --first $((BOUND + 1)) --devices "$N" --concurrency 6
wait_up_to 60 issued_at_least $((BEFORE + N / 5))
kill -TERM "$REDIS_MAIN"
wait "$REDIS_MAIN" 2>/dev/null
echo "# redis stopped after $(($(issued) - BEFORE)) of the $N certificates"
fleet renew --first 1 --devices $BOUND --concurrency 8 --scenario renew
check "both nodes see redis down (dps_redis_up 0 on every shard)" wait_up_to 10 both_redis_up 0
check "both say degraded in the status, /readyz stays ready, a log line says why" degraded_everywhere
in_shell "the $BOUND bound devices renew while redis is down" fleet_done renew $BOUND
start_redis "$REDIS_PORT"
check "redis back: every shard of both nodes reconnects, no restart" wait_up_to 15 both_redis_up 1
in_shell "every one of the $N devices finishes" fleet_done outage "$N"
check "new claims met 5.03 during the outage and retried after Max-Age" transient_seen outage
check "redis came back empty: the nodes re-seeded every binding they hold" \
    wait_up_to 10 bindings_in "$REDIS_PORT" $((BOUND + N))
check "neither node crashed" kill -0 "$PID_a" "$PID_b"
if stop_node a && stop_node b; then ok "both nodes stop cleanly"; else not_ok "both nodes stop cleanly"; fi
kill -TERM "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null

echo "# case 1 done at $SECONDS s"

# ---- 2. Sentinel failover in the middle of a run ----
PRIMARY=$(free_port)
REPLICA=$(free_port)
SENTINELS=()
start_redis "$PRIMARY" && PRIMARY_PID=$REDIS_PID &&
    start_redis "$REPLICA" --replicaof 127.0.0.1 "$PRIMARY" ||
    { not_ok "a primary and its replica start"; finish; }
for _ in 1 2 3; do
    port=$(free_port)
    while [[ " ${SENTINELS[*]} $PRIMARY $REPLICA " == *" $port "* ]]; do port=$(free_port); done
    SENTINELS+=("$port")
    cat >"$WORK/sentinel-$port.conf" <<CONF
port $port
bind 127.0.0.1
logfile $WORK/sentinel-$port.log
sentinel monitor dps 127.0.0.1 $PRIMARY 2
sentinel down-after-milliseconds dps 1000
sentinel failover-timeout dps 5000
sentinel parallel-syncs dps 1
CONF
    redis-sentinel "$WORK/sentinel-$port.conf" </dev/null >/dev/null 2>&1 &
    CLUSTER_PIDS+=("$!")
done
# Each sentinel knows the replica and the two other sentinels, and the replica is in sync.
sentinels_ready() {
    local port
    [ "$(redis-cli -p "$REPLICA" info replication | tr -d '\r' | grep -c '^master_link_status:up')" = 1 ] ||
        return 1
    for port in "${SENTINELS[@]}"; do
        [ "$(redis-cli -p "$port" sentinel replicas dps 2>/dev/null | grep -c "^$REPLICA$")" -ge 1 ] &&
            [ "$(redis-cli -p "$port" sentinel sentinels dps 2>/dev/null | grep -c '^name$')" = 2 ] ||
            return 1
    done
}
check "three sentinels watch the primary and know its replica and each other" \
    wait_up_to 30 sentinels_ready
{
    echo "cluster:"
    echo "  sentinels: [127.0.0.1:${SENTINELS[0]}, 127.0.0.1:${SENTINELS[1]}, 127.0.0.1:${SENTINELS[2]}]"
    echo "  masterName: dps"
    echo "  keyPrefix: \"dps:\""
    echo "  trustedProxies: [127.0.0.2/32]" # case 3's HAProxy; the others connect from 127.0.0.1
} >>"$DEMO/dpsd.yaml"
start_node a "$PORT_A" "$API_A" && start_node b "$PORT_B" "$API_B" --data-dir "$WORK/b-data" &&
    wait_up_to 10 both_redis_up 1 || { not_ok "the nodes find the primary through the sentinels"; finish; }
ok "the nodes find the primary through the sentinels"

BEFORE=$(issued)
fleet failover --first $((BOUND + N + 1)) --devices "$N" --concurrency 6
wait_up_to 60 issued_at_least $((BEFORE + N / 5))
kill -9 "$PRIMARY_PID"
wait "$PRIMARY_PID" 2>/dev/null
echo "# primary killed after $(($(issued) - BEFORE)) of the $N certificates"
promoted() { redis-cli -p "$REPLICA" role | head -1 | grep -q '^master$'; }
following() {
    local api
    for api in "$API_A" "$API_B"; do
        status_of "$api" | jq -e --arg p "127.0.0.1:$REPLICA" '.redis.primary == $p and .degraded == false' ||
            return 1
    done
}
check "the sentinels promote the replica" wait_up_to 20 promoted
check "both nodes follow the new primary, no restart" wait_up_to 20 following
in_shell "every one of the $N devices finishes" fleet_done failover "$N"
check "every binding of both nodes, before the failover and after, is in the new primary" \
    wait_up_to 10 bindings_in "$REPLICA" $((BOUND + 2 * N))
if stop_node a && stop_node b; then ok "both nodes stop cleanly"; else not_ok "both nodes stop cleanly"; fi

echo "# case 2 done at $SECONDS s"

# ---- 3. kill -9 of one node in the middle of a run through HAProxy ----
REDIS_PORT=$(free_port)
HAPORT=$(free_port)
start_redis "$REDIS_PORT" &&
    start_node a "$PORT_A" "$API_A" --redis "127.0.0.1:$REDIS_PORT" --data-dir "$WORK/a3-data" &&
    start_node b "$PORT_B" "$API_B" --redis "127.0.0.1:$REDIS_PORT" --data-dir "$WORK/b3-data" ||
    { not_ok "two nodes start behind HAProxy"; finish; }
cat >"$WORK/haproxy.cfg" <<CONF
global
    maxconn 2000
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 2
    option redispatch
frontend devices
    bind 127.0.0.1:$HAPORT
    default_backend dps_nodes
backend dps_nodes
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server send-proxy-v2 source 127.0.0.2 inter 300ms fall 2 rise 2
    server a 127.0.0.1:$PORT_A check port $API_A
    server b 127.0.0.1:$PORT_B check port $API_B
CONF
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
CLUSTER_PIDS+=("$!")
check "haproxy listens in front of both nodes" wait_up_to 10 port_in_use "$HAPORT"

BEFORE=$(issued)
"$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$HAPORT" --pki "$PKI" --ca "$PKI/dps-root.pem" \
    --first $((BOUND + 2 * N + 1)) --devices "$N" --concurrency 6 --threads 1 --timeout 90 --max-attempts 4 \
    --backoff-scale 0.5 --issued "$WORK/issued.txt" --report "$WORK/kill.json" \
    >"$WORK/kill.out" 2>&1 &
FLEET_kill=$!
CLUSTER_PIDS+=("$FLEET_kill")
both_served() { [ "$(metric_sum "$API_A" dps_certificates_issued_total)" -ge $((N / 10)) ] &&
    [ "$(metric_sum "$API_B" dps_certificates_issued_total)" -ge $((N / 10)) ]; }
check "haproxy spreads the devices over both nodes" wait_up_to 60 both_served
kill -9 "$PID_a"
wait "$PID_a" 2>/dev/null
PID_a=""
echo "# node a killed after $(metric_sum "$API_B" dps_certificates_issued_total) certificates from node b"
in_shell "every one of the $N devices finishes through node b" fleet_done kill "$N"
check "some devices had to start over (the crash hit them)" jq -e '.restarts > 0' "$WORK/kill.json"
"$DPSCTL" issuance list --data "$WORK/a3-data" --json >"$WORK/issuance-a.json" 2>"$WORK/dpsctl.err"
curl -sS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_B/api/v1/issuance" >"$WORK/issuance-b.json"
# logged_once: each received serial is in exactly one node's log, for its device.
logged_once() {
    jq -r '.result | "\(.deviceId) \(.serial)"' "$WORK/issuance-a.json" "$WORK/issuance-b.json" |
        sort >"$WORK/logged.txt"
    sort -u "$WORK/issued.txt" >"$WORK/received.txt"
    echo "# received $(wc -l <"$WORK/received.txt") certificates; logged: node a" \
        "$(jq -s length "$WORK/issuance-a.json"), node b $(jq -s length "$WORK/issuance-b.json")"
    [ "$(wc -l <"$WORK/received.txt")" -ge "$N" ] && [ "$(jq -s length "$WORK/issuance-a.json")" -gt 0 ] ||
        return 1
    [ -z "$(uniq -d "$WORK/logged.txt")" ] || { echo "logged twice:"; uniq -d "$WORK/logged.txt"; return 1; }
    local missing
    missing=$(comm -23 "$WORK/received.txt" "$WORK/logged.txt")
    [ -z "$missing" ] || { echo "received but not logged:"; echo "$missing" | head; return 1; }
}
in_shell "every certificate received is in the issuance log of the node that issued it" logged_once
in_shell "node a restarts on its store and rejoins" \
    start_node a "$PORT_A" "$API_A" --redis "127.0.0.1:$REDIS_PORT" --data-dir "$WORK/a3-data"
if stop_node a && stop_node b; then ok "both nodes stop cleanly"; else not_ok "both nodes stop cleanly"; fi
finish
