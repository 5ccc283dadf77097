/*
 * test_auth: the management API accepts exactly the operator tokens it
 * should: ES256 and RS256 tokens signed by a JWKS key (chosen by "kid"),
 * unexpired, from the configured issuer, for the configured audience, with
 * an owner; everything else is refused with a reason that names the check
 * and never repeats the token.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/base64.h"
#include "tests/unit/pki_files.h"
#include "tests/unit/temp_dir.h"
#include "control/auth.h"
#include "crypto/jwt.h"
#include "crypto/pki.h"

#define ISSUER "https://operators.example"
#define AUDIENCE "dps-api"

struct fixture {
    char dir[64];
    char jwks[128];
    char ec_a[128], ec_b[128], rsa[128], stranger[128];
    struct auth *auth;
    time_t now;
};

static json_t *ec_jwk(EVP_PKEY *key, const char *kid)
{
    unsigned char point[65];
    size_t length = 0;
    assert_int_equal(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point,
                                                     sizeof(point), &length),
                     1);
    char *x = base64_encode_string(BASE64_URL, point + 1, 32);
    char *y = base64_encode_string(BASE64_URL, point + 33, 32);
    json_t *jwk = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256", "kid", kid,
                            "x", x, "y", y);
    free(x);
    free(y);
    return jwk;
}

static json_t *rsa_jwk(EVP_PKEY *key, const char *kid)
{
    BIGNUM *n = NULL;
    BIGNUM *e = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e), 1);
    unsigned char n_bytes[512], e_bytes[8];
    int n_length = BN_bn2bin(n, n_bytes);
    int e_length = BN_bn2bin(e, e_bytes);
    char *n_text = base64_encode_string(BASE64_URL, n_bytes, (size_t)n_length);
    char *e_text = base64_encode_string(BASE64_URL, e_bytes, (size_t)e_length);
    json_t *jwk = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "kid", kid, "use", "sig",
                            "n", n_text, "e", e_text);
    free(n_text);
    free(e_text);
    BN_free(n);
    BN_free(e);
    return jwk;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_auth.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->jwks, sizeof(f->jwks), "%s/jwks.json", f->dir);
    snprintf(f->ec_a, sizeof(f->ec_a), "%s/a.key", f->dir);
    snprintf(f->ec_b, sizeof(f->ec_b), "%s/b.key", f->dir);
    snprintf(f->rsa, sizeof(f->rsa), "%s/rsa.key", f->dir);
    snprintf(f->stranger, sizeof(f->stranger), "%s/stranger.key", f->dir);

    EVP_PKEY *a = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *b = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *stranger = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    write_key(f->ec_a, a);
    write_key(f->ec_b, b);
    write_key(f->rsa, rsa);
    write_key(f->stranger, stranger);
    /* An unrelated symmetric key is skipped, as identity providers publish them too. */
    json_t *jwks = json_pack("{s:[o, o, o, {s:s, s:s}]}", "keys", ec_jwk(a, "a"), ec_jwk(b, "b"),
                             rsa_jwk(rsa, "r"), "kty", "oct", "k", "c2VjcmV0");
    assert_int_equal(json_dump_file(jwks, f->jwks, 0), 0);
    json_decref(jwks);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(stranger);

    char err[256] = "";
    f->auth = auth_load(f->jwks, ISSUER, AUDIENCE, NULL, err, sizeof(err));
    if (f->auth == NULL)
        print_error("%s\n", err);
    assert_non_null(f->auth);
    f->now = time(NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    auth_free(f->auth);
    temp_dir_remove(f->dir);
    free(f);
    return 0;
}

/* "Bearer " and a token signed with key_file (kid may be NULL) over claims. */
static char *bearer(const char *key_file, const char *kid, json_t *claims)
{
    char err[256] = "";
    struct jwt_key *key = jwt_key_load(NULL, key_file, kid, err, sizeof(err));
    assert_non_null(key);
    char *text = json_dumps(claims, JSON_COMPACT);
    char *token = jwt_sign(key, text, err, sizeof(err));
    assert_non_null(token);
    char *header = NULL;
    assert_true(asprintf(&header, "Bearer %s", token) > 0);
    free(text);
    free(token);
    jwt_key_free(key);
    json_decref(claims);
    return header;
}

