/*
 * test_jwt: access tokens are compact JWS with the expected header, the
 * claims verbatim as payload and a signature any JOSE library accepts
 * (ES256 as raw r||s, RS256 PKCS#1 v1.5); verification refuses tampered
 * tokens, wrong keys and algorithm substitution.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "tests/unit/pki_files.h"
#include "crypto/jwt.h"
#include "tests/jwt_verify.h"

#define CLAIMS "{\"iss\":\"https://dps.example\",\"sub\":\"owner-1\",\"exp\":1900000000}"

struct fixture {
    char dir[64];
    char ec_file[128], rsa_file[128], p384_file[128], public_file[128];
    EVP_PKEY *ec_key, *rsa_key, *other_ec_key;
    char *ec_public_pem, *rsa_public_pem, *other_public_pem, *ec_certificate_pem;
};

static char *bio_string(BIO *bio)
{
    char *data = NULL;
    long length = BIO_get_mem_data(bio, &data);
    char *text = strndup(data, (size_t)length);
    BIO_free(bio);
    return text;
}

static char *public_pem(EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, key), 1);
    return bio_string(bio);
}

static char *self_signed_pem(EVP_PKEY *key)
{
    X509 *certificate = X509_new();
    BIO *bio = BIO_new(BIO_s_mem());

    X509_set_version(certificate, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(certificate), 1);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(certificate), "CN", MBSTRING_ASC,
                               (const unsigned char *)"token signer", -1, -1, 0);
    X509_set_issuer_name(certificate, X509_get_subject_name(certificate));
    X509_gmtime_adj(X509_getm_notBefore(certificate), 0);
    X509_gmtime_adj(X509_getm_notAfter(certificate), 86400);
    X509_set_pubkey(certificate, key);
    assert_true(X509_sign(certificate, key, EVP_sha256()) > 0);
    assert_int_equal(PEM_write_bio_X509(bio, certificate), 1);
    X509_free(certificate);
    return bio_string(bio);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    strcpy(f->dir, "/tmp/test_jwt.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->ec_file, sizeof(f->ec_file), "%s/token-ec.key", f->dir);
    snprintf(f->rsa_file, sizeof(f->rsa_file), "%s/token-rsa.key", f->dir);
    snprintf(f->p384_file, sizeof(f->p384_file), "%s/token-p384.key", f->dir);
    snprintf(f->public_file, sizeof(f->public_file), "%s/token.pub.pem", f->dir);
    f->ec_key = EVP_EC_gen("P-256");
    f->rsa_key = EVP_RSA_gen(2048);
    f->other_ec_key = EVP_EC_gen("P-256");
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    write_key(f->ec_file, f->ec_key);
    write_key(f->rsa_file, f->rsa_key);
    write_key(f->p384_file, p384);
    EVP_PKEY_free(p384);
    f->ec_public_pem = public_pem(f->ec_key);
    f->rsa_public_pem = public_pem(f->rsa_key);
    f->other_public_pem = public_pem(f->other_ec_key);
    f->ec_certificate_pem = self_signed_pem(f->ec_key);
    FILE *file = fopen(f->public_file, "w");
    fputs(f->ec_public_pem, file);
    fclose(file);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    unlink(f->ec_file);
    unlink(f->rsa_file);
    unlink(f->p384_file);
    unlink(f->public_file);
    rmdir(f->dir);
    EVP_PKEY_free(f->ec_key);
    EVP_PKEY_free(f->rsa_key);
    EVP_PKEY_free(f->other_ec_key);
    free(f->ec_public_pem);
    free(f->rsa_public_pem);
    free(f->other_public_pem);
    free(f->ec_certificate_pem);
    free(f);
    return 0;
}

/* Independent base64url decoder for the test: translate, pad, EVP_DecodeBlock. */
static unsigned char *decode_part(const char *text, size_t length, size_t *out_length)
{
    char *padded = calloc(1, length + 4);
    unsigned char *out = calloc(1, length + 4);
    size_t padding = (4 - length % 4) % 4;

    for (size_t i = 0; i < length; i++)
        padded[i] = text[i] == '-' ? '+' : text[i] == '_' ? '/' : text[i];
    memset(padded + length, '=', padding);
    int decoded = EVP_DecodeBlock(out, (unsigned char *)padded, (int)(length + padding));
    assert_true(decoded >= 0);
    free(padded);
    *out_length = (size_t)decoded - padding;
    return out;
}

struct parts {
    char *header;
    char *payload;
    unsigned char *signature;
    size_t signature_length;
};

