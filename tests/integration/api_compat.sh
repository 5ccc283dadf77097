#!/usr/bin/env bash
# Compatibility with the plgd reference's clients (issue 13): request bodies
# taken from the reference's own sources, sent the way its web UI and gateway
# send them, succeed here and read back with the same meaning; what a node
# cannot serve gets a clear error naming what to set instead; and a second
# owner's token reaches nothing of the first owner's through any of the new
# ways in (the bundle's path prefix, trailing slashes, filter spellings).
#
# Sources of the bodies (plgd-dev/hub):
#   device-provisioning-service/pb/hub.proto             CreateHubRequest, UpdateHub
#   device-provisioning-service/pb/enrollmentGroup.proto CreateEnrollmentGroupRequest and
#       its formats: "Supported formats: </path/to/cert.pem>,<data:;base64,{PEM in BASE64}>"
#   device-provisioning-service/pb/service.proto         the routes and their
#       /device-provisioning-service/api/v1/... bindings
#   device-provisioning-service/service/http/service.go  filter names case-insensitive
#   http-gateway/web/src/containers/DeviceProvisioning/rest.ts
#       updateProvisioningRecordNameApi's body (owner, attestationMechanism, hubId,
#       preSharedKey, name) and the deletes' "idFilter=...&idFilter=..."
. "$(dirname "$0")/lib.sh"

plan 45
NODE=$WORK/node
OTHER=$WORK/other # a second manufacturer, enrolled the UI's way
"$DPSCTL" pki "$OTHER" --devices 1 >/dev/null || { not_ok "second PKI"; finish; }
PORT=$(free_port)
HUB_ID=3f6e0d2c-9b1a-4c8d-8e7f-6a5b4c3d2e1f
BUNDLE=/device-provisioning-service/api/v1

# The demo: owner 1's hub and group from the file, and keys owner 1 may name (demo-hub-ca, demo-token).
if start_dpsd "$NODE" "$PORT"; then ok "the demo starts"; else
    not_ok "the demo starts"
    finish
fi
API=http://127.0.0.1:$API_PORT
OWNER1=$(cat "$NODE/pki/operator.token")
OWNER2=$("$DPSCTL" token --key "$NODE/pki/operator.key" --owner 2)
FILE_GROUP=$(curl -sS -H "Authorization: Bearer $OWNER1" "$API/api/v1/enrollment-groups" | jq -r .result.id)

# headers TOKEN METHOD PATH [curl options...]: the response's headers, then "STATUS BODY".
headers() {
    local token=$1 method=$2 path=$3
    shift 3
    curl -sS -m 10 -D - -o "$WORK/body" -w '%{http_code} ' -X "$method" \
        -H "Authorization: Bearer $token" "$@" "$API$path"
    cat "$WORK/body"
}
# lists TOKEN PATH FILTER: the NDJSON list at PATH, as one array, passes jq FILTER.
lists() {
    curl -sS -m 10 -H "Authorization: Bearer $1" "$API$2" | jq -e -s "$3" >/dev/null
}
b64() { base64 -w0; }

# ---- Hubs in the reference's shape (CreateHubRequest, hub.proto) ----

REFERENCE_HUB=$(jq -nc --arg hub "$HUB_ID" '{
    hubId: $hub, name: "reference hub", gateways: ["coaps+tcp://127.0.0.1:5684"],
    certificateAuthority: {grpc: {address: "certificate-authority:9100",
        keepAlive: {time: "10000000000", timeout: "20000000000", permitWithoutStream: true},
        tls: {caPool: ["data:;base64,AAAA"], key: "/certs/key.pem", cert: "/certs/cert.pem",
              useSystemCaPool: false}}},
    authorization: {ownerClaim: "sub", provider: {name: "plgd", clientId: "test",
        clientSecret: "data:;base64,c2VjcmV0", authority: "https://auth.example",
        scopes: ["openid"], audience: "https://api.example",
        http: {maxIdleConns: 16, timeout: "10000000000", tls: {useSystemCaPool: true}}}}}')
expect "a reference hub without our keys is refused naming identityCertificate.keyName" 400 \
    'identityCertificate: required: this node signs identity certificates itself .*identityCertificate.keyName' \
    "$OWNER1" POST /api/v1/hubs --data "$REFERENCE_HUB"
