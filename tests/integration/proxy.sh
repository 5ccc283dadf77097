#!/usr/bin/env bash
# PROXY protocol on the device listener: connections from a trusted balancer
# (cluster.trustedProxies, here 127.0.0.2) must start with a v1 or v2 header
# and are then known by the device's address, for logs and per-source
# admission; a header from any other address, a balancer connection without
# one, and malformed or truncated headers are refused without harm. Devices
# provision through Debian's HAProxy with send-proxy-v2.
. "$(dirname "$0")/lib.sh"

plan 11
DEMO=$WORK/demo
PKI=$DEMO/pki
PORT=$(free_port)
HAPORT=$(free_port)
HAPROXY_PID=""
stop_haproxy() {
    [ -z "$HAPROXY_PID" ] || kill "$HAPROXY_PID" 2>/dev/null
    wait "$HAPROXY_PID" 2>/dev/null
    HAPROXY_PID=""
}
trap 'stop_haproxy; cleanup' EXIT

start_dpsd "$DEMO" "$PORT" && stop_dpsd
cat >>"$DEMO/dpsd.yaml" <<EOF
cluster:
  trustedProxies: [127.0.0.2/32, "fd00::/8"]
limits:
  maxConnectionsPerSource: 2
EOF
sed -i 's/^logLevel: info/logLevel: debug/' "$DEMO/dpsd.yaml"
# One shard: per-source budgets are per shard.
start_dpsd "$DEMO" "$PORT" --shards 1 || { not_ok "dpsd starts behind a trusted balancer"; finish; }
ok "dpsd starts behind a trusted balancer"

hex() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'; }
# probe_via BIND HEADER_HEX [probe options...]: GET time with a header sent first.
probe_via() {
    local bind=$1 header=$2
    shift 2
    "$PROBE" --endpoint "127.0.0.1:$PORT" --ca "$PKI/dps-root.pem" \
        --cert "$PKI/devices/device-0001.pem" --key "$PKI/devices/device-0001.key" \
        --bind "$bind" ${header:+--proxy-hex "$header"} "$@" --get /x.plgd.dev/time
}
v1() { hex "PROXY TCP4 $1 127.0.0.1 $2 $PORT"$'\r\n'; }

expect_output "a v1 header from the balancer: the device is served" 'code=2\.05' \
    probe_via 127.0.0.2 "$(v1 198.51.100.7 4444)"
expect_output "logs name the device's address, not the balancer's" \
    'peer=198\.51\.100\.7:4444 balancer=127\.0\.0\.2' cat "$DEMO/dpsd.log"
expect_output "a PROXY header from an untrusted address is refused" '^handshake-failed' \
    probe_via 127.0.0.1 "$(v1 198.51.100.7 4444)"
expect_output "a balancer connection without a header is refused" '^handshake-failed' \
    probe_via 127.0.0.2 ""

# Malformed, oversized and truncated headers from the balancer, over raw sockets.
hostile_headers() {
    python3 - "$PORT" <<'EOF'
import socket, sys, time
port = int(sys.argv[1])
signature = b"\r\n\r\n\x00\r\nQUIT\n"
cases = [
    b"PROXY TCP4 198.51.100.300 127.0.0.1 1 2\r\n",
    b"PROXY TCP4 198.51.100.3 127.0.0.1 1\r\n",
    b"PROXY " + b"9" * 200,
    signature + b"\x21\x11\xff\xff" + b"\x00" * 64,
    signature + b"\x21\x11\x00\x0b" + b"\x00" * 11,
    signature + b"\x31\x11\x00\x0c" + b"\x00" * 12,
    b"\x00" * 2000,
]
closed = 0
for case in cases:
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.2", 0))
    s.sendall(case)
    try:
        closed += s.recv(1) == b""
    except ConnectionResetError:
        closed += 1
    s.close()
# Truncated: half a header, then the peer goes away.
for case in [b"PROXY TCP4 198.51", signature[:7], signature + b"\x21\x11\x00\x0c\x0a"]:
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.2", 0))
    s.sendall(case)
    time.sleep(0.05)
    s.close()
print(f"closed {closed}/{len(cases)}")
EOF
}
expect_output "malformed and oversized headers are closed at once" '^closed 7/7$' hostile_headers
metric() { curl -s "http://127.0.0.1:$API_PORT/metrics" | awk -v m="$1" '$1 ~ "^"m"[{]" {s+=$2} END {print s+0}'; }
# The balancer connection without a header and the seven malformed ones; truncated ones just end.
expect_output "refused headers are counted" '^8$' metric dps_proxy_refused_total

# Per-source admission counts the device's address: two held connections for one device
# address fill its budget of 2; a third for it is refused, another address is served.
holders=()
for port in 5001 5002; do
    mkfifo "$WORK/hold-$port.fifo"
    probe_via 127.0.0.2 "$(v1 198.51.100.9 $port)" --wait-stdin <"$WORK/hold-$port.fifo" \
        >"$WORK/hold-$port.out" 2>&1 &
    holders+=($!)
done
exec 8>"$WORK/hold-5001.fifo" 9>"$WORK/hold-5002.fifo"
for _ in $(seq 1 100); do
    [ "$(cat "$WORK"/hold-*.out 2>/dev/null | grep -c handshake-ok)" = 2 ] && break
    sleep 0.05
done
third=$(probe_via 127.0.0.2 "$(v1 198.51.100.9 5003)" 2>&1)
other=$(probe_via 127.0.0.2 "$(v1 198.51.100.10 5004)" 2>&1)
echo go >&8
echo go >&9
exec 8>&- 9>&-
wait "${holders[@]}"
if printf '%s' "$third" | grep -q handshake-failed && printf '%s' "$other" | grep -q 'code=2\.05'; then
    ok "per-source admission counts the device's address behind the balancer"
else
    not_ok "per-source admission counts the device's address behind the balancer"
    echo "# third: $third"
    echo "# other: $other"
fi

# Through HAProxy: send-proxy-v2 from 127.0.0.2, devices connect from 127.0.0.1.
cat >"$WORK/haproxy.cfg" <<EOF
global
    maxconn 256
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend devices
    bind 127.0.0.1:$HAPORT
    default_backend dps
backend dps
    server node1 127.0.0.1:$PORT send-proxy-v2 source 127.0.0.2
EOF
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!
for _ in $(seq 1 50); do port_in_use "$HAPORT" && break; sleep 0.1; done
before=$(grep -c 'peer=127\.0\.0\.1:[0-9]* balancer=127\.0\.0\.2' "$DEMO/dpsd.log")
# One device at a time, as a device would: all come from 127.0.0.1, which maxConnectionsPerSource
# (2) holds to two connections. A device's closed connection counts until dpsd sees the close,
# which through HAProxy can come after the next device's connect: that device is refused and,
# like a device in the field, retries (the fleet mode's back-off, --max-attempts 5).
expect_output "20 devices provision through HAProxy with send-proxy-v2" 'provisioned 20/20' \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$HAPORT" --pki "$PKI" --devices 20 --first 3 \
    --concurrency 1 --max-attempts 5
after=$(grep -c 'peer=127\.0\.0\.1:[0-9]* balancer=127\.0\.0\.2' "$DEMO/dpsd.log")
if [ $((after - before)) -ge 40 ]; then
    ok "each of their connections is known by the device's address ($((after - before)))"
else
    not_ok "each of their connections is known by the device's address ($((after - before)))"
fi
stop_haproxy
check_stop "dpsd exits 0"
finish
