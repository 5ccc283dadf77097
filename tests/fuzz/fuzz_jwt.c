/*
 * fuzz_jwt: jwt_sign() (crypto/jwt.c), which the signer runs for the access
 * token of every device it provisions and `dpsctl token` for operator tokens.
 * The input is a key choice, its first byte ('R' the RSA key, anything else
 * the EC key), then the claims text signed as given (up to a NUL).
 *
 * The keys, an EC P-256 key "ec-1" and an RSA 2048 key "rsa-1", are made at
 * start and written (0600) to a temporary folder, since jwt_key_load() reads
 * files, with a JWKS of both for auth_load(): the management API's own
 * verifier, configured like the demo's, checks what the signer makes.
 *
 * Invariants: every claims text signs; the token is three unpadded base64url
 * parts; jwt_verify() with the key's public half gives back exactly the
 * claims; auth_check() never refuses the token for its form or signature,
 * only for its claims, and when it accepts, the owner is the claims' "sub".
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/base64.h"
#include "control/auth.h"
#include "crypto/jwt.h"
#include "tests/jwt_verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_JWT_ISSUER "https://dps.demo.local/operator"
#define FUZZ_JWT_AUDIENCE "dps-api"
#define FUZZ_JWT_TIME ((time_t)1798761600) /* 2027-01-01T00:00:00Z */
#define TOKEN_MAX_LENGTH 16384             /* auth.c refuses longer headers whole */
#define BASE64URL "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

struct signing_key {
    struct jwt_key *key;
    char *public_pem;
};

static struct signing_key ec_key, rsa_key;
static struct auth *auth;

static void check(int condition)
{
    if (!condition)
        abort();
}

static char *public_pem(EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data;
    check(bio != NULL && PEM_write_bio_PUBKEY(bio, key) == 1);
    long length = BIO_get_mem_data(bio, &data);
    char *pem = strndup(data, (size_t)length);
    check(pem != NULL);
    BIO_free(bio);
    return pem;
}

static json_t *jwk_of(EVP_PKEY *key, const char *kid)
{
    if (EVP_PKEY_is_a(key, "EC")) {
        unsigned char point[65];
        size_t length = 0;
        check(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point),
                                              &length) == 1 &&
              length == sizeof(point));
        char *x = base64_encode_string(BASE64_URL, point + 1, 32);
        char *y = base64_encode_string(BASE64_URL, point + 33, 32);
        json_t *jwk = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256", "kid",
                                kid, "x", x, "y", y);
        free(x);
        free(y);
        return jwk;
    }
    BIGNUM *n = NULL, *e = NULL;
    unsigned char n_bytes[512], e_bytes[8];
    check(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n) == 1 &&
          EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e) == 1);
    char *n_text = base64_encode_string(BASE64_URL, n_bytes, (size_t)BN_bn2bin(n, n_bytes));
    char *e_text = base64_encode_string(BASE64_URL, e_bytes, (size_t)BN_bn2bin(e, e_bytes));
    json_t *jwk =
        json_pack("{s:s, s:s, s:s, s:s}", "kty", "RSA", "kid", kid, "n", n_text, "e", e_text);
    free(n_text);
    free(e_text);
    BN_free(n);
    BN_free(e);
    return jwk;
}

/* Writes key to dir/name (0600) and loads it as the signer does. */
static void load_key(const char *dir, const char *name, EVP_PKEY *pkey, const char *kid,
                     struct signing_key *out)
{
    char path[256], err[256] = "";
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *file = fopen(path, "w");
    check(file != NULL && PEM_write_PrivateKey(file, pkey, NULL, NULL, 0, NULL, NULL) == 1);
    check(fclose(file) == 0);
    out->key = jwt_key_load(NULL, path, kid, err, sizeof(err));
    if (out->key == NULL)
        fprintf(stderr, "fuzz_jwt: %s\n", err);
    check(out->key != NULL);
    out->public_pem = public_pem(pkey);
    unlink(path);
}

static void setup(void)
{
    char dir[] = "/tmp/fuzz_jwt.XXXXXX";
    char path[256], err[256] = "";
    check(mkdtemp(dir) != NULL);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    check(ec != NULL && rsa != NULL);
    load_key(dir, "ec.key", ec, "ec-1", &ec_key);
    load_key(dir, "rsa.key", rsa, "rsa-1", &rsa_key);

    json_t *jwks = json_pack("{s:[o, o]}", "keys", jwk_of(ec, "ec-1"), jwk_of(rsa, "rsa-1"));
    snprintf(path, sizeof(path), "%s/jwks.json", dir);
    check(jwks != NULL && json_dump_file(jwks, path, 0) == 0);
    json_decref(jwks);
    auth = auth_load(path, FUZZ_JWT_ISSUER, FUZZ_JWT_AUDIENCE, NULL, err, sizeof(err));
    if (auth == NULL)
        fprintf(stderr, "fuzz_jwt: %s\n", err);
    check(auth != NULL);
    unlink(path);
    rmdir(dir);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
}

/* Three parts of unpadded base64url. */
static bool well_formed(const char *token)
{
    const char *first = strchr(token, '.');
    const char *second = first != NULL ? strchr(first + 1, '.') : NULL;
    return second != NULL && strchr(second + 1, '.') == NULL && first > token &&
           second[1] != '\0' && strspn(token, BASE64URL ".") == strlen(token);
}

/* A refusal for the token's form or signature, which a token jwt_sign made must never get. */
static bool refused_for_form(const char *err)
{
    static const char *const reasons[] = {
        "malformed bearer token", "token is not three",       "token part is not base64url",
        "token header is not",    "token algorithm",          "token header kid",
        "token key id",           "token signature does not", NULL};
    for (size_t i = 0; reasons[i] != NULL; i++) {
        if (strncmp(err, reasons[i], strlen(reasons[i])) == 0)
            return true;
    }
    return false;
}

static void check_with_auth(const char *token, const char *claims)
{
    char *header = NULL;
    char err[256] = "";
    char *owner = NULL;
    check(asprintf(&header, "Bearer %s", token) > 0);
    int result = auth_check(auth, header, FUZZ_JWT_TIME, &owner, err, sizeof(err));
    if (result != 0) {
        check(owner == NULL && !refused_for_form(err));
    } else {
        json_t *parsed = json_loads(claims, 0, NULL);
        const char *sub = json_string_value(json_object_get(parsed, "sub"));
        check(owner != NULL && sub != NULL && strcmp(owner, sub) == 0);
        json_decref(parsed);
    }
    free(owner);
    free(header);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (auth == NULL)
        setup();
    if (size == 0)
        return 0;
    const struct signing_key *key = data[0] == 'R' ? &rsa_key : &ec_key;
    char *claims = strndup((const char *)data + 1, size - 1);
    check(claims != NULL);

    char err[256] = "";
    char *token = jwt_sign(key->key, claims, err, sizeof(err));
    check(token != NULL && well_formed(token));
    char *payload = jwt_verify(NULL, token, key->public_pem, err, sizeof(err));
    check(payload != NULL && strcmp(payload, claims) == 0);
    if (strlen(token) <= TOKEN_MAX_LENGTH)
        check_with_auth(token, claims);
    free(payload);
    free(token);
    free(claims);
    return 0;
}
