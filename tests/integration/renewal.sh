#!/usr/bin/env bash
# Renewal on a new connection with the same device key succeeds; a device
# that claims another device's id is refused with 4.03 at cloud configuration
# and at credentials, and no certificate leaves for it.
. "$(dirname "$0")/lib.sh"

plan 7
DEMO=$WORK/demo
PORT=$(free_port)
start_dpsd "$DEMO" "$PORT" --shards 2 || { not_ok "dpsd starts"; finish; }
ENDPOINT=coaps+tcp://127.0.0.1:$PORT

check "device 1 provisions" "$LOADGEN" --endpoint "$ENDPOINT" --pki "$DEMO/pki" --devices 1 --out "$WORK/out"
FIRST=$(openssl x509 -in "$WORK/out/device-0001/identity.pem" -noout -serial)
KEY_BEFORE=$(openssl pkey -in "$WORK/out/device-0001/key.pem" -pubout)
DEVICE_ID=$(openssl x509 -in "$WORK/out/device-0001/identity.pem" -noout -subject -nameopt RFC2253 | sed -n 's/.*CN=uuid:\([0-9a-f-]*\).*/\1/p')

check "device 1 renews its certificate on a new connection with the same key" \
    "$LOADGEN" --endpoint "$ENDPOINT" --pki "$DEMO/pki" --devices 1 --renew --out "$WORK/out"
SECOND=$(openssl x509 -in "$WORK/out/device-0001/identity.pem" -noout -serial)
KEY_AFTER=$(openssl x509 -in "$WORK/out/device-0001/identity.pem" -noout -pubkey)
if [ "$FIRST" != "$SECOND" ] && [ "$KEY_BEFORE" = "$KEY_AFTER" ]; then
    ok "the renewed certificate is new and certifies the same key"
else
    not_ok "the renewed certificate is new and certifies the same key"
fi

COUNT=$("$DPSCTL" issuance --data "$DEMO/data" --device "$DEVICE_ID" --json | grep -c serial)
if [ "$COUNT" = 2 ]; then ok "both certificates are in the issuance log"; else
    not_ok "both certificates are in the issuance log"; echo "# found $COUNT"; fi

check "device 2 claiming device 1's id at cloud configuration gets 4.03" \
    "$LOADGEN" --endpoint "$ENDPOINT" --pki "$DEMO/pki" --first 2 --devices 1 \
    --di "$DEVICE_ID" --expect-code cloud=4.03

check "device 2 claiming device 1's id in a CSR gets 4.03" \
    "$LOADGEN" --endpoint "$ENDPOINT" --pki "$DEMO/pki" --first 2 --devices 1 --renew \
    --di "$DEVICE_ID" --expect-code credentials=4.03

COUNT=$("$DPSCTL" issuance --data "$DEMO/data" --device "$DEVICE_ID" --json | grep -c serial)
if [ "$COUNT" = 2 ]; then ok "no certificate was issued for the impostor"; else
    not_ok "no certificate was issued for the impostor"; echo "# found $COUNT"; fi
finish
