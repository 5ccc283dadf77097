#!/usr/bin/env bash
# Tenants are walls (issue 9), through the management API: each test is an
# attack a second owner (or an anonymous client) made against the demo, run
# the same way, and must now get a clear refusal.
#
# 1. Keys: no document from the API names a file on the node (hub key
#    files, chains, CRLs); hubs name keys the administrator registered, and
#    only their own owner's; a key that signs operator tokens never signs
#    device tokens; token claim names cannot collide; no path or key is shown.
# 2. Knowledge: a collision with another owner's CA, a block of another
#    owner's device id and the status never name or count another owner's
#    things.
# 3. Availability: stalled connections and unauthenticated bodies neither
#    starve the probes nor fill memory; per-owner quotas hold.
# 4. Files at rest: the store is dpsd's alone, and folders others may write
#    are refused.
. "$(dirname "$0")/lib.sh"

plan 56
NODE=$WORK/node
OTHER=$WORK/other # owner 2's hub keys and a second manufacturer
node_pkis 1 1
HEALTH_PORT=$(free_port)
HUB_ID=0c9bb0a4-7a57-4b8e-9d0e-6f2f1a3b4c5d
GROUP_ID=5e1f0b7c-2d3a-4c5b-8e9f-0a1b2c3d4e5f
QUOTAS="{}"

write_config() {
    cat >"$NODE/dpsd.yaml" <<EOF
$(yaml_node "$PORT" 1)
keys:
  - {name: owner1-hub-ca, certificate: pki/hub-ca.pem, key: pki/hub-ca.key, owners: ["1"]}
  - {name: owner1-token, key: pki/token.key, owners: ["1"]}
  - {name: owner2-hub-ca, certificate: $OTHER/hub-ca.pem, key: $OTHER/hub-ca.key, owners: ["2", "3"]}
  - {name: owner2-token, key: $OTHER/token.key, owners: ["2", "3"]}
  - {name: misplaced-operator-key, key: pki/operator.key, owners: ["2"]}
hubs:
$(yaml_hub "$HUB_ID" 1 "" 5684 pki)
enrollmentGroups:
$(yaml_group "$GROUP_ID" 1 "demo devices" pki/mfg-chain.pem "$HUB_ID")
$(yaml_api "$API_PORT")
  healthListen: 127.0.0.1:$HEALTH_PORT
  admins: [ops]
  maxConnections: 256
  maxConnectionsPerSource: 32
  requestTimeout: 3s
  quotas: $QUOTAS
EOF
}

start_node() { start_dpsd_config "$NODE" "$API_PORT"; }

write_config
if start_node; then ok "dpsd starts with a key registry and a health listener"; else
    not_ok "dpsd starts with a key registry and a health listener"
    finish
fi

OWNER1=$(cat "$NODE/pki/operator.token")
OWNER2=$("$DPSCTL" token --key "$NODE/pki/operator.key" --owner 2)
ADMIN=$("$DPSCTL" token --key "$NODE/pki/operator.key" --owner ops)

# hub_doc ID IDENTITY TOKEN [jq filter]: a hub of the caller's; IDENTITY and TOKEN are JSON objects.
hub_doc() {
    jq -nc --arg id "$1" --argjson identity "$2" --argjson token "$3" '{
        hubId: $id, gateways: ["coaps+tcp://127.0.0.1:5685"],
        authorization: {provider: {name: "plgd"}},
        identityCertificate: $identity, token: ($token + {issuer: "https://rogue.example"})
    }' | jq -c "${4:-.}"
}
ROGUE_HUB=7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6
OWN_KEYS=('{"keyName":"owner2-hub-ca"}' '{"keyName":"owner2-token"}')

# ---- 1. One tenant acting with another's keys ----

expect "a hub naming owner 1's CA key files is refused: no path from the API is opened" 400 \
    'identityCertificate.certificate: file paths are not accepted through the management API' \
    "$OWNER2" POST /api/v1/hubs --data "$(hub_doc "$ROGUE_HUB" \
        "{\"certificate\":\"$NODE/pki/hub-ca.pem\",\"key\":\"$NODE/pki/hub-ca.key\"}" "${OWN_KEYS[1]}")"
