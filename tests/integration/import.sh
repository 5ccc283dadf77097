#!/usr/bin/env bash
# dpsctl import: a plgd DPS's MongoDB collections, as mongoexport writes them,
# into a stopped dpsd's store, then served. The fixture is hand-made to the
# reference's documented shapes (plgd-dev/hub device-provisioning-service/pb
# *.proto, their BSON names, mongoexport's {"$numberLong"} for int64) around
# this test's own PKI; it is not an export of a running reference.
# Checked: record ids, device ids and creation dates carry over; the device
# ids are bound, so a new identity cannot take a migrated device's id; the
# issuance log holds the migrated identity certificate; an imported group
# provisions its migrated device (same record, same id) and new devices;
# what cannot carry over (the hub's CA service and OAuth client, a bad
# record) is reported. Then the node runs on a configuration converted from
# a plgd DPS config.yaml (dpsctl import-config, the reference's shape with
# this test's files), its API taking the fake identity provider's tokens.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/oidc_lib.sh"

plan 18
NODE=$WORK/node
PKI=$NODE/pki
MONGO=$WORK/mongo
mkdir -p "$NODE" "$MONGO"
"$DPSCTL" pki "$PKI" --devices 4 >/dev/null || { not_ok "demo PKI"; finish; }
PORT=$(free_port)
API_PORT=$(free_port)
API=http://127.0.0.1:$API_PORT
HUB_RECORD=9b1d2c3e-4f5a-4b6c-8d7e-0f1a2b3c4d5e # the reference's hub record id (not its hubId)
HUB=5f8e7d6c-5b4a-4392-8a1b-0c9d8e7f6a5b
GROUP=3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a9f
DEVICE1=11111111-2222-4333-8444-555555555555
DEVICE2=66666666-7777-4888-9999-aaaaaaaaaaaa
CREATED=1700000000000000000

# The record id both sides derive: UUIDv5 (X.500 namespace) of the leaf's DER public key.
record_id() {
    openssl x509 -in "$PKI/devices/device-000$1.pem" -noout -pubkey | openssl pkey -pubin -outform DER |
        python3 -c 'import hashlib, sys, uuid
digest = hashlib.sha1(uuid.NAMESPACE_X500.bytes + sys.stdin.buffer.read()).digest()
print(uuid.UUID(bytes=digest[:16], version=5))'
}
RECORD1=$(record_id 1)
RECORD2=$(record_id 2)
# An identity certificate the reference issued device 1 (any certificate will do for the log).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/issued.key" \
    -subj "/CN=uuid:$DEVICE1" -days 30 -set_serial 0x0abc1234 -out "$WORK/issued.pem" 2>/dev/null
data_url() { printf 'data:;base64,%s' "$(base64 -w0 "$1")"; }
printf '0123456789abcdef' >"$WORK/psk"

jq -cn --arg id "$HUB_RECORD" --arg hub "$HUB" '{_id: $id, hubId: $hub, owner: "1", name: "plgd hub",
    gateways: ["coaps+tcp://127.0.0.1:5684"],
    certificateAuthority: {grpc: {address: "certificate-authority:9100", tls: {useSystemCaPool: true}}},
    authorization: {ownerClaim: "sub", provider: {name: "plgd", authority: "https://auth.example",
        clientId: "dps", clientSecret: "data:;base64,c2VjcmV0", scopes: ["offline_access"],
        audience: "https://hub.example"}}}' >"$MONGO/hubs.json"
jq -cn --arg id "$GROUP" --arg hub "$HUB_RECORD" --arg chain "$(data_url "$PKI/mfg-chain.pem")" \
    --arg psk "$(data_url "$WORK/psk")" '{_id: $id, owner: "1", name: "migrated line",
    attestationMechanism: {x509: {certificateChain: $chain, expiredCertificateEnabled: false}},
    hubIds: [$hub], preSharedKey: $psk}' >"$MONGO/enrollmentGroups.json"
{
    jq -cn --arg id "$RECORD1" --arg group "$GROUP" --arg device "$DEVICE1" --arg hub "$HUB" \
        --arg created "$CREATED" --rawfile leaf "$PKI/devices/device-0001.pem" --rawfile issued "$WORK/issued.pem" '{
        _id: $id, deviceId: $device, enrollmentGroupId: $group, owner: "1",
        creationDate: {"$numberLong": $created},
        attestation: {date: {"$numberLong": $created}, x509: {certificate: $leaf, commonName: "device-0001"}},
        plgdTime: {date: {"$numberLong": $created}, coapCode: 68},
        ownership: {status: {date: {"$numberLong": $created}, coapCode: 68}, owner: "1"},
        credential: {status: {date: {"$numberLong": $created}, coapCode: 68}, identityCertificate: $issued,
            preSharedKey: {subjectId: "1", key: "0123456789abcdef"}},
        acl: {status: {date: {"$numberLong": $created}, coapCode: 68},
            accessControlList: [{connectionSubject: {type: "AUTH_CRYPT"}, permissions: ["READ"],
                resources: [{href: "/oic/d"}]}]},
        cloud: {status: {date: {"$numberLong": $created}, coapCode: 68}, providerName: "plgd",
            gateways: [{uri: "coaps+tcp://127.0.0.1:5684", id: $hub}], selectedGateway: 0}}'
    jq -cn --arg id "$RECORD2" --arg group "$GROUP" --arg device "$DEVICE2" --arg created "$CREATED" \
        '{_id: $id, deviceId: $device, enrollmentGroupId: $group, owner: "1", creationDate: {"$numberLong": $created}}'
    echo '{"_id": "not-a-record-id", "enrollmentGroupId": "x"}'
} >"$MONGO/provisionedRecords.json"