static json_t *claims(const struct fixture *f, const char *owner)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", ISSUER, "aud", AUDIENCE, "sub", owner,
                     "iat", (json_int_t)f->now, "exp", (json_int_t)f->now + 3600);
}

/* Checks the header; returns the owner (to free) or NULL with the reason in err. */
static char *check(const struct fixture *f, const char *header, char *err, size_t err_length)
{
    char *owner = (char *)"unset";
    err[0] = '\0';
    int result = auth_check(f->auth, header, f->now, &owner, err, err_length);
    if (result == 0)
        assert_non_null(owner);
    else
        assert_null(owner);
    if (header != NULL && result != 0) {
        /* The reason never repeats the token or its signature. */
        const char *token = strchr(header, ' ');
        const char *signature = token != NULL ? strrchr(token, '.') : NULL;
        if (signature != NULL && strlen(signature) > 8)
            assert_null(strstr(err, signature + 1));
    }
    return owner;
}

static void refused(const struct fixture *f, char *header, const char *reason)
{
    char err[256];
    char *owner = check(f, header, err, sizeof(err));
    if (owner != NULL || strstr(err, reason) == NULL)
        print_error("expected \"%s\", got \"%s\"\n", reason, owner != NULL ? owner : err);
    assert_null(owner);
    assert_non_null(strstr(err, reason));
    free(header);
}

static void accepted(const struct fixture *f, char *header, const char *owner_expected)
{
    char err[256];
    char *owner = check(f, header, err, sizeof(err));
    if (owner == NULL)
        print_error("refused: %s\n", err);
    assert_non_null(owner);
    assert_string_equal(owner, owner_expected);
    free(owner);
    free(header);
}

static void es256_token_gives_its_owner(void **state)
{
    struct fixture *f = *state;
    accepted(f, bearer(f->ec_a, "a", claims(f, "owner-1")), "owner-1");
}

static void rs256_token_gives_its_owner(void **state)
{
    struct fixture *f = *state;
    accepted(f, bearer(f->rsa, "r", claims(f, "owner-2")), "owner-2");
}

static void token_without_kid_is_tried_against_every_key(void **state)
{
    struct fixture *f = *state;
    accepted(f, bearer(f->ec_b, NULL, claims(f, "owner-3")), "owner-3");
    accepted(f, bearer(f->rsa, NULL, claims(f, "owner-4")), "owner-4");
}

static void kid_selects_the_key(void **state)
{
    struct fixture *f = *state;
    accepted(f, bearer(f->ec_b, "b", claims(f, "x")), "x");
    /* Signed by b but naming a: a's key is the only one tried. */
    refused(f, bearer(f->ec_b, "a", claims(f, "x")), "signature does not verify");
    refused(f, bearer(f->ec_a, "nobody", claims(f, "x")), "key id is not in the JWKS");
}

static void missing_or_malformed_header_is_refused(void **state)
{
    struct fixture *f = *state;
    refused(f, NULL, "missing Authorization");
    refused(f, strdup("Basic dXNlcjpwYXNz"), "must be a Bearer token");
    refused(f, strdup("Bearer "), "malformed bearer token");
    refused(f, strdup("Bearer abc.def"), "three dot-separated parts");
    refused(f, strdup("Bearer a*b.c.d"), "not base64url");
}

static void expired_token_is_refused(void **state)
{
    struct fixture *f = *state;
    json_t *old = claims(f, "o");
    json_object_set_new(old, "exp", json_integer((json_int_t)f->now - 3600));
    refused(f, bearer(f->ec_a, "a", old), "token expired");

    /* Within the 60 seconds of leeway, clocks may disagree. */
    json_t *recent = claims(f, "o");
    json_object_set_new(recent, "exp", json_integer((json_int_t)f->now - 30));
    accepted(f, bearer(f->ec_a, "a", recent), "o");

    json_t *no_exp = claims(f, "o");
    json_object_del(no_exp, "exp");
    refused(f, bearer(f->ec_a, "a", no_exp), "no exp");
}

