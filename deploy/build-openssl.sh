#!/usr/bin/env bash
# Builds the bundled OpenSSL that `meson setup -Dopenssl=bundled` links, once,
# into a cache outside the build folder, and prints its prefix (the only line
# on stdout; progress goes to stderr). A later call finds it there and returns
# at once, so rebuilds and a second CI run on the same machine reuse it.
#
# The source is Debian 13's openssl source package (upstream tarball plus
# Debian's patches, security fixes included), fetched with `apt-get source`
# through a private apt configuration in a temporary folder: its own
# sources.list with deb-src lines for trixie, its own state, cache and lists,
# and Debian's archive keyring from debian-archive-keyring as the only trust,
# so apt checks the signature of the index and the hash of every file. The
# machine's own apt configuration is read for the mirror and proxy it uses,
# never changed. The build is static (no-shared no-tests no-module no-docs), so
# nothing in dpsd loads a libssl.so or libcrypto.so.
#
# The bundled OpenSSL is ours to keep patched. To bump the pinned version:
#   deploy/build-openssl.sh --candidates   # versions served, and which download completely
# then set OPENSSL_DEBIAN_VERSION, OPENSSL_UPSTREAM_VERSION and the two SHA-256
# below to the one chosen, run this script, rebuild (ninja reconfigures), and
# run the suite (tests/run.sh builds and tests the bundled build too).
#
# Environment:
#   DPS_OPENSSL_CACHE     the folder that holds openssl-VERSION (default:
#                         /var/cache/dps as root, else $XDG_CACHE_HOME/dps or ~/.cache/dps)
#   DPS_DEBIAN_MIRROR     Debian archive URL (default: the one apt here uses)
#   DPS_DEBIAN_SECURITY_MIRROR  Debian security archive URL (likewise)
#   DPS_DEBIAN_KEYRING    keyring apt checks signatures with
#                         (default /usr/share/keyrings/debian-archive-keyring.gpg)
set -euo pipefail

OPENSSL_DEBIAN_VERSION=3.5.7-1~deb13u2
OPENSSL_UPSTREAM_VERSION=3.5.7
OPENSSL_ORIG_SHA256=a8c0d28a529ca480f9f36cf5792e2cd21984552a3c8e4aa11a24aa31aeac98e8
OPENSSL_DEBIAN_SHA256=593a47654ead460a3b609503733f80bef552ff0802799d3b47784faacc50809f
OPENSSL_CONFIGURE_OPTIONS=(no-shared no-tests no-module no-docs)
DEBIAN_CODENAME=trixie

# Progress lines, and one error line when it stops (deploy/quickstart.sh shows them).
log() { echo "build-openssl: $*" >&2; }
die() {
    echo "build-openssl: error: $*" >&2
    exit 1
}

usage() {
    cat >&2 <<EOF
usage: deploy/build-openssl.sh               build once (cached) and print the prefix
       deploy/build-openssl.sh --prefix      print the prefix, build nothing
       deploy/build-openssl.sh --candidates  list the openssl source versions Debian serves
                                             for $DEBIAN_CODENAME and whether each downloads
                                             completely (to bump the pin)
EOF
}

default_cache() {
    if [ "$(id -u)" = 0 ]; then
        echo /var/cache/dps
    else
        echo "${XDG_CACHE_HOME:-$HOME/.cache}/dps"
    fi
}

CACHE=${DPS_OPENSSL_CACHE:-$(default_cache)}
# A path without the tilde Debian versions carry.
PREFIX=$CACHE/openssl-${OPENSSL_DEBIAN_VERSION//\~/-}
STAMP=$PREFIX/.dps-openssl
STAMP_TEXT="$OPENSSL_DEBIAN_VERSION $OPENSSL_ORIG_SHA256 $OPENSSL_DEBIAN_SHA256 ${OPENSSL_CONFIGURE_OPTIONS[*]}"
KEYRING=${DPS_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}

is_built() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_TEXT" ] &&
        [ -f "$PREFIX/lib/libssl.a" ] && [ -f "$PREFIX/lib/libcrypto.a" ]
}

