#!/usr/bin/env bash
# kill -9 of dpsd at random points while devices provision, repeated: after
# each restart the store opens cleanly, and every identity certificate any
# device received so far is in the issuance log with a record whose
# credential step is 2.04. Odd rounds kill at a random time from the start, even rounds at a
# random time after the round's first identity certificate.
. "$(dirname "$0")/lib.sh"

ROUNDS=5
LOADGENS=4
DEVICES=40
plan $((ROUNDS * 2 + 3))
DEMO=$WORK/demo
OUT=$WORK/out
PORT=$(free_port)

# missing_certificates: prints each received identity certificate that is not in the
# issuance log (compared whole, by its base64 body) or whose record lacks a successful
# credential step; the number of certificates checked goes to $WORK/count.
missing_certificates() {
    local pems=("$OUT"/device-*/identity.pem)
    [ -f "${pems[0]}" ] || pems=()
    echo "${#pems[@]}" >"$WORK/count"
    [ ${#pems[@]} -gt 0 ] || return 0
    awk 'FNR == 1 { if (path) print path "\t" body; path = FILENAME; body = "" }
         !/-----/ { body = body $0 }
         END { print path "\t" body }' "${pems[@]}" >"$WORK/received.tsv"
    "$DPSCTL" issuance --data "$DEMO/data" --json >"$WORK/issuance.json" || return 1
    "$DPSCTL" records --data "$DEMO/data" --json >"$WORK/records.json" || return 1
    jq -n -R -r --slurpfile issuance "$WORK/issuance.json" --slurpfile records "$WORK/records.json" '
        def body: gsub("-----[^-]*-----|\\s"; "");
        (reduce ($records[] | select(.result.credential.status.coapCode == 68) | .result.id)
            as $id ({}; .[$id] = true)) as $credentialed
        | (reduce $issuance[] as $entry ({};
            .[$entry.result.certificatePem | body] = $entry.result.recordId)) as $record_of
        | inputs | split("\t") | . as [$path, $body] | $record_of[$body] as $record
        | if $record == null then "\($path): not in the issuance log"
          elif ($credentialed | has($record) | not) then
              "\($path): record \($record) has no credential step with 2.04"
          else empty end' "$WORK/received.tsv"
}

# received: how many devices have an identity certificate so far.
received() {
    local pems=("$OUT"/device-*/identity.pem)
    if [ -f "${pems[0]}" ]; then echo "${#pems[@]}"; else echo 0; fi
}

cut_off=0
for round in $(seq 1 $ROUNDS); do
    if ! start_dpsd "$DEMO" "$PORT" --shards 2; then
        not_ok "round $round: dpsd starts on the store"
        finish
    fi
    before=$(received)
    pids=()
    for j in $(seq 0 $((LOADGENS - 1))); do
        first=$((1 + ((round - 1) * LOADGENS + j) * DEVICES))
        "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$DEMO/pki" --devices $DEVICES \
            --first $first --out "$OUT" --timeout 5 >"$WORK/loadgen-$round-$j.log" 2>&1 &
        pids+=($!)
    done
    # Odd rounds kill at a random point from the start (often before any certificate is out).
    # Even rounds take the random point after this round's first identity certificate, so that
    # a loaded machine, where 1.5 s may not reach the credential step, still kills with
    # certificates out and devices in flight (bounded: 60 s).
    if [ $((round % 2)) = 0 ]; then
        for _ in $(seq 1 600); do
            [ "$(received)" -gt "$before" ] && break
            sleep 0.1
        done
        delay_ms=$((RANDOM % 301))
    else
        delay_ms=$((200 + RANDOM % 1301))
    fi
    sleep "$((delay_ms / 1000)).$(printf '%03d' $((delay_ms % 1000)))"
    kill9_dpsd
    for pid in "${pids[@]}"; do wait "$pid"; done
    failed=$(cat "$WORK/loadgen-$round-"*.log | grep -c FAILED || true)
    cut_off=$((cut_off + failed))
    echo "# round $round: kill -9 after $delay_ms ms, $failed devices cut off"

    if start_dpsd "$DEMO" "$PORT" --shards 2; then
        ok "round $round: dpsd restarts on the crashed store"
    else
        not_ok "round $round: dpsd restarts on the crashed store"
        finish
    fi
    missing=$(missing_certificates 2>&1)
    status=$?
    count=$(cat "$WORK/count")
    if [ $status = 0 ] && [ -z "$missing" ]; then
        ok "round $round: all $count identity certificates received are in the issuance log with their records"
    else
        not_ok "round $round: all $count identity certificates received are in the issuance log with their records"
        printf '%s\n' "$missing" | head -20 | sed 's/^/# /'
    fi
    stop_dpsd >/dev/null 2>&1
done

count=$(cat "$WORK/count")
if [ "$count" -gt 0 ]; then ok "devices received identity certificates ($count)"; else
    not_ok "devices received identity certificates"
fi
if [ $cut_off -gt 0 ]; then ok "the kills interrupted provisioning in flight ($cut_off devices)"; else
    not_ok "the kills interrupted provisioning in flight"
fi
start_dpsd "$DEMO" "$PORT" --shards 2 || { not_ok "the last restarted dpsd stops cleanly"; finish; }
check_stop "the last restarted dpsd stops cleanly"
finish
