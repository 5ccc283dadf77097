/*
 * jwt_verify: a token's signature checked against a PEM public key or
 * certificate, for tests and fuzz targets that check what the signer and
 * crypto/jwt.c produce. The daemon verifies operators' tokens in
 * control/auth.c; it never verifies its own.
 */
#include "tests/jwt_verify.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/error.h"
#include "crypto/jwt.h"

/* The public key of a PEM "PUBLIC KEY" or "CERTIFICATE". */
static EVP_PKEY *read_public_key(OSSL_LIB_CTX *libctx, const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    char *name = NULL;
    char *header = NULL;
    unsigned char *der = NULL;
    long length = 0;
    EVP_PKEY *key = NULL;

    if (bio != NULL && PEM_read_bio(bio, &name, &header, &der, &length) == 1) {
        const unsigned char *cursor = der;
        if (strcmp(name, PEM_STRING_PUBLIC) == 0) {
            key = d2i_PUBKEY_ex(NULL, &cursor, length, libctx, NULL);
        } else if (strcmp(name, PEM_STRING_X509) == 0 || strcmp(name, PEM_STRING_X509_OLD) == 0) {
            X509 *certificate = X509_new_ex(libctx, NULL);
            if (certificate != NULL && d2i_X509(&certificate, &cursor, length) != NULL)
                key = X509_get_pubkey(certificate);
            X509_free(certificate);
        }
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    BIO_free(bio);
    return key;
}

/* The header's "alg" must be the one the key implies: no "none", no confusion. */
static bool header_matches(const uint8_t *header, size_t length, const char *algorithm)
{
    json_t *object = json_loadb((const char *)header, length, 0, NULL);
    const char *alg = json_string_value(json_object_get(object, "alg"));
    bool matches = alg != NULL && strcmp(alg, algorithm) == 0;

    json_decref(object);
    return matches;
}

static bool signature_verifies(OSSL_LIB_CTX *libctx, EVP_PKEY *key, const char *signed_part,
                               size_t signed_length, const uint8_t *signature, size_t length)
{
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    uint8_t *der = NULL;
    bool ok = false;

    if (EVP_PKEY_is_a(key, "EC")) {
        if (length != JWT_ES256_SIGNATURE_LENGTH)
            goto out;
        der = jwt_es256_signature_to_der(signature, &length);
        if (der == NULL)
            goto out;
        signature = der;
    }
    ok = context != NULL &&
         EVP_DigestVerifyInit_ex(context, NULL, "SHA256", libctx, NULL, key, NULL) == 1 &&
         EVP_DigestVerify(context, signature, length, (const uint8_t *)signed_part,
                          signed_length) == 1;
out:
    OPENSSL_free(der);
    EVP_MD_CTX_free(context);
    return ok;
}

char *jwt_verify(OSSL_LIB_CTX *libctx, const char *token, const char *public_key_pem, char *err,
                 size_t err_length)
{
    const char *first = strchr(token, '.');
    const char *second = first != NULL ? strchr(first + 1, '.') : NULL;
    uint8_t *header = NULL;
    uint8_t *payload = NULL;
    uint8_t *signature = NULL;
    size_t header_length = 0;
    size_t payload_length = 0;
    size_t signature_length = 0;
    EVP_PKEY *key = NULL;

    if (second == NULL || strchr(second + 1, '.') != NULL) {
        error_set(err, err_length, "token is not three dot-separated parts");
        return NULL;
    }
    header = jwt_base64url_decode(token, (size_t)(first - token), &header_length);
    payload = jwt_base64url_decode(first + 1, (size_t)(second - first - 1), &payload_length);
    signature = jwt_base64url_decode(second + 1, strlen(second + 1), &signature_length);
    if (header == NULL || payload == NULL || signature == NULL) {
        error_set(err, err_length, "token part is not base64url");
        goto error;
    }
    key = read_public_key(libctx, public_key_pem);
    const char *algorithm = key != NULL ? jwt_algorithm_for(key) : NULL;
    if (algorithm == NULL) {
        error_set(err, err_length, "no usable public key in the PEM");
        goto error;
    }
    if (!header_matches(header, header_length, algorithm)) {
        error_set(err, err_length, "token header alg is not %s", algorithm);
        goto error;
    }
    if (!signature_verifies(libctx, key, token, (size_t)(second - token), signature,
                            signature_length)) {
        error_set(err, err_length, "token signature does not verify");
        goto error;
    }
    if (memchr(payload, '\0', payload_length) != NULL) {
        error_set(err, err_length, "token payload is not text");
        goto error;
    }
    free(header);
    free(signature);
    EVP_PKEY_free(key);
    return (char *)payload;

error:
    free(header);
    free(payload);
    free(signature);
    EVP_PKEY_free(key);
    return NULL;
}