static void future_token_is_refused(void **state)
{
    struct fixture *f = *state;
    json_t *nbf = claims(f, "o");
    json_object_set_new(nbf, "nbf", json_integer((json_int_t)f->now + 600));
    refused(f, bearer(f->ec_a, "a", nbf), "not valid yet");
    json_t *iat = claims(f, "o");
    json_object_set_new(iat, "iat", json_integer((json_int_t)f->now + 600));
    refused(f, bearer(f->ec_a, "a", iat), "issued in the future");
}

static void wrong_signature_is_refused(void **state)
{
    struct fixture *f = *state;
    refused(f, bearer(f->stranger, NULL, claims(f, "o")), "signature does not verify");
    refused(f, bearer(f->stranger, "a", claims(f, "o")), "signature does not verify");

    /* A valid token with a changed payload. */
    char *header = bearer(f->ec_a, "a", claims(f, "o"));
    char *first = strchr(header, '.');
    first[2] = first[2] == 'A' ? 'B' : 'A';
    refused(f, header, "signature does not verify");
}

/*
 * An ES256 signature's last base64url character carries 4 unused bits:
 * setting one spells the same bytes differently. Such a token is refused, so
 * every token has one spelling.
 */
static void token_has_one_spelling(void **state)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    struct fixture *f = *state;
    char *header = bearer(f->ec_a, "a", claims(f, "o"));
    char *last = header + strlen(header) - 1;
    size_t value = (size_t)(strchr(alphabet, *last) - alphabet);
    assert_int_equal(value & 15, 0);
    *last = alphabet[value | 1];
    refused(f, header, "not base64url");
}

static void unsigned_token_is_refused(void **state)
{
    struct fixture *f = *state;
    /* {"alg":"none"} . {"iss":...} . (empty) */
    refused(f, strdup("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJvIn0."), "ES256 or RS256");
}

static void wrong_issuer_is_refused(void **state)
{
    struct fixture *f = *state;
    json_t *other = claims(f, "o");
    json_object_set_new(other, "iss", json_string("https://elsewhere.example"));
    refused(f, bearer(f->ec_a, "a", other), "issuer is not " ISSUER);
}

static void wrong_audience_is_refused(void **state)
{
    struct fixture *f = *state;
    json_t *other = claims(f, "o");
    json_object_set_new(other, "aud", json_string("another-api"));
    refused(f, bearer(f->ec_a, "a", other), "audience does not include " AUDIENCE);
    json_t *none = claims(f, "o");
    json_object_del(none, "aud");
    refused(f, bearer(f->ec_a, "a", none), "audience does not include");

    json_t *list = claims(f, "o");
    json_object_set_new(list, "aud", json_pack("[s, s]", "another-api", AUDIENCE));
    accepted(f, bearer(f->ec_a, "a", list), "o");
}

static void token_without_owner_is_refused(void **state)
{
    struct fixture *f = *state;
    json_t *anonymous = claims(f, "o");
    json_object_del(anonymous, "sub");
    refused(f, bearer(f->ec_a, "a", anonymous), "no owner claim sub");
    json_t *empty = claims(f, "");
    refused(f, bearer(f->ec_a, "a", empty), "no owner claim sub");
    json_t *number = claims(f, "o");
    json_object_set_new(number, "sub", json_integer(1));
    refused(f, bearer(f->ec_a, "a", number), "no owner claim sub");
}

static void owner_claim_is_configurable(void **state)
{
    struct fixture *f = *state;
    char err[256];
    struct auth *custom =
        auth_load(f->jwks, ISSUER, NULL, "https://plgd.dev/owner", err, sizeof(err));
    assert_non_null(custom);
    json_t *values = json_pack("{s:s, s:s, s:I}", "iss", ISSUER, "https://plgd.dev/owner",
                               "tenant-7", "exp", (json_int_t)f->now + 60);
    char *header = bearer(f->ec_a, "a", values);
    char *owner = NULL;
    /* No audience configured: none is required. */
    assert_int_equal(auth_check(custom, header, f->now, &owner, err, sizeof(err)), 0);
    assert_string_equal(owner, "tenant-7");
    free(owner);
    free(header);
    auth_free(custom);
}