cat >"$NODE/dpsd.yaml" <<EOF
$(yaml_node "$PORT" 1)
keys:
  - {name: hub-ca, certificate: pki/hub-ca.pem, key: pki/hub-ca.key, owners: ["1"]}
  - {name: hub-token, key: pki/token.key, owners: ["1"]}
$(yaml_api "$API_PORT")
EOF
# The store exists once dpsd ran; import writes into it while dpsd is stopped.
start_dpsd_config "$NODE" "$API_PORT" "$PORT" && stop_dpsd

exits "import reports what it carried and what it could not (exit 1: one record skipped)" 1 \
    'imported: 1 hubs, 1 enrollment groups, 2 provisioning records; skipped: 1' \
    "$DPSCTL" import "$MONGO" --data "$NODE/data" --identity-key hub-ca --token-key hub-token \
    --token-issuer https://dps.demo.local
expect_output "the report names the hub's CA service and OAuth client as dropped, and the bad record" \
    'certificateAuthority.*dropped' cat "$WORK/err"
expect_output "... the OAuth client" "authorization.provider's OAuth client.*dropped" cat "$WORK/err"
expect_output "... the record skipped" 'record not-a-record-id skipped' cat "$WORK/err"
start_dpsd_config "$NODE" "$API_PORT" "$PORT" || { not_ok "dpsd serves the imported store"; finish; }
exits "an import while dpsd runs is refused with the reason" 1 'is dpsd stopped' \
    "$DPSCTL" import "$MONGO" --data "$NODE/data" --identity-key hub-ca --token-key hub-token \
    --token-issuer https://dps.demo.local
TOKEN=$(cat "$PKI/operator.token")
get() { curl -sS -H "Authorization: Bearer $TOKEN" "$API$1"; }
check "the group is served with its hub mapped to the hub id" \
    sh -c "$(declare -f get); TOKEN='$TOKEN' API='$API' get /api/v1/enrollment-groups |
           jq -e -s 'length == 1 and .[0].result.id == \"$GROUP\" and .[0].result.hubIds == [\"$HUB\"]'"
