/*
 * csr: checks a device's PEM PKCS#10 request before anything is signed for
 * it. The request comes straight from the network, so every size is bounded
 * before OpenSSL parses it: the PEM text (CSR_MAX_PEM), its DER body
 * (CSR_MAX_DER) and the extracted subject and key (the csr_result buffers).
 * Checks run cheapest first; the signature is verified last but one, so a
 * request with a foreign key type never costs a verification.
 */
#include "crypto/csr.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define CN_PREFIX "uuid:"
#define CN_PREFIX_LENGTH (sizeof(CN_PREFIX) - 1)

static int fail(char *err, size_t err_length, const char *reason)
{
    if (err_length > 0)
        snprintf(err, err_length, "%s", reason);
    return -1;
}

/*
 * Decodes the PEM armour ourselves rather than with PEM_read_bio_X509_REQ so
 * the DER length can be bounded and the request object can be created in
 * libctx before d2i fills it.
 */
static X509_REQ *read_request(OSSL_LIB_CTX *libctx, const char *pem, size_t pem_length, char *err,
                              size_t err_length)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)pem_length);
    char *name = NULL;
    char *header = NULL;
    unsigned char *der = NULL;
    long der_length = 0;
    X509_REQ *req = NULL;

    if (bio == NULL) {
        fail(err, err_length, "out of memory");
        return NULL;
    }
    if (PEM_read_bio(bio, &name, &header, &der, &der_length) != 1 ||
        (strcmp(name, PEM_STRING_X509_REQ) != 0 && strcmp(name, PEM_STRING_X509_REQ_OLD) != 0)) {
        fail(err, err_length, "CSR is not valid PEM");
        goto out;
    }
    if (der_length <= 0 || der_length > CSR_MAX_DER) {
        fail(err, err_length, "CSR is too large");
        goto out;
    }
    req = X509_REQ_new_ex(libctx, NULL);
    if (req == NULL) {
        fail(err, err_length, "out of memory");
        goto out;
    }
    const unsigned char *cursor = der;
    if (d2i_X509_REQ(&req, &cursor, der_length) == NULL || cursor != der + der_length) {
        X509_REQ_free(req);
        req = NULL;
        fail(err, err_length, "CSR is not a valid PKCS#10 request");
    }
out:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    BIO_free(bio);
    ERR_clear_error();
    return req;
}

static bool key_is_p256(EVP_PKEY *key)
{
    char group[64];

    if (key == NULL || !EVP_PKEY_is_a(key, "EC"))
        return false;
    if (EVP_PKEY_get_group_name(key, group, sizeof(group), NULL) != 1)
        return false;
    return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

static bool signed_with_ecdsa_sha256(const X509_REQ *req)
{
    const X509_ALGOR *algorithm = NULL;
    const ASN1_OBJECT *oid = NULL;

    X509_REQ_get0_signature(req, NULL, &algorithm);
    if (algorithm == NULL)
        return false;
    X509_ALGOR_get0(&oid, NULL, NULL, algorithm);
    return OBJ_obj2nid(oid) == NID_ecdsa_with_SHA256;
}

/* The subject must carry exactly one CN, "uuid:" (any case) then a non-nil UUID. */
static int device_id_from_subject(const X509_NAME *subject, struct dps_uuid *device_id)
{
    int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);

    if (index < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, index) >= 0)
        return -1;
    const ASN1_STRING *value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
    const char *text = (const char *)ASN1_STRING_get0_data(value);
    int length = ASN1_STRING_length(value);
    if (length != (int)(CN_PREFIX_LENGTH + UUID_STRING_LENGTH) ||
        strncasecmp(text, CN_PREFIX, CN_PREFIX_LENGTH) != 0)
        return -1;
    if (uuid_parse(text + CN_PREFIX_LENGTH, UUID_STRING_LENGTH, device_id) != 0 ||
        uuid_is_nil(device_id))
        return -1;
    return 0;
}

int csr_check(OSSL_LIB_CTX *libctx, const char *pem, size_t pem_length, struct csr_result *result,
              char *err, size_t err_length)
{
    int status = -1;

    if (pem == NULL || pem_length == 0)
        return fail(err, err_length, "CSR is empty");
    if (pem_length > CSR_MAX_PEM)
        return fail(err, err_length, "CSR is too large");
    X509_REQ *req = read_request(libctx, pem, pem_length, err, err_length);
    if (req == NULL)
        return -1;

    EVP_PKEY *key = X509_REQ_get0_pubkey(req);
    const X509_NAME *subject = X509_REQ_get_subject_name(req);
    if (!key_is_p256(key)) {
        fail(err, err_length, "CSR key is not EC P-256");
    } else if (!signed_with_ecdsa_sha256(req)) {
        fail(err, err_length, "CSR signature algorithm is not ecdsa-with-SHA256");
    } else if (X509_REQ_verify_ex(req, key, libctx, NULL) != 1) {
        fail(err, err_length, "CSR signature does not verify");
    } else if (device_id_from_subject(subject, &result->device_id) != 0) {
        fail(err, err_length, "CSR subject CN is not uuid:<device id>");
    } else {
        int subject_length = i2d_X509_NAME(subject, NULL);
        int spki_length = i2d_PUBKEY(key, NULL);
        if (subject_length <= 0 || (size_t)subject_length > sizeof(result->subject_der)) {
            fail(err, err_length, "CSR subject is too large");
        } else if (spki_length <= 0 || (size_t)spki_length > sizeof(result->spki_der)) {
            fail(err, err_length, "CSR public key is too large");
        } else {
            unsigned char *cursor = result->subject_der;
            result->subject_length = (size_t)i2d_X509_NAME(subject, &cursor);
            cursor = result->spki_der;
            result->spki_length = (size_t)i2d_PUBKEY(key, &cursor);
            status = 0;
        }
    }
    X509_REQ_free(req);
    ERR_clear_error();
    return status;
}