static void bad_jwks_is_refused_at_load(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *text;
        const char *reason;
    } cases[] = {
        {"{\"keys\": [", "jwks.json"},
        {"{\"keys\": {}}", "keys: must be a list"},
        {"{\"keys\": []}", "no EC P-256 or RSA signature key"},
        {"{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-384\", \"x\": \"AA\", \"y\": \"AA\"}]}",
         "keys[0] (EC): crv must be P-256"},
        {"{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": \"AA\", \"y\": \"AA\"}]}",
         "keys[0] (EC): x and y"},
        {"{\"keys\": [{\"kty\": \"RSA\", \"n\": \"AQAB\", \"e\": \"AQAB\"}]}",
         "at least 2048 bits"},
        {"{\"keys\": [{\"crv\": \"P-256\"}]}", "keys[0].kty: required"},
    };
    char path[160];
    snprintf(path, sizeof(path), "%s/bad.jwks.json", f->dir);
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        FILE *file = fopen(path, "w");
        fputs(cases[i].text, file);
        fclose(file);
        char err[256] = "";
        struct auth *auth = auth_load(path, ISSUER, NULL, NULL, err, sizeof(err));
        if (auth != NULL || strstr(err, cases[i].reason) == NULL)
            print_error("case %zu: expected \"%s\", got \"%s\"\n", i, cases[i].reason, err);
        assert_null(auth);
        assert_non_null(strstr(err, cases[i].reason));
    }
}

/* The demo PKI's operator files work together: its JWKS accepts its token and minted ones. */
static void demo_operator_token_is_accepted(void **state)
{
    struct fixture *f = *state;
    char pki[128], jwks[160], key[160], token_file[160], err[256] = "";
    snprintf(pki, sizeof(pki), "%s/pki", f->dir);
    assert_int_equal(pki_generate(pki, 0, err, sizeof(err)), 0);
    snprintf(jwks, sizeof(jwks), "%s/operator.jwks.json", pki);
    snprintf(key, sizeof(key), "%s/operator.key", pki);
    snprintf(token_file, sizeof(token_file), "%s/operator.token", pki);
    struct auth *demo =
        auth_load(jwks, PKI_OPERATOR_ISSUER, PKI_OPERATOR_AUDIENCE, NULL, err, sizeof(err));
    assert_non_null(demo);

    char line[2048] = "Bearer ";
    FILE *file = fopen(token_file, "r");
    assert_non_null(file);
    assert_non_null(fgets(line + 7, (int)sizeof(line) - 7, file));
    fclose(file);
    line[strcspn(line, "\n")] = '\0';
    char *owner = NULL;
    assert_int_equal(auth_check(demo, line, time(NULL), &owner, err, sizeof(err)), 0);
    assert_string_equal(owner, "1");
    free(owner);

    char *minted = pki_operator_token(key, "2", 60, err, sizeof(err));
    assert_non_null(minted);
    snprintf(line, sizeof(line), "Bearer %s", minted);
    assert_int_equal(auth_check(demo, line, time(NULL), &owner, err, sizeof(err)), 0);
    assert_string_equal(owner, "2");
    free(owner);
    free(minted);

    minted = pki_operator_token(key, "2", -3600, err, sizeof(err));
    snprintf(line, sizeof(line), "Bearer %s", minted);
    assert_int_equal(auth_check(demo, line, time(NULL), &owner, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "expired"));
    free(minted);
    auth_free(demo);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(es256_token_gives_its_owner),
        cmocka_unit_test(rs256_token_gives_its_owner),
        cmocka_unit_test(token_without_kid_is_tried_against_every_key),
        cmocka_unit_test(kid_selects_the_key),
        cmocka_unit_test(missing_or_malformed_header_is_refused),
        cmocka_unit_test(expired_token_is_refused),
        cmocka_unit_test(future_token_is_refused),
        cmocka_unit_test(wrong_signature_is_refused),
        cmocka_unit_test(token_has_one_spelling),
        cmocka_unit_test(unsigned_token_is_refused),
        cmocka_unit_test(wrong_issuer_is_refused),
        cmocka_unit_test(wrong_audience_is_refused),
        cmocka_unit_test(token_without_owner_is_refused),
        cmocka_unit_test(owner_claim_is_configurable),
        cmocka_unit_test(bad_jwks_is_refused_at_load),
        cmocka_unit_test(demo_operator_token_is_accepted),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
