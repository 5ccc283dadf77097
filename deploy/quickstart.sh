#!/usr/bin/env bash
# The first README command: install dependencies, build, and run dpsd on its
# embedded default (demo PKI and configuration in ./demo, RocksDB in
# ./demo/data, no Redis). Extra arguments go to dpsd, e.g. --listen 127.0.0.1:15684.
#
# It builds on the bundled OpenSSL 3.5 (about half the handshake cost of the
# system 3.0, README "OpenSSL") when its source can be fetched, built once into
# a cache by deploy/build-openssl.sh, and on the system OpenSSL otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh

# build-openssl.sh's progress lines pass through; its error, if any, becomes
# part of the one line that says the system OpenSSL is used instead.
prefix_file=$(mktemp)
reason_file=$(mktemp)
set +e
deploy/build-openssl.sh 2>&1 >"$prefix_file" | while IFS= read -r line; do
    case $line in
    "build-openssl: error: "*) printf '%s\n' "${line#build-openssl: error: }" >"$reason_file" ;;
    "build-openssl: "*) printf '%s\n' "$line" ;;
    esac
done
built=${PIPESTATUS[0]}
set -e
if [ "$built" = 0 ]; then
    openssl=bundled
    prefix=$(cat "$prefix_file")
    echo "quickstart: building on the bundled $("$prefix/bin/openssl" version | cut -d" " -f1-2) from $prefix"
else
    openssl=system
    echo "quickstart: no bundled OpenSSL ($(cat "$reason_file")): building on the system $(openssl version | cut -d" " -f1-2) instead"
fi
rm -f "$prefix_file" "$reason_file"
if [ ! -d build ]; then
    meson setup build --buildtype=release -Dopenssl="$openssl"
else
    meson configure build -Dopenssl="$openssl"
fi
ninja -C build
exec build/dpsd --demo demo "$@"