# The archive URLs this machine's apt already uses, so no mirror is named here.
system_repository() {
    local release=$1
    apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
        awk -v release="$release" '$2 == release { print $1; exit }'
}

# A private apt: its own configuration, sources, state, cache and lists
# under $1; only Debian's archive keyring is trusted. Of the machine's apt
# configuration it takes the mirror and the proxy, and writes nothing.
private_apt() {
    local root=$1 codename mirror security http_proxy_setting=""
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    mirror=${DPS_DEBIAN_MIRROR:-$(system_repository "$codename")}
    security=${DPS_DEBIAN_SECURITY_MIRROR:-$(system_repository "$codename-security")}
    [ -n "$mirror" ] || die "no Debian archive in this machine's apt sources: set DPS_DEBIAN_MIRROR"
    [ -n "$security" ] || security=${mirror%/}-security
    [ -r "$KEYRING" ] || die "$KEYRING missing: install debian-archive-keyring"
    mkdir -p "$root/etc/apt.conf.d" "$root/etc/sources.list.d" "$root/etc/preferences.d" \
        "$root/etc/trusted.gpg.d" \
        "$root/state/lists/partial" "$root/cache/archives/partial"
    : >"$root/state/status"
    cat >"$root/etc/sources.list" <<EOF
deb-src [signed-by=$KEYRING] ${mirror%/} $DEBIAN_CODENAME main
deb-src [signed-by=$KEYRING] ${mirror%/} $DEBIAN_CODENAME-updates main
deb-src [signed-by=$KEYRING] ${security%/} $DEBIAN_CODENAME-security main
EOF
    cat >"$root/apt.conf" <<EOF
Dir::Etc "$root/etc";
Dir::Etc::SourceList "$root/etc/sources.list";
Dir::Etc::SourceParts "$root/etc/sources.list.d";
Dir::Etc::Preferences "$root/etc/preferences";
Dir::Etc::PreferencesParts "$root/etc/preferences.d";
Dir::Etc::Trusted "$KEYRING";
Dir::Etc::TrustedParts "$root/etc/trusted.gpg.d";
Dir::State "$root/state";
Dir::State::Lists "$root/state/lists";
Dir::State::status "$root/state/status";
Dir::Cache "$root/cache";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
EOF
    eval "$(apt-config shell http_proxy_setting Acquire::http::Proxy)"
    if [ -n "$http_proxy_setting" ]; then
        echo "Acquire::http::Proxy \"$http_proxy_setting\";" >>"$root/apt.conf"
    fi
    if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then
        chown -R _apt "$root/state/lists" "$root/cache"
    fi
    # An index that fails is only a warning to apt: what matters is whether openssl is listed.
    APT_CONFIG=$root/apt.conf apt-get update -q >>"$LOG" 2>&1 || true
    if [ -z "$(APT_CONFIG=$root/apt.conf apt-cache showsrc openssl 2>/dev/null | awk '/^Version:/')" ]; then
        { grep -E '^(E|W):' "$LOG" || true; } | tail -n 3 >&2
        die "cannot reach Debian's archive for the OpenSSL source (no network?), log: $LOG"
    fi
}

apt_private() {
    APT_CONFIG=$APT_ROOT/apt.conf "$@"
}

# Downloads openssl=$1 into $2 (the sandboxed _apt user writes it when root). 0: every file came.
download_source() {
    local version=$1 folder=$2
    mkdir -p "$folder"
    if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then
        chown _apt "$folder"
    fi
    (cd "$folder" && apt_private apt-get source --download-only -q "openssl=$version") >>"$LOG" 2>&1
}

