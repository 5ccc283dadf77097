#!/usr/bin/env bash
# The floors under the performance targets' ratios: what the cryptography the
# protocol requires costs, in instructions, against the handshakes and the
# provisioning counted by perf/instructions.sh (which calls it).
#
#   perf/floors.sh BUILD provisioning=N dpsd_handshake=N plain=N bare=N bare_verify=N generator=N
#
# The figures are instructions: per provisioning (server), per dpsd handshake
# (attestation included), per server handshake of bench-handshake's plain,
# bare and bare_verify variants, per provisioning of the generator.
#
# It counts each primitive of perf/bench-primitives under callgrind
# (--toggle-collect on bench_primitive_*, each function's inclusive cost,
# (Ir(12 each) - Ir(2 each)) / 10), then prints each floor with its
# arithmetic, the measured ratio and the target next to it:
#
#   handshake crypto   the server's share of an ECDHE-ECDSA mutual-TLS 1.2
#                      handshake: ECDHE key generation and derivation, the
#                      ServerKeyExchange signature, the verification of the
#                      client's CertificateVerify.
#   dpsd handshake / bare >= (bare + the leaf's verification) / bare: a
#                      first-time device's chain is one ECDSA verification
#                      (the group's first CA is a partial-chain anchor).
#   provisioning / two bare >= (2 bare + leaf verification + CSR verification
#                      + certificate signature + token signature) / 2 bare:
#                      the second connection's leaf is a verified-leaf cache
#                      hit; the CSR's self-signature (csr.c) and the two
#                      signatures of the signer (issuer.c, jwt.c) are the rest
#                      (dataplane/dps_steps.c).
#   generator / server >= the device side's required crypto / the server's:
#                      per handshake, the ServerKeyExchange verification, ECDHE
#                      key generation and derivation, the CertificateVerify
#                      signature; per provisioning, the CSR's key and its
#                      signature. The server certificate's verification is left
#                      out (the generator verifies it once per thread). Against
#                      the server's measured instructions and against its floor.
#   instructions per provisioning >= required crypto + 2 x libssl's own work,
#                      libssl's own work being a handshake (plain OpenSSL or
#                      tls.c bare, the smaller) less its crypto; against the
#                      target (13 M with OpenSSL 3.0, 8 M with 3.5).
#
# The primitives' CPU per operation (a native run, 500 of each) comes first,
# with the load average: those move with the machine, the counts do not.
source "$(dirname "$0")/lib.sh"
[ $# -ge 1 ] || {
    echo "usage: perf/floors.sh BUILD provisioning=N dpsd_handshake=N plain=N bare=N bare_verify=N generator=N" >&2
    exit 2
}
BUILD=$1
shift
declare -A measured
for figure in "$@"; do
    measured[${figure%%=*}]=${figure#*=}
done
for name in provisioning dpsd_handshake plain bare bare_verify generator; do
    [[ ${measured[$name]:-} =~ ^[0-9]+$ ]] || {
        echo "perf/floors.sh: $name=N (instructions) is missing" >&2
        exit 2
    }
done
perf_build "$BUILD" perf/bench-primitives
WORK=$(mktemp -d /tmp/dps-floors.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

"$BUILD/perf/bench-primitives" "$WORK/pki" --count 500 >"$WORK/cpu.txt"
echo "primitives, CPU per operation (bench-primitives --count 500, load average $(cut -d' ' -f1-3 /proc/loadavg)):"
grep '_us=' "$WORK/cpu.txt" | sed 's/^/  /'

# count N: bench-primitives under callgrind, N of each (after its warm-up), collecting inside
# bench_primitive_* only.
count() {
    valgrind --tool=callgrind --callgrind-out-file="$WORK/primitives-$1.out" --collect-atstart=no \
        --toggle-collect='bench_primitive_*' "$BUILD/perf/bench-primitives" "$WORK/pki" --count "$1" \
        >"$WORK/primitives-$1.log" 2>&1 ||
        { echo "bench-primitives under callgrind failed:" >&2; tail -3 "$WORK/primitives-$1.log" >&2; exit 1; }
}

# inclusive FILE: "name instructions" for each bench_primitive_* function of a callgrind output.
inclusive() {
    callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null | awk '
        match($0, /:bench_primitive_[a-z0-9_]+/) {
            name = substr($0, RSTART + 17, RLENGTH - 17)
            value = $1
            gsub(",", "", value)
            print name, value
        }'
}

count 2
count 12
inclusive "$WORK/primitives-2.out" >"$WORK/few"
inclusive "$WORK/primitives-12.out" >"$WORK/many"
version=$(sed -n 's/^openssl_version=//p' "$WORK/cpu.txt")

awk -v version="$version" -v provisioning="${measured[provisioning]}" \
    -v dpsd="${measured[dpsd_handshake]}" -v plain="${measured[plain]}" -v bare="${measured[bare]}" \
    -v bare_verify="${measured[bare_verify]}" -v generator="${measured[generator]}" '
    FILENAME == ARGV[1] { few[$1] = $2; next }
    { per[$1] = ($2 - few[$1]) / 10 }
    function m(x) { return sprintf("%.2f M", x / 1e6) }
    END {
        split("ecdsa_sign ecdsa_verify ecdh_keygen ecdh_derive sha256 d2i_x509", names, " ")
        for (i = 1; i <= 6; i++) {
            if (!(names[i] in per)) {
                print "perf/floors.sh: no count for bench_primitive_" names[i] > "/dev/stderr"
                exit 1
            }
        }
        sign = per["ecdsa_sign"]; verify = per["ecdsa_verify"]
        keygen = per["ecdh_keygen"]; derive = per["ecdh_derive"]
        target = version ~ /^3\.0\./ ? 13e6 : 8e6

        print "primitives, instructions per operation (callgrind, (Ir(12) - Ir(2)) / 10):"
        for (i = 1; i <= 6; i++)
            printf "  instructions_%s=%.3fM\n", names[i], per[names[i]] / 1e6

        hs = keygen + derive + sign + verify
        printf "handshake_crypto=%s = ECDHE keygen %s + derive %s + ServerKeyExchange signature %s + CertificateVerify verification %s\n", \
            m(hs), m(keygen), m(derive), m(sign), m(verify)
        own = (plain < bare ? plain : bare) - hs
        printf "libssl_own_work=%s = min(plain %s, bare %s) - handshake crypto %s (decoding the device'"'"'s two certificates alone: 2 x %s)\n", \
            m(own), m(plain), m(bare), m(hs), m(per["d2i_x509"])

        floor = (bare + verify) / bare
        printf "floor_dpsd_handshake_to_bare=%.3f = (bare %s + leaf verification %s) / bare %s; target 1.10, measured %.3f (against tls.c with standard verification %s: %.3f)\n", \
            floor, m(bare), m(verify), m(bare), dpsd / bare, m(bare_verify), dpsd / bare_verify

        extra = 2 * verify + 2 * sign
        floor = (2 * bare + extra) / (2 * bare)
        printf "floor_provisioning_to_two_bare=%.3f = (2 x bare %s + leaf verification %s + CSR verification %s + certificate signature %s + token signature %s) / (2 x bare %s); target 1.15, measured %.3f (against two tls.c handshakes with standard verification: %.3f)\n", \
            floor, m(bare), m(verify), m(verify), m(sign), m(sign), m(bare), \
            provisioning / (2 * bare), provisioning / (2 * bare_verify)

        client = 2 * (verify + keygen + derive + sign) + keygen + sign
        server_floor = 2 * bare + extra
        printf "floor_generator_to_server=%.3f = device crypto %s (2 x (ServerKeyExchange verification %s + ECDHE keygen %s + derive %s + CertificateVerify signature %s) + CSR key %s + CSR signature %s) / server %s as measured; %.3f against the server at its floor %s; target 0.5, measured %.3f (generator %s)\n", \
            client / provisioning, m(client), m(verify), m(keygen), m(derive), m(sign), m(keygen), m(sign), \
            m(provisioning), client / server_floor, m(server_floor), generator / provisioning, m(generator)

        crypto = 2 * hs + extra
        floor = crypto + 2 * own
        printf "floor_instructions_per_provisioning=%s = required crypto %s (2 x handshake crypto %s + leaf and CSR verifications 2 x %s + certificate and token signatures 2 x %s) + 2 x libssl'"'"'s own work %s; target %s (OpenSSL %s), measured %s\n", \
            m(floor), m(crypto), m(hs), m(verify), m(sign), m(own), m(target), version, m(provisioning)
    }' "$WORK/few" "$WORK/many"
