#!/usr/bin/env bash
# Operator tokens from an identity provider (api.authority: OIDC discovery,
# then its JWKS), against the fake provider (tests/fake_oidc_provider.py,
# tested by fake_oidc.sh): the provider's tokens work; a rotated key works
# without a restart; made-up key ids cost the provider at most one fetch per
# minimum interval; while the provider is down the last keys stay in use; a
# dpsd started while the provider is down comes up, refuses tokens, and
# accepts them once the provider answers; over HTTPS the provider's
# certificate is verified (api.jwksCA, or the system's CAs). /metrics counts
# the fetches, the failed ones, the last success and the keys held.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/oidc_lib.sh"

MIN_REFRESH=4
plan 25
start_provider || { not_ok "the fake provider starts"; finish; }
DEMO=$WORK/demo
PORT=$(free_port)
start_dpsd "$DEMO" "$PORT" --shards 1 && stop_dpsd
sed -i -e "s|^  jwks: .*|  authority: $PROVIDER\n  jwksMinRefresh: ${MIN_REFRESH}s\n  jwksTimeout: 2s|" \
    -e "s|^  issuer: .*|  issuer: $PROVIDER|" "$DEMO/dpsd.yaml"
start_dpsd "$DEMO" "$PORT" --shards 1 || { not_ok "dpsd starts with api.authority"; finish; }
ok "dpsd starts with api.authority"
API=http://127.0.0.1:$API_PORT
LIST=/api/v1/enrollment-groups

# The operator-key series of /metrics: "fetches failed last_success keys".
key_metrics() {
    curl -sS -m 10 "$API/metrics" | awk '
        $1 == "dps_operator_key_fetches_total" { fetches = $2 }
        $1 == "dps_operator_key_fetches_total{result=\"failed\"}" { failed = $2 }
        $1 == "dps_operator_key_last_success_timestamp_seconds" { last = $2 }
        $1 == "dps_operator_keys" { keys = $2 }
        END { print fetches, failed, last, keys }'
}

OLD_TOKEN=$(provider_token 1)
expect "a token the provider signed is accepted" 200 '"name":' "$OLD_TOKEN" GET $LIST
COUNTS="$(provider_count discovery) $(provider_count jwks)"
expect_output "the keys came through discovery, once" '^1 1$' echo "$COUNTS"
expect_output "metrics: a fetch, none failed, a success time, one key held (ES384 skipped)" \
    '^[1-9][0-9]* 0 [1-9][0-9]* 1$' key_metrics
expect_output "the provider's ES384 key is skipped with a reason, its encryption key ignored" \
    'msg="operator key skipped".*crv must be P-256' cat "$DEMO/dpsd.log"
expect "the demo operator token (another key) is refused" 401 'code":16' \
    "$(cat "$DEMO/pki/operator.token")" GET $LIST

# A token whose header names a key id the provider never had (claims and signature of a real one).
bogus_token() {
    local real=$OLD_TOKEN header
    header=$(printf '{"alg":"ES256","typ":"JWT","kid":"bogus-%s"}' "$1" | base64 -w0 | tr '+/' '-_' | tr -d '=')
    echo "$header.${real#*.}"
}

sleep "$MIN_REFRESH"
provider_rotate
ROTATED=$(provider_token 1)
expect "after a rotation the new key's token is accepted without a restart" 200 '"name":' \
    "$ROTATED" GET $LIST
expect "the old key's token is refused once the provider dropped the key" 401 'key id is not in the JWKS' \
    "$OLD_TOKEN" GET $LIST
expect_output "the daemon says it refreshed the keys" 'msg="operator keys refreshed"' cat "$DEMO/dpsd.log"

sleep "$MIN_REFRESH"
BEFORE=$(provider_count jwks)
BOGUS=()
for i in $(seq 1 30); do BOGUS+=("$(bogus_token "$i")"); done
FLOOD=()
START=$(date +%s%N)
for token in "${BOGUS[@]}"; do
    curl -s -o /dev/null -m 10 -H "Authorization: Bearer $token" "$API$LIST" &
    FLOOD+=($!)
