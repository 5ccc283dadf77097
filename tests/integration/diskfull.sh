#!/usr/bin/env bash
# The store's disk fills during provisioning: devices get 5.03, no identity
# certificate leaves without its issuance entry and record, and provisioning
# resumes when space returns, without restarting dpsd.
#
# The store lives on a small tmpfs that a filler file tops up to full (as
# root); where mounting is not allowed, the fault is a file-size limit put on
# the running dpsd with prlimit, which needs dpsd to ignore SIGXFSZ.
. "$(dirname "$0")/lib.sh"

plan 11
DEMO=$WORK/demo
DATA=$DEMO/data
OUT=$WORK/out
PORT=$(free_port)
MOUNTED=""
FILLERS=0

unmount() {
    if [ -n "$DPSD_PID" ]; then
        kill -9 "$DPSD_PID" 2>/dev/null
        wait "$DPSD_PID" 2>/dev/null
        DPSD_PID=""
    fi
    [ -z "$MOUNTED" ] || umount "$DATA" 2>/dev/null
    cleanup
}
trap unmount EXIT

mkdir -p "$DATA"
if mount -t tmpfs -o size=8M,mode=0700 tmpfs "$DATA" 2>/dev/null; then
    MOUNTED=1
    echo "# store on an 8 MiB tmpfs"
else
    echo "# cannot mount a tmpfs: injecting write errors with prlimit --fsize"
fi

# fault_on: no file in the store can grow any more.
fault_on() {
    if [ -n "$MOUNTED" ]; then
        FILLERS=$((FILLERS + 1))
        dd if=/dev/zero of="$DATA/filler.$FILLERS" bs=4k 2>/dev/null
        return 0
    fi
    prlimit --pid "$DPSD_PID" --fsize=1:unlimited
}

fault_off() {
    if [ -n "$MOUNTED" ]; then
        rm -f "$DATA"/filler.*
    else
        prlimit --pid "$DPSD_PID" --fsize=unlimited:unlimited
    fi
}

# provision FIRST COUNT: sequential device flows; prints dps-loadgen's per-step report.
provision() {
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$DEMO/pki" --devices "$2" \
        --first "$1" --out "$OUT" --timeout 10 2>&1
}

# serial_of PEM: the certificate's serial, lower-case hex without leading zeros.
serial_of() {
    openssl x509 -in "$1" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f' | sed 's/^0*//'
}

# issued_have_records: every identity.pem under $OUT is in the issuance log, the same
# certificate, and its record's credential step is 2.04 (68).
issued_have_records() {
    local issuance records pem serial record missing=0 count=0
    issuance=$("$DPSCTL" issuance --data "$DATA" --json) || return 1
    records=$("$DPSCTL" records --data "$DATA" --json) || return 1
    for pem in "$OUT"/device-*/identity.pem; do
        [ -f "$pem" ] || continue
        count=$((count + 1))
        serial=$(serial_of "$pem")
        record=$(printf '%s\n' "$issuance" | jq -r --arg s "$serial" \
            'select((.result.serial | sub("^0+"; "")) == $s) | .result.recordId' |
            head -1)
        if [ -z "$record" ]; then
            echo "$pem: serial $serial is not in the issuance log"
            missing=1
            continue
        fi
        if ! printf '%s\n' "$issuance" | jq -s -e --arg r "$record" --rawfile pem "$pem" \
            'any(.[]; .result.recordId == $r and
                 (.result.certificatePem | gsub("\\s"; "")) == ($pem | gsub("\\s"; "")))' \
            >/dev/null; then
            echo "$pem: the issuance log holds a different certificate for serial $serial"
            missing=1
        fi
        if ! printf '%s\n' "$records" | jq -s -e --arg r "$record" \
            'any(.[]; .result.id == $r and .result.credential.status.coapCode == 68)' >/dev/null; then
            echo "$pem: record $record has no successful credential step"
            missing=1
        fi
    done
    echo "# $count identity certificates checked"
    [ $count -gt 0 ] && [ $missing = 0 ]
}

start_dpsd "$DEMO" "$PORT" --shards 2 || { not_ok "dpsd starts on the small store"; finish; }
ok "dpsd starts on the small store"
PID=$DPSD_PID

out=$(provision 1 4)
if printf '%s\n' "$out" | grep -q 'provisioned 4/4'; then ok "devices provision before the disk fills"; else
    not_ok "devices provision before the disk fills"
    printf '%s\n' "$out" | sed 's/^/# /'
fi

# Fill the disk and provision; each round tops the filler up, since a reopen can free space.
first=101
got_503=0
failed_output=""
for _ in 1 2 3 4 5; do
    fault_on
    out=$(provision $first 4)
    first=$((first + 4))
    failed_output+="$out"$'\n'
    if printf '%s\n' "$out" | grep -q '=5\.03'; then
        got_503=1
        break
    fi
done
printf '%s\n' "$failed_output" | grep '5\.03' | head -4 | sed 's/^/# /'
if [ $got_503 = 1 ] && kill -0 "$PID" 2>/dev/null; then
    ok "with the disk full devices get 5.03 and dpsd keeps running"
