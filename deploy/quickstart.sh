#!/usr/bin/env bash
# The first README command: install dependencies, build, and run dpsd on its
# embedded default (demo PKI and configuration in ./demo, RocksDB in
# ./demo/data, no Redis). Extra arguments go to dpsd, e.g. --listen 127.0.0.1:15684.
#
# It builds on the bundled OpenSSL 3.5 (about half the handshake cost of the
# system 3.0, README "OpenSSL") when its source can be fetched, built once into
# a cache by deploy/build-openssl.sh, and on the system OpenSSL otherwise
# (deploy/build-dps.sh, shared with deploy/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh

. deploy/build-dps.sh
build_dps build quickstart
exec build/dpsd --demo demo "$@"
