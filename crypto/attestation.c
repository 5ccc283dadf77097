/*
 * attestation: enrollment-group matching and manufacturer chain verification
 * (see attestation.h and PROTOCOL.md section 3).
 *
 * Each group's CA chain file is loaded once into the shard's library
 * context and verified once, at load: every certificate must be issued and
 * signed by the next, up to the self-signed root. From then on the group's
 * first CA is the trust anchor (a partial chain), so a device chain costs one
 * signature check per presented certificate instead of re-proving the
 * configured chain on every handshake; the configured chain's validity
 * window is still checked against each verification time.
 *
 * Matching uses names and key identifiers (X509_check_issued) and checks a
 * signature only to tell apart groups whose first CAs look alike; the chain
 * verification that follows checks the signature anyway.
 *
 * A device connects twice per provisioning (and again to renew), so each
 * attestation object keeps a small cache of verified leaves, keyed by the
 * SHA-256 of the leaf's DER: a hit skips matching and chain verification.
 * An entry lives at most ATTESTATION_CACHE_SECONDS and never past the leaf's
 * or the configured chain's expiry. The cache belongs to one shard and needs
 * no lock. Behind it, a process-wide verdict cache (shared_lookup) lets a
 * shard skip the chain verification another shard already did for the same
 * leaf and the same chain and CRL texts; it takes no lock either.
 *
 * A group may carry CRLs of its manufacturer CAs. Each is proven at load
 * (signed by a certificate of the group's chain, named as its issuer) and
 * the leaf is then checked against them (X509_V_FLAG_CRL_CHECK): a revoked
 * leaf fails with "certificate revoked", and so does every leaf while a CRL
 * of its issuer is past its nextUpdate (refresh the file and send SIGHUP). A
 * leaf whose issuer has no configured CRL is not checked. Groups that accept
 * expired certificates verify at an earlier time, so for them the CRLs'
 * validity window is not enforced; revocation still is. CRLs are read when
 * the object is built: a new object is built at every configuration change
 * (SIGHUP, API), which also empties the cache, so a newly revoked leaf never
 * passes from it.
 *
 * A disabled group still matches its devices (so matching stays
 * deterministic) and refuses them.
 */
#include "crypto/attestation.h"

#include <limits.h>
#include <stdatomic.h>
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

#include "common/base64.h"

#define ATTESTATION_CACHE_SLOTS 4096 /* a power of two */
#define ATTESTATION_CACHE_SECONDS 600
#define SHARED_CACHE_SLOTS 4096 /* a power of two */

/*
 * What a group's chain and CRLs load into. Shared, by reference count,
 * between the attestation objects of one library context whose groups have
 * the same chain and CRL texts: a configuration change loads and proves only
 * the groups it touches.
 */
struct attestation_material {
    _Atomic unsigned references;
    X509_STORE *store;
    STACK_OF(X509) * intermediates;
    STACK_OF(X509_CRL) * crls;
};

struct attestation_group {
    const char *id;
    const char *owner;
    struct attestation_material *material; /* owns store, intermediates and crls below */
    uint8_t digest[32];                    /* of the chain and CRL texts */
    bool shareable;                        /* digest is set: the texts were all in memory */
    bool fresh;                            /* loaded and proven by this object, not shared */
    X509 *first_ca;                        /* owned by intermediates, or the root */
    X509_STORE *store;                     /* trusts the first CA only (partial chain) */
    STACK_OF(X509) * intermediates;        /* the chain without its root */
    time_t chain_not_before;               /* the configured chain is valid from ... */
    time_t chain_not_after;                /* ... until */
    bool expired_certificate_enabled;
    bool disabled;
    STACK_OF(X509_CRL) * crls; /* NULL when the group has none */
};

struct cache_entry {
    uint8_t leaf_sha256[32];
    time_t verified_at;
    time_t expires; /* 0: empty */
    struct attestation_result result;
};

/*
 * The process-wide verdict cache (see the comment above shared_lookup): a slot says "this leaf
 * verified against the chain and CRL texts of this digest, in this time mode, from verified_at
 * until expires". Every field is atomic and the slot is a sequence lock whose writers never
 * wait: a writer that finds the slot being written skips its store.
 */
