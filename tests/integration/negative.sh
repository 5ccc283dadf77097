#!/usr/bin/env bash
# What a device or a scanner gets wrong, and what it gets back: refused
# handshakes, 4.04, 4.05, 4.06, 4.00 for a bad Content-Format or CSR, a
# malformed frame closing only its own connection, an oversized frame refused.
. "$(dirname "$0")/lib.sh"

plan 14
DEMO=$WORK/demo
PKI=$DEMO/pki
PORT=$(free_port)
start_dpsd "$DEMO" "$PORT" --shards 1 || { not_ok "dpsd starts"; finish; }
ENDPOINT=127.0.0.1:$PORT
probe() { "$PROBE" --endpoint "$ENDPOINT" --ca "$PKI/dps-root.pem" "$@"; }
DEVICE=(--cert "$PKI/devices/device-0001.pem" --key "$PKI/devices/device-0001.key")

expect_output "a device of an unknown manufacturer fails the handshake" "^handshake-failed" \
    probe --cert "$PKI/rogue-device.pem" --key "$PKI/rogue-device.key" --get /x.plgd.dev/time
expect_output "a certificate without EKU clientAuth fails the handshake" "^handshake-failed" \
    probe --cert "$PKI/noclientauth-device.pem" --key "$PKI/noclientauth-device.key" --get /x.plgd.dev/time
expect_output "a client without a certificate fails the handshake" "alert handshake failure.*exit=1" \
    sh -c "(openssl s_client -connect '$ENDPOINT' -tls1_2 -CAfile '$PKI/dps-root.pem' </dev/null 2>&1; echo exit=\$?) | tr '\n' ' '"
expect_output "the refusal is logged with its reason" 'device refused.*reason=' cat "$DEMO/dpsd.log"

expect_output "an unknown path gives 4.04" "^code=4\.04" probe "${DEVICE[@]}" --get /api/v1/nothing
expect_output "a wrong method gives 4.05" "^code=4\.05" probe "${DEVICE[@]}" --post /x.plgd.dev/time
expect_output "an unsupported Accept gives 4.06" "^code=4\.06" probe "${DEVICE[@]}" --get /x.plgd.dev/time --accept 41
expect_output "credentials with Content-Format 50 gives 4.00" "^code=4\.00" \
    probe "${DEVICE[@]}" --post /api/v1/provisioning/credentials --content-format 50 --payload-hex 7b7d
expect_output "a CSR with a bad signature gives 4.00" "^code=4\.00.*signature" \
    probe "${DEVICE[@]}" --bad-csr 5b3c4bd7-1a2e-4d44-9a7c-2f9f0c6e1a01
expect_output "the OCF options 2049 and 2053 are accepted silently" "^code=2\.05" \
    probe "${DEVICE[@]}" --raw d80e010102030405060708ba782e706c67642e6465760474696d65622710e206e30800420800
expect_output "a malformed frame closes that connection" "^closed" \
    probe "${DEVICE[@]}" --raw 0f01
expect_output "a frame announcing more than the limit is refused with 4.13 and closed" "^code=4\.13 .* closed" \
    sh -c "'$PROBE' --endpoint '$ENDPOINT' --ca '$PKI/dps-root.pem' ${DEVICE[*]} --raw f00010000001 | tr '\n' ' '"
check "the server keeps serving: a good device provisions afterwards" \
    "$LOADGEN" --endpoint "coaps+tcp://$ENDPOINT" --pki "$PKI" --devices 1
check_stop "dpsd stops cleanly"
finish
