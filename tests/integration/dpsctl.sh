#!/usr/bin/env bash
# dpsctl against the management API of a running dpsd: a manufacturer
# enrolled with `groups create` provisions a device at once, without a
# restart; `records list`/`tail`, `issuance list` and `bindings list` show it;
# `block` makes the device's next handshake fail, also after a restart, and
# `unblock` lets it in again. Exit codes mean something: 1 the server refused
# (naming the field and the flag), 2 usage, 3 not found, 4 a token the API
# does not accept, 5 an API that cannot be reached.
. "$(dirname "$0")/lib.sh"

plan 38
DEMO=$WORK/demo
OTHER=$WORK/other # a second manufacturer (and a foreign operator key)
PORT=$(free_port)
start_dpsd "$DEMO" "$PORT" --shards 1 || { not_ok "dpsd starts"; finish; }
ok "dpsd starts on its demo PKI with the management API"
"$DPSCTL" pki "$OTHER" --devices 2 >/dev/null || { not_ok "second PKI"; finish; }

export DPS_API=http://127.0.0.1:$API_PORT
export DPS_TOKEN_FILE=$DEMO/pki/operator.token
unset DPS_TOKEN DPS_CACERT

probe() {
    "$PROBE" --endpoint "127.0.0.1:$PORT" --cert "$OTHER/devices/device-0001.pem" \
        --key "$OTHER/devices/device-0001.key" --ca "$DEMO/pki/dps-root.pem" --get /x.plgd.dev/time 2>&1
}

exits "status shows the node ready" 0 '^ready +yes' "$DPSCTL" status
exits "status --json is the server's document" 0 '"ready":true' "$DPSCTL" status --json
exits "groups list shows the demo group in a table" 0 '^ID +NAME +HUBS.*$' "$DPSCTL" groups list
grep -q 'demo devices' "$WORK/out" && ok "the table names the demo group" || not_ok "the table names the demo group"
HUB_ID=$("$DPSCTL" groups list --json | jq -r '.result.hubIds[0]')
exits "hubs list --id shows the demo hub" 0 "^$HUB_ID +demo hub +plgd" "$DPSCTL" hubs list --id "$HUB_ID"

# The second manufacturer, enrolled through dpsctl, provisions right away; a tail started before
# sees each of its six steps. The tail prints its header once it has read the records there are,
# so the device starts after that; the device's id shows from cloud configuration on, where it
# names itself, and --count 6 stops the tail after the last step, whatever its polls catch at once.
exits "groups create enrolls a manufacturer from a PEM file" 0 '"name":"line B"' \
    "$DPSCTL" groups create --name "line B" --chain "$OTHER/mfg-chain.pem" --hub "$HUB_ID" --json
NEW_ID=$(jq -r .id "$WORK/out")
"$DPSCTL" records tail --group "$NEW_ID" --interval 0.2 --count 6 >"$WORK/tail" 2>&1 &
TAIL_PID=$!
for _ in $(seq 1 100); do grep -q '^RECORD ID' "$WORK/tail" && break; sleep 0.1; done
check "a device of the new group provisions right away, without a restart" \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$OTHER" --ca "$DEMO/pki/dps-root.pem" \
    --devices 1 --out "$WORK/device"
DEVICE_ID=$(openssl x509 -in "$WORK/device/device-0001/identity.pem" -noout -subject -nameopt RFC2253 |
    sed -n 's/.*CN=uuid:\([0-9a-f-]*\).*/\1/p')
tail_done=no
for _ in $(seq 1 100); do kill -0 "$TAIL_PID" 2>/dev/null || { tail_done=yes; break; }; sleep 0.1; done
R='[0-9a-f-]{36}'
expected="$R +(-|$DEVICE_ID) +$NEW_ID +plgdTime +2\.05
$R +(-|$DEVICE_ID) +$NEW_ID +ownership +2\.05
$R +$DEVICE_ID +$NEW_ID +cloud +2\.04
$R +$DEVICE_ID +$NEW_ID +credential +2\.04
$R +$DEVICE_ID +$NEW_ID +acl +2\.05
$R +$DEVICE_ID +$NEW_ID +resources +2\.05"
tail_matches() {
    [ "$(sed -n '2,$p' "$WORK/tail" | wc -l)" = 6 ] || return 1
    paste -d '\t' <(sed -n '2,$p' "$WORK/tail") <(printf '%s\n' "$expected") |
        while IFS=$'\t' read -r line pattern; do [[ $line =~ ^$pattern$ ]] || return 1; done
}
if [ $tail_done = yes ] && wait "$TAIL_PID" && tail_matches; then
    ok "records tail prints each step with its code, the device id once known, and stops at --count"
else
    not_ok "records tail prints each step with its code, the device id once known, and stops at --count"
    kill "$TAIL_PID" 2>/dev/null
    sed 's/^/# /' "$WORK/tail"
fi
exits "records list shows the device with each step's CoAP code" 0 \
    "^[0-9a-f-]{36} +$DEVICE_ID +$NEW_ID +2\.05 +2\.05 +2\.04 +2\.04 +2\.05" \
    "$DPSCTL" records list --group "$NEW_ID"
exits "records list --json gives the server's NDJSON" 0 '"credential":\{.*"coapCode":68' \
    "$DPSCTL" records list --device "$DEVICE_ID" --json
