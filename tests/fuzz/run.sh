#!/usr/bin/env bash
# Runs every libFuzzer target for a bounded time and prints TAP.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET]     (default 20)
#
# Builds the targets with clang (ASan + UBSan + libFuzzer) in their own build
# folder (FUZZ_BUILD_DIR, default build-fuzz at the repository root), then
# runs each one on a copy of its checked-in seed corpus, so new inputs the
# fuzzer finds never pile up in the repository. A crash, leak, sanitizer
# report or invariant violation fails the target; its reproducer is kept in
# the artifacts folder printed in the TAP diagnostics, to be added to
# tests/fuzz/corpus/<target>/ as a regression seed once fixed.
set -euo pipefail

seconds="${1:-20}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
targets=(
    fuzz_coap_tcp
    fuzz_cbor_requests
    fuzz_payload_json
    fuzz_csr
    fuzz_config
    fuzz_jwt
    fuzz_attestation
    fuzz_model_json
    fuzz_proxy
    fuzz_auth
    fuzz_import
    fuzz_import_config
    fuzz_jwks_remote
    fuzz_record_text
)

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" "$root" -Db_lundef=false >/dev/null
fi
if ! build_log=$(ninja -C "$build" "${targets[@]/#/tests/fuzz/}" 2>&1); then
    printf '%s\n' "$build_log" | tail -40 >&2
    echo "fuzz targets failed to build" >&2
    exit 1
fi

work="$(mktemp -d /tmp/dps-fuzz.XXXXXX)"
echo "1..${#targets[@]}"
failed=0
index=0
for target in "${targets[@]}"; do
    index=$((index + 1))
    corpus="$work/$target/corpus"
    artifacts="$work/$target/artifacts"
    mkdir -p "$corpus" "$artifacts"
    cp "$root/tests/fuzz/corpus/$target/"* "$corpus/"
    log="$work/$target/log"
    start=$(date +%s)
    # CoAP frames may be large (its regression seeds include a 64 KiB option);
    # the other targets take libFuzzer's default: the largest seed, at least 4 KiB.
    max_len=()
    if [ "$target" = fuzz_coap_tcp ]; then
        max_len=(-max_len=70000)
    fi
    if "$build/tests/fuzz/$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        "${max_len[@]}" -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" \
        >"$log" 2>&1; then
        ran=$(($(date +%s) - start))
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "ok $index - $target: ran $ran s, ${runs:-?} inputs, no crash"
    else
        failed=1
        echo "not ok $index - $target: crashed"
        grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$log" | head -n 10 | sed 's/^/# /'
        echo "# log: $log"
    fi
done
if [ "$failed" = 0 ]; then
    rm -rf "$work"
fi
exit "$failed"