OUR_HUB=$(jq -c '. + {identityCertificate: {keyName: "demo-hub-ca"},
    token: {keyName: "demo-token", issuer: "https://dps.demo.local"}}' <<<"$REFERENCE_HUB")
call "$OWNER1" POST /api/v1/hubs --data "$OUR_HUB" >"$WORK/hub"
RECORD=$(sed 's/^200 //' "$WORK/hub" | jq -r .id 2>/dev/null)
if grep -q '^200 ' "$WORK/hub" && [[ $RECORD =~ ^[0-9a-f-]{36}$ ]] && [ "$RECORD" != "$HUB_ID" ] &&
    sed 's/^200 //' "$WORK/hub" | jq -e --argjson sent "$REFERENCE_HUB" \
        '.hubId == $sent.hubId and .certificateAuthority == $sent.certificateAuthority and
         .authorization.provider == $sent.authorization.provider and .name == "reference hub"' >/dev/null; then
    ok "a reference hub with our keys is stored: a record id of its own, its members as sent"
else
    not_ok "a reference hub with our keys is stored: a record id of its own, its members as sent"
    sed 's/^/# /' "$WORK/hub" | head -c 1500
fi
check "hubs are found by record id and by hubIdFilter" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/hubs?idFilter=$RECORD' | jq -e -s 'length == 1 and .[0].result.hubId == \"$HUB_ID\"' &&
           curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/hubs?hub_id_filter=$HUB_ID' | jq -e -s 'length == 1 and .[0].result.id == \"$RECORD\"'"

# ---- Enrollment groups as the web UI sends them: data: URLs, hubsData, no name ----

CHAIN_URL="data:;base64,$(b64 <"$OTHER/mfg-chain.pem")"
PSK_URL="data:;base64,$(printf '\x00\x01\x02\x03\xff\xfe\xfd\xfc0123456\x80' | b64)"
UI_GROUP=$(jq -nc --arg chain "$CHAIN_URL" --arg psk "$PSK_URL" --arg hub "$HUB_ID" '{
    attestationMechanism: {x509: {certificateChain: $chain, expiredCertificateEnabled: false}},
    hubIds: [$hub], preSharedKey: $psk, hubsData: [{id: $hub, name: "reference hub"}]}')
headers "$OWNER1" POST "$BUNDLE/enrollment-groups/" --data "$UI_GROUP" >"$WORK/group"
GROUP=$(sed -n '$p' "$WORK/group" | sed 's/^200 //' | jq -r .id 2>/dev/null)
if grep -q '^200 ' "$WORK/group" && grep -qi '^Dps-Ignored-Fields: hubsData' "$WORK/group" &&
    sed -n '$p' "$WORK/group" | sed 's/^200 //' | jq -e --rawfile pem "$OTHER/mfg-chain.pem" --arg psk "$PSK_URL" \
        '.name == .id and .attestationMechanism.x509.certificateChain == $pem and .preSharedKey == $psk and
         .attestationMechanism.x509.leadCertificateName == "Demo Manufacturer Intermediate CA"' >/dev/null; then
    ok "a UI group through the bundle's prefix: chain and key decoded, name and lead name defaulted, hubsData ignored and named"
else
    not_ok "a UI group through the bundle's prefix: chain and key decoded, name and lead name defaulted, hubsData ignored and named"
    sed 's/^/# /' "$WORK/group" | head -c 1500
fi
check "an ignored member whose name holds a line break is still named, the break as ?" \
    sh -c "curl -sS -D - -o /dev/null -X PUT -H 'Authorization: Bearer $OWNER1' '$API/api/v1/enrollment-groups/$GROUP' \
               --data '$(jq -c '. + {"a\r\nSet-Cookie: b": 1}' <<<"$(sed -n '$p' "$WORK/group" | sed 's/^200 //')")' |
           grep -q '^Dps-Ignored-Fields: a??Set-Cookie: b' "
