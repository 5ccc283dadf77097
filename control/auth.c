/*
 * auth: verifies operator bearer tokens against the keys of a JWKS file
 * (control/auth.h).
 *
 * The JWKS is turned into EVP_PKEYs once; a request costs one signature
 * verification and a few JSON lookups. The algorithm is taken from the key,
 * never from the token alone: a token's "alg" must be the one its key
 * implies (ES256 for EC P-256, RS256 for RSA), which rules out "none" and
 * algorithm confusion. Base64url is decoded strictly (crypto/jwt.h), so a
 * token has one spelling: a changed trailing bit is a different, refused
 * token. Reasons given to callers describe the check that failed and never
 * quote the token.
 */
#include "control/auth.h"
#include "common/domain.h"
#include "common/log.h"
#include "control/jwks_remote.h"
#include "crypto/jwt.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#define P256_COORDINATE_LENGTH 32
#define RSA_MIN_BITS 2048
#define TOKEN_MAX_LENGTH 16384

struct auth_key {
    char *kid; /* NULL when the JWKS entry has none */
    const char *alg;
    EVP_PKEY *key;
};

/*
 * The keys in use: immutable once built, replaced whole when a provider's
 * JWKS is fetched again, freed by the last of the checks that still use it.
 */
struct auth_keyset {
    struct auth_key *keys;
    size_t key_count;
    unsigned references; /* under auth_keyring.lock */
};

struct auth_keyring {
    pthread_mutex_t lock;
    struct auth_keyset *current; /* NULL until a provider's first JWKS */
};

struct auth {
    struct auth_keyring *ring;
    struct jwks_remote *remote; /* NULL: the keys of a file, read once */
    char *issuer;
    char *audience;
    char *owner_claim;
};

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t err_length,
                                                      const char *format, ...)
{
    if (err != NULL && err_length > 0) {
        va_list args;
        va_start(args, format);
        vsnprintf(err, err_length, format, args);
        va_end(args);
    }
    ERR_clear_error();
    return -1;
}

/* A base64url JWKS member decoded; NULL when absent or malformed. */
static uint8_t *jwk_bytes(const json_t *jwk, const char *member, size_t *length)
{
    const char *text = json_string_value(json_object_get(jwk, member));
    return text != NULL ? jwt_base64url_decode(text, strlen(text), length) : NULL;
}