struct shared_entry {
    _Atomic uint32_t sequence; /* odd while a writer fills the slot */
    _Atomic uint32_t mode;     /* 1: verified at the leaf's midpoint (expired certificates) */
    _Atomic uint64_t leaf_sha256[4];
    _Atomic uint64_t material[4]; /* the group's digest of its chain and CRL texts */
    _Atomic int64_t verified_at;
    _Atomic int64_t expires; /* 0: empty */
};

static struct shared_entry shared_cache[SHARED_CACHE_SLOTS];

struct attestation {
    OSSL_LIB_CTX *libctx;
    EVP_MD *sha256;
    struct attestation_group *groups;
    size_t group_count;
    struct cache_entry *cache;
    struct attestation_stats stats;
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
    struct attestation_material *material = group->material;
    if (material != NULL && atomic_fetch_sub(&material->references, 1) != 1)
        return;
    X509_STORE_free(group->store);
    sk_X509_pop_free(group->intermediates, X509_free);
    sk_X509_CRL_pop_free(group->crls, X509_CRL_free);
    free(material);
}

/* Where a group's chain comes from, for messages. */
static const char *chain_source(const struct config_group *config_group)
{
    return config_group->ca_chain_file != NULL ? config_group->ca_chain_file
                                               : "the inline certificateChain";
}

/* Reads every certificate of a PEM file, in order, into the library context. */
static STACK_OF(X509) * load_chain(OSSL_LIB_CTX *libctx, const char *path, const char *pem,
                                   char *err, size_t err_length)
{
    BIO *bio = pem != NULL ? BIO_new_mem_buf(pem, -1) : BIO_new_file(path, "r");
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
        snprintf(err, err_length, "cannot read CA chain %s: %s",
                 path != NULL && pem == NULL ? path : "(inline PEM)", detail);
        sk_X509_pop_free(chain, X509_free);
        return NULL;
    }
    return chain;
}

static int time_of(const ASN1_TIME *asn1, time_t *out)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(asn1, &tm) != 1)
        return -1;
    *out = timegm(&tm);
    return 0;
}

/*
 * Proves the configured chain once: each certificate issued and signed by the
 * next. Records the window in which all of them are valid.
 */
static int check_configured_chain(const struct config_group *config_group, STACK_OF(X509) * chain,
                                  time_t *not_before, time_t *not_after, char *err,
                                  size_t err_length)
{
    int count = sk_X509_num(chain);

    *not_before = 0;
    *not_after = (time_t)INT64_MAX;
    for (int i = 0; i < count; i++) {
        X509 *certificate = sk_X509_value(chain, i);
        X509 *issuer = sk_X509_value(chain, i + 1 < count ? i + 1 : i);
        time_t from, until;

        if (time_of(X509_get0_notBefore(certificate), &from) != 0 ||
            time_of(X509_get0_notAfter(certificate), &until) != 0) {
            snprintf(err, err_length,
                     "enrollment group %s: certificate %d of %s has an unreadable "
                     "validity",
                     config_group->id, i + 1, chain_source(config_group));
            return -1;
        }
        *not_before = from > *not_before ? from : *not_before;
        *not_after = until < *not_after ? until : *not_after;
        if (X509_check_issued(issuer, certificate) != X509_V_OK ||
            X509_verify(certificate, X509_get0_pubkey(issuer)) != 1) {
            ERR_clear_error();
            snprintf(err, err_length,
                     "enrollment group %s: certificate %d of %s is not issued by the next one "
                     "(the file must list the first CA, then each issuer, ending with the root)",
                     config_group->id, i + 1, chain_source(config_group));
            return -1;
        }
    }
    return 0;
}

/* "crls[N]" or the file, for messages. */
static void crl_source(const struct config_group *config_group, size_t index, char *out,
                       size_t out_length)
{
    const char *entry = config_group->crls[index];

    if (entry[0] == '/')
        snprintf(out, out_length, "%s", entry);
    else
        snprintf(out, out_length, "crls[%zu] (inline PEM)", index);
}

/* The certificate of chain that issued and signed crl, or NULL. */
static X509 *crl_signer(X509_CRL *crl, STACK_OF(X509) * chain)
{
    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *ca = sk_X509_value(chain, i);

        if (X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) == 0 &&
            X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1)
            return ca;
    }
    ERR_clear_error();
    return NULL;
}

