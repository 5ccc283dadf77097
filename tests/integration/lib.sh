# Shared by the integration tests: TAP output, a work folder, free ports and
# the life of a dpsd started on loopback. Every dpsd a test starts is killed
# when the test exits, whatever happens.
set -u

BUILD=${DPS_BUILD_ROOT:?run through meson test}
SRC=${DPS_SOURCE_ROOT:?run through meson test}
DPSD=$BUILD/dpsd
DPSCTL=$BUILD/dpsctl
LOADGEN=$BUILD/perf/dps-loadgen
PROBE=$BUILD/tests/dps-probe
WORK=$(mktemp -d /tmp/dps-it.XXXXXX)
TEST_NUMBER=0
FAILURES=0
DPSD_PID=""

cleanup() {
    if [ -n "$DPSD_PID" ]; then
        kill -9 "$DPSD_PID" 2>/dev/null
        wait "$DPSD_PID" 2>/dev/null
    fi
    if [ -n "${KEEP_WORK:-}" ]; then echo "# kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

plan() { echo "1..$1"; }

ok() {
    TEST_NUMBER=$((TEST_NUMBER + 1))
    echo "ok $TEST_NUMBER - $1"
}

not_ok() {
    TEST_NUMBER=$((TEST_NUMBER + 1))
    FAILURES=$((FAILURES + 1))
    echo "not ok $TEST_NUMBER - $1"
}

# check NAME COMMAND...: one test case, passing when COMMAND exits 0.
check() {
    local name=$1 output
    shift
    if output=$("$@" 2>&1); then
        ok "$name"
    else
        not_ok "$name"
        printf '%s\n' "$output" | tail -40 | sed 's/^/# /'
    fi
}

# expect_output NAME PATTERN COMMAND...: passes when COMMAND's output matches PATTERN (grep -E).
expect_output() {
    local name=$1 pattern=$2 output
    shift 2
    output=$("$@" 2>&1)
    if printf '%s\n' "$output" | grep -Eq -- "$pattern"; then
        ok "$name"
    else
        not_ok "$name"
        echo "# expected /$pattern/ in:"
        printf '%s\n' "$output" | tail -40 | sed 's/^/# /'
    fi
}

# run_code CODE COMMAND...: runs COMMAND, output in $WORK/out and $WORK/err; true when it exits CODE.
run_code() {
    local want=$1 status=0
    shift
    "$@" >"$WORK/out" 2>"$WORK/err" || status=$?
    if [ "$status" != "$want" ]; then
        echo "exit status $status, expected $want; stdout and stderr:"
        cat "$WORK/out" "$WORK/err"
        return 1
    fi
}

# exits NAME CODE PATTERN COMMAND...: passes when COMMAND exits CODE and its output matches PATTERN.
exits() {
    local name=$1 code=$2 pattern=$3 output
    shift 3
    if output=$(run_code "$code" "$@") && cat "$WORK/out" "$WORK/err" | grep -Eq -- "$pattern"; then
        ok "$name"
    else
        not_ok "$name"
        [ -n "$output" ] || { echo "# expected /$pattern/ in:"; output=$(cat "$WORK/out" "$WORK/err"); }
        printf '%s\n' "$output" | tail -20 | sed 's/^/# /'
    fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local port
    while :; do
        # Below the kernel's ephemeral range (32768-60999), so no outgoing connection holds it.
        port=$((20000 + RANDOM % 12000))
        if ! port_in_use "$port" && ! ss -ltnH "sport = :$port" 2>/dev/null | grep -q .; then
            echo "$port"
            return
        fi
    done
}

# start_dpsd DIR PORT [dpsd options...]: demo daemon on 127.0.0.1:PORT, waits until it listens.
# Its management API listens on 127.0.0.1:$API_PORT (a free port, kept across restarts).
API_PORT=""
start_dpsd() {
    local dir=$1 port=$2
    shift 2
    mkdir -p "$dir"
    [ -n "$API_PORT" ] || API_PORT=$(free_port)
    # The log grows across restarts: this start is ready when a new "ready" line appears.
    local readies
    readies=$(grep -c 'msg="ready"' "$dir/dpsd.log" 2>/dev/null)
    "$DPSD" --demo "$dir" --listen "127.0.0.1:$port" --api-listen "127.0.0.1:$API_PORT" "$@" \
        >>"$dir/dpsd.log" 2>&1 &
    DPSD_PID=$!
    local i
    for i in $(seq 1 300); do
        if [ "$(grep -c 'msg="ready"' "$dir/dpsd.log" 2>/dev/null)" -gt "${readies:-0}" ] &&
            port_in_use "$port"; then
            return 0
        fi
        if ! kill -0 "$DPSD_PID" 2>/dev/null; then
            echo "# dpsd exited during start:"
            sed 's/^/# /' "$dir/dpsd.log" | tail -20
            DPSD_PID=""
            return 1
        fi
        sleep 0.1
    done
    echo "# dpsd did not become ready"
    return 1
}

# require_tools TOOL...: the whole test is skipped when one of the tools is not installed.
require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "1..0 # SKIP $tool not installed"; exit 0; }
    done
}

