#!/usr/bin/env bash
# dps-loadgen's fleet mode: deterministic identities that OpenSSL parses and
# verifies, 2,000 devices through the whole flow against a dpsd started here
# with a report that matches perf/loadgen-report.schema.json, the device
# client's retry rules against a fake endpoint that answers 5.03 and 4.00,
# and a rate sweep that draws its chart and names a knee.
. "$(dirname "$0")/lib.sh"

plan 17
DEMO=$WORK/demo
PORT=$(free_port)
FLEET_DEVICES=${FLEET_DEVICES:-2000}
start_dpsd "$DEMO" "$PORT" --shards 2 || { not_ok "dpsd starts"; finish; }
ok "dpsd starts on its demo PKI"
PKI=$DEMO/pki
ENDPOINT=coaps+tcp://127.0.0.1:$PORT

expect_output "gen makes $FLEET_DEVICES identities and reports its rate" \
    "generated $FLEET_DEVICES identities in .* \(([0-9]+)/s, [0-9]+/min\)" \
    "$LOADGEN" gen --pki "$PKI" --devices "$FLEET_DEVICES"
expect_output "a second gen reuses the file" "reused .*fleet-1.bin: $FLEET_DEVICES identities" \
    "$LOADGEN" gen --pki "$PKI" --devices "$FLEET_DEVICES"
expect_output "every identity parses (d2i_X509), verifies against the intermediate, holds its key" \
    "checked 300 identities, 0 bad" "$LOADGEN" gen --pki "$PKI" --devices 300 --seed 7 --check
FIRST=$(python3 -c "
import sys
data = open('$PKI/fleet-7.bin', 'rb').read()
record = data[64:64 + 640]
length = record[97] << 8 | record[98]
sys.stdout.buffer.write(record[100:100 + length])" | openssl x509 -inform DER -noout -subject -ext extendedKeyUsage 2>&1)
if printf '%s' "$FIRST" | grep -q "CN *= *Fleet Device 7-1" && printf '%s' "$FIRST" | grep -q "Client Authentication"; then
    ok "the openssl command line reads a stored certificate: subject and clientAuth"
else
    not_ok "the openssl command line reads a stored certificate: subject and clientAuth"
    printf '%s\n' "$FIRST" | sed 's/^/# /'
fi

START=$(date +%s)
OUTPUT=$("$LOADGEN" --endpoint "$ENDPOINT" --pki "$PKI" --devices "$FLEET_DEVICES" \
    --concurrency 64 --threads 2 --timeout 60 --report "$WORK/fleet.json" 2>&1)
STATUS=$?
echo "# $FLEET_DEVICES devices in $(($(date +%s) - START)) s"
printf '%s\n' "$OUTPUT" | grep -E "^(fleet|devices|generator)" | sed 's/^/# /'
if [ $STATUS = 0 ] && printf '%s\n' "$OUTPUT" | grep -q "^provisioned $FLEET_DEVICES/$FLEET_DEVICES devices, 0 failed$"; then
    ok "$FLEET_DEVICES devices provision through the full flow, none fails"
else
    not_ok "$FLEET_DEVICES devices provision through the full flow, none fails"
    printf '%s\n' "$OUTPUT" | tail -30 | sed 's/^/# /'
fi

# A small JSON Schema (draft 2020-12) checker for the keywords the schema uses.
cat >"$WORK/validate.py" <<'EOF'
import json, re, sys
schema, document = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
types = {"object": dict, "array": list, "string": str, "boolean": bool}
def check(node, value, path):
    if "$ref" in node:
        return check(schema["$defs"][node["$ref"].split("/")[-1]], value, path)
    kind = node.get("type")
    if kind == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"{path}: not an integer")
    if kind == "number" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise ValueError(f"{path}: not a number")
    if kind in types and not isinstance(value, types[kind]):
        raise ValueError(f"{path}: not {kind}")
    if "const" in node and value != node["const"]:
        raise ValueError(f"{path}: not {node['const']}")
    if "enum" in node and value not in node["enum"]:
        raise ValueError(f"{path}: {value} not in {node['enum']}")
    if "minimum" in node and value < node["minimum"]:
        raise ValueError(f"{path}: below {node['minimum']}")
    if "maximum" in node and value > node["maximum"]:
        raise ValueError(f"{path}: above {node['maximum']}")
    if "pattern" in node and not re.search(node["pattern"], value):
        raise ValueError(f"{path}: does not match {node['pattern']}")
    if isinstance(value, list):
        if len(value) < node.get("minItems", 0):
            raise ValueError(f"{path}: too few items")
        for i, item in enumerate(value):
            check(node.get("items", {}), item, f"{path}[{i}]")
    if isinstance(value, dict):
        for key in node.get("required", []):
            if key not in value:
                raise ValueError(f"{path}: {key} missing")
        for key, item in value.items():
            if key in node.get("properties", {}):
                check(node["properties"][key], item, f"{path}.{key}")
                continue
            patterns = [p for p in node.get("patternProperties", {}) if re.search(p, key)]
            if patterns:
                check(node["patternProperties"][patterns[0]], item, f"{path}.{key}")
            elif node.get("additionalProperties") is False:
                raise ValueError(f"{path}: unexpected {key}")