expect "a hub naming the API's operator key file as its token key is refused" 400 \
    'token.key: file paths are not accepted' \
    "$OWNER2" POST /api/v1/hubs --data "$(hub_doc "$ROGUE_HUB" "${OWN_KEYS[0]}" \
        "{\"key\":\"$NODE/pki/operator.key\"}" '.authorization.deviceIdClaim = "https://plgd.dev/deviceId"')"
foreign=$(call "$OWNER2" POST /api/v1/hubs --data "$(hub_doc "$ROGUE_HUB" '{"keyName":"owner1-hub-ca"}' "${OWN_KEYS[1]}")")
unknown=$(call "$OWNER2" POST /api/v1/hubs --data "$(hub_doc "$ROGUE_HUB" '{"keyName":"no-such-key"}' "${OWN_KEYS[1]}")")
if [[ $foreign == "400 "*'identityCertificate.keyName: no key \"owner1-hub-ca\" with a certificate is registered for owner \"2\"'* ]] &&
    [ "${foreign//owner1-hub-ca/K}" = "${unknown//no-such-key/K}" ]; then
    ok "owner 1's registered key is refused to owner 2, in the words a missing key gets"
else
    not_ok "owner 1's registered key is refused to owner 2, in the words a missing key gets"
    printf '# %s\n# %s\n' "$foreign" "$unknown"
fi
expect "a registered key that signs operator tokens never signs a hub's tokens" 400 \
    'token.keyName: key ..misplaced-operator-key.. signs the management API.s operator tokens' \
    "$OWNER2" POST /api/v1/hubs --data "$(hub_doc "$ROGUE_HUB" "${OWN_KEYS[0]}" \
        '{"keyName":"misplaced-operator-key"}' '.authorization.deviceIdClaim = "https://plgd.dev/deviceId"')"
expect "a device-id claim named sub (the operator's owner claim) is refused" 400 \
    'authorization.deviceIdClaim: must not be a registered JWT claim' \
    "$OWNER2" POST /api/v1/hubs --data "$(hub_doc "$ROGUE_HUB" "${OWN_KEYS[0]}" "${OWN_KEYS[1]}" \
        '.authorization.deviceIdClaim = "sub"')"
expect "an owner claim named like a registered claim is refused" 400 \
    'authorization.ownerClaim: must not be a registered JWT claim' \
    "$OWNER2" POST /api/v1/hubs --data "$(hub_doc "$ROGUE_HUB" "${OWN_KEYS[0]}" "${OWN_KEYS[1]}" \
        '.authorization.ownerClaim = "iss"')"
expect "a device-id claim equal to the owner claim is refused" 400 \
    'authorization.deviceIdClaim: must differ from the owner claim' \
    "$OWNER2" POST /api/v1/hubs --data "$(hub_doc "$ROGUE_HUB" "${OWN_KEYS[0]}" "${OWN_KEYS[1]}" \
        '.authorization.ownerClaim = "owner" | .authorization.deviceIdClaim = "owner"')"
expect "owner 2 makes a hub with the keys registered for it" 200 '"keyName":"owner2-hub-ca"' \
    "$OWNER2" POST /api/v1/hubs --data "$(hub_doc "$ROGUE_HUB" "${OWN_KEYS[0]}" "${OWN_KEYS[1]}" \
        '.authorization.deviceIdClaim = "https://plgd.dev/deviceId"')"