list_candidates() {
    local versions version folder orig debian
    versions=$(apt_private apt-cache showsrc openssl | awk '/^Version:/ { print $2 }' | sort -Vr -u)
    [ -n "$versions" ] || die "no openssl source package listed for $DEBIAN_CODENAME"
    for version in $versions; do
        folder=$WORK/candidate-${version//\~/-}
        if download_source "$version" "$folder" 2>/dev/null; then
            orig=$(sha256sum "$folder"/openssl_*.orig.tar.gz | cut -d' ' -f1)
            debian=$(sha256sum "$folder"/openssl_*.debian.tar.* | cut -d' ' -f1)
            echo "$version complete: orig SHA-256 $orig, debian SHA-256 $debian"
        else
            echo "$version incomplete (some files are not served)"
        fi
    done
}

check_sha256() {
    local file=$1 expected=$2 actual
    actual=$(sha256sum "$file" | cut -d' ' -f1)
    [ "$actual" = "$expected" ] ||
        die "$(basename "$file"): SHA-256 $actual, pinned $expected: refusing to build"
}

build() {
    local download=$WORK/download source stage started
    log "fetching the openssl $OPENSSL_DEBIAN_VERSION source package ($DEBIAN_CODENAME)"
    private_apt "$APT_ROOT"
    if ! download_source "$OPENSSL_DEBIAN_VERSION" "$download"; then
        { grep -E '^E:' "$LOG" || true; } | tail -n 5 >&2
        log "served versions: $(apt_private apt-cache showsrc openssl | awk '/^Version:/ { printf "%s ", $2 }')"
        die "cannot download openssl $OPENSSL_DEBIAN_VERSION completely (--candidates helps bump the pin), log: $LOG"
    fi
    check_sha256 "$download/openssl_$OPENSSL_UPSTREAM_VERSION.orig.tar.gz" "$OPENSSL_ORIG_SHA256"
    check_sha256 "$download/openssl_$OPENSSL_DEBIAN_VERSION.debian.tar.xz" "$OPENSSL_DEBIAN_SHA256"
    source=$WORK/openssl-$OPENSSL_UPSTREAM_VERSION
    # Unpacks the tarball and applies Debian's patches; apt has checked the files already.
    dpkg-source -x "$download/openssl_$OPENSSL_DEBIAN_VERSION.dsc" "$source" >>"$LOG" 2>&1 ||
        die "dpkg-source could not unpack the source package, log: $LOG"
    started=$(date +%s)
    log "building OpenSSL $OPENSSL_UPSTREAM_VERSION (static, about 5 to 7 minutes on 2 shared cores); log in $LOG"
    stage=$WORK/stage
    if ! (cd "$source" &&
        ./Configure --prefix="$PREFIX" --libdir=lib --openssldir="$PREFIX/ssl" \
            "${OPENSSL_CONFIGURE_OPTIONS[@]}" &&
        make -j"$(nproc)" &&
        make install_sw install_ssldirs DESTDIR="$stage") >>"$LOG" 2>&1; then
        tail -n 30 "$LOG" >&2
        die "the OpenSSL build failed, log: $LOG"
    fi
    echo "$STAMP_TEXT" >"$stage$PREFIX/.dps-openssl"
    rm -rf "$PREFIX"
    mv "$stage$PREFIX" "$PREFIX"
    log "built in $(($(date +%s) - started)) s: $("$PREFIX/bin/openssl" version)"
}

mode=build
case "${1:-}" in
"") ;;
--prefix) mode=prefix ;;
--candidates) mode=candidates ;;
-h | --help)
    usage
    exit 0
    ;;
*)
    usage
    exit 2
    ;;
esac

if [ "$mode" = prefix ]; then
    echo "$PREFIX"
    exit 0
fi
if [ "$mode" = build ] && is_built; then
    echo "$PREFIX"
    exit 0
fi

for tool in apt-get dpkg-source perl make cc; do
    command -v "$tool" >/dev/null || die "$tool missing: run deploy/install-deps.sh"
done
mkdir -p "$CACHE"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dps-openssl.XXXXXX")
chmod 755 "$WORK"
APT_ROOT=$WORK/apt
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT

if [ "$mode" = candidates ]; then
    LOG=$WORK/apt.log
    private_apt "$APT_ROOT"
    list_candidates
    exit 0
fi

# One build at a time per cache (two clones on one machine, or meson and a script).
exec 9>"$CACHE/.openssl.lock"
flock 9
if ! is_built; then
    LOG=$CACHE/openssl-${OPENSSL_DEBIAN_VERSION//\~/-}.log
    : >"$LOG"
    build
fi
echo "$PREFIX"