/* Reads one CRL entry (file or PEM text), proving each CRL in it against the chain. */
static int load_crl_entry(OSSL_LIB_CTX *libctx, const struct config_group *config_group,
                          size_t index, STACK_OF(X509) * chain, STACK_OF(X509_CRL) * crls,
                          char *err, size_t err_length)
{
    const char *entry = config_group->crls[index];
    const char *text = config_group->crl_pems != NULL ? config_group->crl_pems[index] : NULL;
    BIO *bio = text != NULL      ? BIO_new_mem_buf(text, -1)
               : entry[0] == '/' ? BIO_new_file(entry, "r")
                                 : BIO_new_mem_buf(entry, -1);
    STACK_OF(X509_INFO) *infos = NULL;
    char source[300];
    int found = 0;
    int result = -1;

    crl_source(config_group, index, source, sizeof(source));
    if (bio != NULL)
        infos = PEM_X509_INFO_read_bio_ex(bio, NULL, NULL, NULL, libctx, NULL);
    if (infos == NULL) {
        snprintf(err, err_length, "enrollment group %s: cannot read CRL %s", config_group->id,
                 source);
        goto out;
    }
    for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *info = sk_X509_INFO_value(infos, i);

        if (info->crl == NULL)
            continue;
        found++;
        if (crl_signer(info->crl, chain) == NULL) {
            char issuer[256];

            format_name(X509_CRL_get_issuer(info->crl), issuer, sizeof(issuer));
            snprintf(err, err_length,
                     "enrollment group %s: CRL %s (issuer %s) is not signed by a CA of the "
                     "group's certificate chain",
                     config_group->id, source, issuer);
            goto out;
        }
        if (sk_X509_CRL_push(crls, info->crl) <= 0) {
            snprintf(err, err_length, "out of memory");
            goto out;
        }
        info->crl = NULL;
    }
    if (found == 0) {
        snprintf(err, err_length, "enrollment group %s: %s holds no CRL", config_group->id, source);
        goto out;
    }
    result = 0;
out:
    ERR_clear_error();
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    BIO_free(bio);
    return result;
}