check "the hub's document shows key names, no file and no key" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER2' '$API/api/v1/hubs?idFilter=$ROGUE_HUB' |
           jq -e -s 'length == 1 and (.[0].result.identityCertificate | keys) == [\"keyName\", \"validity\"] and
                     .[0].result.identityCertificate.keyName == \"owner2-hub-ca\" and
                     (.[0].result.token | has(\"key\") | not)' >/dev/null &&
           ! curl -sS -H 'Authorization: Bearer $OWNER2' '$API/api/v1/hubs' | grep -Eq '$OTHER|PRIVATE KEY'"
check "owner 1's configured hub and group show no server path" \
    sh -c "! curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/hubs' '$API/api/v1/enrollment-groups' | grep -q '$NODE' &&
           curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/enrollment-groups' |
           jq -e '.result.attestationMechanism.x509.certificateChain | startswith(\"-----BEGIN CERTIFICATE\")' >/dev/null"

GROUP2=$(jq -nc --arg hub "$ROGUE_HUB" --rawfile chain "$OTHER/mfg-chain.pem" \
    '{name: "line of owner 2", hubIds: [$hub], attestationMechanism: {x509: {certificateChain: $chain}}}')
expect "a group whose chain is a file path on the node is refused" 400 \
    'attestationMechanism.x509.certificateChain: must be PEM certificates \(file paths are not accepted' \
    "$OWNER2" POST /api/v1/enrollment-groups \
    --data "$(jq -c --arg path "$NODE/pki/mfg-chain.pem" '.attestationMechanism.x509.certificateChain = $path' <<<"$GROUP2")"
expect "a group whose CRL is a file path on the node is refused (no probing of files)" 400 \
    'attestationMechanism.x509.crls\[0\]: must be a PEM CRL \(file paths are not accepted' \
    "$OWNER2" POST /api/v1/enrollment-groups \
    --data "$(jq -c '.attestationMechanism.x509.crls = ["/etc/hostname"]' <<<"$GROUP2")"

# ---- 2. One tenant learning about another ----

# overlap_refused NAME PATH CHAIN: owner 2's group with owner 1's manufacturer CA as CHAIN is
# refused without naming owner 1's group or the CA.
overlap_refused() {
    local overlap
    overlap=$(call "$OWNER2" POST "$2" \
        --data "$(jq -c --arg chain "$3" '.attestationMechanism.x509.certificateChain = $chain' <<<"$GROUP2")")
    if [[ $overlap == "400 "*"enrolled by another owner already"* && $overlap != *"$GROUP_ID"* && $overlap != *"CN="* ]]; then
        ok "$1"
    else
        not_ok "$1"
        echo "# $overlap"
    fi
}
overlap_refused "enrolling owner 1's manufacturer CA is refused without naming owner 1's group or the CA" \
    /api/v1/enrollment-groups "$(cat "$NODE/pki/mfg-chain.pem")"
expect "owner 2 enrolls its own manufacturer" 200 '"name":"line of owner 2"' \
    "$OWNER2" POST /api/v1/enrollment-groups --data "$GROUP2"
OWN_GROUP=$(jq -r .id "$WORK/body")
foreign=$(call "$OWNER2" POST /api/v1/enrollment-groups --data "$(jq -c --arg id "$GROUP_ID" '.id = $id' <<<"$GROUP2")")
own=$(call "$OWNER2" POST /api/v1/enrollment-groups --data "$(jq -c --arg id "$OWN_GROUP" '.id = $id' <<<"$GROUP2")")
put_foreign=$(call "$OWNER2" PUT "/api/v1/enrollment-groups/$GROUP_ID" --data "$GROUP2")
put_unknown=$(call "$OWNER2" PUT /api/v1/enrollment-groups/00000000-0000-4000-8000-000000000000 --data "$GROUP2")
if [[ $foreign == "409 "* && $foreign == "$own" && $foreign != *"$GROUP_ID"* && $put_foreign == "404 "* &&
    "${put_foreign//$GROUP_ID/X}" == "${put_unknown//00000000-0000-4000-8000-000000000000/X}" ]]; then
    ok "another owner's group id gets the answers an id of one's own or an unknown one gets, not echoed"
else
    not_ok "another owner's group id gets the answers an id of one's own or an unknown one gets, not echoed"
    printf '# %s\n' "$foreign" "$own" "$put_foreign" "$put_unknown"
fi

"$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$NODE/pki" --ca "$NODE/pki/dps-root.pem" \
    --devices 1 --out "$WORK/out" >/dev/null 2>&1
DEVICE_ID=$(openssl x509 -in "$WORK/out/device-0001/identity.pem" -noout -subject -nameopt RFC2253 2>/dev/null |
    sed -n 's/.*CN=uuid:\([0-9a-f-]*\).*/\1/p')
RECORD_ID=$(curl -sS -H "Authorization: Bearer $OWNER1" "$API/api/v1/bindings?deviceIdFilter=$DEVICE_ID" | jq -r .result.recordId)
blocked=$(call "$OWNER2" POST /api/v1/blocklist --data "{\"deviceId\":\"$DEVICE_ID\"}")
if [[ -n $DEVICE_ID && $RECORD_ID =~ ^[0-9a-f-]{36}$ && $blocked == "200 "* && $blocked != *"$RECORD_ID"* && $blocked != *recordId* ]]; then
    ok "blocking owner 1's device id does not hand owner 2 its record id"
else
    not_ok "blocking owner 1's device id does not hand owner 2 its record id"
    echo "# device $DEVICE_ID record $RECORD_ID: $blocked"
fi
check "owner 1's device still provisions after owner 2's block" \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$NODE/pki" --ca "$NODE/pki/dps-root.pem" \
    --devices 1 --out "$WORK/out2"
deleted=""
for filter in "idFilter=$RECORD_ID" "deviceIdFilter=$DEVICE_ID" "enrollmentGroupIdFilter=$GROUP_ID"; do
    deleted+="$(call "$OWNER2" DELETE "/api/v1/provisioning-records?$filter") "
done
if [[ $(tr -d ' \n' <<<"$deleted") == '200{"count":0}200{"count":0}200{"count":0}' ]] &&
    curl -sS -H "Authorization: Bearer $OWNER1" "$API/api/v1/provisioning-records?idFilter=$RECORD_ID" |
    jq -e -s 'length == 1' >/dev/null; then
    ok "owner 2's DELETE of records, by any filter naming owner 1's, deletes nothing of them"
else
    not_ok "owner 2's DELETE of records, by any filter naming owner 1's, deletes nothing of them"
    echo "# $deleted"
fi

status2=$(curl -sS -H "Authorization: Bearer $OWNER2" "$API/api/v1/status")
if jq -e '.owner == "2" and .enrollmentGroups == 1 and .hubs == 1 and .blocklistEntries == 1 and
          (has("node") | not) and (has("connections") | not) and (has("shards") | not) and
          .quotas.enrollmentGroups > 0' <<<"$status2" >/dev/null; then
    ok "a tenant's status counts its own things only"
else
    not_ok "a tenant's status counts its own things only"
    echo "# $status2"
fi
check "an administrator's status shows the node" \
    sh -c "curl -sS -H 'Authorization: Bearer $ADMIN' '$API/api/v1/status' |
           jq -e '.node.enrollmentGroups == 2 and .node.hubs == 2 and .node.shards == 1 and .node.blocklistEntries == 1' >/dev/null"

# ---- 2b. The reference's ways in (issue 13), each tried with owner 2's token ----

BUNDLE=/device-provisioning-service/api/v1
# Owner 1 links a hub the reference's way: a generated record id, distinct from its hubId.
LINKED_HUB=6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d
UNKNOWN_ID=0f0e0d0c-0b0a-4908-8706-050403020100
call "$OWNER1" POST /api/v1/hubs --data "$(hub_doc "$LINKED_HUB" '{"keyName":"owner1-hub-ca"}' \
    '{"keyName":"owner1-token"}' '.name = "owner 1 linked"')" >"$WORK/linked"
LINKED_RECORD=$(sed 's/^200 //' "$WORK/linked" | jq -r .id 2>/dev/null)
if grep -q '^200 ' "$WORK/linked" && [[ $LINKED_RECORD =~ ^[0-9a-f-]{36}$ && $LINKED_RECORD != "$LINKED_HUB" ]]; then
    ok "owner 1 links a hub with a record id of its own"
else
    not_ok "owner 1 links a hub with a record id of its own"
    sed 's/^/# /' "$WORK/linked"
fi
group_put() { # TOKEN HUB_ID: owner 2's group replaced, naming HUB_ID, the answer with ids as X
    local answer
    answer=$(call "$1" PUT "$BUNDLE/enrollment-groups/$OWN_GROUP/" \
        --data "$(jq -c --arg hub "$2" '.hubIds = [$hub]' <<<"$GROUP2")")
    printf '%s' "${answer//$2/X}"
}
by_record=$(group_put "$OWNER2" "$LINKED_RECORD")
by_hub_id=$(group_put "$OWNER2" "$LINKED_HUB")
by_unknown=$(group_put "$OWNER2" "$UNKNOWN_ID")
if [[ $by_record == '400 '*'hubIds[0]: unknown hub \"X\"'* && $by_record == "$by_unknown" && $by_hub_id == "$by_unknown" ]]; then
    ok "owner 2's group naming owner 1's hub by record id or hubId gets what an unknown id gets"
else
    not_ok "owner 2's group naming owner 1's hub by record id or hubId gets what an unknown id gets"
    printf '# %s\n' "$by_record" "$by_hub_id" "$by_unknown"
fi
expect "owner 2 cannot move owner 1's hub into its own by a body id (no merge)" 400 \
    '"message":"id: .* differs from the id in the path' \
    "$OWNER2" PUT "$BUNDLE/hubs/$ROGUE_HUB/" --data "$(hub_doc "$ROGUE_HUB" "${OWN_KEYS[0]}" "${OWN_KEYS[1]}" \
        ".id = \"$LINKED_RECORD\" | .authorization.deviceIdClaim = \"https://plgd.dev/deviceId\"")"
expect "owner 2 cannot move owner 1's group into its own by a body id (no merge)" 400 \
    '"message":"id: .* differs from the id in the path' \
    "$OWNER2" PUT "/api/v1/enrollment-groups/$OWN_GROUP" --data "$(jq -c --arg id "$GROUP_ID" '.id = $id' <<<"$GROUP2")"
expect "a body naming owner 1 as its owner is refused through the prefix too" 403 '"code":7' \
    "$OWNER2" POST "$BUNDLE/hubs/" --data "$(hub_doc "$UNKNOWN_ID" "${OWN_KEYS[0]}" "${OWN_KEYS[1]}" '.owner = "1"')"

# Owner 2 takes owner 1's record id as the hubId of a hub of its own: allowed (it reveals
# nothing), and each owner's requests by that id reach its own hub only, whichever comes first.
expect "owner 2 makes a hub whose hubId is owner 1's hub record id" 200 "\"hubId\":\"$LINKED_RECORD\"" \
    "$OWNER2" POST /api/v1/hubs --data "$(hub_doc "$LINKED_RECORD" "${OWN_KEYS[0]}" "${OWN_KEYS[1]}" \
        '.authorization.deviceIdClaim = "https://plgd.dev/deviceId"')"
renamed=""
for name in first second; do # a replace moves the hub behind owner 2's in the node's list
    renamed+="$(call "$OWNER1" PUT "$BUNDLE/hubs/$LINKED_RECORD/" --data "$(hub_doc "$LINKED_HUB" \
        '{"keyName":"owner1-hub-ca"}' '{"keyName":"owner1-token"}' ".name = \"$name\"")" |
        sed 's/^[0-9]* //' | jq -r '"\(.hubId) \(.name)"' 2>/dev/null) "