done
wait "${FLOOD[@]}"
FLOOD_MS=$((($(date +%s%N) - START) / 1000000))
AFTER=$(provider_count jwks)
# One fetch per started interval the flood lasted (one, unless this machine is slow).
ALLOWED=$((1 + FLOOD_MS / (MIN_REFRESH * 1000)))
if [ $((AFTER - BEFORE)) -le "$ALLOWED" ]; then
    ok "30 made-up key ids cost the provider at most one JWKS fetch per interval ($((AFTER - BEFORE)) in $FLOOD_MS ms)"
else
    not_ok "30 made-up key ids cost the provider at most one JWKS fetch per interval"
    echo "# $((AFTER - BEFORE)) fetches in $FLOOD_MS ms"
fi
expect "a made-up key id is refused" 401 'key id is not in the JWKS' "$(bogus_token 99)" GET $LIST
sleep "$MIN_REFRESH"
BEFORE=$(provider_count jwks)
call "$(bogus_token 100)" GET $LIST >/dev/null
expect_output "after the interval a made-up key id may fetch again, once" "^$((BEFORE + 1))\$" provider_count jwks

stop_provider
LAST_SUCCESS=$(key_metrics | cut -d' ' -f3)
sleep "$MIN_REFRESH"
START=$(date +%s%N)
expect "the provider down, a made-up key id is refused" 401 'key id is not in the JWKS' \
    "$(bogus_token 101)" GET $LIST
ELAPSED_MS=$((($(date +%s%N) - START) / 1000000))
if [ "$ELAPSED_MS" -lt 8000 ]; then ok "and the API did not wait long for the provider (${ELAPSED_MS} ms)"; else
    not_ok "and the API did not wait long for the provider (${ELAPSED_MS} ms)"
fi
expect "the provider down, the last keys stay in use" 200 '"name":' "$ROTATED" GET $LIST
expect_output "the failed refresh is logged" 'msg="operator keys not refreshed"' cat "$DEMO/dpsd.log"
expect_output "metrics: the failed fetch counted, the last success and the key kept" \
    "^[1-9][0-9]* [1-9][0-9]* $LAST_SUCCESS 1\$" key_metrics

# Started while the provider is down: up, no keys, then keys when it answers.
stop_dpsd
start_dpsd "$DEMO" "$PORT" --shards 1 || { not_ok "dpsd starts while the provider is down"; finish; }
expect "dpsd starts while the provider is down and refuses tokens meanwhile" 401 'no operator keys yet' \
    "$ROTATED" GET $LIST
expect_output "metrics: started while the provider is down, failures, no success, no key" \
    '^[1-9][0-9]* [1-9][0-9]* 0 0$' key_metrics
start_provider "$PROVIDER_PORT" || { not_ok "the provider restarts"; finish; }
sleep "$MIN_REFRESH"
expect "once the provider answers, its tokens are accepted" 200 '"name":' "$(provider_token 1)" GET $LIST
expect_output "metrics: then a success time and one key held" '^[0-9]+ [0-9]+ [1-9][0-9]* 1$' key_metrics
check_stop "dpsd stops cleanly on SIGTERM"

# The provider over HTTPS, with a certificate of the demo's DPS root.
stop_provider
start_provider "" "$DEMO/pki/dps-server.pem" "$DEMO/pki/dps-server.key" ||
    { not_ok "the provider starts over HTTPS"; finish; }
sed -i -e "s|^  authority: .*|  authority: $PROVIDER\n  jwksCA: pki/dps-root.pem|" \
    -e "s|^  issuer: .*|  issuer: $PROVIDER|" "$DEMO/dpsd.yaml"
start_dpsd "$DEMO" "$PORT" --shards 1 || { not_ok "dpsd starts with an https:// authority"; finish; }
expect "over HTTPS with api.jwksCA the provider's token is accepted" 200 '"name":' \
    "$(provider_token 1)" GET $LIST
stop_dpsd
sed -i -e '/^  jwksCA: /d' "$DEMO/dpsd.yaml"
start_dpsd "$DEMO" "$PORT" --shards 1 || { not_ok "dpsd starts without api.jwksCA"; finish; }
expect "without it the provider's certificate is not trusted: no keys" 401 'no operator keys yet' \
    "$(provider_token 1)" GET $LIST
expect_output "and the log says why" 'operator keys not refreshed.*(certificate|SSL)' cat "$DEMO/dpsd.log"
stop_dpsd
finish
