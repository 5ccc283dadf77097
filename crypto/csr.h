/*
 * csr: validation of a device's certificate signing request.
 *
 * A device sends a PEM PKCS#10 request for an ECDSA P-256 key, signed with
 * SHA-256, whose subject has exactly one CN, uuid:<device id>. csr_check()
 * proves the request is self-signed by that key and extracts what issuance
 * needs: the device id and the public key (DER SubjectPublicKeyInfo). The
 * rest of the subject (and the attributes) may be present and is ignored:
 * the certificate's subject is built from the device id alone (issuer.h).
 * Every failure has a short reason for the device's 4.00 diagnostic payload.
 */
#ifndef DPS_CSR_H
#define DPS_CSR_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "crypto/uuid.h"

#define CSR_MAX_PEM 4096
#define CSR_MAX_DER 1024

struct csr_result {
    struct dps_uuid device_id;
    uint8_t spki_der[256];
    size_t spki_length;
};

/*
 * Parses and verifies a PEM CSR with algorithms fetched from libctx (NULL for
 * the default context). 0 on success, -1 with a reason in err.
 */
int csr_check(OSSL_LIB_CTX *libctx, const char *pem, size_t pem_length, struct csr_result *result,
              char *err, size_t err_length);

#endif
