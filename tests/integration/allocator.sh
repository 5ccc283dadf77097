#!/usr/bin/env bash
# Which malloc runs: dpsd --version, the status document, /metrics and the
# ready log line name the allocator the process runs, and it is the one the
# build was configured with (-Dallocator; AddressSanitizer's own in a
# sanitized build). The running dpsd's /proc/PID/maps holds that allocator's
# shared object and no other's, and dps-loadgen loads the same one. Started
# with another allocator preloaded, dpsd names that one: the name is read
# from the process, not from the build.
. "$(dirname "$0")/lib.sh"

KIND=${DPS_ALLOCATOR:?run through meson test}
SANITIZE=${DPS_SANITIZE:?run through meson test}

# Shared objects of the allocators -Dallocator offers besides glibc's.
ALLOCATORS='/lib(mimalloc|jemalloc|tcmalloc_minimal)\.so[.0-9]*$'
case $KIND in
glibc) NAME='glibc [0-9]+\.[0-9]+' OBJECT="" ;;
mimalloc) NAME='mimalloc [0-9]+\.[0-9]+\.[0-9]+' OBJECT=libmimalloc ;;
jemalloc) NAME='jemalloc [0-9]+\.[0-9]+\.[0-9]+' OBJECT=libjemalloc ;;
tcmalloc) NAME='tcmalloc [0-9]+\.[0-9]+' OBJECT=libtcmalloc_minimal ;;
*) echo "Bail out! unknown allocator $KIND"; exit 1 ;;
esac
case $SANITIZE in
*address*) NAME=AddressSanitizer ;;
esac

plan 9
expect_output "dpsd --version names the allocator it runs ($NAME)" "^allocator $NAME$" "$DPSD" --version

start_demo 1 "dpsd starts on its demo PKI"
expect_output "/api/v1/status names the allocator" "\"allocator\": *\"$NAME\"" \
    curl -sS -H "Authorization: Bearer $(cat "$PKI/operator.token")" \
    "http://127.0.0.1:$API_PORT/api/v1/status"
expect_output "/metrics has dps_build_info with the allocator" \
    "^dps_build_info\{openssl=\"[^\"]+\",allocator=\"$NAME\"\} 1$" \
    curl -sS "http://127.0.0.1:$API_PORT/metrics"
expect_output "the ready log line names the allocator" "msg=\"ready\".* allocator=\"$NAME\"" \
    cat "$DEMO/dpsd.log"

# The allocators' objects in a list of paths, as their file names without the version.
allocator_objects() { grep -oE "$ALLOCATORS" | sed 's|^/||; s|\.so.*||' | sort -u | paste -sd' '; }
MAPPED=$(awk '{print $6}' "/proc/$DPSD_PID/maps" | allocator_objects)
if [ "$MAPPED" = "$OBJECT" ]; then
    ok "dpsd maps ${OBJECT:-no mimalloc, jemalloc or tcmalloc object}"
else
    not_ok "dpsd maps ${OBJECT:-no mimalloc, jemalloc or tcmalloc object}"
    echo "# mapped: ${MAPPED:-none}"
fi

# A device provisions through dps-loadgen, which the dynamic loader reports loading the same one.
LD_DEBUG=libs LD_DEBUG_OUTPUT=$WORK/loader "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" \
    --pki "$PKI" --devices 1 --out "$WORK/out" >"$WORK/loadgen.log" 2>&1
PROVISIONED=$?
LOADED=$(sed -n 's/.*calling init: //p' "$WORK"/loader.* | allocator_objects)
if [ "$PROVISIONED" = 0 ] && [ "$LOADED" = "$OBJECT" ]; then
    ok "a device provisions through dps-loadgen, which loads ${OBJECT:-no mimalloc, jemalloc or tcmalloc object}"
else
    not_ok "a device provisions through dps-loadgen, which loads ${OBJECT:-no mimalloc, jemalloc or tcmalloc object}"
    echo "# exit status $PROVISIONED, loaded: ${LOADED:-none}"
    sed 's/^/# /' "$WORK/loadgen.log" | tail -5
fi
check_stop "dpsd stops cleanly on SIGTERM"

# Another allocator preloaded comes first, and dpsd names it: glibc's own libc.so.6 into a build
# of another allocator, jemalloc (libjemalloc2 comes with redis-server) into a glibc build.
# AddressSanitizer wants to come first, so a sanitized build runs without one and names itself.
PRELOAD=libc.so.6 PRELOADED='glibc [0-9]+\.[0-9]+'
[ "$KIND" = glibc ] && PRELOAD=libjemalloc.so.2 PRELOADED='jemalloc [0-9]+\.[0-9]+\.[0-9]+'
[ "$NAME" = AddressSanitizer ] && PRELOAD="" PRELOADED=AddressSanitizer
expect_output "with ${PRELOAD:-nothing} preloaded, dpsd --version names $PRELOADED" \
    "^allocator $PRELOADED$" env LD_PRELOAD="$PRELOAD" "$DPSD" --version
finish
