# build-dps.sh: sourced by deploy/quickstart.sh and deploy/install.sh, the one copy of how they
# build dps (README "OpenSSL: system or bundled"): on the bundled OpenSSL 3.5 (about half the
# handshake cost of the system 3.0) when deploy/build-openssl.sh can fetch and build it, once,
# into its cache; on the system OpenSSL otherwise, with one line saying why.
#
#   build_dps BUILD NAME    a release build in BUILD (set up, or reconfigured to the OpenSSL
#                           chosen), built; NAME starts the line that says which OpenSSL.
# Run from the source tree's root, under set -euo pipefail.
build_dps() {
    local build=$1 name=$2 prefix_file reason_file built openssl prefix line
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
        echo "$name: building on the bundled $("$prefix/bin/openssl" version | cut -d" " -f1-2) from $prefix"
    else
        openssl=system
        echo "$name: no bundled OpenSSL ($(cat "$reason_file")): building on the system $(openssl version | cut -d" " -f1-2) instead"
    fi
    rm -f "$prefix_file" "$reason_file"
    if [ ! -d "$build" ]; then
        meson setup "$build" --buildtype=release -Dopenssl="$openssl"
    else
        meson configure "$build" -Dopenssl="$openssl"
    fi
    ninja -C "$build"
}
