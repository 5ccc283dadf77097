#!/usr/bin/env bash
# The same device flow through the io_uring and the epoll backend, with one
# shard and with two (two SO_REUSEPORT listeners on one port).
. "$(dirname "$0")/lib.sh"

plan 8
DEMO=$WORK/demo
first=1
for backend in io_uring epoll; do
    for shards in 1 2; do
        PORT=$(free_port)
        : >"$DEMO/dpsd.log" 2>/dev/null || true
        if ! start_dpsd "$DEMO" "$PORT" --shards "$shards" --io-backend "$backend"; then
            not_ok "$backend with $shards shard(s): dpsd starts"
            not_ok "$backend with $shards shard(s): devices provision"
            continue
        fi
        running=$(grep -c "msg=\"shard started\".*backend=$backend" "$DEMO/dpsd.log")
        if [ "$running" = "$shards" ]; then
            ok "$backend with $shards shard(s): every shard runs the $backend backend"
        else
            not_ok "$backend with $shards shard(s): every shard runs the $backend backend"
            grep 'shard started' "$DEMO/dpsd.log" | sed 's/^/# /'
        fi
        check "$backend with $shards shard(s): 6 devices provision" \
            "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$DEMO/pki" \
            --devices 6 --first "$first"
        first=$((first + 6))
        stop_dpsd || echo "# dpsd exit status $?"
    done
done
finish