done
if [ "$renamed" = "$LINKED_HUB first $LINKED_HUB second " ]; then
    ok "owner 1 replaces its hub by record id, again and again, beside owner 2's hubId"
else
    not_ok "owner 1 replaces its hub by record id, again and again, beside owner 2's hubId"
    echo "# $renamed"
fi
expect "owner 2's replace by that id reaches its own hub" 200 "\"name\":\"owner 2's\"" \
    "$OWNER2" PUT "/api/v1/hubs/$LINKED_RECORD" --data "$(hub_doc "$LINKED_RECORD" "${OWN_KEYS[0]}" "${OWN_KEYS[1]}" \
        '.name = "owner 2'"'"'s" | .authorization.deviceIdClaim = "https://plgd.dev/deviceId"')"
check "each owner's idFilter of that id lists its own hub only" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER1' '$API$BUNDLE/hubs?ID_FILTER=$LINKED_RECORD' |
               jq -e -s 'length == 1 and .[0].result.hubId == \"$LINKED_HUB\" and .[0].result.name == \"second\"' >/dev/null &&
           curl -sS -H 'Authorization: Bearer $OWNER2' '$API$BUNDLE/hubs?id_filter=$LINKED_RECORD' |
               jq -e -s 'length == 1 and .[0].result.hubId == \"$LINKED_RECORD\"' >/dev/null"
