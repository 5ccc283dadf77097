#!/usr/bin/env bash
# The management API of a running dpsd, driven with curl: tokens are checked
# (missing, expired and wrongly signed ones get 401), every document is
# scoped to the token's owner (owner "2" neither sees nor changes owner "1"'s
# groups, hubs, records, certificates or bindings), invalid input gets 400
# naming the field, lists are NDJSON, and an enrollment group created through
# the API provisions a device at once, without a restart.
. "$(dirname "$0")/lib.sh"

plan 42
NODE=$WORK/node
OTHER=$WORK/other # a second manufacturer (and a foreign operator key)
node_pkis 1 1
HUB_ID=0c9bb0a4-7a57-4b8e-9d0e-6f2f1a3b4c5d
GROUP_ID=5e1f0b7c-2d3a-4c5b-8e9f-0a1b2c3d4e5f

cat >"$NODE/dpsd.yaml" <<EOF
$(yaml_node "$PORT" 1)
hubs:
$(yaml_hub "$HUB_ID" 1 "hub of owner 1" 5684 pki)
enrollmentGroups:
$(yaml_group "$GROUP_ID" 1 "demo devices" pki/mfg-chain.pem "$HUB_ID")
$(yaml_api "$API_PORT")
EOF

if start_dpsd_config "$NODE" "$API_PORT"; then ok "dpsd starts with the management API on loopback"; else
    not_ok "dpsd starts with the management API on loopback"
    finish
fi

OWNER1=$(cat "$NODE/pki/operator.token")
OWNER2=$("$DPSCTL" token --key "$NODE/pki/operator.key" --owner 2)
EXPIRED=$("$DPSCTL" token --key "$NODE/pki/operator.key" --owner 1 --expires-in -3600)
FOREIGN=$("$DPSCTL" token --key "$OTHER/operator.key" --owner 1)

expect "healthz answers without a token" 200 '^200 ok' "" GET /healthz
expect "readyz says ready" 200 '^200 ready' "" GET /readyz
expect "metrics are Prometheus text" 200 '# (TYPE|HELP) ' "" GET /metrics

