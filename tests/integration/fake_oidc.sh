#!/usr/bin/env bash
# The fake identity provider (tests/fake_oidc_provider.py) itself, before any
# test trusts it: its discovery document names its JWKS, its JWKS has the
# shape providers publish (beside its P-256 signing key, a P-384 one and an
# encryption key it never signs with), rotation replaces (or keeps) keys under new key
# ids, it counts what it serves; and its tokens are real: the JWKS it serves,
# saved as the file a dpsd reads (api.jwks, the path already tested), makes
# that dpsd accept its tokens and refuse them once the key rotated away.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/oidc_lib.sh"

plan 9
start_provider || { not_ok "the fake provider starts"; finish; }
ok "the fake provider starts"

expect_output "discovery names the issuer and the JWKS" \
    "^$PROVIDER $PROVIDER/keys\$" \
    sh -c "curl -sS '$PROVIDER/.well-known/openid-configuration' | jq -r '\"\(.issuer) \(.jwks_uri)\"'"
expect_output "the JWKS lists one EC P-256 signature key with kid, x and y, an ES384 and an enc key" \
    '^3 key-1 EC P-256 sig ES256 43 43 es384 enc$' \
    sh -c "curl -sS '$PROVIDER/keys' | jq -r '\"\(.keys|length) \" + (.keys[2] |
        \"\(.kid) \(.kty) \(.crv) \(.use) \(.alg) \(.x|length) \(.y|length)\") +
        \" \(.keys[0].kid) \(.keys[1].kid)\"'"
provider_rotate keep
expect_output "rotation with keep publishes the new key beside the old" '^key-1 key-2$' \
    sh -c "curl -sS '$PROVIDER/keys' | jq -r '[.keys[] | select(.crv == \"P-256\") | .kid] | join(\" \")'"
provider_rotate
expect_output "rotation without keep publishes only the new key" '^key-3$' \
    sh -c "curl -sS '$PROVIDER/keys' | jq -r '[.keys[] | select(.crv == \"P-256\") | .kid] | join(\" \")'"
expect_output "it counts what it served" '^1 3$' \
    sh -c "curl -sS '$PROVIDER/_stats' | jq -r '\"\(.discovery) \(.jwks)\"'"

# A dpsd reading the provider's JWKS from a file, with the provider's issuer.
DEMO=$WORK/demo
PORT=$(free_port)
start_dpsd "$DEMO" "$PORT" --shards 1 && stop_dpsd
# A JWKS file must hold only keys dpsd verifies with (P-256, RSA signature keys).
curl -sS "$PROVIDER/keys" | jq '{keys: [.keys[] | select(.crv == "P-256")]}' >"$DEMO/pki/provider.jwks.json"
sed -i -e 's|^  jwks: .*|  jwks: pki/provider.jwks.json|' -e "s|^  issuer: .*|  issuer: $PROVIDER|" \
    "$DEMO/dpsd.yaml"
start_dpsd "$DEMO" "$PORT" --shards 1 || { not_ok "dpsd starts with the provider's JWKS file"; finish; }
API=http://127.0.0.1:$API_PORT
TOKEN=$(provider_token 1)
expect "the provider's token verifies with the JWKS it serves" 200 '^200 ' \
    "$TOKEN" GET /api/v1/enrollment-groups
expect "its claims carry the owner (the list is owner 1's demo group)" 200 '"name":' \
    "$TOKEN" GET /api/v1/enrollment-groups
provider_rotate
expect "a token of the next key does not verify with the old file" 401 'key id is not in the JWKS' \
    "$(provider_token 1)" GET /api/v1/enrollment-groups
stop_dpsd
finish