expect "owner 1 deletes its hub by record id" 200 '"count":1' \
    "$OWNER1" DELETE "$BUNDLE/hubs/?idFilter=$LINKED_RECORD"
check "owner 2's hub of that hubId stays" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER2' '$API/api/v1/hubs?hubIdFilter=$LINKED_RECORD' | jq -e -s 'length == 1' >/dev/null"

# Records: every spelling, the prefix, a trailing slash, all filters ORed, empty values.
foreign=""
for query in "ID_FILTER=$RECORD_ID&device_id_filter=$DEVICE_ID&EnrollmentGroupIdFilter=$GROUP_ID" \
    "idFilter=&deviceIdFilter=" "enrollment_group_id_filter=$GROUP_ID&idFilter=$UNKNOWN_ID"; do
    foreign+="$(call "$OWNER2" DELETE "$BUNDLE/provisioning-records/?$query") "
    foreign+="$(curl -sS -H "Authorization: Bearer $OWNER2" "$API$BUNDLE/provisioning-records/?$query" | wc -l) "
done
if [[ $(tr -d ' \n' <<<"$foreign") == '200{"count":0}0200{"count":0}0200{"count":0}0' ]]; then
    ok "owner 2's lists and DELETEs of records, in any spelling and OR, find none of owner 1's"
