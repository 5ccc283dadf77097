# Shared by the cluster tests (sourced after lib.sh): demo nodes on one PKI,
# each with its own store and log, started and stopped by name.

# start_node NAME PORT API_PORT [dpsd options]: a node named NAME on the demo PKI in $DEMO (or
# on NODE_CONFIG's configuration), two shards, its log $WORK/NAME.log; waits until a new "ready"
# line and PORT listens. Its pid in PID_<NAME>.
start_node() {
    local name=$1 port=$2 api=$3 log=$WORK/$1.log
    shift 3
    local readies
    readies=$(grep -c 'msg="ready"' "$log" 2>/dev/null)
    local source=(--demo "$DEMO")
    [ -z "${NODE_CONFIG:-}" ] || source=(--config "$NODE_CONFIG")
    "$DPSD" "${source[@]}" --listen "127.0.0.1:$port" --api-listen "127.0.0.1:$api" \
        --node "$name" --shards 2 "$@" >>"$log" 2>&1 &
    eval "PID_$name=$!"
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

# start_redis: a redis-server on 127.0.0.1:$REDIS_PORT without persistence, its pid in REDIS_PID,
# its log $WORK/redis.log; waits until it answers. stop_redis: SIGTERM and wait.
start_redis() {
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --logfile "$WORK/redis.log" </dev/null >/dev/null 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 1 100); do
        redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.1
    done
    return 1
}

stop_redis() {
    kill -TERM "$REDIS_PID" 2>/dev/null
    wait "$REDIS_PID" 2>/dev/null
    REDIS_PID=""
}
