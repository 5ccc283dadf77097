#!/usr/bin/env bash
# Input that does not fit is refused, never cut or dropped to make it fit:
# the API answers 400 naming the field (blocklist fields, query parameters,
# an enrollment group's pre-shared key), the configuration file stops the
# start naming the file, the line and the key, and dpsctl, dpsd and
# dps-loadgen refuse arguments they cannot use whole. A 16-byte pre-shared key
# of characters outside ASCII survives the API, the store and a restart byte
# for byte. Every limit has a case here.
. "$(dirname "$0")/lib.sh"

plan 39
start_demo 1 "dpsd starts"
API=http://127.0.0.1:$API_PORT/api/v1
TOKEN=$(cat "$DEMO/pki/operator.token")
export DPS_API=http://127.0.0.1:$API_PORT DPS_TOKEN_FILE=$DEMO/pki/operator.token
unset DPS_TOKEN DPS_CACERT

# api_expect NAME STATUS PATTERN METHOD PATH [curl options...]: the status and the body match.
api_expect() {
    local name=$1 status=$2 pattern=$3 method=$4 path=$5 got
    shift 5
    got=$(curl -sS -o "$WORK/body" -w '%{http_code}' -X "$method" \
        -H "Authorization: Bearer $TOKEN" "$@" "$API$path")
    if [ "$got" = "$status" ] && grep -Eq -- "$pattern" "$WORK/body"; then
        ok "$name"
    else
        not_ok "$name"
        echo "# expected $status and /$pattern/, got $got:"
        head -c 600 "$WORK/body" | sed 's/^/# /'
        echo
    fi
}

hex() { head -c "$1" /dev/zero | tr '\0' 'a'; }
text() { head -c "$1" /dev/zero | tr '\0' 'r'; }
block() { jq -cn "$1"; }

# ---- the blocklist: each field whole or refused ----
api_expect "a public-key hash of 70 hex digits is 400, not its first 64" 400 \
    '"message":"publicKeySha256: must be 64 hex digits' POST /blocklist \
    --data "$(block "{publicKeySha256: \"$(hex 70)\"}")"
api_expect "a public-key hash of 63 hex digits is 400" 400 'publicKeySha256: must be 64 hex digits' \
    POST /blocklist --data "$(block "{publicKeySha256: \"$(hex 63)\"}")"
api_expect "a public-key hash with a NUL after 64 digits is 400" 400 \
    'u0000 is not allowed' POST /blocklist \
    --data "{\"publicKeySha256\": \"$(hex 64)\\u0000$(hex 6)\"}"
if [ -z "$(curl -sS -H "Authorization: Bearer $TOKEN" "$API/blocklist")" ]; then
    ok "nothing refused was stored"
else
    not_ok "nothing refused was stored"
fi
api_expect "a device id of 37 characters is 400" 400 '"message":"deviceId: not a UUID' \
    POST /blocklist --data "$(block '{deviceId: "9d0c1b7e-5a4f-4e3d-8c2b-1a0f9e8d7c6b0"}')"
api_expect "a device id with a NUL after the UUID is 400" 400 'u0000 is not allowed' \
    POST /blocklist --data '{"deviceId": "9d0c1b7e-5a4f-4e3d-8c2b-1a0f9e8d7c6b\u0000junk"}'
api_expect "a device id that is a number is 400, not ignored" 400 'deviceId: must be a string' \
    POST /blocklist --data "$(block '{deviceId: 7, serial: "01", issuer: "CN=x"}')"
api_expect "a serial of 41 hex digits is 400" 400 'serial: must be 1 to 40 hex digits' \
    POST /blocklist --data "$(block "{serial: \"$(hex 41)\", issuer: \"CN=x\"}")"
api_expect "an issuer of 257 bytes is 400" 400 'issuer: must be RFC 2253 text of at most 256 bytes' \
    POST /blocklist --data "$(block "{serial: \"01\", issuer: \"CN=$(text 254)\"}")"
api_expect "an issuer without a serial is 400, not ignored" 400 'issuer: only with serial' \
    POST /blocklist --data "$(block '{deviceId: "9d0c1b7e-5a4f-4e3d-8c2b-1a0f9e8d7c6b", issuer: "CN=x"}')"
api_expect "a reason of 257 bytes is 400" 400 'reason: must be text of at most 256 bytes' \
    POST /blocklist --data "$(block "{publicKeySha256: \"$(hex 64)\", reason: \"$(text 257)\"}")"
api_expect "a reason of 256 bytes is kept whole" 200 "\"reason\":\"$(text 256)\"" \
    POST /blocklist --data "$(block "{publicKeySha256: \"$(hex 64)\", reason: \"$(text 256)\"}")"
ENTRY=$(jq -r .id "$WORK/body")

# ---- query parameters and path segments ----
api_expect "a filter value that is not UTF-8 is 400, not dropped" 400 \
    'deviceIdFilter: not UTF-8 text' GET '/provisioning-records?deviceIdFilter=%ff'
api_expect "an id filter of 70 characters is 400" 400 'idFilter: not a UUID' \
    GET "/provisioning-records?idFilter=$(hex 70)"
api_expect "a device id of 37 characters to release is 400" 400 'deviceIdFilter: not a UUID' \
    DELETE '/bindings?deviceIdFilter=9d0c1b7e-5a4f-4e3d-8c2b-1a0f9e8d7c6b0'
api_expect "a path id of 37 characters is 400" 400 '"message":"id: ' \
    PUT /enrollment-groups/9d0c1b7e-5a4f-4e3d-8c2b-1a0f9e8d7c6b0 --data '{}'

