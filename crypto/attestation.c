/*
 * attestation: enrollment-group matching and manufacturer chain verification
 * (see attestation.h and PROTOCOL.md section 3).
 *
 * Each group's CA chain file is loaded once into the shard's library
 * context. A group keeps its first CA (the one expected to issue the lowest
 * presented certificate), an X509_STORE trusting only its root, and the other
 * chain certificates as untrusted helpers, so a device may send its leaf
 * alone and still verify.
 */
#include "crypto/attestation.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

struct attestation_group {
    const char *id;
    X509 *first_ca;                 /* owned by intermediates, or the root */
    X509_STORE *store;              /* trusts the root only */
    STACK_OF(X509) * intermediates; /* the chain without its root */
    bool expired_certificate_enabled;
};

struct attestation {
    OSSL_LIB_CTX *libctx;
    EVP_MD *sha256;
    struct attestation_group *groups;
    size_t group_count;
};

/* Writes name in RFC 2253 form ("CN=...,O=...") into out. */
static void format_name(const X509_NAME *name, char *out, size_t out_length)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int length = 0;

    out[0] = '\0';
    if (bio == NULL)
        return;
    if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0)
        length = BIO_read(bio, out, (int)(out_length > INT_MAX ? INT_MAX : out_length - 1));
    out[length > 0 ? length : 0] = '\0';
    BIO_free(bio);
}

static void group_clear(struct attestation_group *group)
{
    X509_STORE_free(group->store);
    sk_X509_pop_free(group->intermediates, X509_free);
}

/* Reads every certificate of a PEM file, in order, into the library context. */
static STACK_OF(X509) *
    load_chain(OSSL_LIB_CTX *libctx, const char *path, char *err, size_t err_length)
{
    BIO *bio = BIO_new_file(path, "r");
    STACK_OF(X509_INFO) *infos = NULL;
    STACK_OF(X509) *chain = sk_X509_new_null();
    bool ok = bio != NULL && chain != NULL;

    if (ok)
        infos = PEM_X509_INFO_read_bio_ex(bio, NULL, NULL, NULL, libctx, NULL);
    ok = ok && infos != NULL;
    for (int i = 0; ok && i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *info = sk_X509_INFO_value(infos, i);

        if (info->x509 == NULL)
            continue;
        ok = sk_X509_push(chain, info->x509) > 0;
        if (ok)
            info->x509 = NULL;
    }
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    BIO_free(bio);
    if (!ok) {
        char detail[256] = "unknown error";

        if (ERR_peek_error() != 0)
            ERR_error_string_n(ERR_get_error(), detail, sizeof(detail));
        ERR_clear_error();
        snprintf(err, err_length, "cannot read CA chain %s: %s", path, detail);
        sk_X509_pop_free(chain, X509_free);
        return NULL;
    }
    return chain;
}

static int group_load(OSSL_LIB_CTX *libctx, const struct config_group *config_group,
                      struct attestation_group *group, char *err, size_t err_length)
{
    STACK_OF(X509) * chain;
    X509 *root;
    int count;

    group->id = config_group->id;
    group->expired_certificate_enabled = config_group->expired_certificate_enabled;
    if (config_group->ca_chain_file == NULL) {
        snprintf(err, err_length, "enrollment group %s has no CA chain file", config_group->id);
        return -1;
    }
    chain = load_chain(libctx, config_group->ca_chain_file, err, err_length);
    if (chain == NULL)
        return -1;
    count = sk_X509_num(chain);
    if (count == 0) {
        snprintf(err, err_length, "enrollment group %s: %s holds no certificate", config_group->id,
                 config_group->ca_chain_file);
        sk_X509_pop_free(chain, X509_free);
        return -1;
    }
    root = sk_X509_value(chain, count - 1);
    if (X509_self_signed(root, 1) != 1) {
        ERR_clear_error();
        snprintf(err, err_length,
                 "enrollment group %s: the last certificate of %s is not a self-signed root",
                 config_group->id, config_group->ca_chain_file);
        sk_X509_pop_free(chain, X509_free);
        return -1;
    }
    group->store = X509_STORE_new();
    if (group->store == NULL || X509_STORE_add_cert(group->store, root) != 1) {
        snprintf(err, err_length, "enrollment group %s: cannot build the trust store",
                 config_group->id);
        ERR_clear_error();
        sk_X509_pop_free(chain, X509_free);
        return -1;
    }
    /* The store holds its own reference to the root; the rest are intermediates. */
    X509_free(sk_X509_pop(chain));
    group->intermediates = chain;
    group->first_ca = count > 1 ? sk_X509_value(chain, 0) : root;
    return 0;
}

