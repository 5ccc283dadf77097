#!/usr/bin/env bash
# The second README command: install dependencies, build with AddressSanitizer
# and UndefinedBehaviorSanitizer on the system OpenSSL, and run the whole suite
# (unit tests, integration tests against real dpsd processes on loopback,
# format check, fuzz targets), then a smoke run on the bundled OpenSSL 3.5.
# The last line counts individual test cases: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh || exit 1

BUILD=build-test
if [ ! -d "$BUILD" ]; then
    meson setup "$BUILD" -Dopenssl=system -Db_sanitize=address,undefined -Db_lundef=false || exit 1
fi
ninja -C "$BUILD" || exit 1

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
meson test -C "$BUILD" --print-errorlogs --num-processes 2 "$@"
status=$?

# Every parser's fuzz target, for a bounded time (clang + libFuzzer, its own build dir).
fuzz_log=$BUILD/meson-logs/fuzz.tap
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
if [ "$FUZZ_SECONDS" != 0 ]; then
    tests/fuzz/run.sh "$FUZZ_SECONDS" | tee "$fuzz_log" || status=1
fi

# A smoke run on the bundled OpenSSL 3.5 (-Dopenssl=bundled): a release build
# without sanitizers, the unit tests, a few integration tests and the check
# that no system libssl/libcrypto is loaded. OpenSSL itself is built once into
# a cache outside the clone (deploy/build-openssl.sh); when its source cannot
# be fetched this part fails, loudly. BUNDLED_SMOKE=0 leaves it out on purpose.
SMOKE=build-bundled
SMOKE_INTEGRATION=(provision renewal interop api lifecycle dpsctl openssl allocator)
smoke_junits=()
smoke_broken=0
if [ "${BUNDLED_SMOKE:-1}" = 0 ]; then
    echo "bundled OpenSSL smoke run left out (BUNDLED_SMOKE=0)"
elif ! openssl_prefix=$(deploy/build-openssl.sh); then
    echo "FAILED: the bundled OpenSSL could not be fetched or built (above), so the smoke run on it did not run"
    smoke_broken=1
    status=1
else
    echo "bundled OpenSSL smoke run: $openssl_prefix"
    if { [ -d "$SMOKE" ] || meson setup "$SMOKE" --buildtype=release -Dopenssl=bundled; } &&
        ninja -C "$SMOKE"; then
        meson test -C "$SMOKE" --print-errorlogs --num-processes 2 --suite unit --logbase smoke-unit ||
            status=1
        meson test -C "$SMOKE" --print-errorlogs --logbase smoke-integration \
            "${SMOKE_INTEGRATION[@]}" || status=1
        smoke_junits=("$SMOKE/meson-logs/smoke-unit.junit.xml" "$SMOKE/meson-logs/smoke-integration.junit.xml")
    else
        echo "FAILED: the bundled OpenSSL build of dps did not build (above)"
        smoke_broken=1
        status=1
    fi
fi

junit=$BUILD/meson-logs/testlog.junit.xml
if [ -f "$junit" ]; then
    total=$(cat "$junit" "${smoke_junits[@]}" | grep -o '<testcase ' | wc -l)
    failed=$(cat "$junit" "${smoke_junits[@]}" | grep -oE '<(failure|error)[ />]' | wc -l)
    skipped=$(cat "$junit" "${smoke_junits[@]}" | grep -oE '<skipped[ />]' | wc -l)
    total=$((total + smoke_broken))
    failed=$((failed + smoke_broken))
    if [ "$FUZZ_SECONDS" != 0 ]; then
        fuzz_cases=$(grep -cE '^(not )?ok ' "$fuzz_log" 2>/dev/null || true)
        if [ "${fuzz_cases:-0}" = 0 ]; then
            echo "the fuzz targets did not build or run (see above)"
            total=$((total + 1))
            failed=$((failed + 1))
        else
            total=$((total + fuzz_cases))
            failed=$((failed + $(grep -c '^not ok ' "$fuzz_log")))
        fi
    fi
    passed=$((total - failed - skipped))
    if [ "$skipped" -gt 0 ]; then
        echo "$passed passed, $failed failed, $skipped skipped"
    else
        echo "$passed passed, $failed failed"
    fi
else
    echo "0 passed, 1 failed"
    status=1
fi
exit $status