static int load_crls(OSSL_LIB_CTX *libctx, const struct config_group *config_group,
                     STACK_OF(X509) * chain, struct attestation_group *group, char *err,
                     size_t err_length)
{
    if (config_group->crl_count == 0)
        return 0;
    group->crls = sk_X509_CRL_new_null();
    if (group->crls == NULL) {
        snprintf(err, err_length, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < config_group->crl_count; i++) {
        if (load_crl_entry(libctx, config_group, i, chain, group->crls, err, err_length) != 0)
            return -1;
    }
    return 0;
}

static int group_load(OSSL_LIB_CTX *libctx, const struct config_group *config_group,
                      struct attestation_group *group, char *err, size_t err_length)
{
    STACK_OF(X509) * chain;
    X509 *root;
    int count;

    if (config_group->ca_chain_file == NULL && config_group->ca_chain_pem == NULL) {
        snprintf(err, err_length, "enrollment group %s has no CA chain", config_group->id);
        return -1;
    }
    chain = load_chain(libctx, config_group->ca_chain_file, config_group->ca_chain_pem, err,
                       err_length);
    if (chain == NULL)
        return -1;
    count = sk_X509_num(chain);
    if (count == 0) {
        snprintf(err, err_length, "enrollment group %s: %s holds no certificate", config_group->id,
                 chain_source(config_group));
        sk_X509_pop_free(chain, X509_free);
        return -1;
    }
    root = sk_X509_value(chain, count - 1);
    if (X509_self_signed(root, 1) != 1) {
        ERR_clear_error();
        snprintf(err, err_length,
                 "enrollment group %s: the last certificate of %s is not a self-signed root",
                 config_group->id, chain_source(config_group));
        sk_X509_pop_free(chain, X509_free);
        return -1;
    }
    if (check_configured_chain(config_group, chain, &group->chain_not_before,
                               &group->chain_not_after, err, err_length) != 0 ||
        load_crls(libctx, config_group, chain, group, err, err_length) != 0) {
        sk_X509_pop_free(chain, X509_free);
        return -1;
    }
    group->first_ca = sk_X509_value(chain, 0);
    group->store = X509_STORE_new();
    if (group->store == NULL || X509_STORE_add_cert(group->store, group->first_ca) != 1 ||
        X509_STORE_set_flags(group->store, X509_V_FLAG_PARTIAL_CHAIN) != 1) {
        snprintf(err, err_length, "enrollment group %s: cannot build the trust store",
                 config_group->id);
        ERR_clear_error();
        sk_X509_pop_free(chain, X509_free);
        return -1;
    }
    group->intermediates = chain;
    group->material = calloc(1, sizeof(*group->material));
    if (group->material == NULL) {
        snprintf(err, err_length, "out of memory");
        return -1;
    }
    atomic_store(&group->material->references, 1);
    group->fresh = true;
    return 0;
}

/*
 * The digest of what a group's material is loaded from, when every text is
 * in memory (a snapshot read the files): false when it cannot be shared.
 */
static bool material_digest(const struct attestation *attestation,
                            const struct config_group *config_group, uint8_t digest[32])
{
    if (config_group->ca_chain_pem == NULL)
        return false;
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    bool ok = context != NULL && EVP_DigestInit_ex(context, attestation->sha256, NULL) == 1;
    for (size_t i = 0; ok && i <= config_group->crl_count; i++) {
        const char *text = i == 0                           ? config_group->ca_chain_pem
                           : config_group->crl_pems != NULL ? config_group->crl_pems[i - 1]
                                                            : config_group->crls[i - 1];
        uint64_t length = text != NULL && text[0] != '/' ? strlen(text) : 0;
        ok = length > 0 && EVP_DigestUpdate(context, &length, sizeof(length)) == 1 &&
             EVP_DigestUpdate(context, text, length) == 1;
    }
    ok = ok && EVP_DigestFinal_ex(context, digest, NULL) == 1;
    EVP_MD_CTX_free(context);
    ERR_clear_error();
    return ok;
}

/*
 * Takes the material of previous's group with the same id and digest, if
 * there is one: that group was proven, and compared with the others, as it
 * is. Another group with the same texts is not shared: it is loaded and
 * compared afresh, so that the duplicate is found.
 */
static bool group_share(const struct attestation *previous, size_t hint,
                        struct attestation_group *group)
{
    for (size_t k = 0; previous != NULL && k < previous->group_count; k++) {
        size_t i = (hint + k) % previous->group_count;
        const struct attestation_group *candidate = &previous->groups[i];
        if (!candidate->shareable || memcmp(candidate->digest, group->digest, 32) != 0 ||
            strcmp(candidate->id, group->id) != 0)
            continue;
        group->material = candidate->material;
        atomic_fetch_add(&group->material->references, 1);
        group->first_ca = candidate->first_ca;
        group->store = candidate->store;
        group->intermediates = candidate->intermediates;
        group->crls = candidate->crls;
        group->chain_not_before = candidate->chain_not_before;
        group->chain_not_after = candidate->chain_not_after;
        return true;
    }
    return false;
}

static bool same_owner(const struct attestation_group *a, const struct attestation_group *b)
{
    return (a->owner == NULL && b->owner == NULL) ||
           (a->owner != NULL && b->owner != NULL && strcmp(a->owner, b->owner) == 0);
}

/*
 * Two groups whose first CAs are the same certificate could both match a
 * device. Only pairs with a group loaded afresh are compared: shared ones
 * were compared when they were loaded. Groups of one owner are named; a
 * group of another owner is not (nor its CA's subject), so that no owner
 * learns about another's enrollments.
 */
static int check_distinct(const struct attestation *attestation, char *err, size_t err_length)
{
    for (size_t i = 0; i < attestation->group_count; i++) {
        const struct attestation_group *a = &attestation->groups[i];

        for (size_t j = i + 1; j < attestation->group_count; j++) {
            const struct attestation_group *b = &attestation->groups[j];

            if (!a->fresh && !b->fresh)
                continue;
            if (X509_NAME_cmp(X509_get_subject_name(a->first_ca),
                              X509_get_subject_name(b->first_ca)) != 0 ||
                EVP_PKEY_eq(X509_get0_pubkey(a->first_ca), X509_get0_pubkey(b->first_ca)) != 1)
                continue;
            if (same_owner(a, b)) {
                char subject[256];

                format_name(X509_get_subject_name(a->first_ca), subject, sizeof(subject));
                snprintf(err, err_length,
                         "enrollment groups %s and %s have the same first CA certificate (%s): "
                         "a device could match both",
                         a->id, b->id, subject);
            } else {
                snprintf(err, err_length,
                         "enrollment group %s: its first CA certificate is enrolled by another "
                         "owner already: a device could match both",
                         b->fresh ? b->id : a->id);
            }
            ERR_clear_error();
            return -1;
        }
    }
    ERR_clear_error();
    return 0;
}

struct attestation *attestation_create(OSSL_LIB_CTX *libctx, const struct config *config, char *err,
                                       size_t err_length)
{
    return attestation_create_from(libctx, config, NULL, err, err_length);
}

struct attestation *attestation_create_from(OSSL_LIB_CTX *libctx, const struct config *config,
                                            const struct attestation *previous, char *err,
                                            size_t err_length)
{
    struct attestation *attestation = calloc(1, sizeof(*attestation));

    if (attestation == NULL) {
        snprintf(err, err_length, "out of memory");
        return NULL;
    }
    if (previous != NULL && previous->libctx != libctx)
        previous = NULL;
    attestation->libctx = libctx;
    attestation->cache = calloc(ATTESTATION_CACHE_SLOTS, sizeof(*attestation->cache));
    attestation->sha256 = EVP_MD_fetch(libctx, "SHA256", NULL);
    if (attestation->cache == NULL) {
        snprintf(err, err_length, "out of memory");
        attestation_free(attestation);
        return NULL;
    }
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
        const struct config_group *config_group = &config->groups[i];
        struct attestation_group *group = &attestation->groups[i];

        attestation->group_count = i + 1;
        group->id = config_group->id;
        group->owner = config_group->owner;
        group->expired_certificate_enabled = config_group->expired_certificate_enabled;
        group->disabled = config_group->disabled;
        group->shareable = material_digest(attestation, config_group, group->digest);
        if (group->shareable && group_share(previous, i, group))
            continue;
        if (group_load(libctx, config_group, group, err, err_length) != 0) {
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
    free(attestation->cache);
    EVP_MD_free(attestation->sha256);
    free(attestation);
}

/*
 * The group whose first CA issued certificate, or -1. Names and key
 * identifiers decide; a signature is checked only when several first CAs
 * fit (same subject, no telling key identifiers).
 */
static long group_issuing(const struct attestation *attestation, X509 *certificate)
{
    long found = -1;
    bool ambiguous = false;

    for (size_t i = 0; i < attestation->group_count; i++) {
        if (X509_check_issued(attestation->groups[i].first_ca, certificate) != X509_V_OK)
            continue;
        if (found >= 0)
            ambiguous = true;
        else
            found = (long)i;
    }
    if (ambiguous) {
        found = -1;
        for (size_t i = 0; found < 0 && i < attestation->group_count; i++) {
            X509 *first_ca = attestation->groups[i].first_ca;

            if (X509_check_issued(first_ca, certificate) == X509_V_OK &&
                X509_verify(certificate, X509_get0_pubkey(first_ca)) == 1)
                found = (long)i;
        }
    }
    ERR_clear_error();
    return found;
}

/* Lowest certificate first: the leaf, then the presented chain. */
static long match_group(const struct attestation *attestation, X509 *leaf, STACK_OF(X509) * chain,
                        bool *by_leaf)
{
    long index = group_issuing(attestation, leaf);

    *by_leaf = index >= 0;
    for (int i = 0; index < 0 && chain != NULL && i < sk_X509_num(chain); i++)
        index = group_issuing(attestation, sk_X509_value(chain, i));
    return index;
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

/* With CRLs: a leaf whose issuer has none is not checked. */
static int crl_verify_callback(int ok, X509_STORE_CTX *context)
{
    if (!ok && X509_STORE_CTX_get_error(context) == X509_V_ERR_UNABLE_TO_GET_CRL)
        return 1;
    return ok;
}

/* For groups verifying at an earlier time: the CRLs' own validity window is not enforced. */
static int crl_any_time_verify_callback(int ok, X509_STORE_CTX *context)
{
    int error = X509_STORE_CTX_get_error(context);

    if (!ok && (error == X509_V_ERR_CRL_NOT_YET_VALID || error == X509_V_ERR_CRL_HAS_EXPIRED))
        return 1;
    return crl_verify_callback(ok, context);
}

static int verify_chain(const struct attestation *attestation,
                        const struct attestation_group *group, X509 *leaf, STACK_OF(X509) * chain,
                        time_t now, char *err, size_t err_length)
{
    X509_STORE_CTX *context = X509_STORE_CTX_new_ex(attestation->libctx, NULL);
    time_t at = now;
    int result = -1;

    if (context == NULL) {
        snprintf(err, err_length, "out of memory");
        goto out;
    }
    if (group->expired_certificate_enabled && validity_midpoint(leaf, &at) != 0) {
        snprintf(err, err_length, "cannot read the validity of the device certificate");
        goto out;
    }
    /* The first CA is the anchor; the device's own chain supplies anything between. */
    if (X509_STORE_CTX_init(context, group->store, leaf, chain) != 1) {
        snprintf(err, err_length, "cannot set up chain verification");
        goto out;
    }
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(context), at);
    if (group->crls != NULL) {
        X509_STORE_CTX_set0_crls(context, group->crls);
        X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(context), X509_V_FLAG_CRL_CHECK);
        X509_STORE_CTX_set_verify_cb(context, group->expired_certificate_enabled
                                                  ? crl_any_time_verify_callback
                                                  : crl_verify_callback);
    }
    if (X509_verify_cert(context) != 1) {
        int code = X509_STORE_CTX_get_error(context);

        snprintf(err, err_length,
                 "device certificate chain does not verify for enrollment group %s: %s "
                 "(depth %d)",
                 group->id, X509_verify_cert_error_string(code),
                 X509_STORE_CTX_get_error_depth(context));
        goto out;
    }
    if (at < group->chain_not_before || at > group->chain_not_after) {
        snprintf(err, err_length, "the CA chain of enrollment group %s is not valid at that time",
                 group->id);
        goto out;
    }
    result = 0;
out:
    ERR_clear_error();
    X509_STORE_CTX_free(context);
    return result;
}

/*
 * The leaf's first CN as UTF-8 into out (out_length holds any CN of
 * ATTESTATION_CN_MAX_CHARACTERS). NULL, or what is wrong with it: a longer
 * name or one holding NUL is refused rather than cut, since a cut can split a
 * character and the record would not be valid text.
 */
static const char *copy_common_name(X509 *leaf, char *out, size_t out_length)
{
    const X509_NAME *subject = X509_get_subject_name(leaf);
    int position = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    unsigned char *utf8 = NULL;
    int length;
    size_t characters = 0;

    out[0] = '\0';
    if (position < 0)
        return NULL;
    length = ASN1_STRING_to_UTF8(&utf8,
                                 X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, position)));
    if (length < 0) {
        ERR_clear_error();
        return "device certificate common name is not text";
    }
    for (int i = 0; i < length; i++)
        characters += (utf8[i] & 0xc0) != 0x80;
    const char *problem = NULL;
    if (memchr(utf8, '\0', (size_t)length) != NULL)
        problem = "device certificate common name holds a NUL character";
    else if (characters > ATTESTATION_CN_MAX_CHARACTERS || (size_t)length >= out_length)
        problem = "device certificate common name is longer than 64 characters (RFC 5280)";
    else
        memcpy(out, utf8, (size_t)length + 1);
    OPENSSL_free(utf8);
    return problem;
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
    uuid_v5_ex(attestation->libctx, &UUID_NAMESPACE_X500, spki, (size_t)spki_length,
               &result->record_id);
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
    const char *problem =
        copy_common_name(leaf, result->leaf_common_name, sizeof(result->leaf_common_name));
    if (problem != NULL) {
        snprintf(err, err_length, "%s", problem);
        return -1;
    }
    return 0;
}

