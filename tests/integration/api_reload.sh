#!/usr/bin/env bash
# SIGHUP reloads the management API's certificates, keys, client CA and operator keys: after an
# operator replaces the files in place, the new certificate is served on the API and the health
# listener, clients of the new CA and tokens of the new key are accepted and the old ones refused.
# A setting only a restart applies (api.listen, a quota) is logged as a warning and listed in
# /api/v1/status "restartRequired", the API going on where it was; a reload whose certificate
# does not load keeps the one in force; a hub may not sign with the rotated-in operator key;
# dpsd stops cleanly with the retired generations freed.
. "$(dirname "$0")/lib.sh"

plan 19
NODE=$WORK/node
OTHER=$WORK/other # the rotated-in PKI: server certificate, client CA, operator key
node_pkis 1 1
HEALTH_PORT=$(free_port)
write_config() {
    cat >"$NODE/dpsd.yaml" <<YAML
$(yaml_node "$PORT" 1)
api:
  listen: 127.0.0.1:$1
  healthListen: 127.0.0.1:$HEALTH_PORT
  certificate: pki/dps-server.pem
  key: pki/dps-server.key
  clientCA: pki/mfg-root.pem
  jwks: pki/operator.jwks.json
  issuer: https://dps.demo.local/operator
  audience: dps-api
  admins: ["1"]
  quotas: {hubs: $2}
YAML
}
write_config "$API_PORT" 100
if start_dpsd_config "$NODE" "$API_PORT" "$HEALTH_PORT"; then ok "dpsd starts with an HTTPS API"; else
    not_ok "dpsd starts with an HTTPS API"
    finish
fi

# served PORT: the SHA-256 fingerprint of the certificate served on PORT.
served() {
    openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256
}
fingerprint() { openssl x509 -in "$1" -noout -fingerprint -sha256; }
# status PKI TOKEN: GET /api/v1/status with PKI's CA and device 1's client certificate.
status() {
    curl -sS -m 10 --cacert "$1/dps-root.pem" --cert "$1/devices/device-0001.pem" \
        --key "$1/devices/device-0001.key" -H "Authorization: Bearer $2" \
        "https://127.0.0.1:$API_PORT/api/v1/status"
}
OLD_TOKEN=$(cat "$NODE/pki/operator.token")
NEW_TOKEN=$("$DPSCTL" token --key "$OTHER/operator.key" --owner 1)
OLD=$(fingerprint "$NODE/pki/dps-server.pem")
NEW=$(fingerprint "$OTHER/dps-server.pem")
expect_output "the API serves the first certificate" "^$OLD$" served "$API_PORT"
expect_output "the API answers the first CA's client and key's token" '"owner":"1"' \
    status "$NODE/pki" "$OLD_TOKEN"

# reloaded N: the log has N generations: the first "api listening", then "api reloaded".
reloaded() { [ "$(grep -cE 'msg="api (listening|reloaded)"' "$NODE/dpsd.log")" -ge "$1" ]; }
cp "$OTHER/dps-server.pem" "$NODE/pki/dps-server.pem"
cp "$OTHER/dps-server.key" "$NODE/pki/dps-server.key"
cp "$OTHER/mfg-root.pem" "$NODE/pki/mfg-root.pem"
cp "$OTHER/operator.jwks.json" "$NODE/pki/operator.jwks.json"
kill -HUP "$DPSD_PID"
check "SIGHUP starts the API's next generation" wait_for reloaded 2
expect_output "the API serves the rotated certificate" "^$NEW$" served "$API_PORT"
expect_output "the health listener serves it too" "^$NEW$" served "$HEALTH_PORT"
expect_output "a client of the new CA with a token of the new key is served" '"owner":"1"' \
    status "$OTHER" "$NEW_TOKEN"
expect_output "a token of the old key is refused" '"code":16' status "$OTHER" "$OLD_TOKEN"
expect_output "a client certificate of the old CA is refused" '"code":16' \
    curl -sS -m 10 --cacert "$OTHER/dps-root.pem" --cert "$NODE/pki/devices/device-0001.pem" \
    --key "$NODE/pki/devices/device-0001.key" -H "Authorization: Bearer $NEW_TOKEN" \
    "https://127.0.0.1:$API_PORT/api/v1/status"
check "no restart is required" sh -c "[ \"\$(curl -sS --cacert '$OTHER/dps-root.pem' --cert '$OTHER/devices/device-0001.pem' --key '$OTHER/devices/device-0001.key' -H 'Authorization: Bearer $NEW_TOKEN' 'https://127.0.0.1:$API_PORT/api/v1/status' | jq -c .restartRequired)\" = null ]"

