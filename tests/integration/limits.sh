#!/usr/bin/env bash
# A node with a signing rate limit answers the excess with 5.03 and a
# Max-Age telling the device when to retry the step, and admits it again
# once the wait has passed.
. "$(dirname "$0")/lib.sh"

plan 6
DEMO=$WORK/demo
PORT=$(free_port)
start_dpsd "$DEMO" "$PORT" --shards 2 && stop_dpsd
printf 'limits:\n  signingRate: 1\n  signingBurst: 1\n' >>"$DEMO/dpsd.yaml"
start_dpsd "$DEMO" "$PORT" --shards 2 || { not_ok "dpsd starts with a signing rate limit"; finish; }
ok "dpsd starts with a signing rate limit"

PKI=$DEMO/pki
DI=0f4a3c55-8e3b-4f4e-9a5e-6b2f7d1c9e01
# {"di": DI} in CBOR
BODY=a1626469$(printf '7824')$(printf '%s' "$DI" | od -An -tx1 | tr -d ' \n')
cloud() {
    "$PROBE" --endpoint "127.0.0.1:$PORT" --ca "$PKI/dps-root.pem" \
        --cert "$PKI/devices/device-0001.pem" --key "$PKI/devices/device-0001.key" \
        --post /api/v1/provisioning/cloud-configuration --content-format 10000 --payload-hex "$BODY"
}
outputs=""
for _ in 1 2 3 4 5; do
    outputs+="$(cloud)"$'\n'
done
if printf '%s' "$outputs" | grep -q '^code=2\.04'; then ok "the first signing step passes"; else
    not_ok "the first signing step passes"; printf '%s' "$outputs" | sed 's/^/# /'; fi
if printf '%s' "$outputs" | grep -Eq '^code=5\.03 max-age=[1-9][0-9]* payload=rate limited'; then
    ok "steps beyond the rate get 5.03 with Max-Age"
else
    not_ok "steps beyond the rate get 5.03 with Max-Age"; printf '%s' "$outputs" | sed 's/^/# /'
fi
sleep 1.2
expect_output "after Max-Age the step is admitted again" "^code=2\.04" cloud

# A fleet against a node that signs at most 20 per second: devices wait Max-Age and retry the
# same step (5.03 is backpressure, not failure), and all of them finish.
stop_dpsd
sed -i 's/signingRate: 1$/signingRate: 20/; s/signingBurst: 1$/signingBurst: 4/' "$DEMO/dpsd.yaml"
start_dpsd "$DEMO" "$PORT" --shards 2 || { not_ok "dpsd restarts with 20 signatures/s"; finish; }
"$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$PKI" --devices 40 --first 200 \
    --concurrency 16 --timeout 30 --report "$WORK/limited.json" >"$WORK/limited.log" 2>&1
check "every device of a rate-limited fleet finishes" \
    jq -e '.devices.succeeded == 40 and .devices.failed == 0' "$WORK/limited.json"
check "the devices retried steps after 5.03 + Max-Age, and the report counts them" \
    jq -e '.transient_retries > 0 and (.coap_codes["5.03"] // 0) > 0' "$WORK/limited.json"
finish