static struct cache_entry *cache_slot(struct attestation *attestation, const uint8_t hash[32])
{
    size_t index = ((size_t)hash[0] | (size_t)hash[1] << 8 | (size_t)hash[2] << 16) &
                   (ATTESTATION_CACHE_SLOTS - 1);
    return &attestation->cache[index];
}

/*
 * When a verification at now stops vouching for leaf: the earliest of its expiry, the chain's,
 * and the TTL (only the TTL for groups that verify at the leaf's midpoint). -1: unreadable.
 */
static time_t verdict_expiry(const struct attestation_group *group, X509 *leaf, time_t now)
{
    time_t expires = now + ATTESTATION_CACHE_SECONDS;
    time_t leaf_not_after;

    if (!group->expired_certificate_enabled) {
        if (time_of(X509_get0_notAfter(leaf), &leaf_not_after) != 0)
            return -1;
        if (leaf_not_after < expires)
            expires = leaf_not_after;
        if (group->chain_not_after < expires)
            expires = group->chain_not_after;
    }
    return expires;
}

/* Remembers a verified leaf until verdict_expiry. */
static void cache_store(struct attestation *attestation, const struct attestation_group *group,
                        X509 *leaf, const uint8_t hash[32], time_t now,
                        const struct attestation_result *result)
{
    struct cache_entry *entry = cache_slot(attestation, hash);
    time_t expires = verdict_expiry(group, leaf, now);

    if (expires < 0)
        return;
    memcpy(entry->leaf_sha256, hash, 32);
    entry->verified_at = now;
    entry->result = *result;
    entry->expires = expires;
}

