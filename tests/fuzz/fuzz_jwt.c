/*
 * fuzz_jwt: jwt_verify(), the compact JWS parser (base64url parts, header
 * JSON, ES256 signature). The input is the token text. The public key is a
 * fixed throw-away P-256 test key whose private half signed the valid seed
 * tokens in the corpus, so mutations of a valid token reach every check; a
 * second, freshly generated key (EVP_EC_gen) must accept none of them.
 * Invariants: a verified token's payload is exactly its base64url-decoded
 * middle part and is NUL-free text; a failure always has a reason.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "crypto/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char seed_public_key[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAELRDugmxZ3GZCkR0CQA+TR8VQKs4k\n"
    "6aup1YTC2dmKQM68SaQHLUQ6by6I0gpaGidZzB6LvHr2VOF7+hC62YOt1g==\n"
    "-----END PUBLIC KEY-----\n";

static char *fresh_public_key;

static void check(int condition)
{
    if (!condition)
        abort();
}

static char *generate_public_key(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    BIO *bio = BIO_new(BIO_s_mem());
    check(key != NULL && bio != NULL && PEM_write_bio_PUBKEY(bio, key) == 1);
    char *pem_data;
    long length = BIO_get_mem_data(bio, &pem_data);
    char *pem = malloc((size_t)length + 1);
    check(pem != NULL);
    memcpy(pem, pem_data, (size_t)length);
    pem[length] = '\0';
    BIO_free(bio);
    EVP_PKEY_free(key);
    return pem;
}

/* Decodes base64url without padding; -1 on any other character. */
static long base64url_decode(const char *text, size_t length, uint8_t *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint32_t bits = 0;
    unsigned count = 0;
    long written = 0;
    for (size_t i = 0; i < length; i++) {
        const char *found = text[i] != '\0' ? strchr(alphabet, text[i]) : NULL;
        if (found == NULL)
            return -1;
        bits = bits << 6 | (uint32_t)(found - alphabet);
        count += 6;
        if (count >= 8) {
            count -= 8;
            out[written++] = (uint8_t)(bits >> count);
        }
    }
    return written;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fresh_public_key == NULL)
        fresh_public_key = generate_public_key();
    char *token = malloc(size + 1);
    check(token != NULL);
    memcpy(token, data, size);
    token[size] = '\0';

    char err[256] = "";
    char *payload = jwt_verify(NULL, token, seed_public_key, err, sizeof(err));
    if (payload != NULL) {
        const char *first = strchr(token, '.');
        const char *second = strchr(first + 1, '.');
        uint8_t *expected = malloc((size_t)(second - first));
        check(expected != NULL);
        long expected_length = base64url_decode(first + 1, (size_t)(second - first - 1), expected);
        check(expected_length >= 0 && strlen(payload) == (size_t)expected_length);
        check(memcmp(payload, expected, (size_t)expected_length) == 0);
        free(expected);
        free(payload);
        check(jwt_verify(NULL, token, fresh_public_key, err, sizeof(err)) == NULL);
    } else {
        check(err[0] != '\0');
    }
    free(token);
    return 0;
}
