#!/usr/bin/env bash
# A reload in the middle of applying another node's changes (issue 11,
# control/cluster_sync.c): blocks are created and deleted through node a,
# one after another, while node b is sent SIGHUP again and again, so b's
# sync thread applies a's changes while b reloads its file. Afterwards b
# holds exactly a's blocklist at the cluster's generation, still provisions,
# and stops cleanly with no sanitizer report.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"

cluster_prelude 6 jq

start_redis
start_pair "two nodes start"
TOKEN=$(cat "$PKI/operator.token")
api() {
    local port=$1 path=$2
    shift 2
    curl -sS --max-time 30 -H "Authorization: Bearer $TOKEN" "$@" "http://127.0.0.1:$port/api/v1$path"
}
block_ids() { api "$1" /blocklist | jq -r '(.result // .).id' | sort; }

# SIGHUP to node b every 50 ms for as long as the changes go on.
(while kill -HUP "$PID_b" 2>/dev/null; do sleep 0.05; done) &
EXTRA_PID=$!
CLUSTER_PIDS+=("$EXTRA_PID")
CHANGES=${CLUSTER_RELOAD_CHANGES:-40}
made=0
for i in $(seq 1 "$CHANGES"); do
    id=$(api "$API_A" /blocklist -X POST --data "{\"deviceId\": \"$(cat /proc/sys/kernel/random/uuid)\"}" | jq -r .id)
    [ -n "$id" ] && [ "$id" != null ] && made=$((made + 1))
    # Every third block goes again: deletions are changes too.
    [ $((i % 3)) != 0 ] || api "$API_A" "/blocklist?idFilter=$id" -X DELETE >/dev/null
done
kill "$EXTRA_PID" 2>/dev/null
wait "$EXTRA_PID" 2>/dev/null
EXTRA_PID=""
reloads=$(grep -c 'msg="reloaded"' "$WORK/b.log")
check "$made blocks made through node a while node b reloaded $reloads times, none failing" \
    sh -c "[ $made = $CHANGES ] && [ $reloads -ge 3 ] && ! grep -q 'msg=\"reload failed\"' '$WORK/b.log'"

generation() { curl -s "http://127.0.0.1:$1/metrics" | awk '$1 == "dps_configuration_generation" {print $2}'; }
converged() {
    for _ in $(seq 1 300); do
        [ "$(block_ids "$API_A")" = "$(block_ids "$API_B")" ] &&
            [ "$(generation "$API_B")" = "$(redis-cli -p "$REDIS_PORT" get dps:config:generation)" ] &&
            return 0
        sleep 0.1
    done
    echo "# a: $(block_ids "$API_A" | wc -l) blocks, b: $(block_ids "$API_B" | wc -l); b at $(generation "$API_B"), redis at $(redis-cli -p "$REDIS_PORT" get dps:config:generation)"
    return 1
}
in_shell "node b ends with node a's blocklist, at the cluster's generation" converged
check "node b holds $((CHANGES - CHANGES / 3)) blocks" \
    test "$(block_ids "$API_B" | wc -l)" = $((CHANGES - CHANGES / 3))
check "a device provisions through node b afterwards" \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT_B" --pki "$PKI" --ca "$PKI/dps-root.pem" \
    --first 1 --devices 1
stop_status=0
stop_node b || stop_status=$?
check "node b stops cleanly (exit $stop_status), no sanitizer report in its log" \
    sh -c "[ $stop_status = 0 ] && ! grep -q -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error' '$WORK/b.log'"
finish