/*
 * The shared verdict cache. A device connects twice per provisioning and the
 * second connection may land on another shard, whose own cache (above) has
 * never seen the leaf: with two shards about half the second connections
 * verified the chain again. So a verification is also published here, for
 * every shard of the process, keyed by the leaf's SHA-256 together with the
 * digest of the chain and CRL texts it was verified against and the time
 * mode: a configuration change that touches a group's chain or CRLs changes
 * its digest, so a revoked leaf never passes from an older verdict. Only the
 * chain verification is skipped on a hit: matching, the disabled flag, the
 * clientAuth EKU and the result (record id, CN, serial) are done by the shard
 * itself, against its own view. Groups whose texts are not all in memory
 * (no digest) do not use it.
 *
 * No lock: each slot is a sequence lock over atomic fields; a reader copies
 * the slot and retries nothing (a slot being written is a miss), and a writer
 * that finds the slot taken skips its store. Shards write only when they
 * verified a chain in full, once per device.
 */
static struct shared_entry *shared_slot(const uint8_t hash[32])
{
    size_t index =
        ((size_t)hash[3] | (size_t)hash[4] << 8 | (size_t)hash[5] << 16) & (SHARED_CACHE_SLOTS - 1);
    return &shared_cache[index];
}

static void words_of(const uint8_t bytes[32], uint64_t words[4])
{
    memcpy(words, bytes, 32);
}