static void split(const char *token, struct parts *parts)
{
    const char *first = strchr(token, '.');
    const char *second = strchr(first + 1, '.');
    size_t length;

    assert_null(strchr(token, '='));
    parts->header = (char *)decode_part(token, (size_t)(first - token), &length);
    parts->payload = (char *)decode_part(first + 1, (size_t)(second - first - 1), &length);
    parts->signature = decode_part(second + 1, strlen(second + 1), &parts->signature_length);
}

static void free_parts(struct parts *parts)
{
    free(parts->header);
    free(parts->payload);
    free(parts->signature);
}

static char *sign(const char *key_file, const char *key_id, const char *claims)
{
    char err[256] = "";
    struct jwt_key *key = jwt_key_load(NULL, key_file, key_id, err, sizeof(err));
    if (key == NULL)
        fail_msg("jwt_key_load: %s", err);
    char *token = jwt_sign(key, claims, err, sizeof(err));
    if (token == NULL)
        fail_msg("jwt_sign: %s", err);
    jwt_key_free(key);
    return token;
}

static void expect_verify_failure(const char *token, const char *pem, const char *reason)
{
    char err[256] = "";

    assert_null(jwt_verify(NULL, token, pem, err, sizeof(err)));
    assert_string_equal(err, reason);
}

static void test_es256_round_trip(void **state)
{
    struct fixture *f = *state;
    char *token = sign(f->ec_file, NULL, CLAIMS);
    OSSL_LIB_CTX *libctx = OSSL_LIB_CTX_new();
    char err[256] = "";

    char *payload = jwt_verify(libctx, token, f->ec_public_pem, err, sizeof(err));
    if (payload == NULL)
        fail_msg("jwt_verify: %s", err);
    assert_string_equal(payload, CLAIMS);
    free(payload);
    OSSL_LIB_CTX_free(libctx);
    free(token);
}

static void test_rs256_round_trip(void **state)
{
    struct fixture *f = *state;
    char *token = sign(f->rsa_file, "rsa-1", CLAIMS);
    char err[256] = "";
    struct parts parts;

    char *payload = jwt_verify(NULL, token, f->rsa_public_pem, err, sizeof(err));
    if (payload == NULL)
        fail_msg("jwt_verify: %s", err);
    assert_string_equal(payload, CLAIMS);
    split(token, &parts);
    assert_string_equal(parts.header, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"rsa-1\"}");
    assert_int_equal(parts.signature_length, 256);
    free_parts(&parts);
    free(payload);
    free(token);
}

static void test_header_and_payload(void **state)
{
    struct fixture *f = *state;
    char *with_kid = sign(f->ec_file, "key-2024", CLAIMS);
    char *without_kid = sign(f->ec_file, NULL, CLAIMS);
    struct parts parts;

    split(with_kid, &parts);
    assert_string_equal(parts.header, "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"key-2024\"}");
    json_t *claims = json_loads(parts.payload, 0, NULL);
    assert_non_null(claims);
    assert_string_equal(json_string_value(json_object_get(claims, "sub")), "owner-1");
    assert_int_equal(json_integer_value(json_object_get(claims, "exp")), 1900000000);
    json_decref(claims);
    free_parts(&parts);
    split(without_kid, &parts);
    assert_string_equal(parts.header, "{\"alg\":\"ES256\",\"typ\":\"JWT\"}");
    free_parts(&parts);
    free(with_kid);
    free(without_kid);
}

/* The ES256 signature is r||s over header.payload, checked with OpenSSL directly. */
static void test_es256_signature_format(void **state)
{
    struct fixture *f = *state;
    char *token = sign(f->ec_file, NULL, CLAIMS);
    struct parts parts;

    split(token, &parts);
    assert_int_equal(parts.signature_length, 64);
    ECDSA_SIG *signature = ECDSA_SIG_new();
    ECDSA_SIG_set0(signature, BN_bin2bn(parts.signature, 32, NULL),
                   BN_bin2bn(parts.signature + 32, 32, NULL));
    unsigned char *der = NULL;
    int der_length = i2d_ECDSA_SIG(signature, &der);
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(context, NULL, EVP_sha256(), NULL, f->ec_key), 1);
    size_t signed_length = (size_t)(strrchr(token, '.') - token);
    assert_int_equal(EVP_DigestVerify(context, der, (size_t)der_length,
                                      (const unsigned char *)token, signed_length),
                     1);
    EVP_MD_CTX_free(context);
    OPENSSL_free(der);
    ECDSA_SIG_free(signature);
    free_parts(&parts);
    free(token);
}

