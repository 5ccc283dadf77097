#!/usr/bin/env bash
# What one tenant's enrollment groups cost every other tenant's writes.
# Reproduce with:
#
#   perf/revalidation.sh [GROUPS] [WRITES] [BUILD]     (defaults 400, 20, build-perf)
#
# It starts dpsd (two shards) with a hub of owner "1" and a hub and a group
# of owner "2", has owner 1 create GROUP_COUNT enrollment groups through the
# management API (each its own self-signed manufacturer CA, inline PEM), then
# times WRITES replacements of owner 2's group (a new name each time) and
# prints the median and the slowest, next to the same writes with no foreign
# group at all. A change must cost what it touches, not what others hold.
set -euo pipefail
cd "$(dirname "$0")/.."
GROUP_COUNT=${1:-400}
WRITES=${2:-20}
BUILD=${3:-build-perf}
if [ ! -x "$BUILD/dpsd" ]; then
    [ -d "$BUILD" ] || meson setup "$BUILD" --buildtype=release >/dev/null
    ninja -C "$BUILD" dpsd dpsctl >/dev/null
fi

WORK=$(mktemp -d /tmp/dps-revalidation.XXXXXX)
PID=""
trap '[ -n "$PID" ] && { kill -9 "$PID"; wait "$PID"; } 2>/dev/null; rm -rf "$WORK"' EXIT
PORT=$((20000 + RANDOM % 6000))
API_PORT=$((PORT + 6000))
API=http://127.0.0.1:$API_PORT
"$BUILD/dpsctl" pki "$WORK/pki" --devices 1 >/dev/null
HUB1=0c9bb0a4-7a57-4b8e-9d0e-6f2f1a3b4c01
HUB2=0c9bb0a4-7a57-4b8e-9d0e-6f2f1a3b4c02
GROUP2=5e1f0b7c-2d3a-4c5b-8e9f-0a1b2c3d4e02
hub() {
    cat <<EOF
  - id: $1
    owner: "$2"
    gateways: ["coaps+tcp://127.0.0.1:5684"]
    authorization: {provider: {name: plgd}}
    identityCertificate: {certificate: pki/hub-ca.pem, key: pki/hub-ca.key}
    token: {key: pki/token.key, issuer: https://dps.demo.local}
EOF
}
{
    echo "listen: [\"127.0.0.1:$PORT\"]"
    echo "shards: 2"
    echo "logLevel: warn"
    echo "tls: {certificate: pki/dps-server.pem, key: pki/dps-server.key}"
    echo "dataDir: data"
    echo "hubs:"
    hub "$HUB1" 1
    hub "$HUB2" 2
    echo "enrollmentGroups:"
    echo "  - {id: $GROUP2, owner: \"2\", attestationMechanism: {x509: {certificateChain: pki/mfg-chain.pem}}, hubIds: [$HUB2]}"
    echo "api: {listen: 127.0.0.1:$API_PORT, jwks: pki/operator.jwks.json,"
    echo "      issuer: https://dps.demo.local/operator, audience: dps-api}"
} >"$WORK/dpsd.yaml"
"$BUILD/dpsd" --config "$WORK/dpsd.yaml" >"$WORK/dpsd.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$API_PORT") 2>/dev/null && break
    sleep 0.1
done
OWNER1=$("$BUILD/dpsctl" token --key "$WORK/pki/operator.key" --owner 1)
OWNER2=$("$BUILD/dpsctl" token --key "$WORK/pki/operator.key" --owner 2)

# send TOKEN METHOD PATH BODY: retries while the API says 429 (a request quota).
send() {
    local status
    for _ in $(seq 1 100); do
        status=$(curl -sS -o "$WORK/answer" -w '%{http_code}' -X "$2" \
            -H "Authorization: Bearer $1" --data-binary "$4" "$API$3")
        [ "$status" = 429 ] || break
        sleep 0.2
    done
    [ "$status" = 200 ] || { echo "$2 $3: $status $(cat "$WORK/answer")" >&2; exit 1; }
}

# Times WRITES replacements of owner 2's group; prints "median max" in ms.
time_writes() {
    local doc i start end
    doc=$(curl -sS -H "Authorization: Bearer $OWNER2" "$API/api/v1/enrollment-groups" |
        jq -c --rawfile chain "$WORK/pki/mfg-chain.pem" \
            '.result | .attestationMechanism.x509.certificateChain = $chain')
    for i in $(seq 1 "$WRITES"); do
        start=$(date +%s%N)
        send "$OWNER2" PUT "/api/v1/enrollment-groups/$GROUP2" "$(jq -c ".name = \"write $i\"" <<<"$doc")"
        end=$(date +%s%N)
        echo $(((end - start) / 1000))
    done | sort -n | awk '{v[NR] = $1} END {printf "%.1f %.1f\n", v[int((NR + 1) / 2)] / 1000, v[NR] / 1000}'
}

read -r alone_median alone_max < <(time_writes)

mkdir -p "$WORK/cas"
for i in $(seq 1 "$GROUP_COUNT"); do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=Tenant 1 Manufacturer CA $i" -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign \
        -keyout /dev/null -out "$WORK/cas/$i.pem" 2>/dev/null
    send "$OWNER1" POST /api/v1/enrollment-groups "$(jq -nc --rawfile chain "$WORK/cas/$i.pem" \
        --arg hub "$HUB1" --arg name "line $i" \
        '{name: $name, hubIds: [$hub], attestationMechanism: {x509: {certificateChain: $chain}}}')"
done

read -r crowded_median crowded_max < <(time_writes)
echo "owner 2's write, owner 1 holding no group:      median ${alone_median} ms, max ${alone_max} ms"
echo "owner 2's write, owner 1 holding $GROUP_COUNT groups:  median ${crowded_median} ms, max ${crowded_max} ms"