# ---- an enrollment group's pre-shared key: exactly 16 bytes, kept as given ----
# A group made through the API (the file's groups are seeded again at every start).
"$DPSCTL" pki "$WORK/other" --devices 0 >/dev/null || not_ok "second PKI"
GROUP=$(curl -sS -H "Authorization: Bearer $TOKEN" "$API/enrollment-groups" |
    jq -c --rawfile chain "$WORK/other/mfg-chain.pem" \
        '.result | del(.id) | .name = "line B" | .attestationMechanism.x509.certificateChain = $chain')
with_key() { jq -c --arg k "$1" '.preSharedKey = $k' <<<"$GROUP"; }
api_expect "a key of 17 bytes is 400 naming the field" 400 \
    '"message":"preSharedKey: must be exactly 16 bytes, not 17' \
    POST /enrollment-groups --data "$(with_key 0123456789abcdefX)"
api_expect "a key of 16 characters and 18 bytes is 400" 400 \
    'preSharedKey: must be exactly 16 bytes, not 18' \
    POST /enrollment-groups --data "$(with_key '0123456789abcde€')"
KEY='pässwörd-€-1' # 12 characters, 16 bytes
api_expect "a key of 16 bytes in 12 characters is stored" 200 "\"preSharedKey\":\"$KEY\"" \
    POST /enrollment-groups --data "$(with_key "$KEY")"
GROUP_ID=$(jq -r .id "$WORK/body")
stop_dpsd
start_dpsd "$DEMO" "$PORT" --shards 1 || { not_ok "dpsd restarts"; finish; }
api_expect "the key is the same bytes after a restart" 200 "\"preSharedKey\":\"$KEY\"" \
    GET "/enrollment-groups?idFilter=$GROUP_ID"
exits "dpsctl names --psk when the key does not fit" 1 'fix: --psk must be exactly 16 bytes' \
    "$DPSCTL" groups update "$GROUP_ID" --psk 0123456789abcdefX

# The configuration file: the start stops naming the file, the line and the key.
sed "s/^    hubIds: \(.*\)$/    hubIds: \1\n    preSharedKey: \"0123456789abcde€\"/" "$DEMO/dpsd.yaml" >"$DEMO/long-key.yaml"
line=$(grep -n preSharedKey "$DEMO/long-key.yaml" | cut -d: -f1)
exits "a configured key of 18 bytes stops the start naming file, line and key" 1 \
    "long-key\\.yaml:$line: enrollmentGroups\\[0\\]\\.preSharedKey: must be exactly 16 bytes, not 18" \
    "$DPSD" --config "$DEMO/long-key.yaml" --listen "127.0.0.1:$(free_port)"

# ---- dpsctl: arguments used whole or refused ----
exits "block --public-key-sha256 of 70 digits is a usage error" 2 'must be 64 hex digits' \
    "$DPSCTL" block --public-key-sha256 "$(hex 70)"
exits "block --serial of 41 digits is a usage error" 2 '--serial must be 1 to 40 hex digits' \
    "$DPSCTL" block --serial "$(hex 41)" --issuer CN=x
exits "issuance list --serial of 41 digits is a usage error" 2 '--serial must be 1 to 40 hex digits' \
    "$DPSCTL" issuance list --serial "$(hex 41)"
exits "issuance list --since in another form is a usage error" 2 '--since must be YYYY-MM-DDTHH:MM:SSZ' \
    "$DPSCTL" issuance list --since "2025-01-01T00:00:00Z$(text 3000)"
exits "unblock with an id of 33 digits is a usage error" 2 'not a blocklist entry id' \
    "$DPSCTL" unblock "${ENTRY}0"
exits "a --name that is not UTF-8 is a usage error, not left out" 2 '--name must be UTF-8 text' \
    "$DPSCTL" groups update "$GROUP_ID" --name "$(printf 'line \377')"
exits "a token with a line break is refused before it is sent" 4 'is not a JWT' \
    env DPS_TOKEN="$(printf 'abc\r\nX-Injected: 1')" "$DPSCTL" status
exits "a 20000-character token reaches the API whole" 4 'malformed bearer token' \
    env DPS_TOKEN="a.b.$(hex 20000)" "$DPSCTL" status
exits "pki with a folder name too long for its files is a usage error" 2 'DIR is too long' \
    "$DPSCTL" pki "/tmp/$(text 4090)"

# ---- dpsd and dps-loadgen ----
exits "dpsd --demo with a folder name too long for its files exits 1" 1 'too long' \
    "$DPSD" --demo "/tmp/$(text 4090)"
exits "dpsd --shards '' is refused, not 0" 2 '--shards must be' "$DPSD" --demo "$DEMO" --shards ''
exits "dps-loadgen --timeout over 3600 is refused, not cut to 3600" 2 'bad value for --timeout: 3601' \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$DEMO/pki" --devices 1 --timeout 3601
exits "dps-loadgen --pki over 4000 bytes is refused" 2 'bad value for --pki' \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "/tmp/$(text 4000)" --devices 1
exits "dps-loadgen gen --seed beyond 64 bits is refused, not saturated" 2 'bad value for --seed' \
    "$LOADGEN" gen --pki "$WORK/fleet" --devices 1 --seed 18446744073709551616
# The device simulator keeps what the server sends whole or fails the step saying why.
HUB_ID=$("$DPSCTL" hubs list --json | jq -r .result.id)
"$DPSCTL" hubs update "$HUB_ID" --provider "$(text 200)" >/dev/null
exits "dps-loadgen refuses an authorization provider it cannot keep whole" 1 \
    'cloud: "apn" is longer than 127 bytes' \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$DEMO/pki" --devices 1

check_stop "dpsd stops cleanly on SIGTERM"
finish
