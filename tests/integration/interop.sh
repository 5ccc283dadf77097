#!/usr/bin/env bash
# An independent client, Debian's coap-client-openssl (libcoap 3), with a demo
# manufacturer certificate, reads the time and the ownership over coaps+tcp.
. "$(dirname "$0")/lib.sh"

plan 3
DEMO=$WORK/demo
PORT=$(free_port)
start_dpsd "$DEMO" "$PORT" --shards 1 || { not_ok "dpsd starts"; finish; }
ok "dpsd starts"
CLIENT=(coap-client-openssl -B 20 -c "$DEMO/pki/devices/device-0001.pem" -j "$DEMO/pki/devices/device-0001.key" -R "$DEMO/pki/dps-root.pem")

expect_output "coap-client gets /x.plgd.dev/time (JSON)" \
    '"time":"20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"' \
    "${CLIENT[@]}" -A 50 "coaps+tcp://127.0.0.1:$PORT/x.plgd.dev/time"

expect_output "coap-client gets /api/v1/provisioning/ownership (JSON)" \
    '^\{"devowneruuid":"b80c8fef-a677-5340-85fb-2c162d75df03"\}' \
    "${CLIENT[@]}" -A 50 "coaps+tcp://127.0.0.1:$PORT/api/v1/provisioning/ownership"
finish
