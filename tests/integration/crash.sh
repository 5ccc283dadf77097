#!/usr/bin/env bash
# kill -9 right after a provisioning: after the crash, the record, the
# issuance log entry and the device-id binding are all on disk, and the
# restarted daemon serves the device again.
. "$(dirname "$0")/lib.sh"

plan 6
DEMO=$WORK/demo
PORT=$(free_port)
start_dpsd "$DEMO" "$PORT" --shards 2 || { not_ok "dpsd starts"; finish; }
check "three devices provision" \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$DEMO/pki" --devices 3 --out "$WORK/out"
kill9_dpsd

ids=()
serials=()
for n in 0001 0002 0003; do
    pem=$WORK/out/device-$n/identity.pem
    ids+=("$(openssl x509 -in "$pem" -noout -subject -nameopt RFC2253 | sed -n 's/.*CN=uuid:\([0-9a-f-]*\).*/\1/p')")
    serials+=("$(openssl x509 -in "$pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')")
done

# every NAME PREDICATE ITEM...: one test case, passing when PREDICATE holds for every ITEM.
every() {
    local name=$1 predicate=$2 item
    shift 2
    for item in "$@"; do
        "$predicate" "$item" || { not_ok "$name"; return; }
    done
    ok "$name"
}
records=$("$DPSCTL" records --data "$DEMO/data" --json)
record_complete() {
    printf '%s\n' "$records" | jq -s -e --arg d "$1" 'any(.[]; .result.deviceId == $d and .result.acl.status.coapCode == 69 and .result.credential.status.coapCode == 68)' >/dev/null
}
issuance=$("$DPSCTL" issuance --data "$DEMO/data" --json)
issued() { printf '%s\n' "$issuance" | grep -qi "${1#0}"; }
bindings=$("$DPSCTL" bindings --data "$DEMO/data" --json)
bound() { printf '%s\n' "$bindings" | grep -q "$1"; }
every "after kill -9 every record is complete" record_complete "${ids[@]}"
every "after kill -9 every issued certificate is in the issuance log" issued "${serials[@]}"
every "after kill -9 every device-id binding is there" bound "${ids[@]}"

if start_dpsd "$DEMO" "$PORT" --shards 2; then ok "dpsd restarts on the crashed store"; else not_ok "dpsd restarts on the crashed store"; finish; fi
check "the restarted dpsd renews device 1" \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$DEMO/pki" --devices 1 --renew --out "$WORK/out"
finish