/* Two groups whose first CAs are the same certificate could both match a device. */
static int check_distinct(const struct attestation *attestation, char *err, size_t err_length)
{
    for (size_t i = 0; i < attestation->group_count; i++) {
        const struct attestation_group *a = &attestation->groups[i];

        for (size_t j = i + 1; j < attestation->group_count; j++) {
            const struct attestation_group *b = &attestation->groups[j];

            if (X509_NAME_cmp(X509_get_subject_name(a->first_ca),
                              X509_get_subject_name(b->first_ca)) == 0 &&
                EVP_PKEY_eq(X509_get0_pubkey(a->first_ca), X509_get0_pubkey(b->first_ca)) == 1) {
                char subject[256];

                format_name(X509_get_subject_name(a->first_ca), subject, sizeof(subject));
                snprintf(err, err_length,
                         "enrollment groups %s and %s have the same first CA certificate (%s): "
                         "a device could match both",
                         a->id, b->id, subject);
                return -1;
            }
        }
    }
    return 0;
}

struct attestation *attestation_create(OSSL_LIB_CTX *libctx, const struct config *config, char *err,
                                       size_t err_length)
{
    struct attestation *attestation = calloc(1, sizeof(*attestation));

    if (attestation == NULL) {
        snprintf(err, err_length, "out of memory");
        return NULL;
    }
    attestation->libctx = libctx;
    attestation->sha256 = EVP_MD_fetch(libctx, "SHA256", NULL);
    if (attestation->sha256 == NULL) {
        snprintf(err, err_length, "SHA-256 is not available in the OpenSSL library context");
        attestation_free(attestation);
        return NULL;
    }
    if (config->group_count > 0) {
        attestation->groups = calloc(config->group_count, sizeof(*attestation->groups));
        if (attestation->groups == NULL) {
            snprintf(err, err_length, "out of memory");
            attestation_free(attestation);
            return NULL;
        }
    }
    for (size_t i = 0; i < config->group_count; i++) {
        attestation->group_count = i + 1;
        if (group_load(libctx, &config->groups[i], &attestation->groups[i], err, err_length) != 0) {
            attestation_free(attestation);
            return NULL;
        }
    }
    if (check_distinct(attestation, err, err_length) != 0) {
        attestation_free(attestation);
        return NULL;
    }
    return attestation;
}

void attestation_free(struct attestation *attestation)
{
    if (attestation == NULL)
        return;
    for (size_t i = 0; i < attestation->group_count; i++)
        group_clear(&attestation->groups[i]);
    free(attestation->groups);
    EVP_MD_free(attestation->sha256);
    free(attestation);
}

/* The group whose first CA issued certificate, or -1. */
static long group_issuing(const struct attestation *attestation, X509 *certificate)
{
    const X509_NAME *issuer = X509_get_issuer_name(certificate);

    for (size_t i = 0; i < attestation->group_count; i++) {
        X509 *first_ca = attestation->groups[i].first_ca;

        if (X509_NAME_cmp(X509_get_subject_name(first_ca), issuer) == 0 &&
            X509_verify(certificate, X509_get0_pubkey(first_ca)) == 1)
            return (long)i;
    }
    ERR_clear_error();
    return -1;
}

/* Lowest certificate first: the leaf, then the presented chain. */
static long match_group(const struct attestation *attestation, X509 *leaf, STACK_OF(X509) * chain)
{
    long index = group_issuing(attestation, leaf);

    for (int i = 0; index < 0 && chain != NULL && i < sk_X509_num(chain); i++)
        index = group_issuing(attestation, sk_X509_value(chain, i));
    return index;
}

static int time_of(const ASN1_TIME *asn1, time_t *out)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(asn1, &tm) != 1)
        return -1;
    *out = timegm(&tm);
    return 0;
}

/* The middle of the leaf's validity, where an expired certificate still verifies. */
static int validity_midpoint(X509 *leaf, time_t *out)
{
    time_t not_before;
    int days;
    int seconds;

    if (time_of(X509_get0_notBefore(leaf), &not_before) != 0 ||
        ASN1_TIME_diff(&days, &seconds, X509_get0_notBefore(leaf), X509_get0_notAfter(leaf)) != 1)
        return -1;
    *out = not_before + ((time_t)days * 86400 + seconds) / 2;
    return 0;
}

