#!/usr/bin/env bash
# Tenants and devices are walls (issue 9), from the device's side. Each of
# these attacks worked against the demo before:
# - a device named itself after its owner, another owner, a hub, an ACL
#   subject or nobody (nil) and got a token or a certificate for that id;
# - one manufacturer identity bound several device ids; a device of owner 2
#   held a device id against owner 1's device, and owner 1 could not release
#   it;
# - a CSR's O, OU, C, UID and serialNumber were copied into the certificate;
# - owner 2 re-used owner 1's deleted group id and read owner 1's records and
#   certificates, and enrolling owner 1's former manufacturer CA merged the
#   device's old parts into owner 2's record.
# Every refusal is a 4.03 with its reason in the record and the log, counted
# in /metrics.
. "$(dirname "$0")/lib.sh"

plan 36
NODE=$WORK/node
PKI=$NODE/pki
OTHER=$NODE/other # owner 2's manufacturer, hub CA and token key
node_pkis 8 2
HUB1=0c9bb0a4-7a57-4b8e-9d0e-6f2f1a3b4c5d
HUB2=7d2e4f60-1b3c-4d5e-8f70-a1b2c3d4e5f6
GROUP2=5e1f0b7c-2d3a-4c5b-8e9f-0a1b2c3d4e5f
ACL_SUBJECT=3a4b5c6d-7e8f-4a0b-9c1d-2e3f4a5b6c7d
NIL=00000000-0000-0000-0000-000000000000
OWNER1_UUID=b80c8fef-a677-5340-85fb-2c162d75df03
OWNER2_UUID=$(python3 -c 'import uuid; print(uuid.uuid5(uuid.NAMESPACE_URL, "2"))')

cat >"$NODE/dpsd.yaml" <<EOF
$(yaml_node "$PORT" 2)
hubs:
$(yaml_hub "$HUB1" 1 "hub of owner 1" 5684 pki)
$(yaml_hub "$HUB2" 2 "hub of owner 2" 5685 other)
enrollmentGroups:
$(yaml_group "$GROUP2" 2 "owner 2's devices" other/mfg-chain.pem "$HUB2")
$(yaml_api "$API_PORT")
EOF

if start_dpsd_config "$NODE" "$API_PORT" "$PORT"; then ok "dpsd starts with owner 2's hub and group"; else
    not_ok "dpsd starts with owner 2's hub and group"
    finish
fi

OWNER1=$(cat "$PKI/operator.token")
OWNER2=$("$DPSCTL" token --key "$PKI/operator.key" --owner 2)
# get TOKEN PATH: the body of a GET (NDJSON for lists)
get() { curl -sS -H "Authorization: Bearer $1" "$API$2"; }
# device PKI_DIR N [loadgen options...]: device N of that manufacturer, against this node
device() {
    local pki=$1 n=$2
    shift 2
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$pki" --ca "$PKI/dps-root.pem" \
        --first "$n" --devices 1 "$@"
}
identity_cn() {
    openssl x509 -in "$1" -noout -subject -nameopt RFC2253 2>/dev/null | sed -n 's/.*CN=uuid:\([0-9a-f-]*\).*/\1/p'
}
metric() { curl -s "$API/metrics" | awk -v m="$1" '$1 == m {s += $2} END {print s + 0}'; }
# record_of TOKEN DEVICE_ID: the record id of the device id among the owner's records
record_of() { get "$1" "/api/v1/provisioning-records?deviceIdFilter=$2" | jq -r '.result.id' | head -1; }

# Owner 1 enrolls its manufacturer through the API, with an ACL naming one more identity.
GROUP1_DOC=$(jq -cn --rawfile chain "$PKI/mfg-chain.pem" --arg hub "$HUB1" --arg subject "$ACL_SUBJECT" '{
    name: "owner 1 line A", attestationMechanism: {x509: {certificateChain: $chain}}, hubIds: [$hub],
    acl: {mode: "extend", entries: [{subject: {uuid: $subject}, resources: [{wc: "*"}], permission: 2}]}}')
GROUP1=$(curl -sS -H "Authorization: Bearer $OWNER1" --data "$GROUP1_DOC" "$API/api/v1/enrollment-groups" | jq -r .id)
check "device 1 of owner 1 provisions" device "$PKI" 1 --out "$WORK/out"
DEVICE1=$(identity_cn "$WORK/out/device-0001/identity.pem")
RECORD1=$(record_of "$OWNER1" "$DEVICE1")

# ---- 1. A device can become its owner, or its hub ----
# Each attempt names a different id, so that none depends on another being refused first.
check "a provisioned device asking a certificate for its owner's UUID gets 4.03" \
    device "$PKI" 1 --renew --di "$OWNER1_UUID" --expect-code credentials=4.03
check "a fresh device asking a token for its group's hub id gets 4.03" \
    device "$PKI" 2 --di "$HUB1" --expect-code cloud=4.03
check "another owner's UUID is refused too" \
    device "$PKI" 1 --renew --di "$OWNER2_UUID" --expect-code credentials=4.03
