#!/usr/bin/env bash
# Enrollment groups, hubs and blocks shared across a cluster (issue 11, items
# 4 and 6): demo nodes on one PKI, each with its own store and its own copy
# of the configuration file (no groups in it: they come through the API),
# sharing one redis-server started here on loopback without persistence.
#
# 1. A group created through node a provisions a device through node b within
#    one second.
# 2. A block through node a refuses the device's next handshake on node b
#    within one second.
# 3. A third node started afterwards has the group and the block before
#    /readyz says ready.
# 4. A hub whose key file is missing on node b is refused there (status,
#    metrics), runs on node a, and is applied on b once the file is back.
# 5. Node b down while node a changes things: b comes back and catches up.
# 6. Redis stopped: node b restarted meanwhile still refuses a device blocked
#    earlier; a block made through node a meanwhile waits in a's outbox; Redis
#    back empty: the nodes re-seed it and b refuses that device too.
# 7. FLUSHALL while both run: they re-seed Redis, and changes flow again.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"

plan 31
require_tools redis-server redis-cli

OTHER=$WORK/other # a second manufacturer
PORT_C=$(free_port)
API_C=$(free_port)
PID_c=""

# node_config NAME: the demo's configuration without its group, with a key "spare-ca"
# read from the node's own folder (the same name, each node its own copy).
node_config() {
    local keys=$WORK/keys-$1
    mkdir -p -m 700 "$keys"
    cp "$PKI/hub-ca.pem" "$PKI/hub-ca.key" "$keys/"
    sed -e '/^enrollmentGroups:/,$d' \
        -e "/^keys:/a\\  - {name: spare-ca, certificate: $keys/hub-ca.pem, key: $keys/hub-ca.key, owners: [\"1\"]}" \
        "$DEMO/dpsd.yaml" >"$DEMO/$1.yaml"
}

# start_config_node NAME: node NAME (a, b or c) on its own copy of the file, its ports and store.
start_config_node() {
    local port api
    eval "port=\$PORT_${1^^}; api=\$API_${1^^}"
    start_node "$1" "$port" "$api" --config "$DEMO/$1.yaml" --redis "127.0.0.1:$REDIS_PORT" \
        --data-dir "$WORK/data-$1"
}