check(schema, document, "$")
EOF
check "the report matches perf/loadgen-report.schema.json" \
    python3 "$WORK/validate.py" "$SRC/perf/loadgen-report.schema.json" "$WORK/fleet.json"
check "the report counts every device, step and handshake" jq -e --argjson n "$FLEET_DEVICES" '
    .devices.succeeded == $n and .devices.failed == 0 and .error_rate == 0 and
    .latency_ms.end_to_end.count == $n and .latency_ms.handshake.count == 2 * $n and
    .latency_ms.steps.credentials.count == $n and .coap_codes["2.04"] == 2 * $n and
    .latency_ms.end_to_end.p50 <= .latency_ms.end_to_end.p99 and
    .latency_ms.end_to_end.p99 <= .latency_ms.end_to_end.max and
    .cpu.ms_per_device > 0 and .connections == 2 * $n' "$WORK/fleet.json"

# A fake endpoint: answers GET time with the codes of its plan in turn (the last repeats).
cat >"$WORK/fake_dps.py" <<'EOF'
import socket, ssl, sys
port, plan, pki = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(pki + "/dps-server.pem", pki + "/dps-server.key")
context.load_verify_locations(pki + "/mfg-root.pem")
context.verify_mode = ssl.CERT_REQUIRED
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(16)
print("ready", flush=True)
served = 0
def frame(code, token, options, payload):
    body, last = b"", 0
    for number, value in options:
        delta, last = number - last, number
        if delta < 13:
            body += bytes([(delta << 4) | len(value)]) + value
        else:
            body += bytes([(13 << 4) | len(value), delta - 13]) + value
    if payload:
        body += b"\xff" + payload
    if len(body) < 13:
        return bytes([(len(body) << 4) | len(token), code]) + token + body
    return bytes([(13 << 4) | len(token), len(body) - 13, code]) + token + body
def read_exact(conn, count):
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data
while True:
    raw, _ = listener.accept()
    try:
        conn = context.wrap_socket(raw, server_side=True)
        while True:
            first = read_exact(conn, 1)[0]
            length, token_length = first >> 4, first & 15
            extra = {13: 1, 14: 2, 15: 4}.get(length, 0)
            if extra:
                length = int.from_bytes(read_exact(conn, extra), "big") + {1: 13, 2: 269, 4: 65805}[extra]
            read_exact(conn, 1)
            token = read_exact(conn, token_length)
            read_exact(conn, length)
            answer = plan[min(served, len(plan) - 1)]
            served += 1
            if answer == "503":
                conn.sendall(frame(0xA3, token, [(14, b"\x01")], b""))
            elif answer == "205":
                stamp = b"2026-11-28T03:29:22.347476Z"
                payload = b"\xa1\x64time\x78" + bytes([len(stamp)]) + stamp
                conn.sendall(frame(0x45, token, [(12, b"\x27\x10")], payload))
            else:
                conn.sendall(frame(0x80, token, [], b"bad request"))
                conn.close()
                break
    except (EOFError, OSError, ssl.SSLError):
        pass
EOF
FAKE_PID=""
# fake_run NAME PLAN JQ-TEST [loadgen options]: one device, scenario time, against a fresh fake.
fake_run() {
    local name=$1 plan=$2 test=$3 fake_port
    shift 3
    fake_port=$(free_port)
    python3 "$WORK/fake_dps.py" "$fake_port" "$plan" "$PKI" >"$WORK/fake.log" 2>&1 &
    FAKE_PID=$!
    for _ in $(seq 1 50); do grep -q ready "$WORK/fake.log" && break; sleep 0.1; done
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$fake_port" --pki "$PKI" --devices 1 \
        --concurrency 1 --scenario time --backoff-scale 0.01 --report "$WORK/fake.json" "$@" \
        >"$WORK/fake-run.log" 2>&1
    kill "$FAKE_PID" 2>/dev/null
    wait "$FAKE_PID" 2>/dev/null
    FAKE_PID=""
    if jq -e "$test" "$WORK/fake.json" >/dev/null 2>&1; then ok "$name"; else
        not_ok "$name"
        sed 's/^/# /' "$WORK/fake-run.log" | tail -15
    fi
}
trap '[ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null; cleanup' EXIT