static EVP_PKEY *key_from_params(const char *type, OSSL_PARAM_BLD *builder)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(builder);
    EVP_PKEY_CTX *context = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *key = NULL;
    if (params == NULL || context == NULL || EVP_PKEY_fromdata_init(context) != 1 ||
        EVP_PKEY_fromdata(context, &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
        key = NULL;
    EVP_PKEY_CTX_free(context);
    OSSL_PARAM_free(params);
    return key;
}

static EVP_PKEY *ec_key_from_jwk(const json_t *jwk, const char **problem)
{
    const char *curve = json_string_value(json_object_get(jwk, "crv"));
    size_t x_length = 0;
    size_t y_length = 0;
    uint8_t point[1 + 2 * P256_COORDINATE_LENGTH];
    EVP_PKEY *key = NULL;
    if (curve == NULL || strcmp(curve, "P-256") != 0) {
        *problem = "crv must be P-256";
        return NULL;
    }
    uint8_t *x = jwk_bytes(jwk, "x", &x_length);
    uint8_t *y = jwk_bytes(jwk, "y", &y_length);
    OSSL_PARAM_BLD *builder = OSSL_PARAM_BLD_new();
    *problem = "x and y must be 32-byte base64url coordinates of a P-256 point";
    if (x != NULL && y != NULL && x_length == P256_COORDINATE_LENGTH &&
        y_length == P256_COORDINATE_LENGTH && builder != NULL) {
        point[0] = POINT_CONVERSION_UNCOMPRESSED;
        memcpy(point + 1, x, P256_COORDINATE_LENGTH);
        memcpy(point + 1 + P256_COORDINATE_LENGTH, y, P256_COORDINATE_LENGTH);
        if (OSSL_PARAM_BLD_push_utf8_string(builder, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ==
                1 &&
            OSSL_PARAM_BLD_push_octet_string(builder, OSSL_PKEY_PARAM_PUB_KEY, point,
                                             sizeof(point)) == 1)
            key = key_from_params("EC", builder);
    }
    OSSL_PARAM_BLD_free(builder);
    free(x);
    free(y);
    return key;
}

static EVP_PKEY *rsa_key_from_jwk(const json_t *jwk, const char **problem)
{
    size_t n_length = 0;
    size_t e_length = 0;
    uint8_t *n_bytes = jwk_bytes(jwk, "n", &n_length);
    uint8_t *e_bytes = jwk_bytes(jwk, "e", &e_length);
    BIGNUM *n = n_bytes != NULL ? BN_bin2bn(n_bytes, (int)n_length, NULL) : NULL;
    BIGNUM *e = e_bytes != NULL ? BN_bin2bn(e_bytes, (int)e_length, NULL) : NULL;
    OSSL_PARAM_BLD *builder = OSSL_PARAM_BLD_new();
    EVP_PKEY *key = NULL;
    *problem = "n and e must be base64url integers";
    if (n != NULL && e != NULL && BN_num_bits(n) < RSA_MIN_BITS)
        *problem = "RSA keys must have at least 2048 bits";
    else if (n != NULL && e != NULL && builder != NULL &&
             OSSL_PARAM_BLD_push_BN(builder, OSSL_PKEY_PARAM_RSA_N, n) == 1 &&
             OSSL_PARAM_BLD_push_BN(builder, OSSL_PKEY_PARAM_RSA_E, e) == 1)
        key = key_from_params("RSA", builder);
    OSSL_PARAM_BLD_free(builder);
    BN_free(n);
    BN_free(e);
    free(n_bytes);
    free(e_bytes);
    return key;
}

/* One JWKS entry; 1 when skipped (not a signature key of a type we verify), 0, or -1. */
static int load_key(const json_t *jwk, size_t index, struct auth_key *out, char *err,
                    size_t err_length)
{
    const char *type = json_string_value(json_object_get(jwk, "kty"));
    const char *use = json_string_value(json_object_get(jwk, "use"));
    const char *alg = json_string_value(json_object_get(jwk, "alg"));
    const char *kid = json_string_value(json_object_get(jwk, "kid"));
    const char *problem = "unsupported";
    if (!json_is_object(jwk))
        return fail(err, err_length, "keys[%zu]: must be an object", index);
    if (type == NULL)
        return fail(err, err_length, "keys[%zu].kty: required", index);
    if (use != NULL && strcmp(use, "sig") != 0)
        return 1;
    if (strcmp(type, "EC") == 0) {
        out->alg = "ES256";
        out->key = ec_key_from_jwk(jwk, &problem);
    } else if (strcmp(type, "RSA") == 0) {
        out->alg = "RS256";
        out->key = rsa_key_from_jwk(jwk, &problem);
    } else {
        return 1;
    }
    if (out->key == NULL)
        return fail(err, err_length, "keys[%zu] (%s): %s", index, type, problem);
    if (alg != NULL && strcmp(alg, out->alg) != 0) {
        EVP_PKEY_free(out->key);
        out->key = NULL;
        return fail(err, err_length, "keys[%zu].alg: %s is not supported for a %s key (only %s)",
                    index, alg, type, out->alg);
    }
    if (kid != NULL && (out->kid = strdup(kid)) == NULL) {
        EVP_PKEY_free(out->key);
        out->key = NULL;
        return fail(err, err_length, "out of memory");
    }
    return 0;
}

static void keyset_free(struct auth_keyset *keyset)
{
    if (keyset == NULL)
        return;
    for (size_t i = 0; i < keyset->key_count; i++) {
        free(keyset->keys[i].kid);
        EVP_PKEY_free(keyset->keys[i].key);
    }
    free(keyset->keys);
    free(keyset);
}

/*
 * The signature keys of a JWKS document. A file is ours and must be right
 * entirely; a provider's (lenient) may list keys we do not verify with
 * (other curves, other algorithms): those are skipped and logged.
 */
static struct auth_keyset *keyset_from_json(const json_t *jwks, const char *source, bool lenient,
                                            char *err, size_t err_length)
{
    char problem[256];
    json_t *keys = json_object_get(jwks, "keys");
    struct auth_keyset *keyset = calloc(1, sizeof(*keyset));
    int result = 0;
    if (keyset == NULL)
        result = fail(err, err_length, "out of memory");
    else if (!json_is_array(keys))
        result = fail(err, err_length, "%s: keys: must be a list", source);
    else if ((keyset->keys = calloc(json_array_size(keys) + 1, sizeof(*keyset->keys))) == NULL)
        result = fail(err, err_length, "out of memory");
    for (size_t i = 0; result == 0 && i < json_array_size(keys); i++) {
        int loaded = load_key(json_array_get(keys, i), i, &keyset->keys[keyset->key_count], problem,
                              sizeof(problem));
        if (loaded < 0 && lenient)
            log_msg(LOG_WARN, "operator key skipped", "source=\"%s\" reason=\"%s\"", source,
                    problem);
        else if (loaded < 0)
            result = fail(err, err_length, "%s: %s", source, problem);
        else if (loaded == 0)
            keyset->key_count++;
    }
    if (result == 0 && keyset->key_count == 0)
        result = fail(err, err_length, "%s: no EC P-256 or RSA signature key", source);
    if (result < 0) {
        keyset_free(keyset);
        return NULL;
    }
    keyset->references = 1;
    return keyset;
}

/* The key set in use, with a reference the caller drops (keyset_release); may be NULL. */
static struct auth_keyset *keyset_acquire(const struct auth *auth)
{
    pthread_mutex_lock(&auth->ring->lock);
    struct auth_keyset *keyset = auth->ring->current;
    if (keyset != NULL)
        keyset->references++;
    pthread_mutex_unlock(&auth->ring->lock);
    return keyset;
}

static void keyset_release(const struct auth *auth, struct auth_keyset *keyset)
{
    if (keyset == NULL)
        return;
    pthread_mutex_lock(&auth->ring->lock);
    bool last = --keyset->references == 0;
    pthread_mutex_unlock(&auth->ring->lock);
    if (last)
        keyset_free(keyset);
}

int auth_install_jwks(struct auth *auth, const char *text, size_t length, char *err,
                      size_t err_length)
{
    json_error_t error;
    json_t *jwks = json_loadb(text, length, JSON_REJECT_DUPLICATES, &error);
    if (jwks == NULL)
        return fail(err, err_length, "JWKS: %s (line %d)", error.text, error.line);
    struct auth_keyset *keyset = keyset_from_json(jwks, "JWKS", true, err, err_length);
    json_decref(jwks);
    if (keyset == NULL)
        return -1;
    int count = (int)keyset->key_count;
    pthread_mutex_lock(&auth->ring->lock);
    struct auth_keyset *previous = auth->ring->current;
    auth->ring->current = keyset;
    pthread_mutex_unlock(&auth->ring->lock);
    keyset_release(auth, previous);
    return count;
}

/* jwks_remote_install: a provider's JWKS replaces the keys in use. */
static int install_jwks(void *arg, const char *text, size_t length, char *err, size_t err_length)
{
    return auth_install_jwks(arg, text, length, err, err_length);
}

static struct auth *auth_new(const char *issuer, const char *audience, const char *owner_claim,
                             char *err, size_t err_length)
{
    struct auth *auth = calloc(1, sizeof(*auth));
    if (auth == NULL || (auth->ring = calloc(1, sizeof(*auth->ring))) == NULL) {
        free(auth);
        fail(err, err_length, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&auth->ring->lock, NULL);
    auth->issuer = strdup(issuer);
    auth->audience = audience != NULL ? strdup(audience) : NULL;
    auth->owner_claim = strdup(owner_claim != NULL ? owner_claim : "sub");
    if (auth->issuer == NULL || auth->owner_claim == NULL ||
        (audience != NULL && auth->audience == NULL)) {
        fail(err, err_length, "out of memory");
        auth_free(auth);
        return NULL;
    }
    return auth;
}

struct auth *auth_load(const char *jwks_file, const char *issuer, const char *audience,
                       const char *owner_claim, char *err, size_t err_length)
{
    struct auth *auth = auth_new(issuer, audience, owner_claim, err, err_length);
    if (auth == NULL)
        return NULL;
    json_error_t error;
    json_t *jwks = json_load_file(jwks_file, JSON_REJECT_DUPLICATES, &error);
    if (jwks == NULL) {
        fail(err, err_length, "%s: %s (line %d)", jwks_file, error.text, error.line);
        auth_free(auth);
        return NULL;
    }
    auth->ring->current = keyset_from_json(jwks, jwks_file, false, err, err_length);
    json_decref(jwks);
    if (auth->ring->current == NULL) {
        auth_free(auth);
        return NULL;
    }
    return auth;
}

struct auth *auth_open(const struct config_api *api, char *err, size_t err_length)
{
    if (api->jwks_file != NULL)
        return auth_load(api->jwks_file, api->issuer, api->audience, api->owner_claim, err,
                         err_length);
    struct auth *auth = auth_new(api->issuer, api->audience, api->owner_claim, err, err_length);
    if (auth == NULL)
        return NULL;
    struct jwks_remote_settings settings = {
        .authority = api->authority,
        .jwks_url = api->jwks_url,
        .ca_file = api->jwks_ca_file,
        .refresh_s = api->jwks_refresh_s,
        .min_refresh_s = api->jwks_min_refresh_s,
        .timeout_s = api->jwks_timeout_s,
    };
    if ((auth->remote = jwks_remote_start(&settings, install_jwks, auth, err, err_length)) ==
        NULL) {
        auth_free(auth);
        return NULL;
    }
    return auth;
}

void auth_free(struct auth *auth)
{
    if (auth == NULL)
        return;
    jwks_remote_stop(auth->remote);
    if (auth->ring != NULL) {
        keyset_free(auth->ring->current);
        pthread_mutex_destroy(&auth->ring->lock);
        free(auth->ring);
    }
    free(auth->issuer);
    free(auth->audience);
    free(auth->owner_claim);
    free(auth);
}

static bool signature_verifies(const struct auth_key *key, const char *signed_part,
                               size_t signed_length, const uint8_t *signature, size_t length)
{
    uint8_t *der = NULL;
    if (strcmp(key->alg, "ES256") == 0) {
        if (length != JWT_ES256_SIGNATURE_LENGTH ||
            (der = jwt_es256_signature_to_der(signature, &length)) == NULL)
            return false;
        signature = der;
    }
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    bool ok = context != NULL &&
              EVP_DigestVerifyInit_ex(context, NULL, "SHA256", NULL, NULL, key->key, NULL) == 1 &&
              EVP_DigestVerify(context, signature, length, (const uint8_t *)signed_part,
                               signed_length) == 1;
    EVP_MD_CTX_free(context);
    OPENSSL_free(der);
    ERR_clear_error();
    return ok;
}

/* The key that verifies the token's signature, or NULL with the reason (*unknown_kid said apart).
 */
static const struct auth_key *verifying_key(const struct auth_keyset *keyset, const json_t *header,
                                            const char *signed_part, size_t signed_length,
                                            const uint8_t *signature, size_t signature_length,
                                            bool *unknown_kid, char *err, size_t err_length)
{
    const char *alg = json_string_value(json_object_get(header, "alg"));
    json_t *kid = json_object_get(header, "kid");
    if (alg == NULL || (strcmp(alg, "ES256") != 0 && strcmp(alg, "RS256") != 0)) {
        fail(err, err_length, "token algorithm must be ES256 or RS256");
        return NULL;
    }
    if (kid != NULL && !json_is_string(kid)) {
        fail(err, err_length, "token header kid must be a string");
        return NULL;
    }
    bool kid_known = false;
    for (size_t i = 0; keyset != NULL && i < keyset->key_count; i++) {
        const struct auth_key *key = &keyset->keys[i];
        if (kid != NULL && (key->kid == NULL || strcmp(key->kid, json_string_value(kid)) != 0))
            continue;
        kid_known = true;
        if (strcmp(key->alg, alg) == 0 &&
            signature_verifies(key, signed_part, signed_length, signature, signature_length))
            return key;
    }
    *unknown_kid = kid != NULL && !kid_known;
    if (keyset == NULL)
        fail(err, err_length, "no operator keys yet (the identity provider has not answered)");
    else if (*unknown_kid)
        fail(err, err_length, "token key id is not in the JWKS");
    else
        fail(err, err_length, "token signature does not verify");
    return NULL;
}

/* A NumericDate claim: absent (false), or its value in *out; -1 when malformed. */
static int numeric_date(const json_t *claims, const char *name, json_int_t *out)
{
    json_t *value = json_object_get(claims, name);
    if (value == NULL)
        return 0;
    if (json_is_integer(value))
        *out = json_integer_value(value);
    else if (json_is_real(value) && json_real_value(value) > -9e15 && json_real_value(value) < 9e15)
        *out = (json_int_t)json_real_value(value);
    else
        return -1;
    return 1;
}

static bool audience_matches(const json_t *aud, const char *audience)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), audience) == 0;
    size_t i;
    json_t *item;
    json_array_foreach(aud, i, item)
    {
        if (json_is_string(item) && strcmp(json_string_value(item), audience) == 0)
            return true;
    }
    return false;
}