else
    not_ok "owner 2's lists and DELETEs of records, in any spelling and OR, find none of owner 1's"
    echo "# $foreign"
fi
expect "an empty filter matches nothing, also for the owner: a DELETE never widens" 200 '"count":0' \
    "$OWNER1" DELETE "/api/v1/provisioning-records?idFilter="
check "owner 1's record is still there" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/provisioning-records?idFilter=$RECORD_ID' | jq -e -s 'length == 1' >/dev/null"

# data: URLs are decoded, never opened, and a chain another owner enrolled stays theirs.
data_url() { printf 'data:;base64,%s' "$(base64 -w0)"; }
overlap_refused "owner 1's manufacturer CA as a data: URL is refused as in PEM, naming nothing of owner 1's" \
    "$BUNDLE/enrollment-groups/" "$(data_url <"$NODE/pki/mfg-chain.pem")"
expect "a data: URL holding a file path is not opened" 400 'certificateChain' \
    "$OWNER2" POST /api/v1/enrollment-groups \
    --data "$(jq -c --arg chain "$(printf '%s' "$NODE/pki/mfg-chain.pem" | data_url)" '.attestationMechanism.x509.certificateChain = $chain' <<<"$GROUP2")"

# ---- 3. Knocking the API over without a token ----

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$DPSD_PID/status"; }
probe_fast() { # URL [curl options]: answered 200 within 2 s
    [ "$(curl -sS -m 2 -o /dev/null -w '%{http_code}' "${@:2}" "$1")" = 200 ]
}

# A declared body, no token, no body sent: the 401 comes without waiting for it.
exec 5<>"/dev/tcp/127.0.0.1/$API_PORT"
printf 'POST /api/v1/enrollment-groups HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n' >&5
if timeout 3 head -n 1 <&5 | grep -q '^HTTP/1.1 401'; then
    ok "a request without a token is refused before its body is read"
else
    not_ok "a request without a token is refused before its body is read"
fi
exec 5>&-

# 256 connections that never finish their headers.
trap '' PIPE
STALLED=()
for _ in $(seq 1 256); do
    eval "exec {fd}<>/dev/tcp/127.0.0.1/$API_PORT" 2>/dev/null || break
    printf 'GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: ' >&$fd 2>/dev/null
    STALLED+=("$fd")
done
sleep 0.5
check "while 256 connections stall their headers, /healthz answers on the health listener" \
    probe_fast "http://127.0.0.1:$HEALTH_PORT/healthz"
