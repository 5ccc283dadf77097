#!/usr/bin/env bash
# Installs what building, running and testing dps needs on Debian 12. Skips
# apt entirely when everything is already there. Run as root (or with sudo).
set -euo pipefail

PACKAGES=(
    build-essential meson ninja-build pkg-config clang-format clang libclang-rt-14-dev
    libssl-dev openssl liburing-dev librocksdb-dev libcbor-dev libyaml-dev libjansson-dev
    libcmocka-dev libcoap3-bin jq iproute2 libxml2-utils libmicrohttpd-dev libgnutls28-dev python3 procps libcurl4-openssl-dev curl gnuplot-nox
    haproxy redis-server redis-sentinel libhiredis-dev
    # The bundled OpenSSL (deploy/build-openssl.sh): apt-get source through a
    # private apt, checked against Debian's keyring; dpkg-source and Debian's
    # patches; perl and make build it.
    dpkg-dev debian-archive-keyring patch xz-utils perl make
)

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO=sudo
fi
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