static int check_claims(const struct auth *auth, const json_t *claims, time_t now, char **owner,
                        char *err, size_t err_length)
{
    json_int_t exp = 0;
    json_int_t nbf = 0;
    json_int_t iat = 0;
    int has_exp = numeric_date(claims, "exp", &exp);
    int has_nbf = numeric_date(claims, "nbf", &nbf);
    int has_iat = numeric_date(claims, "iat", &iat);
    if (!json_is_object(claims))
        return fail(err, err_length, "token payload is not a JSON object");
    if (has_exp < 0 || has_nbf < 0 || has_iat < 0)
        return fail(err, err_length, "token exp, nbf and iat must be numbers");
    if (has_exp == 0)
        return fail(err, err_length, "token has no exp");
    if ((json_int_t)now > exp + AUTH_LEEWAY_S)
        return fail(err, err_length, "token expired");
    if (has_nbf && nbf > (json_int_t)now + AUTH_LEEWAY_S)
        return fail(err, err_length, "token not valid yet (nbf)");
    if (has_iat && iat > (json_int_t)now + AUTH_LEEWAY_S)
        return fail(err, err_length, "token issued in the future (iat)");
    const char *iss = json_string_value(json_object_get(claims, "iss"));
    if (iss == NULL || strcmp(iss, auth->issuer) != 0)
        return fail(err, err_length, "token issuer is not %s", auth->issuer);
    if (auth->audience != NULL && !audience_matches(json_object_get(claims, "aud"), auth->audience))
        return fail(err, err_length, "token audience does not include %s", auth->audience);
    json_t *claim = json_object_get(claims, auth->owner_claim);
    if (!json_is_string(claim) || json_string_length(claim) == 0 ||
        strlen(json_string_value(claim)) != json_string_length(claim))
        return fail(err, err_length, "token has no owner claim %s", auth->owner_claim);
    if ((*owner = strdup(json_string_value(claim))) == NULL)
        return fail(err, err_length, "out of memory");
    return 0;
}