# 100 ignored members of 30 characters do not fit the header: whole names, then how many more.
check "ignored members that do not fit the header are counted, no name is cut" \
    sh -c "curl -sS -D - -o /dev/null -X PUT -H 'Authorization: Bearer $OWNER1' '$API/api/v1/enrollment-groups/$GROUP' \
               --data '$(jq -c '. + ([range(100)] | map({key: ("unknownMemberNumber" + (1000 + . | tostring) + "abcdefg"), value: 1}) | from_entries)' <<<"$(sed -n '$p' "$WORK/group" | sed 's/^200 //')")' |
           tr -d '\\r' | grep '^Dps-Ignored-Fields: ' | sed 's/^Dps-Ignored-Fields: //' >'$WORK/ignored' &&
           grep -Eq ', and [0-9]+ more$' '$WORK/ignored' &&
           sed 's/, and [0-9]* more$//' '$WORK/ignored' | tr ',' '\\n' | sed 's/^ //' |
             grep -vEqx 'unknownMemberNumber1[0-9]{3}abcdefg' && exit 1
           listed=\$(sed 's/, and [0-9]* more$//' '$WORK/ignored' | tr ',' '\\n' | wc -l)
           more=\$(sed -E 's/.*, and ([0-9]+) more$/\\1/' '$WORK/ignored')
           [ \$((listed + more)) = 100 ]"
expect "a data: URL key of 15 bytes is refused, not cut or padded" 400 \
    "preSharedKey: the data: URL's key must be exactly 16 bytes, not 15" \
    "$OWNER1" POST /api/v1/enrollment-groups \
    --data "$(jq -c --arg psk "data:;base64,$(printf 0123456789abcde | b64)" '.preSharedKey = $psk' <<<"$UI_GROUP")"
expect "Prefer: handling=strict refuses the unknown member" 400 '"message":"hubsData: unknown field"' \
    "$OWNER1" POST /api/v1/enrollment-groups -H 'Prefer: handling=strict' --data "$UI_GROUP"
expect "a leadCertificateName naming no certificate of the chain is refused" 400 \
    'leadCertificateName: .*Someone Else.* is the common name of no certificate of certificateChain' \
    "$OWNER1" POST /api/v1/enrollment-groups \
    --data "$(jq -c '.attestationMechanism.x509.leadCertificateName = "Someone Else"' <<<"$UI_GROUP")"
expect "a body that is not a group at all still names what is missing" 400 'attestationMechanism: required' \
    "$OWNER1" POST /api/v1/enrollment-groups --data '{"hubsData": []}'

# ---- Query parameters: either spelling, any case, ORed ----

for name in idFilter id_filter ID_FILTER IdFilter; do
    check "enrollment groups filtered by $name" \
        lists "$OWNER1" "/api/v1/enrollment-groups?$name=$GROUP" "length == 1 and .[0].result.id == \"$GROUP\""
done
check "filters are ORed: idFilter of one group, hubIdFilter of the other's hub" \
    lists "$OWNER1" "/api/v1/enrollment-groups?idFilter=$FILE_GROUP&hubIdFilter=$HUB_ID" \
    "length == 2 and ([.[].result.id] | sort) == ([\"$FILE_GROUP\", \"$GROUP\"] | sort)"
check "attestation_mechanism_x509_certificate_names matches lead certificate names exactly" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/enrollment-groups?attestation_mechanism_x509_certificate_names=Demo%20Manufacturer%20Intermediate%20CA' | jq -e -s 'length == 2' &&
           [ -z \"\$(curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/enrollment-groups?attestationMechanismX509CertificateNames=demo%20manufacturer%20intermediate%20ca')\" ]"
expect "an unknown parameter is still refused (a misspelt filter never widens a delete)" 400 \
    'idFiltr: unknown parameter' "$OWNER1" GET "/api/v1/enrollment-groups?idFiltr=$GROUP"
expect "the blocklist takes no filter: one is refused, not ignored (the list is not widened)" 400 \
    'deviceIdFilter: unknown parameter' "$OWNER1" GET "$BUNDLE/blocklist?device_id_filter=$GROUP"
check "a device of the demo group provisions" \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$NODE/pki" --ca "$NODE/pki/dps-root.pem" \
    --devices 1 --out "$WORK/device"
DEVICE_ID=$(curl -sS -H "Authorization: Bearer $OWNER1" "$API/api/v1/provisioning-records" | jq -r .result.deviceId)
check "records: snake spelling through the prefix and a trailing slash, filters ORed" \
    lists "$OWNER1" "$BUNDLE/provisioning-records/?device_id_filter=$DEVICE_ID&ID_FILTER=$HUB_ID" \
    "length == 1 and .[0].result.deviceId == \"$DEVICE_ID\""
check "records: a filter matching nothing lists nothing" \
    lists "$OWNER1" "$BUNDLE/provisioning-records?idFilter=$HUB_ID" "length == 0"

# ---- Replacing: the reference's fields replace, our extensions stay unless named ----

OURS=$(sed -n '$p' "$WORK/group" | sed 's/^200 //' | jq -c '. + {acl: {mode: "extend",
    entries: [{subject: {conntype: "anon-clear"}, resources: [{href: "/oic/d"}], permission: 2}]},
    disabled: true}')
