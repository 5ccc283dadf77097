#!/usr/bin/env bash
# Least privilege and revocation at the door: dpsd refuses a private key that
# others may read (naming the file) unless keyFilePermissions is warn, and a
# key path that cannot be read; a device on its manufacturer's CRL fails the
# handshake after a SIGHUP while its neighbours still get in; a disabled
# enrollment group refuses its devices; and with `user:` dpsd, started as
# root, serves devices as that user. Needs root (a throw-away user is made).
. "$(dirname "$0")/lib.sh"

plan 20
DEMO=$WORK/demo
PKI=$DEMO/pki
CONFIG=$DEMO/dpsd.yaml
PORT=$(free_port)
TEST_USER=dps-test
MADE_USER=""

finish_all() {
    cleanup
    if [ -n "$MADE_USER" ]; then userdel "$TEST_USER" 2>/dev/null; fi
}
trap finish_all EXIT

probe_device() {
    "$PROBE" --endpoint "127.0.0.1:$PORT" --ca "$PKI/dps-root.pem" \
        --cert "$PKI/devices/device-$1.pem" --key "$PKI/devices/device-$1.key" --get /x.plgd.dev/time
}
# dpsd_fails: runs dpsd on the demo; prints what it said and its exit status on one line.
dpsd_fails() {
    local status=0 output
    output=$(timeout 30 "$DPSD" --demo "$DEMO" --listen "127.0.0.1:$PORT" \
        --api-listen "127.0.0.1:$API_PORT" 2>&1) || status=$?
    echo "$output exit=$status" | tr '\n' ' '
}
# reload: SIGHUP, then waits for the outcome in the log.
reload() {
    local before
    before=$(grep -c 'msg="reload' "$DEMO/dpsd.log")
    kill -HUP "$DPSD_PID"
    for _ in $(seq 1 100); do
        [ "$(grep -c 'msg="reload' "$DEMO/dpsd.log")" -gt "$before" ] && break
        sleep 0.1
    done
    # The reload's own line, not the last one: the API's generation logs after it.
    grep 'msg="reload' "$DEMO/dpsd.log" | tail -1 | grep -q 'msg="reloaded"'
}

start_dpsd "$DEMO" "$PORT" --shards 2 || { not_ok "dpsd starts"; finish; }
ok "dpsd starts"
cp "$CONFIG" "$WORK/dpsd.yaml.orig"
expect_output "a device provisions its time" '^code=2\.05' probe_device 0002
stop_dpsd

# ---- key file permissions ----
chmod 0644 "$PKI/hub-ca.key"
expect_output "a world-readable hub CA key stops dpsd, naming the file" \
    "private key $PKI/hub-ca.key is accessible to group or others \(mode 0644\).*exit=[1-9]" dpsd_fails
echo "keyFilePermissions: warn" >>"$CONFIG"
if start_dpsd "$DEMO" "$PORT" --shards 2; then ok "with keyFilePermissions: warn dpsd starts"; else
    not_ok "with keyFilePermissions: warn dpsd starts"
fi
expect_output "the warning names the key" \
    "level=warn msg=\"private key file is accessible to group or others\" file=\"$PKI/hub-ca.key\" mode=0644" \
    cat "$DEMO/dpsd.log"
stop_dpsd
chmod 0600 "$PKI/hub-ca.key"
cp "$WORK/dpsd.yaml.orig" "$CONFIG"

sed -i 's|key: pki/hub-ca.key|key: pki/missing.key|' "$CONFIG"
expect_output "a missing CA key stops dpsd, naming the file" "$PKI/missing.key.*No such file.*exit=[1-9]" \
    dpsd_fails
cp "$WORK/dpsd.yaml.orig" "$CONFIG"
sed -i 's|key: pki/dps-server.key|key: pki/devices|' "$CONFIG"
expect_output "a TLS key that is a folder stops dpsd, naming it" "$PKI/devices is not a regular file.*exit=[1-9]" \
    dpsd_fails
cp "$WORK/dpsd.yaml.orig" "$CONFIG"

# ---- a CRL of the manufacturer intermediate ----
CA=$WORK/ca
mkdir -p "$CA"
: >"$CA/index.txt"
echo 1000 >"$CA/crlnumber"
cat >"$CA/ca.cnf" <<CNF
[ca]
default_ca = demo
[demo]
database = $CA/index.txt
crlnumber = $CA/crlnumber
certificate = $PKI/mfg-intermediate.pem
private_key = $PKI/mfg-intermediate.key
default_md = sha256
default_crl_days = 30
CNF
openssl ca -config "$CA/ca.cnf" -revoke "$PKI/devices/device-0002.pem" >/dev/null 2>&1
openssl ca -config "$CA/ca.cnf" -gencrl -out "$PKI/mfg.crl" >/dev/null 2>&1

start_dpsd "$DEMO" "$PORT" --shards 1 || { not_ok "dpsd restarts"; finish; }
expect_output "before the CRL device 2 gets in (and is cached)" '^code=2\.05' probe_device 0002
sed -i 's|^\( *\)expiredCertificateEnabled: false$|&\n\1crls: [pki/mfg.crl]|' "$CONFIG"
check "SIGHUP loads the CRL" reload
expect_output "the revoked device fails the handshake" '^handshake-failed' probe_device 0002
expect_output "another device of the group still gets in" '^code=2\.05' probe_device 0001
expect_output "the refusal says certificate revoked" 'certificate revoked' cat "$DEMO/dpsd.log"

# A CRL the group's CAs did not sign is a configuration error naming the group.
openssl ca -config "$CA/ca.cnf" -gencrl -keyfile "$PKI/rogue-root.key" -cert "$PKI/rogue-root.pem" \
    -out "$PKI/mfg.crl" >/dev/null 2>&1
expect_output "a CRL of another CA is refused at reload, naming the group" \
    'reload failed.*enrollment group [0-9a-f-]{36}: CRL .*mfg.crl.* is not signed by a CA' \
    sh -c "kill -HUP $DPSD_PID; sleep 2; cat '$DEMO/dpsd.log'"
expect_output "the previous configuration stays: device 2 is still refused" '^handshake-failed' \
    probe_device 0002

# ---- a disabled group ----
cp "$WORK/dpsd.yaml.orig" "$CONFIG"
sed -i 's|^    hubIds: .*|&\n    disabled: true|' "$CONFIG"
check "SIGHUP disables the group" reload
expect_output "a device of the disabled group fails the handshake" '^handshake-failed' probe_device 0001
expect_output "the refusal names the disabled group" 'enrollment group [0-9a-f-]{36} is disabled' \
    cat "$DEMO/dpsd.log"
stop_dpsd
cp "$WORK/dpsd.yaml.orig" "$CONFIG"

# ---- running as an unprivileged user ----
if [ "$(id -u)" -ne 0 ]; then
    not_ok "switching user needs root (run the suite as root)"
    finish
fi
if ! getent passwd "$TEST_USER" >/dev/null; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$TEST_USER" && MADE_USER=1
fi
echo "user: $TEST_USER" >>"$CONFIG"
chmod 0755 "$WORK"
chown -R "$TEST_USER" "$DEMO"
start_dpsd "$DEMO" "$PORT" --shards 2 || { not_ok "dpsd starts and drops to $TEST_USER"; finish; }
expect_output "dpsd runs as $TEST_USER after binding" "^$TEST_USER\$" ps -o user= -p "$DPSD_PID"
check "a device provisions in full after the drop" \
    "$LOADGEN" --endpoint "coaps+tcp://127.0.0.1:$PORT" --pki "$PKI" --first 3 --devices 2 --out "$WORK/out"
check_stop "dpsd stops cleanly as $TEST_USER"
finish
