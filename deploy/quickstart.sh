#!/usr/bin/env bash
# The first README command: install dependencies, build, and run dpsd on its
# embedded default (demo PKI and configuration in ./demo, RocksDB in
# ./demo/data, no Redis). Extra arguments go to dpsd, e.g. --listen 127.0.0.1:15684.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
if [ ! -d build ]; then
    meson setup build --buildtype=release
fi
ninja -C build
exec build/dpsd --demo demo "$@"
