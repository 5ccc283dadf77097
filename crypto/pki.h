/*
 * pki: the demo public-key infrastructure, used by `dpsd --demo`,
 * `dpsctl pki` and the tests. Everything is ECDSA P-256 / SHA-256.
 *
 * pki_generate(dir) creates, keeping files that already exist:
 *   mfg-root.pem/.key           manufacturer root CA
 *   mfg-intermediate.pem/.key   manufacturer intermediate CA (issues devices)
 *   mfg-chain.pem               intermediate then root: an enrollment group's attestation chain
 *   devices/device-NNNN.pem/.key   device manufacturer certificates (leaf then intermediate),
 *                                  EKU clientAuth, CN "Demo Device NNNN"; NNNN from 0001
 *   dps-root.pem/.key           CA of the DPS server certificate (devices trust this)
 *   dps-server.pem/.key         DPS server certificate (EKU serverAuth, KU digitalSignature),
 *                               file holds the leaf then dps-root.pem
 *   hub-root.pem/.key           hub identity root CA (the trust anchor given to devices)
 *   hub-ca.pem/.key             hub identity intermediate CA, file holds it then hub-root.pem
 *   token.key/token.pub.pem     access-token signing key pair
 *   operator.key/operator.pub.pem  operator token signing key pair (management API)
 *   operator.jwks.json          its public key as a JWKS (the API's `jwks`), kid "operator"
 *   operator.token              an operator token for owner "1", valid one year
 *   rogue-root.pem/.key, rogue-device.pem/.key
 *                               an unrelated manufacturer: its device must be refused
 *   noclientauth-device.pem/.key
 *                               issued by the real intermediate but without EKU clientAuth
 *
 * Keys are written with mode 0600.
 */
#ifndef DPS_PKI_H
#define DPS_PKI_H

#include <stddef.h>

#include <openssl/types.h>

/* Creates the demo PKI in dir (created if missing) with device_count devices. 0 or -1 with err. */
int pki_generate(const char *dir, unsigned device_count, char *err, size_t err_length);

/*
 * Ensures devices/device-NNNN.pem/.key exist for index (1-based), issuing it
 * from mfg-intermediate when missing. 0 or -1 with err.
 */
int pki_ensure_device(const char *dir, unsigned index, char *err, size_t err_length);

#define PKI_OPERATOR_ISSUER "https://dps.demo.local/operator"
#define PKI_OPERATOR_AUDIENCE "dps-api"
#define PKI_OPERATOR_KEY_ID "operator"

/*
 * Signs an operator token with the EC P-256 key in key_file: ES256, kid
 * PKI_OPERATOR_KEY_ID, iss PKI_OPERATOR_ISSUER, aud PKI_OPERATOR_AUDIENCE,
 * sub owner, iat now, exp now + lifetime_s (negative gives an expired token,
 * for tests). malloc'd, or NULL with err.
 */
char *pki_operator_token(const char *key_file, const char *owner, long lifetime_s, char *err,
                         size_t err_length);

/*
 * Path of a device's files: dir/devices/device-NNNN.pem (suffix ".pem") or
 * ".key". 0, or -1 when it does not fit in out (never a shortened path).
 */
int pki_device_path(const char *dir, unsigned index, const char *suffix, char *out,
                    size_t out_length);

#endif
