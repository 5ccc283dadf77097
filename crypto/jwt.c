/*
 * jwt: compact JWS tokens (RFC 7515/7519) with ES256 or RS256.
 *
 * The encoded header depends only on the key, so jwt_key_load() builds it
 * once; signing a token is then two base64url encodings and one signature.
 * ES256 signatures travel as the raw 64-byte r||s (RFC 7518 3.4), while
 * OpenSSL produces and expects DER ECDSA-Sig-Value, hence the conversions
 * below. A jwt_key belongs to one signer worker and its library context.
 */
#include "crypto/jwt.h"
#include "crypto/keyfile.h"
#include "common/base64.h"
#include "common/error.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define ES256_COORDINATE_LENGTH 32

struct jwt_key {
    OSSL_LIB_CTX *libctx;
    EVP_PKEY *key;
    bool ec;
    char *header; /* base64url of the JSON header */
};

/* error_set, and the OpenSSL error queue left empty. */
static void set_error(char *err, size_t err_length, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(char *err, size_t err_length, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    error_vset(err, err_length, format, args);
    va_end(args);
    ERR_clear_error();
}
/* The trailing NUL lets JSON parts be used as strings. */
uint8_t *jwt_base64url_decode(const char *text, size_t length, size_t *out_length)
{
    return base64_decode_alloc(BASE64_URL, text, length, out_length);
}

static bool key_is_p256(EVP_PKEY *key)
{
    char group[64];

    return EVP_PKEY_get_group_name(key, group, sizeof(group), NULL) == 1 &&
           (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0);
}

/* "ES256" or "RS256" for a usable key, NULL otherwise. */
const char *jwt_algorithm_for(EVP_PKEY *key)
{
    if (EVP_PKEY_is_a(key, "EC") && key_is_p256(key))
        return "ES256";
    if (EVP_PKEY_is_a(key, "RSA") && EVP_PKEY_get_bits(key) >= 2048)
        return "RS256";
    return NULL;
}

static char *encode_header(const char *algorithm, const char *key_id)
{
    json_t *header = json_pack("{s:s, s:s}", "alg", algorithm, "typ", "JWT");
    char *text = NULL;
    char *encoded = NULL;

    if (header == NULL)
        return NULL;
    if (key_id == NULL || json_object_set_new(header, "kid", json_string(key_id)) == 0)
        text = json_dumps(header, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text != NULL)
        encoded = base64_encode_string(BASE64_URL, (const uint8_t *)text, strlen(text));
    free(text);
    json_decref(header);
    return encoded;
}

static int no_passphrase(char *buffer, int size, int rwflag, void *user)
{
    return 0;
}

struct jwt_key *jwt_key_load(OSSL_LIB_CTX *libctx, const char *key_file, const char *key_id,
                             char *err, size_t err_length)
{
    BIO *bio = BIO_new_file(key_file, "r");
    struct jwt_key *key = NULL;
    EVP_PKEY *pkey = NULL;

    if (bio == NULL) {
        set_error(err, err_length, "%s: cannot read the token key file", key_file);
        return NULL;
    }
    if (keyfile_check_loaded(key_file, err, err_length) != 0) {
        BIO_free(bio);
        return NULL;
    }
    pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, no_passphrase, NULL, libctx, NULL);
    BIO_free(bio);
    if (pkey == NULL) {
        set_error(err, err_length, "%s: not an unencrypted PEM private key", key_file);
        return NULL;
    }
    const char *algorithm = jwt_algorithm_for(pkey);
    if (algorithm == NULL) {
        set_error(err, err_length, "%s: token key must be EC P-256 or RSA of 2048 bits or more",
                  key_file);
        EVP_PKEY_free(pkey);
        return NULL;
    }
    key = calloc(1, sizeof(*key));
    if (key != NULL)
        key->header = encode_header(algorithm, key_id);
    if (key == NULL || key->header == NULL) {
        set_error(err, err_length, "out of memory");
        free(key);
        EVP_PKEY_free(pkey);
        return NULL;
    }
    key->libctx = libctx;
    key->key = pkey;
    key->ec = algorithm[0] == 'E';
    return key;
}