static bool shared_lookup(const struct attestation_group *group, const uint8_t hash[32], time_t now)
{
    struct shared_entry *entry = shared_slot(hash);
    uint64_t leaf[4], material[4];
    bool same = true;
    uint32_t before = atomic_load_explicit(&entry->sequence, memory_order_acquire);

    if (before & 1u)
        return false;
    words_of(hash, leaf);
    words_of(group->digest, material);
    for (int i = 0; i < 4; i++) {
        same =
            same && atomic_load_explicit(&entry->leaf_sha256[i], memory_order_relaxed) == leaf[i];
        same =
            same && atomic_load_explicit(&entry->material[i], memory_order_relaxed) == material[i];
    }
    same = same && atomic_load_explicit(&entry->mode, memory_order_relaxed) ==
                       (group->expired_certificate_enabled ? 1u : 0u);
    int64_t verified_at = atomic_load_explicit(&entry->verified_at, memory_order_relaxed);
    int64_t expires = atomic_load_explicit(&entry->expires, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&entry->sequence, memory_order_relaxed) != before)
        return false;
    return same && expires > (int64_t)now && verified_at <= (int64_t)now;
}

static void shared_store(const struct attestation_group *group, X509 *leaf, const uint8_t hash[32],
                         time_t now)
{
    struct shared_entry *entry = shared_slot(hash);
    time_t expires = verdict_expiry(group, leaf, now);
    uint64_t leaf_words[4], material[4];
    uint32_t sequence = atomic_load_explicit(&entry->sequence, memory_order_relaxed);

    if (expires < 0 || (sequence & 1u) ||
        !atomic_compare_exchange_strong_explicit(&entry->sequence, &sequence, sequence + 1,
                                                 memory_order_acquire, memory_order_relaxed))
        return;
    atomic_thread_fence(memory_order_release);
    words_of(hash, leaf_words);
    words_of(group->digest, material);
    for (int i = 0; i < 4; i++) {
        atomic_store_explicit(&entry->leaf_sha256[i], leaf_words[i], memory_order_relaxed);
        atomic_store_explicit(&entry->material[i], material[i], memory_order_relaxed);
    }
    atomic_store_explicit(&entry->mode, group->expired_certificate_enabled ? 1u : 0u,
                          memory_order_relaxed);
    atomic_store_explicit(&entry->verified_at, (int64_t)now, memory_order_relaxed);
    atomic_store_explicit(&entry->expires, (int64_t)expires, memory_order_relaxed);
    atomic_store_explicit(&entry->sequence, sequence + 2, memory_order_release);
}