check "... and /readyz and /metrics there too" \
    sh -c "curl -sS -m 2 http://127.0.0.1:$HEALTH_PORT/readyz | grep -q ready &&
           curl -sS -m 2 http://127.0.0.1:$HEALTH_PORT/metrics | grep -q dps_ready"
check "... and another source gets /healthz and its API answers on the API listener" \
    sh -c "[ \"\$(curl -sS -m 2 -o /dev/null -w '%{http_code}' --interface 127.0.0.2 $API/healthz)\" = 200 ] &&
           [ \"\$(curl -sS -m 2 -o /dev/null -w '%{http_code}' --interface 127.0.0.2 -H 'Authorization: Bearer $OWNER1' $API/api/v1/hubs)\" = 200 ]"
sleep 4
check "the stalled connections are closed at the request deadline; the source is served again" \
    probe_fast "$API/healthz"
for fd in "${STALLED[@]}"; do eval "exec $fd>&-"; done

# 250 connections each sending 1 MiB without a token, holding back the body's last byte.
before=$(rss_kib)
pids=()
for _ in $(seq 1 250); do
    (
        printf 'POST /api/v1/enrollment-groups HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n'
        head -c 1048575 /dev/zero
        sleep 6
    ) >"/dev/tcp/127.0.0.1/$API_PORT" 2>/dev/null &
    pids+=($!)
done
sleep 3
check "/healthz answers while 250 unauthenticated 1 MiB uploads arrive" \
    probe_fast "http://127.0.0.1:$HEALTH_PORT/healthz"
peak=$(rss_kib)
kill "${pids[@]}" 2>/dev/null
wait "${pids[@]}" 2>/dev/null
growth=$(((peak - before) / 1024))
if [ "$growth" -lt 64 ]; then ok "unauthenticated uploads are not buffered (memory +${growth} MiB)"; else
    not_ok "unauthenticated uploads are not buffered (memory +${growth} MiB)"
fi
check "the API still answers owner 1" probe_fast "$API/api/v1/hubs" -H "Authorization: Bearer $OWNER1"

# ---- 4. Files at rest ----

check "the store's folder is 0700 and no file in it is readable by others" \
    sh -c "[ \"\$(stat -c %a '$NODE/data')\" = 700 ] && [ -z \"\$(find '$NODE/data' -perm /077 -print -quit)\" ]"
check_stop "dpsd stops cleanly on SIGTERM"

# Per-owner quotas: the node again, with small ones.
QUOTAS="{enrollmentGroups: 2, hubs: 2, blocklistEntries: 1, requestsPerSecond: 2, requestBurst: 12}"
write_config
start_node || { not_ok "dpsd restarts with small quotas"; finish; }
OWNER3=$("$DPSCTL" token --key "$NODE/pki/operator.key" --owner 3)
OWNER4=$("$DPSCTL" token --key "$NODE/pki/operator.key" --owner 4)
QUOTA_HUB=8e2f3a4b-5c6d-4e7f-8091-a2b3c4d5e6f7
SPARE_HUB=8e2f3a4b-5c6d-4e7f-8091-a2b3c4d5e6f8
call "$OWNER3" POST /api/v1/hubs --data "$(hub_doc "$QUOTA_HUB" "${OWN_KEYS[0]}" "${OWN_KEYS[1]}")" >/dev/null
call "$OWNER3" POST /api/v1/hubs --data "$(hub_doc "$SPARE_HUB" "${OWN_KEYS[0]}" "${OWN_KEYS[1]}")" >/dev/null
expect "a hub beyond the owner's quota gets 429 naming api.quotas.hubs" 429 \
    '"code":8,"message":"hubs: the quota of 2 per owner is reached \(api.quotas.hubs\)' \
    "$OWNER3" POST /api/v1/hubs --data "$(hub_doc "" "${OWN_KEYS[0]}" "${OWN_KEYS[1]}" 'del(.hubId)')"
chain() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=$1" \
    -addext basicConstraints=critical,CA:TRUE -keyout /dev/null 2>/dev/null; }
for n in 1 2; do
    call "$OWNER3" POST /api/v1/enrollment-groups --data "$(jq -nc --arg hub "$QUOTA_HUB" --arg chain "$(chain "Quota CA $n")" \
        '{hubIds: [$hub], attestationMechanism: {x509: {certificateChain: $chain}}}')" >/dev/null
done
expect "a group beyond the owner's quota gets 429 naming api.quotas.enrollmentGroups" 429 \
    'enrollmentGroups: the quota of 2 per owner is reached \(api.quotas.enrollmentGroups\)' \
    "$OWNER3" POST /api/v1/enrollment-groups --data "$(jq -nc --arg hub "$QUOTA_HUB" --arg chain "$(chain "Quota CA 3")" \
        '{hubIds: [$hub], attestationMechanism: {x509: {certificateChain: $chain}}}')"
call "$OWNER3" POST /api/v1/blocklist --data '{"deviceId":"11111111-1111-4111-8111-111111111111"}' >/dev/null
expect "a block beyond the owner's quota gets 429 naming api.quotas.blocklistEntries" 429 \
    'blocklistEntries: the quota of 1 per owner is reached' \
    "$OWNER3" POST /api/v1/blocklist --data '{"deviceId":"22222222-2222-4222-8222-222222222222"}'
# Thirty requests at once (one curl, in parallel), so they come faster than requestsPerSecond
# refills the burst of 12 however slow the machine: some are served, the rest get 429, each
# 429 with Retry-After.
burst_args=()
for _ in $(seq 1 30); do burst_args+=(-o /dev/null "$API/api/v1/hubs"); done
codes=$(curl -sS --parallel --parallel-immediate --parallel-max 30 -H "Authorization: Bearer $OWNER4" \
    -w '%{http_code} retry-after=%header{retry-after}\n' "${burst_args[@]}")
if grep -q '^200 ' <<<"$codes" && grep -q '^429 ' <<<"$codes"; then
    ok "an owner's requests beyond requestsPerSecond get 429"
else
    not_ok "an owner's requests beyond requestsPerSecond get 429"
    echo "# $(tr '\n' ' ' <<<"$codes")"
fi
check "... with Retry-After, while another owner is served" \
    sh -c "printf '%s\n' '$codes' | grep -q '^429 retry-after=[0-9]' &&
           ! printf '%s\n' '$codes' | grep '^429 ' | grep -qv 'retry-after=[0-9]' &&
           [ \"\$(curl -sS -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $OWNER1' '$API/api/v1/hubs')\" = 200 ]"
check_stop "dpsd stops cleanly after the quota checks"

# Folders others may write are refused, naming the folder and the fix.
dpsd_fails() { # PATTERN: dpsd exits non-zero and says PATTERN
    local output status=0
    output=$(timeout 20 "$DPSD" --config "$NODE/dpsd.yaml" 2>&1) || status=$?
    [ $status != 0 ] && [ $status != 124 ] && printf '%s\n' "$output" | grep -Eq -- "$1" ||
        { echo "exit $status: $output" | tail -5; return 1; }
}
chmod 0777 "$NODE/data"
check "a store folder others may write is refused" \
    dpsd_fails "folder $NODE/data is writable by group or others \(mode 0777\).*chmod go-w $NODE/data"
chmod 0700 "$NODE/data"
chmod 0775 "$NODE/pki"
check "a key folder others may write is refused" \
    dpsd_fails "folder $NODE/pki is writable by group or others \(mode 0775\)"
chmod 0755 "$NODE/pki"
mkdir -m 0777 "$WORK/shared"
chmod 0777 "$WORK/shared"
check "--demo into a folder others may write is refused" \
    sh -c "! timeout 20 '$DPSD' --demo '$WORK/shared' --listen 127.0.0.1:$(free_port) --api-listen 127.0.0.1:$(free_port) 2>'$WORK/demo.err' &&
           grep -q 'folder $WORK/shared is writable by group or others (mode 0777)' '$WORK/demo.err' &&
           [ \"\$(stat -c %a '$WORK/shared')\" = 777 ] && [ ! -e '$WORK/shared/data' ]"
finish