expect "no token gives 401 code 16" 401 '"code":16' "" GET /api/v1/enrollment-groups
expect "an expired token gives 401" 401 '"code":16,"message":"token expired"' "$EXPIRED" GET /api/v1/hubs
expect "a token signed by another key gives 401" 401 'signature does not verify' "$FOREIGN" GET /api/v1/hubs
body=$(call "$FOREIGN" GET /api/v1/hubs)
sig=${FOREIGN##*.}
if [[ $body != *"$sig"* ]]; then ok "the refusal does not echo the token"; else not_ok "the refusal does not echo the token"; fi

# Lists are NDJSON: one {"result": ...} per line.
ndjson_ok() {
    local token=$1 path=$2 filter=$3 type
    type=$(curl -sS -o "$WORK/list" -w '%{content_type}' -H "Authorization: Bearer $token" "$API$path")
    [ "$type" = application/x-ndjson ] || { echo "content type $type"; return 1; }
    jq -e -s "$filter" "$WORK/list" >/dev/null || { cat "$WORK/list"; return 1; }
}
check "owner 1 lists its enrollment group as NDJSON" \
    ndjson_ok "$OWNER1" /api/v1/enrollment-groups \
    "length == 1 and .[0].result.id == \"$GROUP_ID\" and .[0].result.owner == \"1\" and .[0].result.name == \"demo devices\""
check "owner 1 lists its hub, filtered by id" \
    ndjson_ok "$OWNER1" "/api/v1/hubs?idFilter=$HUB_ID" \
    "length == 1 and .[0].result.hubId == \"$HUB_ID\" and .[0].result.gateways == [\"coaps+tcp://127.0.0.1:5684\"]"
check "owner 2 sees no groups and no hubs of owner 1" \
    sh -c "[ -z \"\$(curl -sS -H 'Authorization: Bearer $OWNER2' $API/api/v1/enrollment-groups)\" ] &&
           [ -z \"\$(curl -sS -H 'Authorization: Bearer $OWNER2' $API/api/v1/hubs)\" ]"

GROUP_DOC=$(curl -sS -H "Authorization: Bearer $OWNER1" "$API/api/v1/enrollment-groups" | jq -c .result)
expect "owner 2 cannot replace owner 1's group (404)" 404 '"code":5' \
    "$OWNER2" PUT "/api/v1/enrollment-groups/$GROUP_ID" --data "$(jq -c '.owner = "2"' <<<"$GROUP_DOC")"
expect "owner 2 deleting owner 1's group deletes nothing" 200 '"count":0' \
    "$OWNER2" DELETE "/api/v1/enrollment-groups?idFilter=$GROUP_ID"
expect "owner 2 cannot delete owner 1's hub" 200 '"count":0' \
    "$OWNER2" DELETE "/api/v1/hubs?idFilter=$HUB_ID"
expect "a document naming another owner is forbidden (403)" 403 '"code":7' \
    "$OWNER2" POST /api/v1/enrollment-groups --data "$GROUP_DOC"
expect "owner 2 cannot link owner 1's hub" 400 "hubIds\\[0\\]: unknown hub" \
    "$OWNER2" POST /api/v1/enrollment-groups --data "$(jq -c 'del(.id, .owner)' <<<"$GROUP_DOC")"

expect "invalid JSON gives 400 naming the body" 400 '"code":3,"message":"body: not JSON' \
    "$OWNER1" POST /api/v1/enrollment-groups --data '{"id": '
expect "an empty hubIds gives 400 naming the field" 400 '"message":"hubIds: must not be empty"' \
    "$OWNER1" POST /api/v1/enrollment-groups --data "$(jq -c 'del(.id) | .hubIds = []' <<<"$GROUP_DOC")"
expect "a bad certificate chain gives 400 naming the field" 400 \
    'attestationMechanism.x509.certificateChain: not a PEM certificate chain' \
    "$OWNER1" POST /api/v1/enrollment-groups \
    --data "$(jq -c 'del(.id) | .attestationMechanism.x509.certificateChain = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"' <<<"$GROUP_DOC")"
expect "a non-UUID id in the path gives 400" 400 '"message":"id: ' \
    "$OWNER1" PUT /api/v1/enrollment-groups/not-a-uuid --data "$GROUP_DOC"
expect "a gateway without coaps+tcp gives 400 naming it" 400 'gateways\[0\]' \
    "$OWNER1" PUT "/api/v1/hubs/$HUB_ID" \
    --data "$(curl -sS -H "Authorization: Bearer $OWNER1" "$API/api/v1/hubs" | jq -c '.result | .gateways = ["http://x:1"]')"
head -c 1100000 /dev/zero | tr '\0' ' ' >"$WORK/large"
expect "a body over 1 MiB gives 413" 413 '"code":8' \
    "$OWNER1" POST /api/v1/enrollment-groups --data-binary "@$WORK/large"

# A second manufacturer, enrolled through the API, provisions at once.
NEW_GROUP=$(jq -c --rawfile chain "$OTHER/mfg-chain.pem" \
    'del(.id) | .name = "line B" | .attestationMechanism.x509.certificateChain = $chain' <<<"$GROUP_DOC")
call "$OWNER1" POST /api/v1/enrollment-groups --data "$NEW_GROUP" >"$WORK/created"
NEW_ID=$(sed 's/^[0-9]* //' "$WORK/created" | jq -r .id 2>/dev/null)
if grep -q '^200 ' "$WORK/created" && [[ $NEW_ID =~ ^[0-9a-f-]{36}$ ]] &&
    sed 's/^200 //' "$WORK/created" | jq -e '.attestationMechanism.x509.certificateChain | startswith("-----BEGIN")' >/dev/null; then
    ok "a group created through the API gets a generated id"
else
    not_ok "a group created through the API gets a generated id"
    sed 's/^/# /' "$WORK/created" | head -5
fi
check "a device of the new group provisions right away, without a restart" \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$OTHER" --ca "$NODE/pki/dps-root.pem" \
    --devices 1 --out "$WORK/out"
DEVICE_ID=$(openssl x509 -in "$WORK/out/device-0001/identity.pem" -noout -subject -nameopt RFC2253 2>/dev/null |
    sed -n 's/.*CN=uuid:\([0-9a-f-]*\).*/\1/p')
check "owner 1 sees the device's provisioning record by group" \
    ndjson_ok "$OWNER1" "/api/v1/provisioning-records?enrollmentGroupIdFilter=$NEW_ID" \
    "length == 1 and .[0].result.deviceId == \"$DEVICE_ID\" and .[0].result.credential.status.coapCode == 68"
check "owner 1 sees the certificate issued and the binding" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/issuance?deviceIdFilter=$DEVICE_ID' | jq -e -s 'length == 1 and .[0].result.enrollmentGroupId == \"$NEW_ID\"' &&
           curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/bindings?deviceIdFilter=$DEVICE_ID' | jq -e -s 'length == 1'"
check "owner 2 sees no records, certificates or bindings of owner 1" \
    sh -c "[ -z \"\$(curl -sS -H 'Authorization: Bearer $OWNER2' $API/api/v1/provisioning-records)\" ] &&
           [ -z \"\$(curl -sS -H 'Authorization: Bearer $OWNER2' $API/api/v1/issuance)\" ] &&
           [ -z \"\$(curl -sS -H 'Authorization: Bearer $OWNER2' $API/api/v1/bindings)\" ]"
expect "a bad time filter gives 400 naming it" 400 '"message":"since: ' \
    "$OWNER1" GET "/api/v1/issuance?since=yesterday"

# The record in the reference's shape (plgd-dev/hub device-provisioning-service/pb/
# provisioningRecords.proto as its web UI reads it; tests/unit/test_records.c checks every field).
IDENTITY_B64=$(base64 -w0 <"$WORK/out/device-0001/identity.pem")
check "the record has the reference's shape (flat plgdTime, gateway index, credentials, ACLs)" \
    ndjson_ok "$OWNER1" "/api/v1/provisioning-records?deviceIdFilter=$DEVICE_ID" \
    "length == 1 and (.[0].result | .plgdTime.coapCode == 69 and (.plgdTime.date | test(\"^[0-9]+$\")) and
     (.cloud.gateways[.cloud.selectedGateway].id == \"$HUB_ID\") and
     ([.credential.credentials[] | select(.usage == \"CERT\") | .publicData.data] == [\"$IDENTITY_B64\"]) and
     ([.credential.credentials[] | select(.usage == \"TRUST_CA\") | .publicData.encoding] == [\"PEM\"]) and
     (.acl.accessControlList[0].deviceSubject.deviceId | test(\"^[0-9a-f-]{36}$\")) and
     (.acl.accessControlList[0].permissions | index(\"READ\") != null) and
     (.acl.ocfAccessControlList[0].permission == 31) and
     (.attestation.date | tonumber) >= (.creationDate | tonumber))"
RECORD_ID=$(curl -sS -H "Authorization: Bearer $OWNER1" "$API/api/v1/provisioning-records?deviceIdFilter=$DEVICE_ID" |
    jq -r '.result.id')
BEFORE=$(curl -sS -H "Authorization: Bearer $OWNER1" "$API/api/v1/provisioning-records?idFilter=$RECORD_ID" |
    jq -c '.result | {attested: .attestation.date, created: .creationDate}')
check "the device's next connection moves attestation.date; creationDate stays" \
    sh -c "'$LOADGEN' --endpoint 'coaps+tcp://127.0.0.1:$PORT' --pki '$OTHER' --ca '$NODE/pki/dps-root.pem' \
               --devices 1 --di '$DEVICE_ID' --out '$WORK/renewed' >/dev/null &&
           curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/provisioning-records?idFilter=$RECORD_ID' |
           jq -e --argjson before '$BEFORE' '.result | (.attestation.date | tonumber) > (\$before.attested | tonumber) and
                                              .creationDate == \$before.created' >/dev/null"
expect "owner 2's DELETE of owner 1's record deletes nothing" 200 '"count":0' \
    "$OWNER2" DELETE "/api/v1/provisioning-records?idFilter=$RECORD_ID"
check "owner 1's record is still there" \
    ndjson_ok "$OWNER1" "/api/v1/provisioning-records?idFilter=$RECORD_ID" "length == 1"
expect "a DELETE of records without a filter gives 400 and deletes nothing" 400 \
    '"message":"idFilter, deviceIdFilter or enrollmentGroupIdFilter: one is required' \
    "$OWNER1" DELETE /api/v1/provisioning-records
expect "owner 1 deletes its record by device id" 200 '"count":1' \
    "$OWNER1" DELETE "/api/v1/provisioning-records?deviceIdFilter=$DEVICE_ID"
check "the record is gone, its binding and both certificates stay" \
    sh -c "[ -z \"\$(curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/provisioning-records?idFilter=$RECORD_ID')\" ] &&
           curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/bindings?deviceIdFilter=$DEVICE_ID' | jq -e -s 'length == 1 and .[0].result.recordId == \"$RECORD_ID\"' >/dev/null &&
           curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/issuance?deviceIdFilter=$DEVICE_ID' | jq -e -s 'length == 2' >/dev/null"
check "the device comes back: the same record id, its device id kept" \
    sh -c "'$LOADGEN' --endpoint 'coaps+tcp://127.0.0.1:$PORT' --pki '$OTHER' --ca '$NODE/pki/dps-root.pem' \
               --devices 1 --di '$DEVICE_ID' --out '$WORK/again' >/dev/null &&
           curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/provisioning-records?idFilter=$RECORD_ID' |
           jq -e -s 'length == 1 and .[0].result.deviceId == \"$DEVICE_ID\" and .[0].result.credential.status.coapCode == 68' >/dev/null"

expect "owner 1 replaces its group" 200 '"name":"line C"' \
    "$OWNER1" PUT "/api/v1/enrollment-groups/$NEW_ID" --data "$(jq -c '.name = "line C"' <<<"$NEW_GROUP")"
expect "a hub still named by a group cannot be deleted (409)" 409 '"code":6' \
    "$OWNER1" DELETE "/api/v1/hubs?idFilter=$HUB_ID"
expect "owner 1 deletes its new group" 200 '"count":1' \
    "$OWNER1" DELETE "/api/v1/enrollment-groups?idFilter=$NEW_ID"
check "the deleted group is gone from the list" \
    ndjson_ok "$OWNER1" /api/v1/enrollment-groups "length == 1 and .[0].result.id == \"$GROUP_ID\""
expect "status reports the node" 200 '"ready":true' "$OWNER1" GET /api/v1/status

check_stop "dpsd stops cleanly on SIGTERM"
finish