expect "our own replace sets an ACL and disables the group" 200 '"disabled":true' \
    "$OWNER1" PUT "/api/v1/enrollment-groups/$GROUP" --data "$OURS"
UI_RENAME=$(jq -c --arg hub "$HUB_ID" '{owner, attestationMechanism, hubId: $hub, hubIds,
    preSharedKey, name: "renamed by the UI"}' <<<"$OURS")
headers "$OWNER1" PUT "$BUNDLE/enrollment-groups/$GROUP/" --data "$UI_RENAME" >"$WORK/renamed"
if grep -q '^200 ' "$WORK/renamed" && grep -qi '^Dps-Ignored-Fields: hubId' "$WORK/renamed" &&
    sed -n '$p' "$WORK/renamed" | sed 's/^200 //' |
    jq -e '.name == "renamed by the UI" and .disabled == true and .acl.entries[0].permission == 2' >/dev/null; then
    ok "the UI's rename keeps the ACL and disabled, which it does not know"
else
    not_ok "the UI's rename keeps the ACL and disabled, which it does not know"
    sed 's/^/# /' "$WORK/renamed" | head -c 1500
fi
# The UI's new-group page fills hubIds with the hubs' record ids (http-gateway/web/src/containers/
# DeviceProvisioning/EnrollmentGroups/NewEnrollmentGroupsPage/Steps/Step1/Step1.tsx: value: linkedHub.id).
expect "hubIds naming the caller's hub by its record id are stored as its hubId" 200 \
    "\"hubIds\":\\[\"$HUB_ID\"\\]" \
    "$OWNER1" PUT "$BUNDLE/enrollment-groups/$GROUP" --data "$(jq -c --arg hub "$RECORD" '.hubIds = [$hub]' <<<"$UI_RENAME")"