static int verify_chain(const struct attestation *attestation,
                        const struct attestation_group *group, X509 *leaf, STACK_OF(X509) * chain,
                        time_t now, char *err, size_t err_length)
{
    X509_STORE_CTX *context = X509_STORE_CTX_new_ex(attestation->libctx, NULL);
    STACK_OF(X509) *untrusted = sk_X509_dup(group->intermediates);
    time_t at = now;
    int result = -1;

    if (context == NULL || untrusted == NULL) {
        snprintf(err, err_length, "out of memory");
        goto out;
    }
    for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
        if (sk_X509_push(untrusted, sk_X509_value(chain, i)) <= 0) {
            snprintf(err, err_length, "out of memory");
            goto out;
        }
    }
    if (group->expired_certificate_enabled && validity_midpoint(leaf, &at) != 0) {
        snprintf(err, err_length, "cannot read the validity of the device certificate");
        goto out;
    }
    if (X509_STORE_CTX_init(context, group->store, leaf, untrusted) != 1) {
        snprintf(err, err_length, "cannot set up chain verification");
        goto out;
    }
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(context), at);
    if (X509_verify_cert(context) != 1) {
        int code = X509_STORE_CTX_get_error(context);

        snprintf(err, err_length,
                 "device certificate chain does not verify for enrollment group %s: %s "
                 "(depth %d)",
                 group->id, X509_verify_cert_error_string(code),
                 X509_STORE_CTX_get_error_depth(context));
        goto out;
    }
    result = 0;
out:
    ERR_clear_error();
    sk_X509_free(untrusted);
    X509_STORE_CTX_free(context);
    return result;
}

static void copy_common_name(X509 *leaf, char *out, size_t out_length)
{
    const X509_NAME *subject = X509_get_subject_name(leaf);
    int position = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    unsigned char *utf8 = NULL;
    int length;

    out[0] = '\0';
    if (position < 0)
        return;
    length = ASN1_STRING_to_UTF8(&utf8,
                                 X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, position)));
    if (length < 0)
        return;
    snprintf(out, out_length, "%.*s", length, (const char *)utf8);
    OPENSSL_free(utf8);
}

static int fill_result(const struct attestation *attestation, size_t group_index, X509 *leaf,
                       struct attestation_result *result, char *err, size_t err_length)
{
    unsigned char *spki = NULL;
    int spki_length = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(leaf), &spki);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(leaf);
    int serial_length = ASN1_STRING_length(serial);

    if (spki_length <= 0) {
        snprintf(err, err_length, "cannot encode the device public key");
        ERR_clear_error();
        return -1;
    }
    memset(result, 0, sizeof(*result));
    result->group_index = group_index;
    uuid_v5(&UUID_NAMESPACE_X500, spki, (size_t)spki_length, &result->record_id);
    if (EVP_Digest(spki, (size_t)spki_length, result->spki_sha256, NULL, attestation->sha256,
                   NULL) != 1) {
        OPENSSL_free(spki);
        snprintf(err, err_length, "cannot hash the device public key");
        ERR_clear_error();
        return -1;
    }
    OPENSSL_free(spki);
    if (serial_length <= 0 || (size_t)serial_length > sizeof(result->leaf_serial)) {
        snprintf(err, err_length, "device certificate serial number is longer than 20 bytes");
        return -1;
    }
    memcpy(result->leaf_serial, ASN1_STRING_get0_data(serial), (size_t)serial_length);
    result->leaf_serial_length = (size_t)serial_length;
    copy_common_name(leaf, result->leaf_common_name, sizeof(result->leaf_common_name));
    return 0;
}

int attestation_verify(struct attestation *attestation, X509 *leaf, STACK_OF(X509) * chain,
                       time_t now, struct attestation_result *result, char *err, size_t err_length)
{
    long group_index;
    const struct attestation_group *group;

    if (leaf == NULL) {
        snprintf(err, err_length, "no device certificate presented");
        return -1;
    }
    group_index = match_group(attestation, leaf, chain);
    if (group_index < 0) {
        char issuer[256];

        format_name(X509_get_issuer_name(leaf), issuer, sizeof(issuer));
        snprintf(err, err_length, "no enrollment group matches issuer %s", issuer);
        return -1;
    }
    group = &attestation->groups[group_index];
    /* No EKU at all means "any purpose" to OpenSSL; devices must say clientAuth. */
    if ((X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE) == 0 ||
        (X509_get_extended_key_usage(leaf) & XKU_SSL_CLIENT) == 0) {
        snprintf(err, err_length, "leaf lacks extended key usage clientAuth");
        return -1;
    }
    if (verify_chain(attestation, group, leaf, chain, now, err, err_length) != 0)
        return -1;
    return fill_result(attestation, (size_t)group_index, leaf, result, err, err_length);
}

char *attestation_leaf_pem(X509 *leaf)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data;
    long length;
    char *pem = NULL;

    if (bio == NULL)
        return NULL;
    if (PEM_write_bio_X509(bio, leaf) == 1) {
        length = BIO_get_mem_data(bio, &data);
        pem = malloc((size_t)length + 1);
        if (pem != NULL) {
            memcpy(pem, data, (size_t)length);
            pem[length] = '\0';
        }
    }
    BIO_free(bio);
    return pem;
}
