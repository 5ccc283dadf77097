#!/usr/bin/env bash
# The management API over HTTPS with client certificates (api.clientCA):
# a caller without a certificate, or with one from another CA, is refused
# even with a valid token; with a certificate from the configured CA it is
# served; the load balancer's probes need no certificate.
. "$(dirname "$0")/lib.sh"

plan 6
DEMO=$WORK/demo
PKI=$DEMO/pki
PORT=$(free_port)
start_dpsd "$DEMO" "$PORT" --shards 1 && stop_dpsd
# Operators' client certificates here are issued under the demo manufacturer root (any CA works).
sed -i 's|^api:$|api:\n  certificate: pki/dps-server.pem\n  key: pki/dps-server.key\n  clientCA: pki/mfg-root.pem|' \
    "$DEMO/dpsd.yaml"
start_dpsd "$DEMO" "$PORT" --shards 1 || { not_ok "dpsd starts with an HTTPS API"; finish; }
ok "dpsd starts with an HTTPS API that requires client certificates"
TOKEN=$(cat "$PKI/operator.token")
URL=https://127.0.0.1:$API_PORT
call() { curl -s -o /dev/null -w '%{http_code}' --cacert "$PKI/dps-root.pem" "$@"; }

expect_output "with a certificate of the configured CA and a token the API answers" '^200$' \
    call --cert "$PKI/devices/device-0001.pem" --key "$PKI/devices/device-0001.key" \
    -H "Authorization: Bearer $TOKEN" "$URL/api/v1/status"
expect_output "without a client certificate a valid token is not enough" '^401$' \
    call -H "Authorization: Bearer $TOKEN" "$URL/api/v1/status"
expect_output "a certificate of another CA is refused" '^(000|401)$' \
    call --cert "$PKI/rogue-device.pem" --key "$PKI/rogue-device.key" \
    -H "Authorization: Bearer $TOKEN" "$URL/api/v1/status"
expect_output "metrics need the certificate too" '^401$' call "$URL/metrics"
expect_output "the load balancer's probe needs none" '^200$' call "$URL/readyz"
finish
