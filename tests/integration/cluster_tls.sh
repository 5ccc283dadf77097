#!/usr/bin/env bash
# Cluster lists over HTTPS APIs (issue 11, "one view for operators"): two
# demo nodes whose management APIs speak TLS with the demo server
# certificate. A list through node a carries node b's records (the peer's
# certificate is one of node a's api.certificate file); node b restarted
# with a certificate node a does not trust is named among the nodes that
# did not answer, and gets no token. A DELETE of records through node a
# deletes node b's too, and says so when node b does not answer.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"

cluster_prelude 7 jq openssl

start_redis

start_dpsd "$DEMO" "$(free_port)" --shards 1 && stop_dpsd
sed 's|^api:|api:\n  certificate: pki/dps-server.pem\n  key: pki/dps-server.key|' "$DEMO/dpsd.yaml" >"$WORK/a.yaml"
# Node b's own certificate, which node a has no reason to trust.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
    -keyout "$WORK/rogue.key" -out "$WORK/rogue.pem" 2>/dev/null
sed "s|^api:|api:\n  certificate: $WORK/rogue.pem\n  key: $WORK/rogue.key|" "$DEMO/dpsd.yaml" >"$WORK/rogue.yaml"
cp "$WORK/a.yaml" "$DEMO/a.yaml"
cp "$WORK/rogue.yaml" "$DEMO/rogue.yaml"

# node NAME PORT API CONFIG [options]: a node with one shard on CONFIG and the shared redis-server.
node() {
    local name=$1 port=$2 api=$3 config=$4
    shift 4
    start_node "$name" "$port" "$api" --config "$config" --redis "127.0.0.1:$REDIS_PORT" --shards 1 "$@"
}
if node a "$PORT_A" "$API_A" "$DEMO/a.yaml" &&
    node b "$PORT_B" "$API_B" "$DEMO/a.yaml" --data-dir "$WORK/b-data"; then
    ok "two nodes with HTTPS APIs start"
else
    not_ok "two nodes with HTTPS APIs start"
    finish
fi
TOKEN=$(cat "$PKI/operator.token")
records_a() {
    curl -sS --max-time 30 -k -H "Authorization: Bearer $TOKEN" \
        "https://127.0.0.1:$API_A/api/v1/provisioning-records"
}
both_listed() {
    curl -sS -k -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$API_A/api/v1/status" |
        jq -e '[.nodes[].name] == ["a", "b"] and .nodes[1].apiUrl == "https://127.0.0.1:'"$API_B"'"'
}
for _ in $(seq 1 100); do both_listed >/dev/null 2>&1 && break; sleep 0.1; done
check "node a lists node b with its https URL" both_listed
check "a device provisions through node b" \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT_B" --pki "$PKI" --ca "$PKI/dps-root.pem" --devices 1
check "node b's record through node a, over TLS to a trusted peer" \
    sh -c "$(declare -f records_a); TOKEN=$TOKEN; API_A=$API_A; PKI=$PKI
           records_a | jq -e -s 'length == 1 and (.[0].result.remoteAddress | startswith(\"127.0.0.1:\"))'"
RECORD=$(records_a | jq -r '.result.id // empty')
delete_a() { # QUERY: the status code and body of a DELETE of records through node a
    curl -sS --max-time 30 -k -X DELETE -w ' %{http_code}' -H "Authorization: Bearer $TOKEN" \
        "https://127.0.0.1:$API_A/api/v1/provisioning-records?$1"
}
deleted=$(delete_a "idFilter=$RECORD")
left=$(records_a)
if [ -n "$RECORD" ] && [[ $deleted == *'"count":1}'*' 200' ]] && [ -z "$left" ]; then
    ok "a DELETE through node a deletes node b's record: the delete fans out like the lists"
else
    not_ok "a DELETE through node a deletes node b's record: the delete fans out like the lists"
    printf '# %s\n' "record $RECORD" "$deleted" "$left"
fi

kill -TERM "$PID_b"
wait "$PID_b"
PID_b=""
node b "$PORT_B" "$API_B" "$DEMO/rogue.yaml" --data-dir "$WORK/b-data" >/dev/null
for _ in $(seq 1 100); do both_listed >/dev/null 2>&1 && break; sleep 0.1; done
check "a peer whose certificate node a does not trust is named, and its records are not taken" \
    sh -c "$(declare -f records_a); TOKEN=$TOKEN; API_A=$API_A; PKI=$PKI
           records_a | jq -e -s 'length == 1 and .[0].error.unansweredNodes[0].name == \"b\" and
                                 (.[0].error.unansweredNodes[0].error | test(\"TLS\"))'"
deleted=$(delete_a "idFilter=$RECORD")
if [[ $deleted == *'not on: b ('*TLS*')'*' 503' ]]; then
    ok "a DELETE while a node does not answer is 503 and names it (the same DELETE finishes later)"
else
    not_ok "a DELETE while a node does not answer is 503 and names it (the same DELETE finishes later)"
    echo "# $deleted"
fi
finish
