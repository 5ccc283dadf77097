#!/usr/bin/env bash
# Reloads in the middle of every asynchronous step. A connection, the
# operation it started, the shard's view of the configuration and the
# store's or signer's completion can each outlive the others: on the ASan
# build a use after free aborts dpsd, so "dpsd is still up and exits 0" is
# the check.
#
# 1. Deterministic: a device finishes its handshake, the configuration
#    changes (SIGHUP, or a group written through the API), the device sends
#    a request and drops the connection before the answer; 30 times each.
# 2. Churn: a fleet at 32 devices in flight for 20 s while the API changes a
#    group every 100 ms and SIGHUP arrives every 300 ms, one device in five
#    dropping its connection once in the middle of a step; every device
#    finishes (the drop-outs on retry).
. "$(dirname "$0")/lib.sh"

plan 9
DEMO=$WORK/demo
PKI=$DEMO/pki
PORT=$(free_port)
ENDPOINT=coaps+tcp://127.0.0.1:$PORT
start_dpsd "$DEMO" "$PORT" --shards 2 || { not_ok "dpsd starts"; finish; }
ok "dpsd starts"
API=http://127.0.0.1:$API_PORT
TOKEN=$(cat "$PKI/operator.token")
GROUP_ID=$(curl -s -H "Authorization: Bearer $TOKEN" "$API/api/v1/enrollment-groups" |
    jq -r '.result.id' | head -1)

# put_group NAME: the demo group renamed, through the API (answers only once in force).
put_group() {
    curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
        "$API/api/v1/enrollment-groups/$GROUP_ID" |
        grep -q 200 || return 1
    curl -s -H "Authorization: Bearer $TOKEN" "$API/api/v1/enrollment-groups/$GROUP_ID" |
        jq -c --arg name "$1" '(.result // .) | .name = $name' >"$WORK/group.json" || return 1
    [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' --data-binary @"$WORK/group.json" \
        "$API/api/v1/enrollment-groups/$GROUP_ID")" = 200 ]
}

published() { grep -c 'msg="configuration published"' "$DEMO/dpsd.log"; }

# drop_after_change KIND PATH: handshake, change (sighup|api), request PATH, drop.
drop_after_change() {
    local kind=$1 path=$2 before fifo=$WORK/probe.fifo out=$WORK/probe.out
    rm -f "$fifo"
    mkfifo "$fifo"
    "$PROBE" --endpoint "127.0.0.1:$PORT" --ca "$PKI/dps-root.pem" \
        --cert "$PKI/devices/device-0001.pem" --key "$PKI/devices/device-0001.key" \
        --wait-stdin --drop --get "$path" <"$fifo" >"$out" 2>&1 &
    local probe=$!
    exec 7>"$fifo"
    for _ in $(seq 1 100); do
        grep -q handshake-ok "$out" && break
        sleep 0.05
    done
    before=$(published)
    if [ "$kind" = sighup ]; then
        kill -HUP "$DPSD_PID"
        for _ in $(seq 1 200); do
            [ "$(published)" -gt "$before" ] && break
            sleep 0.05
        done
    else
        put_group "churn-$RANDOM" || echo "# the API change failed"
    fi
    echo go >&7
    exec 7>&-
    wait "$probe"
    grep -q dropped "$out"
}

repeat_drop() {
    local kind=$1 i
    for i in $(seq 1 30); do
        local path=/x.plgd.dev/time
        [ $((i % 2)) = 0 ] && path=/api/v1/provisioning/acls
        drop_after_change "$kind" "$path" || { echo "# round $i: $(cat "$WORK/probe.out")"; return 1; }
        kill -0 "$DPSD_PID" 2>/dev/null || { echo "# dpsd died in round $i"; return 1; }
    done
}

check "handshake, SIGHUP, request, drop: 30 times, dpsd stays up" repeat_drop sighup
check "handshake, API change, request, drop: 30 times, dpsd stays up" repeat_drop api
expect_output "a device still provisions after the drops" "provisioned 1/1" \
    "$LOADGEN" --endpoint "$ENDPOINT" --pki "$PKI" --devices 1 --first 2

# The churn: API writes every 100 ms, SIGHUP every 300 ms, while the fleet runs.
"$LOADGEN" gen --pki "$PKI" --devices 2000 >/dev/null 2>&1
(
    n=0
    while [ ! -e "$WORK/stop" ]; do
        put_group "churn-$n" >/dev/null 2>&1
        n=$((n + 1))
        sleep 0.1
    done
) &
API_CHURN=$!
(
    while [ ! -e "$WORK/stop" ]; do
        kill -HUP "$DPSD_PID" 2>/dev/null
        sleep 0.3
    done
) &
HUP_CHURN=$!
OUTPUT=$("$LOADGEN" --endpoint "$ENDPOINT" --pki "$PKI" --concurrency 32 --duration 20 \
    --drop-every 5 --backoff-scale 0.01 --max-attempts 8 --timeout 60 --threads 2 \
    --report "$WORK/churn.json" 2>&1)
touch "$WORK/stop"
wait "$API_CHURN" "$HUP_CHURN"
printf '%s\n' "$OUTPUT" | grep -E "^(fleet|devices|provisioned)" | sed 's/^/# /'
check "dpsd stays up through 20 s of reloads, API changes and drop-outs" kill -0 "$DPSD_PID"
check "every device finishes, the drop-outs on retry" jq -e \
    '.devices.failed == 0 and .devices.succeeded == .devices.started and .devices.started > 32' \
    "$WORK/churn.json"
check "one device in five dropped a connection mid-step" jq -e \
    '.errors.dropped > 0 and .errors.dropped >= (.devices.started / 5 | floor) - 1' \
    "$WORK/churn.json"
expect_output "configuration changes were published during the run" '^[0-9]{2,}$' published
check_stop "dpsd exits 0 after the churn (no sanitizer report, no leak)"
finish
