#!/usr/bin/env bash
# A cluster-wide signing rate (issue 11, items 3 and 9): two demo nodes on the
# same PKI share one redis-server started here, with limits.signingRate 50
# (burst 50). dps-loadgen keeps 128 devices in flight across both nodes.
#
# 1. Over 20 s the signing steps the two nodes admitted, counted from their
#    metrics, come to 50/s within 10%.
# 2. Redis stopped: each node falls back to its share (50 / 2 live nodes,
#    25/s within 10%), says so in metrics and status, and nothing crashes.
# 3. Redis back (same port, empty): both nodes limit through Redis again,
#    without a restart.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"

plan 10
require_tools redis-server redis-cli

# counts API: "ADMITTED SIGNED REFUSED TIME" from one scrape of the node's metrics: signing
# steps the limits admitted, steps answered 2.xx (cloud-configuration and credentials), steps
# the limits refused (5.03), and when the scrape came back.
counts() {
    curl -s "http://127.0.0.1:$1/metrics" | awk -v t="$(date +%s.%N)" '
        $1 == "dps_rate_tokens_total{result=\"admitted\"}" { a = $2 }
        $1 == "dps_rate_tokens_total{result=\"refused\"}" { r = $2 }
        $1 ~ /^dps_provisioning_steps_total\{step="(cloud|credential)",class="2xx"\}$/ { s += $2 }
        END { printf "%d %d %d %s\n", a, s, r, t }'
}

# window SECONDS: over SECONDS, from the nodes' metrics: "A B BOTH SIGNED SECONDS REFUSED",
# the signing steps admitted per second by node A, node B and both, the steps answered 2.xx,
# the window's length and the steps refused.
window() {
    local a0 b0 a1 b1
    a0=$(counts "$API_A") b0=$(counts "$API_B")
    sleep "$1"
    a1=$(counts "$API_A") b1=$(counts "$API_B")
    python3 -c "
a0, b0, a1, b1 = [list(map(float, x.split())) for x in ('$a0', '$b0', '$a1', '$b1')]
a = (a1[0] - a0[0]) / (a1[3] - a0[3]); b = (b1[0] - b0[0]) / (b1[3] - b0[3])
print('%.1f %.1f %.1f %d %.2f %d' % (a, b, a + b, a1[1] - a0[1] + b1[1] - b0[1], a1[3] - a0[3],
                                     a1[2] - a0[2] + b1[2] - b0[2]))"
}

status_a() { curl -s -H "Authorization: Bearer $(cat "$DEMO/pki/operator.token")" "http://127.0.0.1:$API_A/api/v1/status"; }

in_shell "redis-server starts" start_redis
# The demo writes its configuration at the first start; the limits go in before the real start.
# New bindings go on without Redis (bindingsWhenRedisDown: local), so the fallback's share is
# what limits the devices while Redis is away.
# A burst of one second's rate: refused devices come back in waves (Max-Age is whole seconds),
# and a smaller burst would leave the gaps between waves unused.
start_pair_configured "two nodes start with a cluster signing rate of 50/s" \
    $'limits:\n  signingRate: 50\n  signingBurst: 50\ncluster:\n  bindingsWhenRedisDown: local\n'

# Far more than the limit admits, through both nodes in turn: a closed loop (closed_loop) of
# CLUSTER_RATE_DEVICES (default 128) devices in flight. (An open loop of 200 new devices/s, a
# TLS handshake each, is more than a 2-core box shared with the generator carries: handshakes
# time out before the limit is reached.)
closed_loop 1 "${CLUSTER_RATE_DEVICES:-128}" 50
sleep 2

read -r RATE_A RATE_B RATE COUNT SECONDS_ REFUSED <<<"$(window 20)"
echo "# cluster: $RATE signing steps/s admitted in $SECONDS_ s (node a $RATE_A/s, node b" \
    "$RATE_B/s); $COUNT answered 2.xx; $REFUSED refused"
echo "# leases: $(metric "$API_A" dps_rate_leases_total) + $(metric "$API_B" dps_rate_leases_total)," \
    "round trips: $(metric "$API_A" dps_rate_redis_round_trips_total '^[a-z_]*$') +" \
    "$(metric "$API_B" dps_rate_redis_round_trips_total '^[a-z_]*$')"
