#!/usr/bin/env bash
# Listen addresses: dpsd serves devices, the management API and the health listener on the
# IPv6 loopback ([::1]); a device provisions there and dpsctl and curl reach the API there. A
# bad address, given in the configuration file or on the command line, stops dpsd at start with
# one line naming the setting, the address and what is wrong (common/address.h), before it
# opens its store. A second node on a port the first holds stops at once with the port and the
# option that changes it. The IPv6 cases are skipped, saying so, on a machine without ::1.
. "$(dirname "$0")/lib.sh"

plan 20
DEMO=$WORK/demo
PKI=$DEMO/pki
PORT=$(free_port)
API_PORT=$(free_port)
start_dpsd "$DEMO" "$PORT" --shards 1 && stop_dpsd || { not_ok "the demo writes its configuration"; finish; }
ok "the demo writes its configuration"

# refused OPTION VALUE PATTERN: dpsd --demo with OPTION VALUE exits 1 at once, saying PATTERN.
refused() {
    exits "$1 \"$2\" is refused at start with the reason" 1 "$3" \
        timeout 20 "$DPSD" --demo "$DEMO" --listen "127.0.0.1:$PORT" "$1" "$2"
}
refused --listen "localhost:$PORT" '^dpsd: --listen: "localhost:[0-9]+": the host must be an IP address$'
refused --listen "::1:$PORT" '^dpsd: --listen: "::1:[0-9]+": an IPv6 address must be written \[ADDRESS\]:PORT$'
refused --api-listen "127.0.0.1" '^dpsd: --api-listen: "127.0.0.1": must be HOST:PORT$'
refused --api-listen "[::1]:70000" '^dpsd: --api-listen: "\[::1\]:70000": the port must be a number from 1 to 65535$'
refused --redis "redis:6379" '^dpsd: --redis: "redis:6379": the host must be an IP address$'

cp "$DEMO/dpsd.yaml" "$WORK/good.yaml"
sed -i "s|^  listen: 127.0.0.1:9100$|  listen: \"[::1]9100\"|" "$DEMO/dpsd.yaml"
exits "a bad api.listen in the file is refused with its line and the reason" 1 \
    'dpsd.yaml:[0-9]+.*api.listen.*"\[::1\]9100": an IPv6 address must be written \[ADDRESS\]:PORT' \
    timeout 20 "$DPSD" --demo "$DEMO"
cp "$WORK/good.yaml" "$DEMO/dpsd.yaml"

# A second node on the first one's API port (or device port) stops at once, naming the port and the option,
# whether the port came from --api-listen or from its file; the first node keeps every request.
start_dpsd "$DEMO" "$PORT" --shards 1 || { not_ok "the first node starts"; finish; }
ok "the first node starts"
SECOND=$WORK/second
exits "a second node given the API port in use stops with the port and the option" 1 \
    "^dpsd: management API: api.listen: 127.0.0.1:$API_PORT: port $API_PORT is in use \(another dpsd\?\): choose a free one with --api-listen HOST:PORT or api.listen$" \
    timeout 60 "$DPSD" --demo "$SECOND" --listen "127.0.0.1:$(free_port)" --api-listen "127.0.0.1:$API_PORT"
sed -i "s|^  listen: 127.0.0.1:9100$|  listen: 127.0.0.1:$API_PORT|" "$SECOND/dpsd.yaml"
exits "the same from the file's api.listen, before any device is served" 1 \
    "^dpsd: management API: api.listen: 127.0.0.1:$API_PORT: port $API_PORT is in use" \
    timeout 60 "$DPSD" --demo "$SECOND" --listen "127.0.0.1:$(free_port)"
if grep -q 'msg="ready"' "$WORK/err"; then not_ok "the second node never said ready"; else ok "the second node never said ready"; fi
# The device port: the shards share it with SO_REUSEPORT, which a second dpsd of the same user
# could join and silently take part of the first one's devices; the first shard binds it alone
# first.
exits "a second node given the device port in use stops with the port and the option" 1 \
    "listen: 127.0.0.1:$PORT: port $PORT is in use \(another dpsd\?\): choose a free one with --listen HOST:PORT or listen$" \
    timeout 60 "$DPSD" --demo "$SECOND" --listen "127.0.0.1:$PORT" --api-listen "127.0.0.1:$(free_port)"
all_answered() {
    local i
    for i in $(seq 1 20); do
        curl -sS -m 5 -H "Authorization: Bearer $(cat "$PKI/operator.token")" \
            "http://127.0.0.1:$API_PORT/api/v1/status" | grep -q '"owner":"1"' || return 1
    done
}
check "the first node answers every request on its port" all_answered
stop_dpsd

# The IPv6 loopback: devices, the API and the health listener on [::1].
if ! grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6 2>/dev/null; then
    for name in "dpsd starts on [::1]" "a device provisions over [::1]" \
        "the API answers on [::1]" "dpsctl reaches the API on [::1]" \
        "the health listener answers on [::1]" "the ready line names the IPv6 addresses" \
        "dpsd stops cleanly"; do
        ok "$name # SKIP this machine has no IPv6 loopback (::1 is not configured on lo)"
    done
    finish
fi
HEALTH_PORT=$(free_port)
sed -i "s|^  listen: 127.0.0.1:9100$|  listen: \"[::1]:9100\"\n  healthListen: \"[::1]:$HEALTH_PORT\"|" \
    "$DEMO/dpsd.yaml"
"$DPSD" --demo "$DEMO" --listen "[::1]:$PORT" --api-listen "[::1]:$API_PORT" --shards 1 \
    >>"$DEMO/dpsd.log" 2>&1 &
DPSD_PID=$!
listening6() { (exec 3<>"/dev/tcp/::1/$1") 2>/dev/null; }
started() {
    grep -q 'msg="ready"' "$DEMO/dpsd.log" && listening6 "$PORT" && listening6 "$API_PORT" &&
        listening6 "$HEALTH_PORT"
}
if wait_for started; then ok "dpsd starts on [::1]"; else
    not_ok "dpsd starts on [::1]"
    sed 's/^/# /' "$DEMO/dpsd.log" | tail -20
    finish
fi
TOKEN=$(cat "$PKI/operator.token")
check "a device provisions over [::1]" \
    "$LOADGEN" --endpoint "coaps+tcp://[::1]:$PORT" --pki "$PKI" --devices 1 --out "$WORK/devices"
expect_output "the API answers on [::1]" '"owner":"1"' \
    curl -sS -g -m 10 -H "Authorization: Bearer $TOKEN" "http://[::1]:$API_PORT/api/v1/status"
expect_output "dpsctl reaches the API on [::1]" '^enrollmentGroups +1$' \
    env DPS_TOKEN_FILE="$PKI/operator.token" "$DPSCTL" --api "http://[::1]:$API_PORT" status
expect_output "the health listener answers on [::1]" '^ready$' \
    curl -sS -g -m 10 "http://[::1]:$HEALTH_PORT/readyz"
expect_output "the ready line names the IPv6 addresses" \
    "msg=\"ready\" listen=\[::1\]:$PORT .*api=\[::1\]:$API_PORT" cat "$DEMO/dpsd.log"
check_stop "dpsd stops cleanly"
finish
