# Shared by the cluster tests (sourced after lib.sh): demo nodes on one PKI, each with its own
# store and log, started and stopped by name, and the redis-server they share.
#
# Sourcing it sets DEMO (the demo folder) and PKI, free ports for two nodes (PORT_A, API_A,
# PORT_B, API_B) and for Redis (REDIS_PORT), and an exit trap that kills every node started
# with start_node, every redis-server started with start_redis and each pid a test adds to
# CLUSTER_PIDS (HAProxy, fleets, sentinels), then cleans up the work folder.

DEMO=$WORK/demo
PKI=$DEMO/pki
REDIS_PORT=$(free_port)
REDIS_PID=""
PORT_A=$(free_port)
API_A=$(free_port)
PORT_B=$(free_port)
API_B=$(free_port)
PID_a=""
PID_b=""
LOAD_PID=""
CLUSTER_PIDS=()
CLUSTER_NODES=""

# stop_cluster: kill -9 of everything the test started (a frozen process is woken first).
stop_cluster() {
    local name pid pids=()
    for name in $CLUSTER_NODES; do
        eval "pids+=(\${PID_$name:-})"
    done
    for pid in "${pids[@]}" "${CLUSTER_PIDS[@]}"; do
        kill -CONT "$pid" 2>/dev/null
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    cleanup
}
trap stop_cluster EXIT

# start_node NAME PORT API_PORT [dpsd options]: a node named NAME on the demo PKI in $DEMO (with
# --config FILE among the options, or NODE_CONFIG set, on that configuration instead), two
# shards unless the options say otherwise, its log $WORK/NAME.log; waits until a new "ready"
# line and PORT listens. Its pid in PID_<NAME>.
start_node() {
    local name=$1 port=$2 api=$3 log=$WORK/$1.log
    shift 3
    local readies option
    readies=$(grep -c 'msg="ready"' "$log" 2>/dev/null)
    local source=(--demo "$DEMO")
    [ -z "${NODE_CONFIG:-}" ] || source=(--config "$NODE_CONFIG")
    for option in "$@"; do [ "$option" != --config ] || source=(); done
    "$DPSD" "${source[@]}" --listen "127.0.0.1:$port" --api-listen "127.0.0.1:$api" \
        --node "$name" --shards 2 "$@" >>"$log" 2>&1 &
    eval "PID_$name=$!"
    [[ " $CLUSTER_NODES " == *" $name "* ]] || CLUSTER_NODES="$CLUSTER_NODES $name"
    for _ in $(seq 1 300); do
        [ "$(grep -c 'msg="ready"' "$log" 2>/dev/null)" -gt "${readies:-0}" ] && port_in_use "$port" &&
            return 0
        sleep 0.1
    done
    sed 's/^/# /' "$log" | tail -20
    return 1
}

# stop_node NAME: SIGTERM, and dpsd's exit status (ASan finds leaks at exit).
stop_node() {
    local pid status=0
    eval "pid=\$PID_$1"
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" || status=$?
    eval "PID_$1=''"
    return $status
}

# in_shell NAME COMMAND...: like check, but COMMAND runs in this shell (it starts or waits for
# processes whose pids the script keeps), its output in a file; its "# " lines are shown.
in_shell() {
    local name=$1
    shift
    if "$@" >"$WORK/step.out" 2>&1; then ok "$name"; else
        not_ok "$name"
        tail -40 "$WORK/step.out" | sed 's/^/# /'
    fi
    sed -n 's/^# /#   /p' "$WORK/step.out"
}

