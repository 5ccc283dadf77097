/*
 * loadgen_prepare: a fleet device's identity objects and CSR made before the
 * run (see loadgen_prepare.h). The CSR is built by csr_pem (loadgen_der.c),
 * as in line, from a key the thread's kit generates.
 */
#include "perf/loadgen_prepare.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "perf/loadgen_der.h"

static int csr_make(struct device_kit *kit, const char *di, struct device_csr *out)
{
    EVP_PKEY *key = NULL;
    char pem[CSR_PEM_CAPACITY];
    int result = -1;

    if (EVP_PKEY_generate(kit->keygen, &key) == 1 && spki_p256(key, out->spki) == 0 &&
        csr_pem(kit->sign, kit->libctx, key, out->spki, di, pem) == 0 &&
        (out->pem = strdup(pem)) != NULL)
        result = 0;
    EVP_PKEY_free(key);
    ERR_clear_error();
    return result;
}

int prepared_device_make(struct prepared_device *out, const struct fleet_identities *identities,
                         unsigned identity, struct device_kit *kit, const char *di, bool csr)
{
    memset(out, 0, sizeof(*out));
    /* X509_check_purpose(-1) caches the certificate's extensions and digest, which libssl
     * otherwise works out on the device's first connection. */
    if (fleet_identity_load(identities, kit->libctx, identity, &out->certificate, &out->key) != 0 ||
        X509_check_purpose(out->certificate, -1, 0) != 1 ||
        (csr && csr_make(kit, di, &out->csr) != 0)) {
        prepared_device_clear(out);
        return -1;
    }
    return 0;
}

void prepared_device_clear(struct prepared_device *prepared)
{
    X509_free(prepared->certificate);
    EVP_PKEY_free(prepared->key);
    free(prepared->csr.pem);
    memset(prepared, 0, sizeof(*prepared));
}
