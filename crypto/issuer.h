/*
 * issuer: an identity certificate authority and the certificates it signs.
 *
 * Each hub has one identity CA (ECDSA P-256, or RSA 2048/3072). An issued
 * certificate follows PROTOCOL.md 2.4: subject exactly CN=uuid:<device id>
 * (nothing else of the CSR's subject is kept), the CSR's public key, KU
 * digitalSignature + keyAgreement, EKU serverAuth + clientAuth + the OCF
 * identity OID 1.3.6.1.4.1.44924.1.6, basicConstraints CA:FALSE, a random
 * 128-bit serial (positive), SHA-256 signature, authority key identifier.
 *
 * The issuer lives only inside the signer component (signer.h): nothing else
 * in the daemon holds the private key.
 */
#ifndef DPS_ISSUER_H
#define DPS_ISSUER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/types.h>

#define ISSUER_SERIAL_LENGTH 16

struct issuer;

/*
 * Loads the CA certificate file (the CA first, then any intermediates up to
 * and including the root) and its private key. Fails, naming the file, when
 * a file is unreadable, the key does not match the CA certificate, or the
 * certificate is not a CA.
 */
struct issuer *issuer_load(OSSL_LIB_CTX *libctx, const char *cert_file, const char *key_file,
                           char *err, size_t err_length);
void issuer_free(struct issuer *issuer);

/* PEM of the CA and intermediates, without the self-signed root (may be ""). */
const char *issuer_chain_pem(const struct issuer *issuer);
/* PEM of the root of the chain (the trust anchor handed to devices). */
const char *issuer_root_pem(const struct issuer *issuer);

struct issued_certificate {
    uint8_t serial[ISSUER_SERIAL_LENGTH];
    time_t not_before;
    time_t not_after;
    char *pem; /* leaf then issuer_chain_pem(); free() it */
};

/*
 * Signs a certificate whose subject is CN=uuid:<device_id> (a non-nil UUID,
 * written in lower case) for spki_der (a DER SubjectPublicKeyInfo), valid
 * from not_before to not_after. 0 or -1 with err.
 */
int issuer_issue(struct issuer *issuer, const char *device_id, const uint8_t *spki_der,
                 size_t spki_length, time_t not_before, time_t not_after,
                 struct issued_certificate *out, char *err, size_t err_length);

#endif