# The limit's promise is the upper bound. Reaching it needs the demand above it all along: on a
# box too busy to offer twice the limit (admitted and refused steps), the lower bound is not
# measured.
demand_above() { python3 -c "import sys; sys.exit(0 if $1 * $SECONDS_ + $REFUSED >= 2 * $2 * $SECONDS_ else 1)"; }
if demand_above "$RATE" 50; then
    if within "$RATE" 50; then ok "the cluster signs 50/s within 10% ($RATE/s)"; else
        not_ok "the cluster signs 50/s within 10% ($RATE/s)"
    fi
elif python3 -c "import sys; sys.exit(0 if $RATE <= 55 else 1)"; then
    ok "the cluster signs at most 50/s + 10% ($RATE/s) # SKIP the demand did not stay above the limit"
else
    not_ok "the cluster signs at most 50/s + 10% ($RATE/s)"
fi
if [ "$(metric "$API_A" dps_rate_live_nodes)" = 2 ] && [ "$(metric "$API_B" dps_rate_live_nodes)" = 2 ]; then
    ok "each node sees two live nodes"
else
    not_ok "each node sees two live nodes"
fi

kill -TERM "$REDIS_PID" 2>/dev/null
wait "$REDIS_PID" 2>/dev/null
REDIS_PID=""
sleep 1
read -r RATE_A RATE_B RATE COUNT SECONDS_ REFUSED <<<"$(window 10)"
echo "# without Redis: node a $RATE_A/s, node b $RATE_B/s admitted in $SECONDS_ s; $COUNT" \
    "answered 2.xx; $REFUSED refused"
if demand_above "$RATE" 50; then
    if within "$RATE_A" 25 && within "$RATE_B" 25; then
        ok "without Redis each node signs its share, 25/s within 10%"
    else
        not_ok "without Redis each node signs its share, 25/s within 10%"
    fi
elif python3 -c "import sys; sys.exit(0 if $RATE_A <= 27.5 and $RATE_B <= 27.5 else 1)"; then
    ok "without Redis each node signs at most its share + 10% # SKIP the demand did not stay above it"
else
    not_ok "without Redis each node signs at most its share + 10%"
fi
if [ "$(metric "$API_A" dps_rate_fallback)" = 1 ] && [ "$(metric "$API_B" dps_rate_fallback)" = 1 ] &&
    status_a | jq -e '.rateLimits.mode == "share" and .degraded' >/dev/null; then
    ok "metrics and status say the limits run on the node's share"
else
    not_ok "metrics and status say the limits run on the node's share"
    status_a | sed 's/^/# /'
fi
grep -q 'msg="rate limits on this node.s share"' "$WORK/a.log" &&
    ok "a log line says why" || not_ok "a log line says why"

in_shell "redis-server starts again on the same port" start_redis
# Back on Redis: no fallback, and lease scripts answered again (shard 0 sends one every second
# even without devices).
trips() { metric "$1" dps_rate_redis_round_trips_total '^[a-z_]*$'; }
failed() { metric "$1" dps_rate_redis_round_trips_total 'failed'; }
TRIPS_A=$(($(trips "$API_A") - $(failed "$API_A")))
TRIPS_B=$(($(trips "$API_B") - $(failed "$API_B")))
healed() {
    [ "$(metric "$API_A" dps_rate_fallback)" = 0 ] && [ "$(metric "$API_B" dps_rate_fallback)" = 0 ] &&
        [ $(($(trips "$API_A") - $(failed "$API_A"))) -gt "$TRIPS_A" ] &&
        [ $(($(trips "$API_B") - $(failed "$API_B"))) -gt "$TRIPS_B" ]
}
# The clients reconnect with a back-off of up to 5 s.
healed_within() { for _ in $(seq 1 150); do healed && return 0; sleep 0.1; done; return 1; }
in_shell "Redis back: both nodes limit through Redis again, no restart" healed_within

kill -TERM "$LOAD_PID" 2>/dev/null
wait "$LOAD_PID" 2>/dev/null
LOAD_PID=""
if stop_node a && stop_node b; then ok "both nodes stop cleanly (nothing crashed, no leak)"; else
    not_ok "both nodes stop cleanly (nothing crashed, no leak)"
    grep -h -A5 'ERROR: AddressSanitizer\|runtime error' "$WORK"/a.log "$WORK"/b.log | head -20 | sed 's/^/# /'
fi
finish
