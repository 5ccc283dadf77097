#!/usr/bin/env bash
# A device provisioned end to end by dps-loadgen against a dpsd started here:
# the issued certificate verifies against the hub identity CA, and the
# provisioning record, issuance log and binding show every step.
. "$(dirname "$0")/lib.sh"

plan 10
start_demo 1 "dpsd starts on its demo PKI"

check "two devices provision through the whole device flow" \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$DEMO/pki" --devices 2 --out "$WORK/out"

IDENTITY=$WORK/out/device-0001/identity.pem
check "the identity certificate verifies against the hub identity CA" \
    openssl verify -CAfile "$DEMO/pki/hub-root.pem" -untrusted "$DEMO/pki/hub-ca.pem" "$IDENTITY"

expect_output "the trust anchor given to the device is the hub root" "OK" \
    openssl verify -CAfile "$WORK/out/device-0001/trustca.pem" -untrusted "$DEMO/pki/hub-ca.pem" "$IDENTITY"

DEVICE_ID=$(openssl x509 -in "$IDENTITY" -noout -subject -nameopt RFC2253 | sed -n 's/.*CN=uuid:\([0-9a-f-]*\).*/\1/p')
RECORDS=$("$DPSCTL" records --data "$DEMO/data" --json 2>&1)
RECORD=$(printf '%s\n' "$RECORDS" | jq -c --arg d "$DEVICE_ID" '.result | select(.deviceId == $d)')
steps_ok() {
    [ -n "$RECORD" ] || return 1
    printf '%s' "$RECORD" | jq -e '
        .plgdTime.coapCode == 69 and .ownership.status.coapCode == 69 and
        .cloud.status.coapCode == 68 and .credential.status.coapCode == 68 and
        .acl.status.coapCode == 69 and (.attestation.x509.certificatePem | startswith("-----BEGIN"))
        and .ownership.owner == "1" and (.cloud.gateways | length) >= 1' >/dev/null
}
if steps_ok; then ok "the provisioning record shows every step with its status"; else
    not_ok "the provisioning record shows every step with its status"
    printf '%s\n' "$RECORDS" | head -5 | sed 's/^/# /'
fi

SERIAL=$(openssl x509 -in "$IDENTITY" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
expect_output "the issuance log holds the certificate's serial and device" "$DEVICE_ID" \
    sh -c "'$DPSCTL' issuance --data '$DEMO/data' --json | jq -c --arg s '$SERIAL' 'select((.result // .).serial | ltrimstr(\"0\") == (\$s | ltrimstr(\"0\")))'"

expect_output "the device id is bound to the record" "$DEVICE_ID" \
    "$DPSCTL" bindings --data "$DEMO/data" --json

expect_output "a human table lists the record with its step codes" "2\.05 +2\.05 +2\.04 +2\.04 +2\.05" \
    "$DPSCTL" records --data "$DEMO/data" --device "$DEVICE_ID"

# The device's next connection finds its leaf in the verified-leaf cache (one shard: one cache).
attestations() {
    curl -s "http://127.0.0.1:$API_PORT/metrics" | awk -v p="path=\"$1\"" '$1 ~ /^dps_attestations_total/ && index($1, p) {s += $2} END {print s + 0}'
}
"$PROBE" --endpoint "127.0.0.1:$PORT" --ca "$DEMO/pki/dps-root.pem" --cert "$DEMO/pki/devices/device-0001.pem" \
    --key "$DEMO/pki/devices/device-0001.key" --get /x.plgd.dev/time >/dev/null 2>&1
FULL=$(attestations full) CACHED=$(attestations cache)
check "metrics count chains verified in full and leaves found in the cache" \
    sh -c "echo full $FULL, cache $CACHED; [ $FULL -ge 2 ] && [ $CACHED -ge 1 ]"

check_stop "dpsd stops cleanly on SIGTERM"
finish
