#!/usr/bin/env bash
# Memory per idle connection: dpsd's resident memory for N mutual-TLS
# connections that completed their handshake (and got the CSM) and then sit
# idle, the state an idle device costs the server. Reproduce with:
#
#   perf/idle-memory.sh [CONNECTIONS]      (default 2000)
#
# It builds a release tree in build-idle/ (BUILD=DIR to use another), starts
# dpsd (demo PKI, one shard, inactivity timeout and per-source budgets raised
# so nothing is reaped or refused during the measurement), warms it up with a
# provisioning and a few connections, reads VmRSS from /proc, opens the
# connections with `dps-hostile idle-tls`, reads VmRSS again while they are
# held, and prints idle_connection_bytes = (after - before) / CONNECTIONS.
# Target: under 32 KiB (OpenSSL's SSL_MODE_RELEASE_BUFFERS frees the record
# buffers of an idle connection; the CoAP input buffer is freed when empty).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-2000}
BUILD=${BUILD:-build-idle}
if [ ! -d "$BUILD" ]; then
    meson setup "$BUILD" --buildtype=release >/dev/null
fi
ninja -C "$BUILD" dpsd perf/dps-loadgen tests/dps-hostile >/dev/null

WORK=$(mktemp -d /tmp/dps-idle.XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
PORT=$((20000 + RANDOM % 12000))
start() {
    "$BUILD/dpsd" --demo "$WORK/demo" --listen "127.0.0.1:$PORT" --shards 1 --log-level warn \
        >>"$WORK/dpsd.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "dpsd did not start:" >&2
    cat "$WORK/dpsd.log" >&2
    exit 1
}
mkdir -p "$WORK/demo"
start
kill "$PID"
wait "$PID" || true
cat >>"$WORK/demo/dpsd.yaml" <<EOF
limits:
  inactivityTimeout: 3600
  maxConnections: $((CONNECTIONS + 100))
  maxConnectionsPerSource: $((CONNECTIONS + 100))
  connectionRatePerSource: 100000
  connectionBurstPerSource: 100000
EOF
start

PKI=$WORK/demo/pki
HOSTILE=(
    "$BUILD/tests/dps-hostile" idle-tls --endpoint "127.0.0.1:$PORT"
    --cert "$PKI/devices/device-0001.pem" --key "$PKI/devices/device-0001.key"
    --ca "$PKI/dps-root.pem")
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$PID/status"; }

# Warm-up: code, tables, allocator arenas and the store are touched once.
"$BUILD/perf/dps-loadgen" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$PKI" --devices 1 \
    >/dev/null
"${HOSTILE[@]}" --count 50 --hold 0.5 >/dev/null
sleep 1
before=$(rss_kb)

"${HOSTILE[@]}" --count "$CONNECTIONS" --hold 3 >"$WORK/hostile.out" &
HOSTILE_PID=$!
for _ in $(seq 1 1200); do
    grep -q '^ready' "$WORK/hostile.out" && break
    sleep 0.1
done
sleep 1
after=$(rss_kb)
wait "$HOSTILE_PID"
established=$(sed -n 's/^ready .*handshakes=\([0-9]*\).*/\1/p' "$WORK/hostile.out")
summary=$(grep '^mode=' "$WORK/hostile.out")
sleep 1
released=$(rss_kb)

echo "command: perf/idle-memory.sh $CONNECTIONS"
echo "connections=$established (asked $CONNECTIONS)"
echo "rss_before_kb=$before rss_held_kb=$after rss_after_close_kb=$released"
echo "hostile: $summary"
if [ "${established:-0}" -gt 0 ]; then
    echo "idle_connection_bytes=$(((after - before) * 1024 / established))"
else
    echo "idle_connection_bytes=unknown (no connection established)"
    exit 1
fi