write_config "$(free_port)" 50
kill -HUP "$DPSD_PID"
check "a new api.listen or quota is logged as needing a restart" wait_for grep -q \
    'msg="api settings changed that need a restart" settings=\["api.listen","api.quotas.hubs"\]' \
    "$NODE/dpsd.log"
expect_output "status lists them in restartRequired, the API still where it was" \
    '"restartRequired":\["api.listen","api.quotas.hubs"\]' status "$OTHER" "$NEW_TOKEN"

write_config "$API_PORT" 100
echo "not a certificate" >"$NODE/pki/dps-server.pem"
kill -HUP "$DPSD_PID"
check "a certificate that does not load fails the API's reload, said in the log" wait_for grep -q \
    'msg="api reload failed".*dps-server' "$NODE/dpsd.log"
expect_output "the certificate in force is still served" "^$NEW$" served "$API_PORT"
expect_output "and the API still answers" '"owner":"1"' status "$OTHER" "$NEW_TOKEN"
# The rotated operator key is also the one a hub's token key may not be (the plane's check).
cp "$OTHER/dps-server.pem" "$NODE/pki/dps-server.pem"
write_config "$API_PORT" 100
{
    printf 'hubs:\n'
    yaml_hub 0c9bb0a4-7a57-4b8e-9d0e-6f2f1a3b4c5d 1 "" 5684 pki |
        sed "s|token: {key: pki/token.key|token: {key: $OTHER/operator.key|"
} >>"$NODE/dpsd.yaml"
kill -HUP "$DPSD_PID"
check "a hub signing with the rotated-in operator key is refused at reload" wait_for grep -q \
    'msg="reload failed".*signs the management API.s operator tokens' "$NODE/dpsd.log"
# One reload, one version of the file: a tool replaces dpsd.yaml (rename) with version A or B
# over and over while dpsd reloads. A: no hub, requestTimeout 10 s; B: one hub, 11 s. Every
# reload's data-plane line ("reloaded ... hubs=N") must be followed by its API line with the same
# version's timeout, never one version's hub with the other's API.
write_config "$API_PORT" 100
cp "$NODE/dpsd.yaml" "$WORK/version-a.yaml"
{
    cat "$WORK/version-a.yaml"
    printf '  requestTimeout: 11s\nhubs:\n'
    yaml_hub 5e0b0c4e-2b7c-4d39-9d0f-0a4f3c1e2d3b 1 "" 5684 pki
} >"$WORK/version-b.yaml"
(
    while [ ! -e "$WORK/stop-renames" ]; do
        cp "$WORK/version-a.yaml" "$NODE/dpsd.yaml.new" && mv "$NODE/dpsd.yaml.new" "$NODE/dpsd.yaml"
        cp "$WORK/version-b.yaml" "$NODE/dpsd.yaml.new" && mv "$NODE/dpsd.yaml.new" "$NODE/dpsd.yaml"
    done
) &
RENAMES=$!
lines_before=$(wc -l <"$NODE/dpsd.log")
# api_reloads N: this part's log has N API reload lines (a SIGHUP sent during a reload could
# merge with the next one, so each waits for the one before).
api_reloads() {
    [ "$(tail -n +"$((lines_before + 1))" "$NODE/dpsd.log" | grep -c 'msg="api reloaded"')" -ge "$1" ]
}
for i in $(seq 1 30); do
    kill -HUP "$DPSD_PID"
    wait_for api_reloads "$i" || break
done
touch "$WORK/stop-renames"
wait "$RENAMES"
# "HUBS TIMEOUT" per reload, from the lines this part logged.
tail -n +"$((lines_before + 1))" "$NODE/dpsd.log" | awk '
    /msg="reloaded"/ { hubs = $0; sub(/.* hubs=/, "", hubs); sub(/ .*/, "", hubs); next }
    /msg="api reloaded"/ && hubs != "" { t = $0; sub(/.*request_timeout_s=/, "", t); sub(/ .*/, "", t); print hubs, t; hubs = "" }' \
    >"$WORK/pairs"
sort "$WORK/pairs" | uniq -c | sed 's/^ */# reloads (count, hubs, API timeout): /'
check "30 reloads while the file is replaced all took effect (data plane and API)" \
    sh -c "[ \$(wc -l <'$WORK/pairs') -eq 30 ]"
check "each reload gave the data plane and the API one version of the file" \
    sh -c "! grep -v -x -e '0 10' -e '1 11' '$WORK/pairs'"
check_stop "dpsd stops cleanly, the retired generations freed"
finish