check "the records keep their ids, device ids and creation date" \
    sh -c "curl -sS -H 'Authorization: Bearer $TOKEN' '$API/api/v1/provisioning-records' |
           jq -e -s '[.[].result | {id, deviceId, creationDate}] | sort_by(.deviceId) ==
               [{id: \"$RECORD1\", deviceId: \"$DEVICE1\", creationDate: \"$CREATED\"},
                {id: \"$RECORD2\", deviceId: \"$DEVICE2\", creationDate: \"$CREATED\"}]'"
check "both device ids are bound to their records" \
    sh -c "curl -sS -H 'Authorization: Bearer $TOKEN' '$API/api/v1/bindings' |
           jq -e -s '[.[].result | {deviceId, recordId}] | sort_by(.deviceId) ==
               [{deviceId: \"$DEVICE1\", recordId: \"$RECORD1\"}, {deviceId: \"$DEVICE2\", recordId: \"$RECORD2\"}]'"
check "the issuance log holds the migrated identity certificate" \
    sh -c "curl -sS -H 'Authorization: Bearer $TOKEN' '$API/api/v1/issuance?deviceIdFilter=$DEVICE1' |
           jq -e -s 'length == 1 and .[0].result.serial == \"0abc1234\" and .[0].result.recordId == \"$RECORD1\"'"

check "the steps carry over: serial, the ACE (served in both forms), selected gateway; no PSK secret" \
    sh -c "'$DPSCTL' records list --data '$NODE/data' --json |
           jq -e -s '[.[].result | select(.id == \"$RECORD1\")][0] |
               .credential.serial == \"0abc1234\" and (.credential | has(\"preSharedKey\") | not) and
               .acl.ocfAccessControlList[0].subject.conntype == \"auth-crypt\" and
               .acl.ocfAccessControlList[0].permission == 2 and
               .acl.accessControlList[0].connectionSubject.type == \"AUTH_CRYPT\" and
               .acl.accessControlList[0].permissions == [\"READ\"] and
               .cloud.gateways[.cloud.selectedGateway].id == \"$HUB\" and
               .plgdTime.coapCode == 68 and .plgdTime.date == \"$CREATED\"'"
device() {
    local n=$1
    shift
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$PKI" --ca "$PKI/dps-root.pem" \
        --first "$n" --devices 1 "$@"
}
check "the migrated device provisions again under its device id, in the same record" \
    sh -c "$(declare -f device); PORT=$PORT PKI='$PKI' LOADGEN='$LOADGEN' device 1 --di $DEVICE1 &&
           curl -sS -H 'Authorization: Bearer $TOKEN' '$API/api/v1/provisioning-records?deviceIdFilter=$DEVICE1' |
           jq -e -s 'length == 1 and .[0].result.id == \"$RECORD1\" and .[0].result.cloud.status.coapCode == 68'"
check "a new identity claiming a migrated device's id gets 4.03" \
    sh -c "$(declare -f device); PORT=$PORT PKI='$PKI' LOADGEN='$LOADGEN' device 3 --di $DEVICE2 --expect-code cloud=4.03"
check "a new device of the imported group provisions" \
    sh -c "$(declare -f device); PORT=$PORT PKI='$PKI' LOADGEN='$LOADGEN' device 4"
stop_dpsd
# Device 4 now holds a binding here; a migrated record naming its identity must not rebind it.
mkdir -p "$WORK/mongo2"
jq -cn --arg id "$(record_id 4)" --arg group "$GROUP" \
    '{_id: $id, deviceId: "77777777-8888-4999-aaaa-bbbbbbbbbbbb", enrollmentGroupId: $group, owner: "1"}' \
    >"$WORK/mongo2/provisionedRecords.json"
exits "a record whose identity is already bound here is skipped, not rebound" 1 \
    'skipped: device id .* already bound otherwise here' \
    "$DPSCTL" import "$WORK/mongo2" --data "$NODE/data" --identity-key hub-ca --token-key hub-token \
    --token-issuer https://dps.demo.local

start_provider || { not_ok "the fake provider starts"; finish; }
cat >"$WORK/plgd-config.yaml" <<EOF
log:
  level: info
  encoding: json
apis:
  coap:
    address: 127.0.0.1:$PORT
    maxMessageSize: 262144
    protocols: [tcp]
    inactivityMonitor: {timeout: 20s}
    blockwiseTransfer: {enabled: true, blockSize: "1024"}
    tls:
      keyFile: $PKI/dps-server.key
      certFile: $PKI/dps-server.pem
  http:
    enabled: true
    address: 127.0.0.1:$API_PORT
    tls:
      caPool: $PKI/dps-root.pem
      keyFile: $PKI/dps-server.key
      certFile: $PKI/dps-server.pem
      clientCertificateRequired: false
    authorization:
      ownerClaim: sub
      audience: dps-api
      endpoints:
        - authority: $PROVIDER
          http: {timeout: 10s, tls: {caPool: $PKI/dps-root.pem, useSystemCAPool: false}}
    readTimeout: 8s
clients:
  storage:
    mongoDB: {uri: "mongodb://mongo:27017", database: deviceProvisioningService}
  openTelemetryCollector:
    grpc: {enabled: false}
EOF
exits "import-config converts a plgd DPS config.yaml" 0 '^api:' \
    "$DPSCTL" import-config "$WORK/plgd-config.yaml"
cp "$WORK/out" "$NODE/dpsd.yaml"
expect_output "and names what it did not carry (MongoDB, OpenTelemetry, CoAP tuning)" \
    'mongoDB.*dpsctl import' cat "$WORK/err"
# The hubs' signing keys are the node's own: the operator registers them.
cat >>"$NODE/dpsd.yaml" <<EOF
keys:
  - {name: hub-ca, certificate: pki/hub-ca.pem, key: pki/hub-ca.key, owners: ["1"]}
  - {name: hub-token, key: pki/token.key, owners: ["1"]}
EOF
start_dpsd_config "$NODE" "$API_PORT" "$PORT" || { not_ok "dpsd runs on the converted configuration"; finish; }
expect_output "its HTTPS API takes the identity provider's tokens (api.authority)" "\"id\":\"$GROUP\"" \
    curl -sS --cacert "$PKI/dps-root.pem" -H "Authorization: Bearer $(provider_token 1)" \
    "https://127.0.0.1:$API_PORT/api/v1/enrollment-groups"
check "a device of the imported group provisions on it" \
    sh -c "$(declare -f device); PORT=$PORT PKI='$PKI' LOADGEN='$LOADGEN' device 3"
stop_dpsd
finish
