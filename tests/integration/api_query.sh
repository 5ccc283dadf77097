#!/usr/bin/env bash
# Query parameters across the management API: every route refuses a parameter it does not
# know with 400 and {"code": 3, "message": "NAME: unknown parameter"}, the routes that take
# none (status, the probes and metrics on both listeners, creating and replacing a document,
# adding a block) as well as those with filters; a refused request changes nothing, the token
# is still checked first, and the known parameters and parameter-less requests still work.
. "$(dirname "$0")/lib.sh"

plan 28
NODE=$WORK/node
OTHER=$WORK/other
node_pkis 1 1
HEALTH_PORT=$(free_port)
HUB_ID=0c9bb0a4-7a57-4b8e-9d0e-6f2f1a3b4c5d
RECORD_ID=5e1f0b7c-2d3a-4c5b-8e9f-0a1b2c3d4e5f # any UUID: the refusal comes before the lookup

{
    yaml_node "$PORT" 1
    printf 'hubs:\n'
    yaml_hub "$HUB_ID" 1 "hub of owner 1" 5684 pki
    yaml_api "$API_PORT"
    printf '  healthListen: 127.0.0.1:%s\n' "$HEALTH_PORT"
} >"$NODE/dpsd.yaml"

if start_dpsd_config "$NODE" "$API_PORT" "$HEALTH_PORT"; then ok "dpsd starts with the API and a health listener"; else
    not_ok "dpsd starts with the API and a health listener"
    finish
fi
TOKEN=$(cat "$NODE/pki/operator.token")

# unknown NAME METHOD PATH [curl options...]: 400 naming the parameter "bogus".
unknown() {
    local name=$1
    shift
    expect "$name" 400 '^400 \{"code":3,"message":"bogus: unknown parameter"\}$' "$TOKEN" "$@"
}
unknown "status refuses an unknown parameter" GET "/api/v1/status?bogus=1"
unknown "healthz refuses an unknown parameter" GET "/healthz?bogus"
unknown "readyz refuses an unknown parameter" GET "/readyz?bogus=yes"
unknown "metrics refuse an unknown parameter" GET "/metrics?bogus=dps_"
unknown "listing groups refuses an unknown parameter" GET "/api/v1/enrollment-groups?bogus=1"
unknown "creating a group refuses an unknown parameter" POST "/api/v1/enrollment-groups?bogus=1" \
    -H 'Content-Type: application/json' \
    --data "{\"name\": \"refused\", \"hubIds\": [\"$HUB_ID\"], \"attestationMechanism\": {\"x509\": {\"certificateChain\": $(jq -Rs . "$OTHER/mfg-chain.pem")}}}"
unknown "replacing a hub refuses an unknown parameter" PUT "/api/v1/hubs/$HUB_ID?bogus=1" \
    -H 'Content-Type: application/json' --data '{"name": "renamed"}'
unknown "deleting hubs refuses an unknown parameter" DELETE "/api/v1/hubs?idFilter=$HUB_ID&bogus=1"
unknown "listing records refuses an unknown parameter" GET "/api/v1/provisioning-records?bogus=1"
unknown "deleting records refuses an unknown parameter" DELETE \
    "/api/v1/provisioning-records?idFilter=$RECORD_ID&bogus=1"
unknown "the issuance log refuses an unknown parameter" GET "/api/v1/issuance?bogus=1"
unknown "listing bindings refuses an unknown parameter" GET "/api/v1/bindings?bogus=1"
unknown "releasing bindings refuses an unknown parameter" DELETE \
    "/api/v1/bindings?deviceIdFilter=$RECORD_ID&bogus=1"
unknown "listing blocks refuses an unknown parameter" GET "/api/v1/blocklist?bogus=1"
unknown "adding a block refuses an unknown parameter" POST "/api/v1/blocklist?bogus=1" \
    -H 'Content-Type: application/json' --data '{"deviceId": "11111111-2222-4333-8444-555555555555"}'
unknown "lifting blocks refuses an unknown parameter" DELETE "/api/v1/blocklist?idFilter=x&bogus=1"
unknown "the plgd bundle's prefix refuses it too" GET "/device-provisioning-service/api/v1/status?bogus=1"

check "a refused create or replace or block changed nothing" sh -c "
    curl -sS -H 'Authorization: Bearer $TOKEN' '$API/api/v1/enrollment-groups' | jq -e -s 'length == 0' >/dev/null &&
    curl -sS -H 'Authorization: Bearer $TOKEN' '$API/api/v1/hubs' | jq -e -s 'length == 1 and .[0].result.name == \"hub of owner 1\"' >/dev/null &&
    [ -z \"\$(curl -sS -H 'Authorization: Bearer $TOKEN' '$API/api/v1/blocklist')\" ]"
expect "without a token the token is refused first" 401 '"code":16' "" GET "/api/v1/status?bogus=1"
expect "HEAD of a probe with an unknown parameter is refused" 400 '^400' "" HEAD "/healthz?bogus" -I
expect "status without parameters answers" 200 '"owner":"1"' "$TOKEN" GET /api/v1/status
expect "known filters still work" 200 "\"hubId\":\"$HUB_ID\"" "$TOKEN" GET \
    "/api/v1/hubs?idFilter=$HUB_ID"
expect "readyz without parameters answers" 200 '^200 ready' "" GET /readyz

API=http://127.0.0.1:$HEALTH_PORT
unknown "the health listener's readyz refuses an unknown parameter" GET "/readyz?bogus"
unknown "the health listener's metrics refuse an unknown parameter" GET "/metrics?bogus"
expect "the health listener's readyz without parameters answers" 200 '^200 ready' "" GET /readyz
check_stop "dpsd stops cleanly"
finish