fake_run "5.03 with Max-Age: the device waits and sends the same step again" "503,503,205" \
    '.devices.succeeded == 1 and .transient_retries == 2 and .restarts == 0 and .connections == 1
     and .coap_codes["5.03"] == 2 and .wall_seconds >= 0.02'
fake_run "three 5.03 in a row: the device starts over from step 1" "503,503,503,205" \
    '.devices.succeeded == 1 and .transient_retries == 2 and .restarts == 1 and .attempts == 2'
fake_run "4.00: back-off and start over, up to --max-attempts, then the device fails" "400" \
    '.devices.failed == 1 and .attempts == 3 and .restarts == 2 and .errors.coap == 3
     and .wall_seconds >= 0.24' --max-attempts 3

# Two generators at once on disjoint devices, then one report from both.
"$LOADGEN" --endpoint "$ENDPOINT" --pki "$PKI" --devices 150 --first 1 --concurrency 8 \
    --timeout 60 --report "$WORK/gen-a.json" >/dev/null 2>&1 &
gen_a=$!
"$LOADGEN" --endpoint "$ENDPOINT" --pki "$PKI" --devices 100 --first 1001 --concurrency 4 \
    --timeout 60 --report "$WORK/gen-b.json" >/dev/null 2>&1
wait "$gen_a"
expect_output "merge combines the generators' reports" '^merged 2 reports' \
    "$LOADGEN" merge --report "$WORK/merged.json" "$WORK/gen-a.json" "$WORK/gen-b.json"
check "the merged report adds counts and histograms, adds rates, keeps the longest wall time" \
    jq -e -s '.[0] as $a | .[1] as $b | .[2] as $m |
    $m.devices.started == $a.devices.started + $b.devices.started and
    $m.devices.succeeded == 250 and $m.devices.failed == 0 and
    $m.latency_ms.end_to_end.count == 250 and $m.latency_ms.handshake.count == 500 and
    $m.histograms.end_to_end.count == 250 and
    $m.coap_codes["2.04"] == $a.coap_codes["2.04"] + $b.coap_codes["2.04"] and
    ($m.throughput_per_second - $a.throughput_per_second - $b.throughput_per_second | fabs) < 0.01 and
    $m.wall_seconds == ([$a.wall_seconds, $b.wall_seconds] | max) and
    $m.latency_ms.end_to_end.p99 >= ([$a.latency_ms.end_to_end.p99, $b.latency_ms.end_to_end.p99] | min) and
    $m.latency_ms.end_to_end.p99 <= ([$a.latency_ms.end_to_end.p99, $b.latency_ms.end_to_end.p99] | max) and
    $m.latency_ms.end_to_end.max == ([$a.latency_ms.end_to_end.max, $b.latency_ms.end_to_end.max] | max) and
    ($m.merged_from | length) == 2 and $m.config.concurrency == 12' \
    "$WORK/gen-a.json" "$WORK/gen-b.json" "$WORK/merged.json"
merge_refused() {
    echo '{"schema": "something else"}' >"$WORK/not-a-report.json"
    ! "$LOADGEN" merge "$WORK/gen-a.json" "$WORK/not-a-report.json" >/dev/null 2>"$WORK/merge.err" &&
        grep -q "not-a-report.json: not a dps-loadgen-report/1 document" "$WORK/merge.err" &&
        python3 "$WORK/validate.py" "$SRC/perf/loadgen-report.schema.json" "$WORK/merged.json"
}
check "merge refuses what is not a report; the merged report matches the schema" merge_refused

DPSD_PID_FOR_SWEEP=$DPSD_PID
SWEEP_OUTPUT=$("$SRC/perf/sweep.sh" --endpoint "$ENDPOINT" --pki "$PKI" --from 5 --to 25 --step 10 \
    --step-duration 2 --p99-ms 5000 --out "$WORK/sweep" --loadgen "$LOADGEN" \
    --server-pid "$DPSD_PID_FOR_SWEEP" --format svg -- --timeout 30 2>&1)
printf '%s\n' "$SWEEP_OUTPUT" | sed 's/^/# /'
if printf '%s\n' "$SWEEP_OUTPUT" | grep -Eq "^knee: (>= )?[0-9.]+ devices/s" &&
    [ "$(grep -vc '^#' "$WORK/sweep/sweep.dat")" -ge 1 ]; then
    ok "a sweep steps the offered rate and names the knee"
else
    not_ok "a sweep steps the offered rate and names the knee"
fi
if grep -q "<svg" "$WORK/sweep/sweep.svg" 2>/dev/null && grep -q "throughput" "$WORK/sweep/sweep.svg"; then
    ok "the sweep draws throughput and p99 against offered load"
else
    not_ok "the sweep draws throughput and p99 against offered load"
fi
check_stop "dpsd stops cleanly on SIGTERM"
finish