static void test_verify_with_certificate(void **state)
{
    struct fixture *f = *state;
    char *token = sign(f->ec_file, NULL, "{}");
    char err[256] = "";

    char *payload = jwt_verify(NULL, token, f->ec_certificate_pem, err, sizeof(err));
    if (payload == NULL)
        fail_msg("jwt_verify: %s", err);
    assert_string_equal(payload, "{}");
    free(payload);
    free(token);
}

static void test_tampered_payload(void **state)
{
    struct fixture *f = *state;
    char *token = sign(f->ec_file, NULL, CLAIMS);
    char *other = sign(f->ec_file, NULL, "{\"iss\":\"https://dps.example\",\"sub\":\"admin\"}");
    char forged[1024];

    /* Header and signature of one token around the payload of another. */
    const char *payload = strchr(other, '.');
    const char *payload_end = strrchr(other, '.');
    const char *header_end = strchr(token, '.');
    const char *signature = strrchr(token, '.');
    assert_true(payload != NULL && payload_end != NULL && header_end != NULL && signature != NULL);
    snprintf(forged, sizeof(forged), "%.*s%.*s%s", (int)(header_end - token), token,
             (int)(payload_end - payload), payload, signature);
    expect_verify_failure(forged, f->ec_public_pem, "token signature does not verify");
    /* One flipped character inside the payload. */
    char *flipped = strdup(token);
    char *c = strchr(flipped, '.') + 5;
    *c = *c == 'A' ? 'B' : 'A';
    expect_verify_failure(flipped, f->ec_public_pem, "token signature does not verify");
    free(flipped);
    free(token);
    free(other);
}

static void test_wrong_key(void **state)
{
    struct fixture *f = *state;
    char *token = sign(f->ec_file, NULL, CLAIMS);
    char *rsa_token = sign(f->rsa_file, NULL, CLAIMS);

    expect_verify_failure(token, f->other_public_pem, "token signature does not verify");
    expect_verify_failure(token, f->rsa_public_pem, "token header alg is not RS256");
    expect_verify_failure(rsa_token, f->ec_public_pem, "token header alg is not ES256");
    expect_verify_failure(token, "not a key", "no usable public key in the PEM");
    free(token);
    free(rsa_token);
}

static void test_alg_none_rejected(void **state)
{
    struct fixture *f = *state;
    /* {"alg":"none","typ":"JWT"} . {"sub":"x"} . (empty) */
    const char *token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.";

    expect_verify_failure(token, f->ec_public_pem, "token header alg is not ES256");
}

static void test_malformed_tokens(void **state)
{
    struct fixture *f = *state;

    expect_verify_failure("abc", f->ec_public_pem, "token is not three dot-separated parts");
    expect_verify_failure("a.b", f->ec_public_pem, "token is not three dot-separated parts");
    expect_verify_failure("e30.e30.e30.e30", f->ec_public_pem,
                          "token is not three dot-separated parts");
    expect_verify_failure("e30=.e30.AAAA", f->ec_public_pem, "token part is not base64url");
    expect_verify_failure("e30.e3+.AAAA", f->ec_public_pem, "token part is not base64url");
    expect_verify_failure("e30.e30.A", f->ec_public_pem, "token part is not base64url");
}

static void expect_load_failure(const char *path, const char *reason)
{
    char err[512] = "";
    char expected[512];

    assert_null(jwt_key_load(NULL, path, NULL, err, sizeof(err)));
    snprintf(expected, sizeof(expected), "%s: %s", path, reason);
    assert_string_equal(err, expected);
}

static void test_load_errors(void **state)
{
    struct fixture *f = *state;
    char missing[160];

    snprintf(missing, sizeof(missing), "%s/missing.key", f->dir);
    expect_load_failure(missing, "cannot read the token key file");
    expect_load_failure(f->public_file, "not an unencrypted PEM private key");
    expect_load_failure(f->p384_file, "token key must be EC P-256 or RSA of 2048 bits or more");
}

static void test_kid_is_json_escaped(void **state)
{
    struct fixture *f = *state;
    char *token = sign(f->ec_file, "a\"b\\c", CLAIMS);
    struct parts parts;

    split(token, &parts);
    json_t *header = json_loads(parts.header, 0, NULL);
    assert_non_null(header);
    assert_string_equal(json_string_value(json_object_get(header, "kid")), "a\"b\\c");
    json_decref(header);
    free_parts(&parts);
    free(token);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_es256_round_trip),
        cmocka_unit_test(test_rs256_round_trip),
        cmocka_unit_test(test_header_and_payload),
        cmocka_unit_test(test_es256_signature_format),
        cmocka_unit_test(test_verify_with_certificate),
        cmocka_unit_test(test_tampered_payload),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_alg_none_rejected),
        cmocka_unit_test(test_malformed_tokens),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_kid_is_json_escaped),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
