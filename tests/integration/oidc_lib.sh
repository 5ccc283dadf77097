# Sourced after lib.sh: the fake identity provider (tests/fake_oidc_provider.py)
# started, queried and stopped on loopback. One provider per test; it is killed
# when the test exits.
PROVIDER_PID=""
PROVIDER_PORT=""
PROVIDER=""

oidc_cleanup() {
    [ -n "$PROVIDER_PID" ] && kill "$PROVIDER_PID" 2>/dev/null
    cleanup
}
trap oidc_cleanup EXIT

# start_provider [PORT [CERT KEY]]: starts the fake on PORT (default: a free one), over HTTPS
# with CERT and KEY; sets $PROVIDER (its URL).
start_provider() {
    PROVIDER_PORT=${1:-$(free_port)}
    local tls=() scheme=http
    if [ -n "${2:-}" ]; then tls=(--tls-cert "$2" --tls-key "$3") scheme=https; fi
    rm -f "$WORK/provider.port"
    python3 "$SRC/tests/fake_oidc_provider.py" --port "$PROVIDER_PORT" "${tls[@]}" \
        --port-file "$WORK/provider.port" 2>>"$WORK/provider.log" &
    PROVIDER_PID=$!
    PROVIDER=$scheme://127.0.0.1:$PROVIDER_PORT
    for _ in $(seq 1 100); do
        [ -s "$WORK/provider.port" ] && return 0
        kill -0 "$PROVIDER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "# the fake provider did not start:"
    sed 's/^/# /' "$WORK/provider.log" | tail -10
    return 1
}

stop_provider() {
    [ -n "$PROVIDER_PID" ] && kill "$PROVIDER_PID" 2>/dev/null && wait "$PROVIDER_PID" 2>/dev/null
    PROVIDER_PID=""
}

# provider_token OWNER: a token the provider issues with its current key.
provider_token() { curl -sS -m 10 -k "$PROVIDER/_token?owner=$1"; }
# provider_rotate [keep]: a new current key; the old one stays published only with "keep".
provider_rotate() { curl -sS -m 10 -k -X POST "$PROVIDER/_rotate${1:+?keep=1}" >/dev/null; }
# provider_count discovery|jwks: how many such requests the provider served.
provider_count() { curl -sS -m 10 -k "$PROVIDER/_stats" | jq -r ".$1"; }