void jwt_key_free(struct jwt_key *key)
{
    if (key == NULL)
        return;
    EVP_PKEY_free(key->key);
    free(key->header);
    free(key);
}

/* DER ECDSA-Sig-Value to r||s, each left-padded to 32 bytes. */
static int der_to_raw(const uint8_t *der, size_t der_length, uint8_t raw[64])
{
    const unsigned char *cursor = der;
    ECDSA_SIG *signature = d2i_ECDSA_SIG(NULL, &cursor, (long)der_length);
    int status = -1;

    if (signature != NULL &&
        BN_bn2binpad(ECDSA_SIG_get0_r(signature), raw, ES256_COORDINATE_LENGTH) ==
            ES256_COORDINATE_LENGTH &&
        BN_bn2binpad(ECDSA_SIG_get0_s(signature), raw + ES256_COORDINATE_LENGTH,
                     ES256_COORDINATE_LENGTH) == ES256_COORDINATE_LENGTH)
        status = 0;
    ECDSA_SIG_free(signature);
    return status;
}

uint8_t *jwt_es256_signature_to_der(const uint8_t raw[JWT_ES256_SIGNATURE_LENGTH],
                                    size_t *der_length)
{
    ECDSA_SIG *signature = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, ES256_COORDINATE_LENGTH, NULL);
    BIGNUM *s = BN_bin2bn(raw + ES256_COORDINATE_LENGTH, ES256_COORDINATE_LENGTH, NULL);
    unsigned char *der = NULL;
    if (signature == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(signature, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(signature);
        return NULL;
    }
    int length = i2d_ECDSA_SIG(signature, &der);
    ECDSA_SIG_free(signature);
    if (length <= 0)
        return NULL;
    *der_length = (size_t)length;
    return der;
}

char *jwt_sign(struct jwt_key *key, const char *claims_json, char *err, size_t err_length)
{
    size_t header_length = strlen(key->header);
    size_t claims_length = strlen(claims_json);
    size_t signature_capacity = (size_t)EVP_PKEY_get_size(key->key);
    size_t signing_length = header_length + 1 + base64_encoded_length(BASE64_URL, claims_length);
    char *token =
        malloc(signing_length + 1 + base64_encoded_length(BASE64_URL, signature_capacity) + 1);
    uint8_t *signature = malloc(signature_capacity);
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    size_t signature_length = signature_capacity;
    uint8_t raw[2 * ES256_COORDINATE_LENGTH];

    if (token == NULL || signature == NULL || context == NULL) {
        set_error(err, err_length, "out of memory");
        goto error;
    }
    memcpy(token, key->header, header_length);
    token[header_length] = '.';
    base64_encode(BASE64_URL, (const uint8_t *)claims_json, claims_length,
                  token + header_length + 1);
    if (EVP_DigestSignInit_ex(context, NULL, "SHA256", key->libctx, NULL, key->key, NULL) != 1 ||
        EVP_DigestSign(context, signature, &signature_length, (const uint8_t *)token,
                       signing_length) != 1) {
        set_error(err, err_length, "token signing failed");
        goto error;
    }
    const uint8_t *encoded = signature;
    if (key->ec) {
        if (der_to_raw(signature, signature_length, raw) != 0) {
            set_error(err, err_length, "token signing produced a malformed ECDSA signature");
            goto error;
        }
        encoded = raw;
        signature_length = sizeof(raw);
    }
    token[signing_length] = '.';
    size_t end = signing_length + 1 +
                 base64_encode(BASE64_URL, encoded, signature_length, token + signing_length + 1);
    token[end] = '\0';
    free(signature);
    EVP_MD_CTX_free(context);
    return token;

error:
    free(token);
    free(signature);
    EVP_MD_CTX_free(context);
    return NULL;
}