# start_redis [PORT [redis-server options]]: a redis-server on 127.0.0.1:PORT ($REDIS_PORT by
# default) without persistence, its pid in REDIS_PID, its log $WORK/redis-PORT.log; waits until
# it answers. stop_redis: SIGTERM and wait.
start_redis() {
    local port=${1:-$REDIS_PORT}
    shift $(($# > 0 ? 1 : 0))
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --logfile "$WORK/redis-$port.log" "$@" </dev/null >/dev/null 2>&1 &
    REDIS_PID=$!
    CLUSTER_PIDS+=("$REDIS_PID")
    for _ in $(seq 1 100); do
        redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.1
    done
    return 1
}

stop_redis() {
    kill -TERM "$REDIS_PID" 2>/dev/null
    wait "$REDIS_PID" 2>/dev/null
    REDIS_PID=""
}

# cluster_prelude PLAN [TOOL...]: a SKIP when redis-server, redis-cli or a TOOL is missing, else
# the TAP plan (the ports, the demo folder and the exit trap are set when this file is sourced).
cluster_prelude() {
    local count=$1
    shift
    require_tools redis-server redis-cli "$@"
    plan "$count"
}

# start_pair NAME [dpsd options]: nodes a and b on the Redis at REDIS_PORT (b with its own store in
# $WORK/b-data), as the TAP case NAME; the script ends there when either does not start.
start_pair() {
    local name=$1
    shift
    if start_node a "$PORT_A" "$API_A" --redis "127.0.0.1:$REDIS_PORT" "$@" &&
        start_node b "$PORT_B" "$API_B" --redis "127.0.0.1:$REDIS_PORT" --data-dir "$WORK/b-data" "$@"; then
        ok "$name"
    else
        not_ok "$name"
        finish
    fi
}

# metric API NAME [LABEL-REGEX]: the sum of NAME's samples whose labels match.
metric() {
    curl -s "http://127.0.0.1:$1/metrics" |
        awk -v m="$2" -v l="${3:-}" '{ split($1, p, "{") } p[1] == m && $1 ~ l { s += $2 } END { printf "%d\n", s }'
}

# within VALUE TARGET: VALUE is TARGET within 10%.
within() { python3 -c "import sys; sys.exit(0 if abs($1 - $2) <= 0.1 * $2 else 1)"; }

# start_pair_configured NAME CONFIG: node a once (the demo writes its configuration), CONFIG (YAML text)
# added to that configuration, then nodes a and b on the Redis at REDIS_PORT; one test case
# NAME, and the test ends when they do not start.
start_pair_configured() {
    start_node a "$PORT_A" "$API_A" --redis "127.0.0.1:$REDIS_PORT" >/dev/null && stop_node a
    printf '%s' "$2" >>"$DEMO/dpsd.yaml"
    if start_node a "$PORT_A" "$API_A" --redis "127.0.0.1:$REDIS_PORT" &&
        start_node b "$PORT_B" "$API_B" --redis "127.0.0.1:$REDIS_PORT" --data-dir "$WORK/b-data"; then
        ok "$1"
    else
        not_ok "$1"
        finish
    fi
}

# closed_loop FIRST CONCURRENCY SECONDS: dps-loadgen in the background (LOAD_PID) through both
# nodes in turn, CONCURRENCY devices in flight from identity FIRST on, for SECONDS: each refused
# step is retried on its connection after its Max-Age; a device refused three times in a row
# gives up (--max-attempts 1) and a new one takes its place, so the demand does not sag as
# devices back off. The devices are set up in line (--prepare inline): the load starts at once,
# so a measuring window opened a moment later sees it whole (preparing the 20,000 identities
# ahead takes the generator about 8 s under ASan, a window of 20 s then saw load for half of it
# and the rate looked a quarter low).
closed_loop() {
    "$LOADGEN" gen --pki "$DEMO/pki" --devices $(($1 + 19999)) >/dev/null 2>&1
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT_A" --endpoint "coaps+tcp://127.0.0.1:$PORT_B" \
        --pki "$DEMO/pki" --ca "$DEMO/pki/dps-root.pem" --first "$1" --devices 20000 \
        --concurrency "$2" --duration "$3" --threads 1 --timeout 20 \
        --max-attempts 1 --prepare inline >"$WORK/loadgen.out" 2>&1 &
    LOAD_PID=$!
    CLUSTER_PIDS+=("$LOAD_PID")
}
