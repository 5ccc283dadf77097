#!/usr/bin/env bash
# The second README command: install dependencies, build with AddressSanitizer
# and UndefinedBehaviorSanitizer, and run the whole suite (unit tests,
# integration tests against real dpsd processes on loopback, format check).
# The last line counts individual test cases: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh || exit 1

BUILD=build-test
if [ ! -d "$BUILD" ]; then
    meson setup "$BUILD" -Db_sanitize=address,undefined -Db_lundef=false || exit 1
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

junit=$BUILD/meson-logs/testlog.junit.xml
if [ -f "$junit" ]; then
    total=$(grep -o '<testcase ' "$junit" | wc -l)
    failed=$(grep -oE '<(failure|error)[ />]' "$junit" | wc -l)
    skipped=$(grep -oE '<skipped[ />]' "$junit" | wc -l)
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
