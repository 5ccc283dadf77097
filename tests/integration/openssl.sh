#!/usr/bin/env bash
# Which OpenSSL runs, and that it is the only one: dpsd --version, the
# status document, /metrics and the ready log line name the library the
# process runs (the one the build was configured with, -Dopenssl=system or
# bundled); a bundled dpsd provisions devices (several certificates from one
# signer, the 3.5 crash) and neither it, dps-loadgen nor the benchmarks map
# or load a libssl/libcrypto shared object; dpsctl keeps the static copy
# private beside the system libssl its libcurl loads, and still speaks HTTPS.
. "$(dirname "$0")/lib.sh"

KIND=${DPS_OPENSSL:?run through meson test}
VERSION=${DPS_OPENSSL_VERSION:?run through meson test}
PATTERN="OpenSSL ${VERSION//./\\.} "

plan 12
expect_output "dpsd --version names the OpenSSL it runs ($KIND, $VERSION)" "^$PATTERN" \
    "$DPSD" --version

start_demo 1 "dpsd starts on its demo PKI"

check "three devices provision: one signer issues certificate after certificate" \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$DEMO/pki" --devices 3 --out "$WORK/out"

TOKEN=$(cat "$DEMO/pki/operator.token")
expect_output "/api/v1/status names the OpenSSL" "\"openssl\": *\"$PATTERN" \
    curl -sS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_PORT/api/v1/status"
expect_output "/metrics has dps_build_info with the OpenSSL" "^dps_build_info\{openssl=\"$PATTERN[^\"]*\",allocator=\"[^\"]+\"\} 1$" \
    curl -sS "http://127.0.0.1:$API_PORT/metrics"
expect_output "the ready log line names the OpenSSL" "msg=\"ready\".* openssl=\"$PATTERN" \
    cat "$DEMO/dpsd.log"

# Shared objects named libssl or libcrypto (not libk5crypto, libgcrypt, ...).
SHARED_OPENSSL='/lib(ssl|crypto)\.so'
maps_openssl() { grep -E "$SHARED_OPENSSL" "/proc/$DPSD_PID/maps" | awk '{print $6}' | sort -u; }
MAPPED=$(maps_openssl)
if [ "$KIND" = bundled ]; then
    if [ -z "$MAPPED" ]; then ok "dpsd maps no libssl/libcrypto shared object"; else
        not_ok "dpsd maps no libssl/libcrypto shared object"
        printf '%s\n' "$MAPPED" | sed 's/^/# /'
    fi
else
    if [ -n "$MAPPED" ]; then ok "dpsd maps the system libcrypto (the check sees it)"; else
        not_ok "dpsd maps the system libcrypto (the check sees it)"
    fi
fi

# Every object a run loads, dlopen included, as the dynamic loader reports it.
loaded_openssl() {
    LD_DEBUG=libs "$@" 2>&1 >/dev/null | grep -E "calling init: .*$SHARED_OPENSSL" | awk '{print $NF}' | sort -u
}
expect_loads() {
    local name=$1 loaded
    shift
    loaded=$(loaded_openssl "$@")
    if [ "$KIND" = bundled ] && [ -z "$loaded" ]; then
        ok "$name loads no libssl/libcrypto shared object"
    elif [ "$KIND" = system ] && [ -n "$loaded" ]; then
        ok "$name loads the system libcrypto (the check sees it)"
    else
        not_ok "$name: $KIND build, loaded: ${loaded:-nothing}"
    fi
}
expect_loads "dps-loadgen" \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$DEMO/pki" --devices 1 --out "$WORK/out2"
expect_loads "every benchmark (bench-issue, bench-csr, bench-handshake)" sh -c "
    '$BUILD/perf/bench-issue' --count 5 && '$BUILD/perf/bench-csr' --count 5 &&
    '$BUILD/perf/bench-handshake' --pki '$DEMO/pki' --count 2"

# dpsctl's libcurl loads the system libssl, which must bind to the system
# libcrypto, not to the static copy linked into dpsctl beside it.
EXPORTED=$(nm -D --defined-only "$DPSCTL" 2>/dev/null | grep -cE ' (SSL|EVP|X509|OPENSSL|CRYPTO)_')
if [ "$EXPORTED" = 0 ]; then ok "dpsctl exports no OpenSSL symbol"; else
    not_ok "dpsctl exports no OpenSSL symbol"
    echo "# $EXPORTED OpenSSL symbols exported"
fi
stop_dpsd
sed -i 's|^api:$|api:\n  certificate: pki/dps-server.pem\n  key: pki/dps-server.key|' "$DEMO/dpsd.yaml"
start_dpsd "$DEMO" "$PORT" --shards 1 || { not_ok "dpsd restarts with an HTTPS API"; finish; }
expect_output "dpsctl status over HTTPS (libcurl's TLS beside our OpenSSL) names the daemon's OpenSSL" \
    "\"openssl\": *\"$PATTERN" \
    env DPS_TOKEN_FILE="$DEMO/pki/operator.token" "$DPSCTL" --api "https://127.0.0.1:$API_PORT" \
    --cacert "$DEMO/pki/dps-root.pem" status --json

check_stop "dpsd stops cleanly on SIGTERM"
finish