int attestation_verify(struct attestation *attestation, X509 *leaf, STACK_OF(X509) * chain,
                       time_t now, struct attestation_result *result, char *err, size_t err_length)
{
    long group_index;
    const struct attestation_group *group;
    uint8_t hash[32];
    unsigned hash_length = 0;
    bool by_leaf;

    if (leaf == NULL) {
        snprintf(err, err_length, "no device certificate presented");
        return -1;
    }
    if (X509_digest(leaf, attestation->sha256, hash, &hash_length) == 1 && hash_length == 32) {
        struct cache_entry *entry = cache_slot(attestation, hash);

        if (entry->expires > now && entry->verified_at <= now &&
            memcmp(entry->leaf_sha256, hash, 32) == 0) {
            *result = entry->result;
            attestation->stats.cache_hits++;
            return 0;
        }
    } else {
        hash_length = 0;
        ERR_clear_error();
    }
    attestation->stats.verifications++;
    group_index = match_group(attestation, leaf, chain, &by_leaf);
    if (group_index < 0) {
        char issuer[256];

        format_name(X509_get_issuer_name(leaf), issuer, sizeof(issuer));
        snprintf(err, err_length, "no enrollment group matches issuer %s", issuer);
        return -1;
    }
    group = &attestation->groups[group_index];
    if (group->disabled) {
        snprintf(err, err_length, "enrollment group %s is disabled", group->id);
        return -1;
    }
    /* No EKU at all means "any purpose" to OpenSSL; devices must say clientAuth. */
    if ((X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE) == 0 ||
        (X509_get_extended_key_usage(leaf) & XKU_SSL_CLIENT) == 0) {
        snprintf(err, err_length, "leaf lacks extended key usage clientAuth");
        return -1;
    }
    /* Only a leaf its group's first CA issued directly is cached: the chain played no part. */
    bool cacheable = by_leaf && hash_length == 32;
    bool shared = cacheable && group->shareable && shared_lookup(group, hash, now);
    if ((!shared && verify_chain(attestation, group, leaf, chain, now, err, err_length) != 0) ||
        fill_result(attestation, (size_t)group_index, leaf, result, err, err_length) != 0)
        return -1;
    if (shared) {
        /* Counted as a cache hit after all: no chain was verified. */
        attestation->stats.verifications--;
        attestation->stats.cache_hits++;
        attestation->stats.shared_hits++;
    } else if (cacheable && group->shareable) {
        shared_store(group, leaf, hash, now);
    }
    if (cacheable)
        cache_store(attestation, group, leaf, hash, now, result);
    return 0;
}

void attestation_get_stats(const struct attestation *attestation, struct attestation_stats *stats)
{
    *stats = attestation->stats;
}

char *attestation_leaf_pem(X509 *leaf)
{
    /* The DER the certificate was decoded from (cached by OpenSSL), written as PEM text. */
    unsigned char *der = NULL;
    int length = i2d_X509(leaf, &der);
    char *pem = length > 0 ? base64_pem("CERTIFICATE", der, (size_t)length, NULL, 0) : NULL;

    OPENSSL_free(der);
    return pem;
}