# wait_for COMMAND...: up to 10 s for COMMAND to succeed.
wait_for() {
    for _ in $(seq 1 100); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# start_demo SHARDS NAME: one test case, NAME: the demo node in DEMO ($WORK/demo, its PKI in PKI)
# starts on a free PORT with SHARDS shards; the test ends when it does not.
start_demo() {
    DEMO=$WORK/demo
    PKI=$DEMO/pki
    PORT=$(free_port)
    if start_dpsd "$DEMO" "$PORT" --shards "$1"; then ok "$2"; else
        not_ok "$2"
        finish
    fi
}

# demo_written [dpsd options...]: the demo node in DEMO (its PKI in PKI) started once on a free
# PORT (ENDPOINT, its address) to write its configuration, for the test to change it before the
# real start; DEVICE holds the dps-probe and dps-hostile options of demo device 1.
demo_written() {
    DEMO=$WORK/demo
    PKI=$DEMO/pki
    PORT=$(free_port)
    ENDPOINT=127.0.0.1:$PORT
    DEVICE=(--cert "$PKI/devices/device-0001.pem" --key "$PKI/devices/device-0001.key"
        --ca "$PKI/dps-root.pem")
    start_dpsd "$DEMO" "$PORT" "$@" && stop_dpsd
}

# ports_listen PORT...: every PORT on 127.0.0.1 accepts connections.
ports_listen() {
    local port
    for port in "$@"; do port_in_use "$port" || return 1; done
}

# start_dpsd_config DIR [PORT...]: dpsd --config DIR/dpsd.yaml, its log appended to DIR/dpsd.log;
# waits until it says ready and every PORT listens. Otherwise prints the log's tail and returns 1.
start_dpsd_config() {
    local dir=$1
    shift
    "$DPSD" --config "$dir/dpsd.yaml" >>"$dir/dpsd.log" 2>&1 &
    DPSD_PID=$!
    for _ in $(seq 1 300); do
        grep -q 'msg="ready"' "$dir/dpsd.log" && ports_listen "$@" && return 0
        kill -0 "$DPSD_PID" 2>/dev/null || break
        sleep 0.1
    done
    sed 's/^/# /' "$dir/dpsd.log" | tail -20
    return 1
}

# node_pkis DEVICES OTHER_DEVICES: for a test that writes its own $NODE/dpsd.yaml: the demo PKI
# in $NODE/pki and a second one in $OTHER, with that many devices each; free ports PORT and
# API_PORT, and API, the API's URL.
node_pkis() {
    mkdir -p "$NODE"
    "$DPSCTL" pki "$NODE/pki" --devices "$1" >/dev/null || { not_ok "demo PKI"; finish; }
    "$DPSCTL" pki "$OTHER" --devices "$2" >/dev/null || { not_ok "second PKI"; finish; }
    PORT=$(free_port)
    API_PORT=$(free_port)
    API=http://127.0.0.1:$API_PORT
}

# Pieces of a dpsd.yaml for the tests that write their own, paths relative to the node's folder
# (its PKI in pki/), to put in an unquoted here-document as $(yaml_... ARGS).
# yaml_node PORT SHARDS: the device listener, the shards, the demo server certificate, the store.
yaml_node() {
    printf 'listen: ["127.0.0.1:%s"]\nshards: %s\n' "$1" "$2"
    printf 'tls: {certificate: pki/dps-server.pem, key: pki/dps-server.key}\ndataDir: data\n'
}
# yaml_hub ID OWNER NAME GATEWAY_PORT DIR: an entry of hubs: (NAME "" leaves the name out) that
# signs with DIR's hub CA and token key.
yaml_hub() {
    printf '  - id: %s\n    owner: "%s"\n' "$1" "$2"
    [ -z "$3" ] || printf '    name: %s\n' "$3"
    printf '    gateways: ["coaps+tcp://127.0.0.1:%s"]\n    authorizationProvider: plgd\n' "$4"
    printf '    identityCertificate: {certificate: %s/hub-ca.pem, key: %s/hub-ca.key}\n' "$5" "$5"
    printf '    token: {key: %s/token.key, issuer: https://dps.demo.local}\n' "$5"
}
# yaml_group ID OWNER NAME CHAIN HUB_ID: an entry of enrollmentGroups:.
yaml_group() {
    printf '  - id: %s\n    owner: "%s"\n    name: %s\n' "$1" "$2" "$3"
    printf '    attestation: {certificateChain: %s}\n    hubIds: [%s]\n' "$4" "$5"
}
# yaml_api PORT: the api: section, listening on PORT and trusting the demo PKI's operator key
# (more of its lines may follow).
yaml_api() {
    printf 'api:\n  listen: 127.0.0.1:%s\n  jwks: pki/operator.jwks.json\n' "$1"
    printf '  issuer: https://dps.demo.local/operator\n  audience: dps-api\n'
}

# call TOKEN METHOD PATH [curl options...]: prints "STATUS BODY" from the API at $API.
call() {
    local token=$1 method=$2 path=$3
    shift 3
    local auth=()
    [ -n "$token" ] && auth=(-H "Authorization: Bearer $token")
    curl -sS -m 10 -o "$WORK/body" -w '%{http_code}' -X "$method" "${auth[@]}" "$@" "$API$path" >"$WORK/status"
    printf '%s ' "$(cat "$WORK/status")"
    cat "$WORK/body"
}

# expect NAME STATUS PATTERN TOKEN METHOD PATH [curl options...]: one test case on call's output.
expect() {
    local name=$1 status=$2 pattern=$3
    shift 3
    local output
    output=$(call "$@" 2>&1)
    if [[ $output == "$status "* ]] && printf '%s\n' "$output" | grep -Eq -- "$pattern"; then
        ok "$name"
    else
        not_ok "$name"
        echo "# expected $status and /$pattern/, got:"
        printf '%s\n' "$output" | head -c 2000 | sed 's/^/# /'
        echo
    fi
}

# stop_dpsd: SIGTERM and wait; returns dpsd's exit status.
stop_dpsd() {
    local status=0
    if [ -n "$DPSD_PID" ]; then
        kill -TERM "$DPSD_PID" 2>/dev/null
        wait "$DPSD_PID" || status=$?
        DPSD_PID=""
    fi
    return $status
}

# kill9_dpsd: the crash.
kill9_dpsd() {
    if [ -n "$DPSD_PID" ]; then
        kill -9 "$DPSD_PID" 2>/dev/null
        wait "$DPSD_PID" 2>/dev/null
        DPSD_PID=""
    fi
}

finish() {
    exit $((FAILURES > 0 ? 1 : 0))
}

# check_stop NAME: one test case, passing when dpsd exits 0 on SIGTERM (no leak, no crash).
check_stop() {
    local status=0
    stop_dpsd || status=$?
    if [ $status = 0 ]; then ok "$1"; else
        not_ok "$1"
        echo "# dpsd exit status $status"
    fi
}
