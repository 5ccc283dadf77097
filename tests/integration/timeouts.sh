#!/usr/bin/env bash
# Connection limits with a test each: a stalled handshake is closed after
# handshakeTimeout, an idle TLS connection after inactivityTimeout, pipelined
# requests on one connection are answered one at a time and in order, and a
# shard at maxConnections refuses the next connection until one leaves.
. "$(dirname "$0")/lib.sh"

HOSTILE=$BUILD/tests/dps-hostile
plan 9
demo_written --shards 1
cat >>"$DEMO/dpsd.yaml" <<'EOF'
limits:
  handshakeTimeout: 2
  inactivityTimeout: 3
  maxConnections: 5
EOF
start_dpsd "$DEMO" "$PORT" --shards 1 || { not_ok "dpsd starts with short timeouts"; finish; }

field() { printf '%s\n' "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }

# within SUMMARY LOW HIGH: the server closed the one connection between LOW and HIGH seconds.
within() {
    local closed low
    closed=$(field "$1" closed_by_server)
    low=$(field "$1" close_min)
    [ "$closed" = 1 ] && awk -v t="$low" -v a="$2" -v b="$3" 'BEGIN { exit !(t >= a && t <= b) }'
}

hostile() { "$HOSTILE" "$@" --endpoint "$ENDPOINT" | grep '^mode='; }

# The timeouts are checked once a second: a close comes between the timeout and two seconds later.
SUMMARY=$(hostile stall-handshake --count 1 --hold 6)
echo "# $SUMMARY"
if within "$SUMMARY" 2 4.5; then ok "a stalled handshake is closed after handshakeTimeout (2 s)"; else
    not_ok "a stalled handshake is closed after handshakeTimeout (2 s)"; fi

SUMMARY=$(hostile half-open --count 1 --hold 6)
echo "# $SUMMARY"
if within "$SUMMARY" 2 4.5; then ok "a silent connection is closed after handshakeTimeout (2 s)"; else
    not_ok "a silent connection is closed after handshakeTimeout (2 s)"; fi

SUMMARY=$(hostile idle-tls --count 1 --hold 7 "${DEVICE[@]}")
echo "# $SUMMARY"
if within "$SUMMARY" 3 5.5; then ok "an idle TLS connection is closed after inactivityTimeout (3 s)"; else
    not_ok "an idle TLS connection is closed after inactivityTimeout (3 s)"; fi

SUMMARY=$(hostile idle-tls --count 1 --hold 1.5 "${DEVICE[@]}")
if [ "$(field "$SUMMARY" still_open)" = 1 ]; then ok "a TLS connection is kept before inactivityTimeout"; else
    not_ok "a TLS connection is kept before inactivityTimeout"; echo "# $SUMMARY"; fi

# Five GETs in one write: each waits for the store (the time step is durable
# before it is answered), so the rest stay buffered and are answered one by one.
SUMMARY=$(hostile pipeline --count 1 --requests 5 --hold 2 "${DEVICE[@]}")
echo "# $SUMMARY"
if [ "$(field "$SUMMARY" responses)" = 5 ] && [ "$(field "$SUMMARY" in_order)" = 1 ]; then
    ok "pipelined requests are answered one at a time, in order"
else
    not_ok "pipelined requests are answered one at a time, in order"
fi

# maxConnections 5 on the only shard: five idle TLS connections fill it.
"$HOSTILE" idle-tls --count 5 --hold 2.5 --endpoint "$ENDPOINT" "${DEVICE[@]}" \
    >"$WORK/five.out" 2>&1 &
FIVE=$!
for _ in $(seq 1 100); do
    grep -q '^ready' "$WORK/five.out" && break
    sleep 0.1
done
SIXTH=$(hostile half-open --count 1 --hold 0.5)
echo "# sixth: $SIXTH"
if [ "$(field "$SIXTH" refused)" = 1 ]; then ok "the sixth connection is refused while five are open"; else
    not_ok "the sixth connection is refused while five are open"; fi
wait $FIVE
FIVE_SUMMARY=$(grep '^mode=' "$WORK/five.out")
echo "# five: $FIVE_SUMMARY"
if [ "$(field "$FIVE_SUMMARY" handshakes)" = 5 ] && [ "$(field "$FIVE_SUMMARY" still_open)" = 5 ]; then
    ok "the five connections within maxConnections stay served"
else
    not_ok "the five connections within maxConnections stay served"
fi
check "once they left, a device is served again" \
    "$LOADGEN" --endpoint "coaps+tcp://$ENDPOINT" --pki "$PKI" --devices 1
check_stop "dpsd stops cleanly"
finish
