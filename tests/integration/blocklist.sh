#!/usr/bin/env bash
# Blocking through the management API: by device id, by public-key hash and
# by serial and issuer. A blocked device fails its next handshake, the block
# survives a restart, lifting it lets the device in again, a device id
# blocked before provisioning gets 4.03 at its first signing step, and one
# owner's blocks neither show nor apply to another's. Metrics count it all.
. "$(dirname "$0")/lib.sh"

plan 15
start_demo 2 "dpsd starts"
API=http://127.0.0.1:$API_PORT/api/v1
TOKEN=$(cat "$PKI/operator.token")
OTHER=$("$DPSCTL" token --key "$PKI/operator.key" --owner 2)
api() { curl -s -H "Authorization: Bearer $TOKEN" "$@"; }
probe_device() {
    "$PROBE" --endpoint "127.0.0.1:$PORT" --ca "$PKI/dps-root.pem" \
        --cert "$PKI/devices/device-$1.pem" --key "$PKI/devices/device-$1.key" --get /x.plgd.dev/time
}
metric() { curl -s "http://127.0.0.1:$API_PORT/metrics" | awk -v m="$1" '$1 == m {s += $2} END {print s + 0}'; }

check "device 1 provisions" "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$PKI" --devices 1 --out "$WORK/out"
DEVICE=$(openssl x509 -in "$WORK/out/device-0001/identity.pem" -noout -subject -nameopt RFC2253 | sed -n 's/.*CN=uuid:\([0-9a-f-]*\).*/\1/p')
issued=$(metric dps_certificates_issued_total)
if [ "$issued" -ge 1 ]; then ok "metrics count the certificate issued"; else not_ok "metrics count the certificate issued"; fi

ENTRY=$(api -X POST -d "{\"deviceId\": \"$DEVICE\", \"reason\": \"stolen\"}" "$API/blocklist")
ID=$(printf '%s' "$ENTRY" | jq -r .id)
if printf '%s' "$ENTRY" | jq -e '.deviceId and .recordId and .reason == "stolen"' >/dev/null; then
    ok "blocking a provisioned device id names its record"
else
    not_ok "blocking a provisioned device id names its record"; echo "# $ENTRY"
fi
expect_output "the blocked device fails its next handshake" '^handshake-failed' probe_device 0001
expect_output "the refusal is logged as blocked" 'reason="blocked"' cat "$DEMO/dpsd.log"
failed_after=$(( $(metric 'dps_handshakes_total{shard="0",result="failed"}') + $(metric 'dps_handshakes_total{shard="1",result="failed"}') ))
if [ "$failed_after" -ge 1 ]; then ok "metrics count the failed handshake"; else not_ok "metrics count the failed handshake"; fi

expect_output "metrics give the failure's reason" 'reason="blocked"\} [1-9]' \
    curl -s "http://127.0.0.1:$API_PORT/metrics"
expect_output "another owner neither sees nor lifts the block" '^\{"count":0\}$' \
    sh -c "curl -s -H 'Authorization: Bearer $OTHER' '$API/blocklist' | wc -l | grep -q '^0$' && curl -s -X DELETE -H 'Authorization: Bearer $OTHER' '$API/blocklist?idFilter=$ID'"

stop_dpsd
start_dpsd "$DEMO" "$PORT" --shards 2 || { not_ok "dpsd restarts"; finish; }
expect_output "the block survives a restart" '^handshake-failed' probe_device 0001
expect_output "lifting the block" '^\{"count":1\}$' api -X DELETE "$API/blocklist?idFilter=$ID"
expect_output "the device is let in again" '^code=2\.05' probe_device 0001

SPKI=$(openssl x509 -in "$PKI/devices/device-0002.pem" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1)
api -X POST -d "{\"publicKeySha256\": \"$SPKI\"}" "$API/blocklist" >/dev/null
expect_output "a block by public-key hash fails the handshake" '^handshake-failed' probe_device 0002

SERIAL=$(openssl x509 -in "$PKI/devices/device-0003.pem" -noout -serial | cut -d= -f2)
ISSUER=$(openssl x509 -in "$PKI/devices/device-0003.pem" -noout -issuer -nameopt RFC2253 | sed 's/^issuer=//')
api -X POST -d "$(jq -cn --arg s "$SERIAL" --arg i "$ISSUER" '{serial: $s, issuer: $i}')" "$API/blocklist" >/dev/null
expect_output "a block by serial and issuer fails the handshake" '^handshake-failed' probe_device 0003

# A device id blocked before any device used it: whoever claims it gets 4.03.
DI4=9d0c1b7e-5a4f-4e3d-8c2b-1a0f9e8d7c6b
api -X POST -d "{\"deviceId\": \"$DI4\"}" "$API/blocklist" >/dev/null
check "a blocked device id gets 4.03 at its next signing step" \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$PKI" --first 4 --devices 1 --renew \
    --di "$DI4" --expect-code credentials=4.03
finish
