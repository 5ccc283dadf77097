/*
 * loadgen_kit: what one thread's simulated devices share. CSR key
 * generation and signing contexts live in the thread's library context,
 * and the certificates every device receives alike (the server's chain,
 * trust anchors, intermediates) are parsed and verified by OpenSSL once per
 * thread, then recognised by their exact bytes while they stay valid. The
 * device's checks (loadgen_wire.c) and the server verification callback
 * below consult the same small cache of verdicts.
 */
#include "perf/loadgen_kit.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "perf/loadgen_der.h"

int device_kit_init(struct device_kit *kit, OSSL_LIB_CTX *libctx)
{
    memset(kit, 0, sizeof(*kit));
    kit->libctx = libctx;
    kit->keygen = EVP_PKEY_CTX_new_from_name(libctx, "EC", NULL);
    kit->sign = EVP_MD_CTX_new();
    if (kit->keygen == NULL || kit->sign == NULL || EVP_PKEY_keygen_init(kit->keygen) != 1 ||
        EVP_PKEY_CTX_set_group_name(kit->keygen, "P-256") != 1) {
        device_kit_free(kit);
        ERR_clear_error();
        return -1;
    }
    return 0;
}

void device_kit_free(struct device_kit *kit)
{
    EVP_PKEY_CTX_free(kit->keygen);
    EVP_MD_CTX_free(kit->sign);
    for (unsigned i = 0; i < kit->verdict_count; i++)
        free(kit->verdicts[i].bytes);
    memset(kit, 0, sizeof(*kit));
}

const struct parsed_verdict *device_kit_find(const struct device_kit *kit, const void *bytes,
                                             size_t length)
{
    for (unsigned i = 0; i < kit->verdict_count; i++)
        if (kit->verdicts[i].length == length && memcmp(kit->verdicts[i].bytes, bytes, length) == 0)
            return &kit->verdicts[i];
    return NULL;
}

void device_kit_remember(struct device_kit *kit, const void *bytes, size_t length,
                         time_t not_before, time_t not_after)
{
    uint8_t *copy = malloc(length);
    struct parsed_verdict *slot;

    if (copy == NULL)
        return; /* only a cache */
    memcpy(copy, bytes, length);
    if (kit->verdict_count < KIT_VERDICTS) {
        slot = &kit->verdicts[kit->verdict_count++];
    } else {
        slot = &kit->verdicts[kit->verdict_next];
        kit->verdict_next = (kit->verdict_next + 1) % KIT_VERDICTS;
        free(slot->bytes);
    }
    *slot = (struct parsed_verdict){copy, length, not_before, not_after};
}

int device_kit_verify_server(X509_STORE_CTX *store, void *user)
{
    struct device_kit *kit = user;
    STACK_OF(X509) *presented = X509_STORE_CTX_get0_untrusted(store);
    uint8_t chain[16384];
    size_t length = 0;
    time_t now = time(NULL), not_before = 0, not_after = (time_t)INT64_MAX;
    bool readable = presented != NULL && sk_X509_num(presented) > 0;

    for (int i = 0; readable && i < sk_X509_num(presented); i++) {
        X509 *cert = sk_X509_value(presented, i);
        int size = i2d_X509(cert, NULL);
        uint8_t *out = chain + length;
        struct cert_fields fields;
        if (size <= 0 || length + (size_t)size > sizeof(chain) || i2d_X509(cert, &out) != size ||
            der_read_certificate(chain + length, (size_t)size, &fields) != 0) {
            readable = false;
            break;
        }
        length += (size_t)size;
        if (fields.not_before > not_before)
            not_before = fields.not_before;
        if (fields.not_after < not_after)
            not_after = fields.not_after;
    }
    if (readable) {
        const struct parsed_verdict *known = device_kit_find(kit, chain, length);
        if (known != NULL && now >= known->not_before && now < known->not_after)
            return 1; /* these exact certificates verified before, and are still valid */
    }
    int verified = X509_verify_cert(store);
    if (verified == 1 && readable)
        device_kit_remember(kit, chain, length, not_before, not_after);
    return verified == 1 ? 1 : 0;
}
