#!/usr/bin/env bash
# The node's life without restarts: SIGHUP applies the file's changes (and
# refuses a broken file, keeping what is in force); SIGTERM under load
# drains: devices in progress finish, every certificate handed out has its
# record and issuance entry, and dpsd exits 0.
. "$(dirname "$0")/lib.sh"

plan 11
start_demo 2 "dpsd starts"

resources() {
    "$PROBE" --endpoint "127.0.0.1:$PORT" --ca "$PKI/dps-root.pem" \
        --cert "$PKI/devices/device-0001.pem" --key "$PKI/devices/device-0001.key" \
        --get /api/v1/provisioning/resources --accept 50
}
# wait_log PATTERN COUNT: until the log has COUNT lines matching PATTERN (10 s at most).
wait_log() {
    for _ in $(seq 1 100); do
        [ "$(grep -c -- "$1" "$DEMO/dpsd.log")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

expect_output "initial resources come from the file" '"power":10' resources
sed -i 's/power: 10/power: 42/' "$DEMO/dpsd.yaml"
kill -HUP "$DPSD_PID"
wait_log 'msg="reloaded"' 1
expect_output "SIGHUP applies the file's changes without a restart" '"power":42' resources

cp "$DEMO/dpsd.yaml" "$WORK/good.yaml"
echo "enrollmentGroups: [" >>"$DEMO/dpsd.yaml"
kill -HUP "$DPSD_PID"
wait_log 'msg="reload failed"' 1
expect_output "a broken file on SIGHUP is refused and the configuration in force stays" \
    '"power":42' resources
cp "$WORK/good.yaml" "$DEMO/dpsd.yaml"
kill -HUP "$DPSD_PID"
wait_log 'msg="reloaded"' 2

# Certificate rotation: a new hub identity CA at the same paths takes effect on SIGHUP.
issuer_of() { openssl x509 -in "$1" -noout -issuer -nameopt RFC2253; }
"$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$PKI" --devices 1 --first 50 \
    --out "$WORK/before" >/dev/null 2>&1
expect_output "identity certificates come from the hub CA in force" "CN=Demo Hub Identity CA" \
    issuer_of "$WORK/before/device-0050/identity.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=Rotated Hub CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$WORK/rotated.key" -out "$WORK/rotated.pem" 2>/dev/null
install -m 0600 "$WORK/rotated.key" "$PKI/hub-ca.key"
install -m 0644 "$WORK/rotated.pem" "$PKI/hub-ca.pem"
kill -HUP "$DPSD_PID"
wait_log 'msg="reloaded"' 3
"$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$PKI" --devices 1 --first 51 \
    --out "$WORK/after" >/dev/null 2>&1
expect_output "after SIGHUP a rotated hub CA at the same path signs" "CN=Rotated Hub CA" \
    issuer_of "$WORK/after/device-0051/identity.pem"

readyz() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$API_PORT/readyz"; }
expect_output "/readyz answers 200 while the node takes devices" '^200$' readyz

# Load from four device simulators, and one device that holds its connection for 5 s;
# SIGTERM in the middle of it.
provisioned_before=$(grep -c 'msg="device provisioned"' "$DEMO/dpsd.log")
pids=()
for c in 1 2 3 4; do
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$PKI" --devices 40 \
        --first $((c * 100)) --out "$WORK/out-$c" --timeout 5 >"$WORK/loadgen-$c.log" 2>&1 &
    pids+=($!)
done
# Eight of this load's devices have their certificate before the stop (the earlier two do not count).
wait_log 'msg="device provisioned"' $((provisioned_before + 8))
# The holder is connected (its handshake done) before the stop, so the drain has a connection
# to wait for and /readyz a window to answer in, however loaded the machine.
(sleep 5) | openssl s_client -connect "127.0.0.1:$PORT" -tls1_2 -no_ign_eof \
    -cert "$PKI/devices/device-0002.pem" -key "$PKI/devices/device-0002.key" >"$WORK/holder.out" 2>&1 &
holder=$!
for _ in $(seq 1 100); do
    grep -q 'Verify return code' "$WORK/holder.out" 2>/dev/null && break
    sleep 0.05
done
kill -TERM "$DPSD_PID"
seen=""
for _ in $(seq 1 30); do
    seen=$(readyz)
    [ "$seen" = 503 ] && break
    sleep 0.05
done
if [ "$seen" = 503 ]; then ok "/readyz answers 503 while draining"; else
    not_ok "/readyz answers 503 while draining"; echo "# got $seen"; fi
if ! (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    ok "a draining node refuses new device connections"
else
    not_ok "a draining node refuses new device connections"
fi
wait "$holder" 2>/dev/null
status=0
stop_dpsd || status=$?
for p in "${pids[@]}"; do wait "$p"; done
if [ $status = 0 ] && grep -q 'msg="drained"' "$DEMO/dpsd.log"; then
    ok "SIGTERM under load drains and dpsd exits 0"
else
    not_ok "SIGTERM under load drains and dpsd exits 0"
    echo "# exit status $status"
fi

issuance=$("$DPSCTL" issuance --data "$DEMO/data" --json)
records=$("$DPSCTL" records --data "$DEMO/data" --json)
handed=0
missing=0
for pem in "$WORK"/out-*/device-*/identity.pem; do
    [ -f "$pem" ] || continue
    handed=$((handed + 1))
    serial=$(openssl x509 -in "$pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
    id=$(openssl x509 -in "$pem" -noout -subject -nameopt RFC2253 | sed -n 's/.*CN=uuid:\([0-9a-f-]*\).*/\1/p')
    printf '%s\n' "$issuance" | grep -qi "${serial#0}" || missing=$((missing + 1))
    printf '%s\n' "$records" | jq -s -e --arg d "$id" \
        'any(.[]; .result.deviceId == $d and .result.credential.status.coapCode == 68)' >/dev/null ||
        missing=$((missing + 1))
done
if [ "$handed" -ge 8 ] && [ "$missing" = 0 ]; then
    ok "every certificate handed out before the stop has its record and issuance entry ($handed)"
else
    not_ok "every certificate handed out before the stop has its record and issuance entry"
    echo "# handed out $handed, missing $missing"
fi
finish
