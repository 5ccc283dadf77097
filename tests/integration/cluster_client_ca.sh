#!/usr/bin/env bash
# Cluster lists when the APIs require client certificates (issue 11, a weak
# point of the first version: peers presented none, so fan-out failed). Two
# nodes whose APIs speak HTTPS with the demo server certificate and require
# client certificates issued by the demo DPS root (api.clientCA): each node
# presents its own API certificate, issued by that root, to the other. A
# list through either node covers both nodes' records; the certificate only
# opens the door: the caller's token travels with the request, so another
# owner sees none of them through either node, and no token is no list.
# The same holds for a DELETE of records through node a: it reaches node
# b's store (node a presents its API certificate), deletes nothing of
# another owner's asking, and deletes the owner's record on node b.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"

cluster_prelude 11 jq

start_redis
start_dpsd "$DEMO" "$(free_port)" --shards 1 && stop_dpsd
sed 's|^api:|api:\n  certificate: pki/dps-server.pem\n  key: pki/dps-server.key\n  clientCA: pki/dps-root.pem|' \
    "$DEMO/dpsd.yaml" >"$DEMO/client-ca.yaml"
export NODE_CONFIG=$DEMO/client-ca.yaml
start_pair "two nodes whose APIs require client certificates start"
TOKEN=$(cat "$PKI/operator.token")
OWNER2=$("$DPSCTL" token --key "$PKI/operator.key" --owner 2)
# get API TOKEN PATH [curl options]: the API on port API as a client presenting the demo server
# certificate.
get() {
    curl -sS --max-time 30 --cacert "$PKI/dps-root.pem" --cert "$PKI/dps-server.pem" \
        --key "$PKI/dps-server.key" ${2:+-H "Authorization: Bearer $2"} "${@:4}" "https://127.0.0.1:$1$3"
}
both_listed() {
    get "$API_A" "$TOKEN" /api/v1/status | jq -e '[.nodes[].name] == ["a", "b"]' &&
        get "$API_B" "$TOKEN" /api/v1/status | jq -e '[.nodes[].name] == ["a", "b"]'
}
for _ in $(seq 1 300); do both_listed >/dev/null 2>&1 && break; sleep 0.1; done
check "each node lists both" both_listed
check "without a client certificate the API refuses (401)" \
    sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --cacert $PKI/dps-root.pem \
              -H 'Authorization: Bearer $TOKEN' https://127.0.0.1:$API_A/api/v1/provisioning-records)\" = 401 ]"

device() {
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$1" --pki "$PKI" --ca "$PKI/dps-root.pem" \
        --first "$2" --devices 1
}
in_shell "a device provisions through each node" sh -c "$(declare -f device); PKI=$PKI LOADGEN=$LOADGEN
    device $PORT_A 1 && device $PORT_B 2"

# records API TOKEN: the list's lines, one JSON value each.
records() { get "$1" "$2" /api/v1/provisioning-records; }
covers_both() {
    records "$1" "$TOKEN" | jq -e -s 'length == 2 and all(.[]; has("result")) and
        ([.[].result.id] | unique | length == 2)'
}
check "records through node a cover both nodes (no node unanswered)" covers_both "$API_A"
check "records through node b cover both nodes (no node unanswered)" covers_both "$API_B"
# Owner 2 holds nothing: every node answers (no error line), and shows none of owner 1's records.
check "another owner sees none of them through node a, every node answering" \
    sh -c "$(declare -f get records); PKI=$PKI; records $API_A '$OWNER2' | jq -e -s 'length == 0'"
check "no token, no list, whatever the certificate (401)" \
    sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --cacert $PKI/dps-root.pem --cert $PKI/dps-server.pem \
              --key $PKI/dps-server.key https://127.0.0.1:$API_B/api/v1/provisioning-records)\" = 401 ]"

# own API TOKEN: the ids of the records in that node's own store (X-Dps-Forwarded: no fan-out).
own() {
    get "$1" "$2" /api/v1/provisioning-records -H 'X-Dps-Forwarded: 1' | jq -r '.result.id'
}
# delete_a TOKEN QUERY: the body and status code of a DELETE of records through node a.
delete_a() {
    get "$API_A" "$1" "/api/v1/provisioning-records?$2" -X DELETE -w ' %{http_code}'
}
RECORD_A=$(own "$API_A" "$TOKEN")
RECORD_B=$(own "$API_B" "$TOKEN")
deleted=$(delete_a "$OWNER2" "idFilter=$RECORD_B")
if [ -n "$RECORD_B" ] && [[ $deleted == *'"count":0}'*' 200' ]] && [ "$(own "$API_B" "$TOKEN")" = "$RECORD_B" ]; then
    ok "another owner's DELETE through node a deletes nothing on node b"
else
    not_ok "another owner's DELETE through node a deletes nothing on node b"
    printf '# %s\n' "record $RECORD_B" "$deleted"
fi
deleted=$(delete_a "$TOKEN" "idFilter=$RECORD_B")
if [[ $deleted == *'"count":1}'*' 200' ]]; then
    ok "the owner's DELETE through node a deletes node b's record (count 1)"
else
    not_ok "the owner's DELETE through node a deletes node b's record (count 1)"
    echo "# $deleted"
fi
left_b=$(own "$API_B" "$TOKEN")
left=$(records "$API_B" "$TOKEN" | jq -r '.result.id')
if [ -n "$RECORD_A" ] && [ -z "$left_b" ] && [ "$left" = "$RECORD_A" ]; then
    ok "node b's store holds it no more; node a's record stays"
else
    not_ok "node b's store holds it no more; node a's record stays"
    printf '# %s\n' "node b holds: $left_b" "through node b: $left" "node a's: $RECORD_A"
fi
finish