check "another owner's hub id is refused" \
    device "$PKI" 3 --di "$HUB2" --expect-code cloud=4.03
check "a subject of the group's ACLs is refused" \
    device "$PKI" 1 --renew --di "$ACL_SUBJECT" --expect-code credentials=4.03
check "the nil UUID is refused" \
    device "$PKI" 7 --di "$NIL" --expect-code cloud=4.03
refused=$(metric 'dps_device_id_refusals_total{reason="reserved"}')
if [ "$refused" -ge 6 ]; then ok "/metrics counts the reserved ids refused ($refused)"; else
    not_ok "/metrics counts the reserved ids refused"; echo "# got $refused"; fi
check "the record says why (4.03, reserved) and so does the log" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/provisioning-records?idFilter=$RECORD1' |
           jq -e -s 'length == 1 and .[0].result.credential.status.coapCode == 131 and
                     (.[0].result.credential.status.errorMessage | test(\"reserved: a subject of the group.s ACLs\"))' &&
           grep -q 'error=\"device id is reserved: an owner.s UUID\"' '$NODE/dpsd.log'"
check "no certificate was issued for a reserved id" \
    sh -c "! curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/issuance' |
           jq -e -s 'any(.[]; .result.deviceId | IN(\"$OWNER1_UUID\", \"$OWNER2_UUID\", \"$HUB1\", \"$HUB2\", \"$ACL_SUBJECT\", \"$NIL\"))' >/dev/null"
check "the device still renews its own id" device "$PKI" 1 --renew

# ---- 2. The certificate's subject is exactly CN=uuid:<device id> ----
DEVICE4=9b1f5e2a-3c4d-4e5f-8a6b-7c8d9e0f1a2b
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/evil.key" -sha256 \
    -subj "/C=US/O=Evil Corp/OU=admin/UID=root/serialNumber=42/CN=uuid:$DEVICE4" -out "$WORK/evil.csr" 2>/dev/null
"$PROBE" --endpoint "127.0.0.1:$PORT" --ca "$PKI/dps-root.pem" --cert "$PKI/devices/device-0004.pem" \
    --key "$PKI/devices/device-0004.key" --csr "$WORK/evil.csr" --di "$DEVICE4" --accept 50 >"$WORK/evil.out" 2>&1
sed -n 's/^code=2\.04 payload=//p' "$WORK/evil.out" |
    jq -r '.creds[] | select(.credusage == "oic.sec.cred.cert") | .publicdata.data' >"$WORK/evil.pem" 2>/dev/null
subject=$(openssl x509 -in "$WORK/evil.pem" -noout -subject -nameopt RFC2253 2>&1)
if [ "$subject" = "subject=CN=uuid:$DEVICE4" ]; then
    ok "a CSR with C, O, OU, UID and serialNumber gets a certificate for CN=uuid:<id> alone"
else
    not_ok "a CSR with C, O, OU, UID and serialNumber gets a certificate for CN=uuid:<id> alone"
    echo "# $subject"; head -c 300 "$WORK/evil.out" | sed 's/^/# /'; echo
fi

# ---- 3. One manufacturer identity binds one device id ----
check "a provisioned device asking a certificate for a second id gets 4.03" \
    device "$PKI" 1 --renew --di 1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d --expect-code credentials=4.03
check "and a token for a third id gets 4.03" \
    device "$PKI" 1 --di 2e3d4c5b-6f7a-4b8c-9d0e-1f2a3b4c5d6e --expect-code cloud=4.03
check "the record names the id its identity holds" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/provisioning-records?idFilter=$RECORD1' |
           jq -e -s '.[0].result.cloud.status.coapCode == 131 and
                     (.[0].result.cloud.status.errorMessage | contains(\"bound to device id $DEVICE1\"))'"
check "the identity is bound to one device id only" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/bindings' |
           jq -e -s '[.[] | select(.result.recordId == \"$RECORD1\")] | length == 1 and .[0].result.deviceId == \"$DEVICE1\"'"

# ---- 4. A device of one owner cannot lock out a device of another ----
SHARED=4f5e6d7c-8b9a-4c0d-9e1f-2a3b4c5d6e7f
check "owner 2's device claims a device id" device "$OTHER" 1 --di "$SHARED"
check "owner 1's device gets the same id all the same" device "$PKI" 5 --di "$SHARED" --out "$WORK/out"
RECORD5=$(record_of "$OWNER1" "$SHARED")
check "each owner sees its own binding of the id, and only that" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/bindings?deviceIdFilter=$SHARED' |
           jq -e -s 'length == 1 and .[0].result.owner == \"1\" and .[0].result.recordId == \"$RECORD5\"' &&
           curl -sS -H 'Authorization: Bearer $OWNER2' '$API/api/v1/bindings?deviceIdFilter=$SHARED' |
           jq -e -s 'length == 1 and .[0].result.owner == \"2\" and .[0].result.recordId != \"$RECORD5\"'"
check "another device of owner 1 claiming the id gets 4.03" \
    device "$PKI" 6 --di "$SHARED" --expect-code cloud=4.03
# The record id: UUIDv5 (X.500 namespace) of the manufacturer certificate's DER public key.
RECORD6=$(openssl x509 -in "$PKI/devices/device-0006.pem" -noout -pubkey | openssl pkey -pubin -outform DER |
    python3 -c 'import hashlib, sys, uuid
digest = hashlib.sha1(uuid.NAMESPACE_X500.bytes + sys.stdin.buffer.read()).digest()
print(uuid.UUID(bytes=digest[:16], version=5))')
check "owner 1 sees the conflict: the refused record names the id, the bindings its holder" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/provisioning-records?idFilter=$RECORD6' |
           jq -e -s '.[0].result.cloud.status.coapCode == 131 and
                     (.[0].result.cloud.status.errorMessage | contains(\"$SHARED is bound to another\"))' &&
           curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/bindings?deviceIdFilter=$SHARED' |
           jq -e -s '.[0].result.recordId == \"$RECORD5\"'"
expect_output "owner 1 releases its binding" '^\{"count":1\}$' \
    curl -sS -X DELETE -H "Authorization: Bearer $OWNER1" "$API/api/v1/bindings?deviceIdFilter=$SHARED"
check "the other device of owner 1 then gets the id" device "$PKI" 6 --di "$SHARED"
check "and the device that held it may bind one id again" \
    device "$PKI" 5 --di 5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d
expect_output "owner 2 releases only its own binding" '^\{"count":1\}$' \
    curl -sS -X DELETE -H "Authorization: Bearer $OWNER2" "$API/api/v1/bindings?deviceIdFilter=$SHARED"
check "owner 1's binding is still there" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/bindings?deviceIdFilter=$SHARED' | jq -e -s 'length == 1'"

# ---- 5. One tenant cannot read another's records ----
expect_output "owner 1 deletes its group" '"count":1' \
    curl -sS -X DELETE -H "Authorization: Bearer $OWNER1" "$API/api/v1/enrollment-groups?idFilter=$GROUP1"
REUSED=$(jq -c --arg id "$GROUP1" --arg hub "$HUB2" '.id = $id | .hubIds = [$hub] | del(.acl)' <<<"$GROUP1_DOC")
expect_output "owner 2 creates a group with the same id and owner 1's former manufacturer CA" "\"id\":\"$GROUP1\"" \
    curl -sS -H "Authorization: Bearer $OWNER2" --data "$REUSED" "$API/api/v1/enrollment-groups"
check "owner 2 sees none of owner 1's records or certificates through the re-used group id" \
    sh -c "[ -z \"\$(curl -sS -H 'Authorization: Bearer $OWNER2' '$API/api/v1/provisioning-records?enrollmentGroupIdFilter=$GROUP1')\" ] &&
           ! curl -sS -H 'Authorization: Bearer $OWNER2' '$API/api/v1/issuance' |
             jq -e -s 'any(.[]; .result.recordId == \"$RECORD1\" or .result.enrollmentGroupId == \"$GROUP1\")' >/dev/null"
expect_output "owner 1's device makes one request under owner 2's group" '^code=2\.05' \
    "$PROBE" --endpoint "127.0.0.1:$PORT" --ca "$PKI/dps-root.pem" --cert "$PKI/devices/device-0001.pem" \
    --key "$PKI/devices/device-0001.key" --get /x.plgd.dev/time
check "owner 2's record of the device starts empty: no parts from owner 1's time" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER2' '$API/api/v1/provisioning-records?idFilter=$RECORD1' |
           jq -e -s 'length == 1 and .[0].result.owner == \"2\" and .[0].result.plgdTime.coapCode == 69 and
                     .[0].result.ownership == null and .[0].result.cloud == null and
                     .[0].result.credential == null and .[0].result.acl == null'"
check "owner 1 still reads its own record and certificates of the device" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/provisioning-records?idFilter=$RECORD1' |
           jq -e -s 'length == 1 and .[0].result.owner == \"1\" and .[0].result.acl.status.coapCode == 69 and
                     .[0].result.ownership.owner == \"1\"' &&
           curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/issuance?deviceIdFilter=$DEVICE1' |
           jq -e -s 'length >= 2 and all(.[]; .result.owner == \"1\")'"
check "the device provisions for its new owner with its old id" device "$PKI" 1
check "owner 2's record shows only owner 2's provisioning" \
    sh -c "curl -sS -H 'Authorization: Bearer $OWNER2' '$API/api/v1/provisioning-records?idFilter=$RECORD1' |
           jq -e -s 'length == 1 and .[0].result.ownership.owner == \"2\" and .[0].result.credential.status.coapCode == 68' &&
           curl -sS -H 'Authorization: Bearer $OWNER1' '$API/api/v1/provisioning-records?idFilter=$RECORD1' |
           jq -e -s '.[0].result.ownership.owner == \"1\"'"

check_stop "dpsd stops cleanly on SIGTERM"
finish