int auth_check(const struct auth *auth, const char *authorization, time_t now, char **owner,
               char *err, size_t err_length)
{
    static const char scheme[] = "Bearer ";
    *owner = NULL;
    if (authorization == NULL)
        return fail(err, err_length, "missing Authorization: Bearer token");
    if (strncasecmp(authorization, scheme, sizeof(scheme) - 1) != 0)
        return fail(err, err_length, "Authorization must be a Bearer token");
    const char *token = authorization + sizeof(scheme) - 1;
    token += strspn(token, " ");
    size_t token_length = strcspn(token, " ");
    if (token[token_length] != '\0' || token_length == 0 || token_length > TOKEN_MAX_LENGTH)
        return fail(err, err_length, "malformed bearer token");
    const char *first = memchr(token, '.', token_length);
    const char *second = first != NULL ? strchr(first + 1, '.') : NULL;
    if (second == NULL || strchr(second + 1, '.') != NULL)
        return fail(err, err_length, "token is not three dot-separated parts");

    size_t header_length = 0;
    size_t payload_length = 0;
    size_t signature_length = 0;
    uint8_t *header_text = jwt_base64url_decode(token, (size_t)(first - token), &header_length);
    uint8_t *payload_text =
        jwt_base64url_decode(first + 1, (size_t)(second - first - 1), &payload_length);
    uint8_t *signature = jwt_base64url_decode(second + 1, strlen(second + 1), &signature_length);
    json_t *header =
        header_text != NULL ? json_loadb((const char *)header_text, header_length, 0, NULL) : NULL;
    json_t *claims = NULL;
    int result = -1;
    if (header_text == NULL || payload_text == NULL || signature == NULL) {
        fail(err, err_length, "token part is not base64url");
        goto out;
    }
    if (!json_is_object(header)) {
        fail(err, err_length, "token header is not a JSON object");
        goto out;
    }
    /* A key id nobody knows may be the provider's new key: fetch (rate-limited) and retry once. */
    bool unknown_kid = false;
    struct auth_keyset *keyset = keyset_acquire(auth);
    const struct auth_key *key =
        verifying_key(keyset, header, token, (size_t)(second - token), signature, signature_length,
                      &unknown_kid, err, err_length);
    if (key == NULL && (unknown_kid || keyset == NULL) && auth->remote != NULL) {
        keyset_release(auth, keyset);
        keyset = NULL;
        if (jwks_remote_refresh(auth->remote)) {
            keyset = keyset_acquire(auth);
            key = verifying_key(keyset, header, token, (size_t)(second - token), signature,
                                signature_length, &unknown_kid, err, err_length);
        }
    }
    keyset_release(auth, keyset);
    if (key == NULL)
        goto out;
    claims = json_loadb((const char *)payload_text, payload_length, 0, NULL);
    if (claims == NULL)
        fail(err, err_length, "token payload is not JSON");
    else
        result = check_claims(auth, claims, now, owner, err, err_length);
out:
    json_decref(header);
    json_decref(claims);
    free(header_text);
    free(payload_text);
    free(signature);
    return result;
}

bool auth_has_key(const struct auth *auth, const EVP_PKEY *key)
{
    struct auth_keyset *keyset = keyset_acquire(auth);
    bool found = false;
    for (size_t i = 0; keyset != NULL && !found && i < keyset->key_count; i++)
        found = EVP_PKEY_eq(keyset->keys[i].key, key) == 1;
    keyset_release(auth, keyset);
    ERR_clear_error();
    return found;
}
