/*
 * loadgen_kit: what one thread's simulated devices share (loadgen_kit.c):
 * CSR key generation and signing contexts in the thread's library context,
 * and the verdicts on certificates every device receives alike (a trust
 * anchor is parsed in full once, then its bytes are compared and its
 * validity window checked).
 */
#ifndef DPS_LOADGEN_KIT_H
#define DPS_LOADGEN_KIT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/types.h>

#define KIT_VERDICTS 8

/* Certificates the thread has already parsed in full and found valid (trust anchors,
 * intermediates). */
struct parsed_verdict {
    uint8_t *bytes; /* the exact bytes parsed: PEM text or concatenated DER */
    size_t length;
    time_t not_before, not_after; /* the window in which every one of them is valid */
};

struct device_kit {
    OSSL_LIB_CTX *libctx;
    EVP_PKEY_CTX *keygen;
    EVP_MD_CTX *sign;
    struct parsed_verdict verdicts[KIT_VERDICTS];
    unsigned verdict_count, verdict_next;
};

/* 0, or -1 when OpenSSL cannot make the contexts. libctx may be NULL (the default one). */
int device_kit_init(struct device_kit *kit, OSSL_LIB_CTX *libctx);
void device_kit_free(struct device_kit *kit);

/* The verdict on exactly these bytes, or NULL when they were never found valid. */
const struct parsed_verdict *device_kit_find(const struct device_kit *kit, const void *bytes,
                                             size_t length);
/* Remembers bytes found valid from not_before to not_after (the oldest verdict makes room). */
void device_kit_remember(struct device_kit *kit, const void *bytes, size_t length,
                         time_t not_before, time_t not_after);

/*
 * A client SSL_CTX's certificate verification (SSL_CTX_set_cert_verify_callback
 * with the kit as argument): X509_verify_cert against the context's trust
 * store, as the device does; a chain whose exact certificates this kit has
 * verified before is accepted again while all of them are within their
 * validity, without rebuilding and re-verifying it.
 */
int device_kit_verify_server(X509_STORE_CTX *store, void *kit);

#endif