api_of() { eval "echo http://127.0.0.1:\$API_${1^^}/api/v1"; }
api() {
    local node=$1 path=$2
    shift 2
    curl -sS -H "Authorization: Bearer $TOKEN" "$@" "$(api_of "$node")$path"
}
metric() {
    local api
    eval "api=\$API_${1^^}"
    curl -s "http://127.0.0.1:$api/metrics" | awk -v m="$2" '$1 == m {s += $2} END {print s + 0}'
}
probe() { # probe NODE DEVICE: a handshake and one request as demo device DEVICE
    local port
    eval "port=\$PORT_${1^^}"
    "$PROBE" --endpoint "127.0.0.1:$port" --ca "$PKI/dps-root.pem" \
        --cert "$PKI/devices/device-$2.pem" --key "$PKI/devices/device-$2.key" --get /x.plgd.dev/time
}
spki() {
    openssl x509 -in "$PKI/devices/device-$1.pem" -noout -pubkey | openssl pkey -pubin -outform DER |
        sha256sum | cut -d' ' -f1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# within_second COMMAND...: COMMAND succeeds within 1000 ms of now (polled every 20 ms).
within_second() {
    local start
    start=$(now_ms)
    while [ $(($(now_ms) - start)) -le 1000 ]; do
        "$@" >/dev/null 2>&1 && { echo "after $(($(now_ms) - start)) ms"; return 0; }
        sleep 0.02
    done
    echo "not within 1000 ms"
    return 1
}
has_group() { api "$1" "/enrollment-groups?idFilter=$2" | jq -e -s 'length == 1' >/dev/null; }
has_block() { api "$1" "/blocklist" | jq -e -s "any(.[]; (.result // .).id == \"$2\")" >/dev/null; }
lacks_block() { ! has_block "$@"; }

# The demo PKI and configuration (dpsd writes them, then refuses the bogus option).
"$DPSD" --demo "$DEMO" --io-backend none >/dev/null 2>&1
"$DPSCTL" pki "$OTHER" --devices 1 >/dev/null
TOKEN=$(cat "$PKI/operator.token")
for n in a b c; do node_config $n; done

in_shell "redis-server starts on loopback" start_redis
in_shell "node a starts" start_config_node a
in_shell "node b starts (its own store, its own copy of the file)" start_config_node b
check "both nodes are ready with the cluster's configuration" \
    wait_for sh -c "curl -sf http://127.0.0.1:$API_A/readyz && curl -sf http://127.0.0.1:$API_B/readyz"

# ---- 1. A group through a provisions through b ----
HUB_ID=$(api a /hubs | jq -r -s '.[0].result.hubId')
GROUP=$(jq -cn --rawfile chain "$PKI/mfg-chain.pem" --arg hub "$HUB_ID" \
    '{name: "line A", attestationMechanism: {x509: {certificateChain: $chain}}, hubIds: [$hub]}')
GROUP_ID=$(api a /enrollment-groups -X POST --data "$GROUP" | jq -r .id)
check "a group created through node a is in force on node b within one second" \
    within_second has_group b "$GROUP_ID"
check "a device of that group provisions through node b" \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT_B" --pki "$PKI" --ca "$PKI/dps-root.pem" \
    --first 1 --devices 1
check "redis holds the group's document, at a generation" \
    sh -c "redis-cli -p $REDIS_PORT hget dps:config:documents group/$GROUP_ID | jq -e '.generation >= 1 and .node == \"a\"'"

# ---- 2. A block through a refuses on b ----
expect_output "device 2 gets through node b before the block" '^code=2\.05' probe b 0002
BLOCK2=$(api a /blocklist -X POST --data "{\"publicKeySha256\": \"$(spki 0002)\"}" | jq -r .id)
check "a block through node a is in force on node b within one second" \
    within_second has_block b "$BLOCK2"
expect_output "node b refuses the blocked device's next handshake" '^handshake-failed' probe b 0002

# ---- 3. A third node catches up before it is ready ----
start_config_node c >/dev/null
check "node c, started afterwards, has the group and the block when /readyz first says ready" \
    sh -c "for _ in \$(seq 1 150); do curl -sf http://127.0.0.1:$API_C/readyz >/dev/null && break; sleep 0.1; done
           curl -sH 'Authorization: Bearer $TOKEN' '$(api_of c)/enrollment-groups?idFilter=$GROUP_ID' | jq -e -s 'length == 1' &&
           curl -sH 'Authorization: Bearer $TOKEN' '$(api_of c)/blocklist' | jq -e -s 'length == 1'"
check "node c's status gives the cluster's generation" \
    sh -c "[ \"\$(curl -sH 'Authorization: Bearer $TOKEN' '$(api_of c)/status' | jq .node.configurationGeneration)\" = \"\$(redis-cli -p $REDIS_PORT get dps:config:generation)\" ]"
if stop_node c; then ok "node c stops cleanly"; else not_ok "node c stops cleanly"; fi

# ---- 4. A hub whose key file is missing on node b ----
mv "$WORK/keys-b/hub-ca.key" "$WORK/keys-b/hub-ca.key.away"
HUB2=$(api a /hubs | jq -c -s '.[0].result | del(.id, .hubId) | .name = "spare" | .identityCertificate.keyName = "spare-ca"')
HUB2_ID=$(api a /hubs -X POST --data "$HUB2" | jq -r .hubId)
check "the hub runs on node a" sh -c "[ '$HUB2_ID' != null ] && curl -sH 'Authorization: Bearer $TOKEN' '$(api_of a)/hubs?idFilter=$HUB2_ID' | grep -q ."
check "node b refuses it, keeps going, and reports it in its status and metrics" \
    wait_for sh -c "curl -sH 'Authorization: Bearer $TOKEN' '$(api_of b)/status' |
                      jq -e '.node.configurationSync.refused | any(.kind == \"hub\" and .id == \"$HUB2_ID\")' &&
                    curl -s http://127.0.0.1:$API_B/metrics | grep -q '^dps_config_sync_refused 1' &&
                    ! curl -sH 'Authorization: Bearer $TOKEN' '$(api_of b)/hubs?idFilter=$HUB2_ID' | grep -q ."
check "node b still follows later changes" \
    sh -c "BLOCK3=\$(curl -sH 'Authorization: Bearer $TOKEN' -X POST --data '{\"deviceId\": \"7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d\"}' '$(api_of a)/blocklist' | jq -r .id)
           for _ in \$(seq 1 50); do curl -sH 'Authorization: Bearer $TOKEN' '$(api_of b)/blocklist' | grep -q \"\$BLOCK3\" && exit 0; sleep 0.1; done; exit 1"
mv "$WORK/keys-b/hub-ca.key.away" "$WORK/keys-b/hub-ca.key"
check "with the key file back, node b applies the hub on its own" \
    wait_for sh -c "curl -sH 'Authorization: Bearer $TOKEN' '$(api_of b)/hubs?idFilter=$HUB2_ID' | grep -q . &&
                    curl -s http://127.0.0.1:$API_B/metrics | grep -q '^dps_config_sync_refused 0'"

# ---- 5. Node b down while node a changes things ----
if stop_node b; then ok "node b stops cleanly"; else not_ok "node b stops cleanly"; fi
GROUP2=$(jq -cn --rawfile chain "$OTHER/mfg-chain.pem" --arg hub "$HUB_ID" \
    '{name: "line B", attestationMechanism: {x509: {certificateChain: $chain}}, hubIds: [$hub]}')
GROUP2_ID=$(api a /enrollment-groups -X POST --data "$GROUP2" | jq -r .id)
api a "/blocklist?idFilter=$BLOCK2" -X DELETE >/dev/null
BLOCK3=$(api a /blocklist -X POST --data "{\"publicKeySha256\": \"$(spki 0003)\"}" | jq -r .id)
api a "/hubs?idFilter=$HUB2_ID" -X DELETE >/dev/null
in_shell "node b comes back" start_config_node b
check "node b caught up: the new group, the lifted block, the new block, the deleted hub" \
    wait_for sh -c "curl -sf http://127.0.0.1:$API_B/readyz >/dev/null &&
                    curl -sH 'Authorization: Bearer $TOKEN' '$(api_of b)/enrollment-groups?idFilter=$GROUP2_ID' | grep -q . &&
                    ! curl -sH 'Authorization: Bearer $TOKEN' '$(api_of b)/blocklist' | grep -q '$BLOCK2' &&
                    curl -sH 'Authorization: Bearer $TOKEN' '$(api_of b)/blocklist' | grep -q '$BLOCK3' &&
                    ! curl -sH 'Authorization: Bearer $TOKEN' '$(api_of b)/hubs?idFilter=$HUB2_ID' | grep -q ."
expect_output "device 2 gets through node b again" '^code=2\.05' probe b 0002
expect_output "device 3 is refused by node b" '^handshake-failed' probe b 0003
check "a device of the new group provisions through node b" \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT_B" --pki "$OTHER" --ca "$PKI/dps-root.pem" --devices 1 \
    --di 5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b

# ---- 6. Redis away ----
stop_redis
if stop_node b && start_config_node b; then ok "node b restarts while redis is down"; else
    not_ok "node b restarts while redis is down"
fi
check "node b becomes ready on its own copy" wait_for curl -sf "http://127.0.0.1:$API_B/readyz"
expect_output "node b still refuses the device blocked earlier" '^handshake-failed' probe b 0003
BLOCK4=$(api a /blocklist -X POST --data "{\"publicKeySha256\": \"$(spki 0004)\"}" | jq -r .id)
check "a block through node a without redis is in force on a and waits in its outbox" \
    sh -c "[ -n '$BLOCK4' ] && [ '$BLOCK4' != null ] && curl -s http://127.0.0.1:$API_A/metrics | grep -q '^dps_config_sync_outbox 1'"
start_redis >/dev/null
check "redis back empty: the nodes re-seed it, and node b refuses device 4" \
    sh -c "for _ in \$(seq 1 100); do curl -sH 'Authorization: Bearer $TOKEN' '$(api_of b)/blocklist' | grep -q '$BLOCK4' && break; sleep 0.1; done
           curl -sH 'Authorization: Bearer $TOKEN' '$(api_of b)/blocklist' | grep -q '$BLOCK4' &&
           [ \"\$(redis-cli -p $REDIS_PORT hlen dps:config:documents)\" -ge 4 ] &&
           '$PROBE' --endpoint 127.0.0.1:$PORT_B --ca '$PKI/dps-root.pem' --cert '$PKI/devices/device-0004.pem' \
             --key '$PKI/devices/device-0004.key' --get /x.plgd.dev/time | grep -q '^handshake-failed'"

# ---- 7. Redis loses everything while both nodes run ----
redis-cli -p "$REDIS_PORT" flushall >/dev/null
check "after a FLUSHALL the nodes notice and re-seed redis on their own" \
    wait_for sh -c "[ \"\$(redis-cli -p $REDIS_PORT hlen dps:config:documents)\" -ge 6 ] &&
                    [ \"\$(curl -s http://127.0.0.1:$API_B/metrics | awk '\$1 == \"dps_config_sync_reseeds_total\" {print \$2}')\" -ge 1 ]"
BLOCK5=$(api b /blocklist -X POST --data "{\"publicKeySha256\": \"$(spki 0005)\"}" | jq -r .id)
check "then a block through node b is in force on node a within one second" \
    within_second has_block a "$BLOCK5"

if stop_node a && stop_node b; then ok "both nodes stop cleanly"; else not_ok "both nodes stop cleanly"; fi
finish