else
    not_ok "with the disk full devices get 5.03 and dpsd keeps running"
    printf '%s\n' "$failed_output" | tail -20 | sed 's/^/# /'
fi
# While the fault lasts, writes fail fast rather than hang.
fault_on
start=$(date +%s%N)
out=$(provision $first 2)
first=$((first + 2))
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
if printf '%s\n' "$out" | grep -q 'FAILED.*5\.03' && [ $elapsed_ms -lt 5000 ]; then
    ok "during the fault 5.03 comes at once (${elapsed_ms} ms for 2 devices)"
else
    not_ok "during the fault 5.03 comes at once (${elapsed_ms} ms for 2 devices)"
    printf '%s\n' "$out" | sed 's/^/# /'
fi

check "every identity certificate a device received is in the issuance log with its record" \
    issued_have_records

# A configuration change while the store cannot write is in force nowhere, and the API says so.
API=http://127.0.0.1:$API_PORT
TOKEN=$(cat "$DEMO/pki/operator.token")
group_json() { curl -s -H "Authorization: Bearer $TOKEN" "$API/api/v1/enrollment-groups" | jq -c '.result' | head -1; }
GROUP=$(group_json)
GROUP_ID=$(printf '%s' "$GROUP" | jq -r .id)
OLD_NAME=$(printf '%s' "$GROUP" | jq -r .name)
put_name() {
    printf '%s' "$GROUP" | jq -c --arg n "$1" '.name = $n' |
        curl -s -o "$WORK/put.out" -w '%{http_code}' -X PUT -H "Authorization: Bearer $TOKEN" \
            -H 'Content-Type: application/json' --data-binary @- \
            "$API/api/v1/enrollment-groups/$GROUP_ID"
}
fault_on
code=$(put_name "renamed during the fault")
if [ "$code" = 500 ] && grep -q "nothing changed" "$WORK/put.out" &&
    [ "$(group_json | jq -r .name)" = "$OLD_NAME" ]; then
    ok "an API change the store cannot write answers 500 and is in force nowhere"
else
    not_ok "an API change the store cannot write answers 500 and is in force nowhere"
    echo "# code $code: $(cat "$WORK/put.out"); name now $(group_json | jq -r .name)"
fi
resources() {
    "$PROBE" --endpoint "127.0.0.1:$PORT" --ca "$DEMO/pki/dps-root.pem" \
        --cert "$DEMO/pki/devices/device-0001.pem" --key "$DEMO/pki/devices/device-0001.key" \
        --get /api/v1/provisioning/resources --accept 50
}
cp "$DEMO/dpsd.yaml" "$WORK/dpsd.yaml.good"
sed -i 's/power: 10/power: 43/' "$DEMO/dpsd.yaml"
failed_before=$(grep -c 'msg="reload failed"' "$DEMO/dpsd.log")
kill -HUP "$PID"
for _ in $(seq 1 100); do
    [ "$(grep -c 'msg="reload failed"' "$DEMO/dpsd.log")" -gt "$failed_before" ] && break
    sleep 0.1
done
reload_refused=no
[ "$(grep -c 'msg="reload failed"' "$DEMO/dpsd.log")" -gt "$failed_before" ] && reload_refused=yes
cp "$WORK/dpsd.yaml.good" "$DEMO/dpsd.yaml"
fault_off

recovered=0
for attempt in $(seq 1 40); do
    out=$(provision $first 3)
    if printf '%s\n' "$out" | grep -q 'provisioned 3/3'; then
        recovered=1
        break
    fi
    first=$((first + 3))
    sleep 0.5
done
if [ $recovered = 1 ] && [ "$DPSD_PID" = "$PID" ] && kill -0 "$PID" 2>/dev/null &&
    grep -q 'msg="store recovered"' "$DEMO/dpsd.log"; then
    ok "space returns: devices provision again, same dpsd (attempt $attempt)"
else
    not_ok "space returns: devices provision again, same dpsd"
    printf '%s\n' "$out" | sed 's/^/# /'
    grep 'store' "$DEMO/dpsd.log" | tail -5 | sed 's/^/# /'
fi
# Devices are served again: the refused reload left the resources in force as they were.
if [ $reload_refused = yes ] && resources | grep -q '"power":10'; then
    ok "a SIGHUP during the fault is refused and changes nothing"
else
    not_ok "a SIGHUP during the fault is refused and changes nothing"
    grep 'reload' "$DEMO/dpsd.log" | tail -3 | sed 's/^/# /'
fi
code=$(put_name "renamed after the fault")
if [ "$code" = 200 ] && [ "$(group_json | jq -r .name)" = "renamed after the fault" ]; then
    ok "with space back the same API change succeeds"
else
    not_ok "with space back the same API change succeeds"
    echo "# code $code: $(cat "$WORK/put.out")"
fi

check_stop "dpsd stops cleanly after the fault"
if start_dpsd "$DEMO" "$PORT" --shards 2 && stop_dpsd &&
    issued_have_records >"$WORK/final-check" 2>&1; then
    ok "the store reopens cleanly and still holds every issued certificate"
else
    not_ok "the store reopens cleanly and still holds every issued certificate"
    sed 's/^/# /' "$WORK/final-check" 2>/dev/null | tail -20
fi
finish