# hooks.ts useProvisioningRecordsDetail asks "enrollment-groups?idFilter=" before the record is in.
check "an empty filter value (the UI's detail page while it loads) lists nothing, as the reference" \
    sh -c "[ \"\$(curl -sS -o '$WORK/empty' -w '%{http_code}' -H 'Authorization: Bearer $OWNER1' '$API$BUNDLE/enrollment-groups?idFilter=')\" = 200 ] &&
           [ ! -s '$WORK/empty' ] &&
           [ -z \"\$(curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/provisioning-records?idFilter=&deviceIdFilter=')\" ]"
expect "null clears an extension on replace" 200 '"name":"renamed by the UI"' \
    "$OWNER1" PUT "/api/v1/enrollment-groups/$GROUP" --data "$(jq -c '.acl = null | .disabled = null' <<<"$UI_RENAME")"
check "the cleared group has neither ACL nor disabled" \
    lists "$OWNER1" "/api/v1/enrollment-groups?idFilter=$GROUP" '.[0].result | has("acl") == false and has("disabled") == false'
UPDATE_HUB=$(jq -c '{hubId, gateways, certificateAuthority, authorization, name: "renamed hub"}' <<<"$REFERENCE_HUB")
expect "the reference's UpdateHub keeps our keys" 200 '"keyName":"demo-hub-ca"' \
    "$OWNER1" PUT "$BUNDLE/hubs/$RECORD/" --data "$UPDATE_HUB"
expect "a hub's hubId cannot change" 400 "hubId: .* cannot change" \
    "$OWNER1" PUT "/api/v1/hubs/$RECORD" --data "$(jq -c '.hubId = "11111111-2222-4333-8444-555555555555"' <<<"$UPDATE_HUB")"

# ---- Bulk delete ----

expect "a delete without a filter is refused, saying the reference would delete everything" 400 \
    'idFilter: required .*the reference would delete every group of the owner' \
    "$OWNER1" DELETE "$BUNDLE/enrollment-groups/"

# ---- Walls: owner 2 through the new ways in ----

check "owner 2 lists none of owner 1's hubs or groups through the prefix" \
    sh -c "[ -z \"\$(curl -sS -H 'Authorization: Bearer $OWNER2' $API$BUNDLE/hubs/)\" ] &&
           [ -z \"\$(curl -sS -H 'Authorization: Bearer $OWNER2' $API$BUNDLE/enrollment-groups/)\" ]"
check "owner 2's filters naming owner 1's things find nothing" \
    sh -c "[ -z \"\$(curl -sS -H 'Authorization: Bearer $OWNER2' '$API/api/v1/enrollment-groups?hubIdFilter=$HUB_ID&ID_FILTER=$GROUP&attestationMechanismX509CertificateNames=Demo%20Manufacturer%20Intermediate%20CA')\" ] &&
           [ -z \"\$(curl -sS -H 'Authorization: Bearer $OWNER2' '$API/api/v1/hubs?hub_id_filter=$HUB_ID&idFilter=$RECORD')\" ]"
expect "owner 2 cannot replace owner 1's hub by record id through the prefix" 404 '"code":5' \
    "$OWNER2" PUT "$BUNDLE/hubs/$RECORD/" --data "$UPDATE_HUB"
expect "owner 2 cannot replace owner 1's hub by hubId" 404 '"code":5' \
    "$OWNER2" PUT "/api/v1/hubs/$HUB_ID" --data "$UPDATE_HUB"
expect "owner 2 cannot replace owner 1's group through the prefix" 404 '"code":5' \
    "$OWNER2" PUT "$BUNDLE/enrollment-groups/$GROUP/" --data "$(jq -c 'del(.owner)' <<<"$UI_RENAME")"
expect "owner 2 deletes none of owner 1's hubs by record id" 200 '"count":0' \
    "$OWNER2" DELETE "$BUNDLE/hubs/?id_filter=$RECORD"
expect "owner 2 deletes none of owner 1's groups" 200 '"count":0' \
    "$OWNER2" DELETE "$BUNDLE/enrollment-groups?ID_FILTER=$GROUP"
expect "the prefix needs a token like any /api/v1 path" 401 '"code":16' "" GET "$BUNDLE/hubs/"
check "owner 2 sees no records of owner 1 through the prefix, filtered or not" \
    sh -c "[ -z \"\$(curl -sS -H 'Authorization: Bearer $OWNER2' $API$BUNDLE/provisioning-records/)\" ] &&
           [ -z \"\$(curl -sS -H 'Authorization: Bearer $OWNER2' '$API$BUNDLE/provisioning-records/?DEVICEIDFILTER=$DEVICE_ID')\" ]"

# ---- Deletes as the UI sends them ----

expect "the UI's group delete (idFilter=...&idFilter=...) through the prefix" 200 '"count":1' \
    "$OWNER1" DELETE "$BUNDLE/enrollment-groups/?idFilter=$GROUP&idFilter=11111111-2222-4333-8444-555555555555"
# rest.ts deleteProvisioningRecordsApi: chunks of "idFilter=...&idFilter=..." through the bundle.
DEVICE_RECORD=$(curl -sS -H "Authorization: Bearer $OWNER1" "$API/api/v1/provisioning-records?deviceIdFilter=$DEVICE_ID" | jq -r .result.id)
expect "the UI's records delete (idFilter=...&idFilter=...) through the prefix" 200 '"count":1' \
    "$OWNER1" DELETE "$BUNDLE/provisioning-records?idFilter=$DEVICE_RECORD&idFilter=11111111-2222-4333-8444-555555555555"
expect "the UI's hub delete by record id" 200 '"count":1' \
    "$OWNER1" DELETE "/api/v1/hubs?idFilter=$RECORD"
check "owner 1 keeps its file group and hub" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/hubs/' | jq -e -s 'length == 1' &&
           curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/enrollment-groups/' | jq -e -s 'length == 1'"

check_stop "dpsd stops cleanly on SIGTERM"
finish