SERIAL=$(openssl x509 -in "$WORK/device/device-0001/identity.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
exits "issuance list shows the device's certificate" 0 "^0*${SERIAL#0} +$DEVICE_ID" \
    "$DPSCTL" issuance list --device "$DEVICE_ID"
exits "bindings list shows the device's binding" 0 "^$DEVICE_ID +[0-9a-f-]{36}" \
    "$DPSCTL" bindings list --device "$DEVICE_ID"
exits "records list --data reads the store directly" 0 "$DEVICE_ID" \
    "$DPSCTL" records list --data "$DEMO/data" --device "$DEVICE_ID"

# Blocking: the next handshake fails, also after a restart; unblocking lets the device in.
exits "block --device blocks the device" 0 '"deviceId":"'"$DEVICE_ID"'"' \
    "$DPSCTL" block --device "$DEVICE_ID" --reason "stolen" --json
ENTRY_ID=$(jq -r .id "$WORK/out")
expect_output "the blocked device's next handshake fails" '^handshake-failed' probe
exits "blocklist list shows the entry" 0 "^$ENTRY_ID +device +$DEVICE_ID +stolen" "$DPSCTL" blocklist list
stop_dpsd
start_dpsd "$DEMO" "$PORT" --shards 1 || { not_ok "dpsd restarts"; finish; }
expect_output "the block survives a restart" '^handshake-failed' probe
exits "unblock lifts the block" 0 "removed $ENTRY_ID" "$DPSCTL" unblock "$ENTRY_ID"
expect_output "the unblocked device is served again" '^code=2\.05' probe
exits "unblocking an entry that is gone exits 3" 3 "no blocklist entry" "$DPSCTL" unblock "$ENTRY_ID"
RECORD_ID=$("$DPSCTL" records list --device "$DEVICE_ID" --json | jq -r '.result.id')
exits "records delete deletes the device's record" 0 "deleted $RECORD_ID" \
    "$DPSCTL" records delete "$RECORD_ID"
exits "deleting it again exits 3" 3 "no record $RECORD_ID" "$DPSCTL" records delete "$RECORD_ID"
exits "the device's binding outlives its record" 0 "^$DEVICE_ID +$RECORD_ID" \
    "$DPSCTL" bindings list --device "$DEVICE_ID"
exits "bindings release frees the device id" 0 "released $DEVICE_ID" \
    "$DPSCTL" bindings release "$DEVICE_ID"

# Errors: what to fix, with an exit code per kind of failure.
printf 'not a certificate\n' >"$WORK/bad.pem"
exits "a non-PEM chain exits 1 naming the field and the flag" 1 \
    'attestationMechanism\.x509\.certificateChain.*' \
    "$DPSCTL" groups create --chain "$WORK/bad.pem" --hub "$HUB_ID"
grep -q -- 'fix: --chain' "$WORK/err" && ok "the refusal says which flag to fix" ||
    { not_ok "the refusal says which flag to fix"; sed 's/^/# /' "$WORK/err"; }
exits "an unknown hub exits 1 naming --hub" 1 'fix: --hub must name an existing hub' \
    "$DPSCTL" groups create --chain "$OTHER/mfg-chain.pem" --hub 00000000-0000-4000-8000-000000000001
exits "a missing required flag is a usage error (2)" 2 'missing --hub' \
    "$DPSCTL" groups create --chain "$OTHER/mfg-chain.pem"
exits "an option another command takes is a usage error (2)" 2 'not accepted here: --chain' \
    "$DPSCTL" records list --chain x
"$DPSCTL" token --key "$OTHER/operator.key" --owner 1 >"$WORK/foreign.token"
exits "a token the API does not accept exits 4 naming its source" 4 "token came from --token-file $WORK/foreign.token" \
    "$DPSCTL" groups list --token-file "$WORK/foreign.token"
exits "an unreachable API exits 5 naming the URL" 5 "cannot reach the management API at http://127.0.0.1:$(free_port)|--api URL" \
    "$DPSCTL" status --api "http://127.0.0.1:$(free_port)"

# Hubs and groups: create, replace, delete; a missing one exits 3.
OTHER_HUB=2b6e4c1d-8f3a-4e5b-9c7d-1a2b3c4d5e6f
exits "hubs create adds a hub" 0 "created hub $OTHER_HUB" \
    "$DPSCTL" hubs create --hub-id "$OTHER_HUB" --name "hub B" --gateway coaps+tcp://127.0.0.1:5685 \
    --provider plgd --identity-key demo-hub-ca --token-key demo-token \
    --token-issuer https://dps.demo.local
exits "groups update changes the given fields only" 0 "line C +$HUB_ID,$OTHER_HUB" \
    "$DPSCTL" groups update "$NEW_ID" --name "line C" --hub "$HUB_ID" --hub "$OTHER_HUB"
exits "groups delete removes the group" 0 "deleted $NEW_ID" "$DPSCTL" groups delete "$NEW_ID"
exits "a deleted group is not found (3)" 3 "no enrollment group $NEW_ID" "$DPSCTL" groups list --id "$NEW_ID"
exits "hubs delete removes the hub" 0 "deleted $OTHER_HUB" "$DPSCTL" hubs delete "$OTHER_HUB"

check_stop "dpsd stops cleanly on SIGTERM"
finish
