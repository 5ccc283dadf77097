/*
 * test_csr: a device's certificate signing request is accepted only when it
 * is well-formed PEM, self-signed with ECDSA P-256 / SHA-256 and names the
 * device as CN=uuid:<device id>; the extracted subject and key are exactly
 * the request's.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "crypto/csr.h"

#define DEVICE_ID "0f8ab3c2-7d6e-4a51-9b2c-3e4f5a6b7c8d"

struct request_spec {
    EVP_PKEY *key;
    const EVP_MD *digest;
    const char *common_names[2];
};

static X509_REQ *make_request(const struct request_spec *spec)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();

    assert_non_null(req);
    assert_non_null(name);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                                (const unsigned char *)"Example", -1, -1, 0),
                     1);
    for (size_t i = 0; i < 2; i++) {
        if (spec->common_names[i] == NULL)
            continue;
        assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                    (const unsigned char *)spec->common_names[i],
                                                    -1, -1, 0),
                         1);
    }
    assert_int_equal(X509_REQ_set_subject_name(req, name), 1);
    X509_NAME_free(name);
    assert_int_equal(X509_REQ_set_pubkey(req, spec->key), 1);
    assert_true(X509_REQ_sign(req, spec->key, spec->digest) > 0);
    return req;
}

static char *der_to_pem(const unsigned char *der, long length)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;

    assert_true(PEM_write_bio(bio, "CERTIFICATE REQUEST", "", der, length) > 0);
    long pem_length = BIO_get_mem_data(bio, &data);
    char *pem = strndup(data, (size_t)pem_length);
    BIO_free(bio);
    return pem;
}

static char *request_pem(X509_REQ *req)
{
    unsigned char *der = NULL;
    int length = i2d_X509_REQ(req, &der);

    assert_true(length > 0);
    char *pem = der_to_pem(der, length);
    OPENSSL_free(der);
    return pem;
}

static char *make_pem(EVP_PKEY *key, const EVP_MD *digest, const char *cn, const char *second_cn)
{
    struct request_spec spec = {key, digest, {cn, second_cn}};
    X509_REQ *req = make_request(&spec);
    char *pem = request_pem(req);
    X509_REQ_free(req);
    return pem;
}

static void expect_failure(const char *pem, size_t length, const char *reason)
{
    struct csr_result result;
    char err[128] = "";

    assert_int_equal(csr_check(NULL, pem, length, &result, err, sizeof(err)), -1);
    assert_string_equal(err, reason);
}

static void test_valid_request(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    struct request_spec spec = {key, EVP_sha256(), {"uuid:" DEVICE_ID, NULL}};
    X509_REQ *req = make_request(&spec);
    char *pem = request_pem(req);
    OSSL_LIB_CTX *libctx = OSSL_LIB_CTX_new();
    struct csr_result result;
    char err[128] = "";
    char device_id[UUID_STRING_LENGTH + 1];

    (void)state;
    assert_int_equal(csr_check(libctx, pem, strlen(pem), &result, err, sizeof(err)), 0);
    uuid_format(&result.device_id, device_id);
    assert_string_equal(device_id, DEVICE_ID);

    unsigned char *subject = NULL;
    int subject_length = i2d_X509_NAME(X509_REQ_get_subject_name(req), &subject);
    assert_int_equal(result.subject_length, subject_length);
    assert_memory_equal(result.subject_der, subject, subject_length);
    unsigned char *spki = NULL;
    int spki_length = i2d_PUBKEY(key, &spki);
    assert_int_equal(result.spki_length, spki_length);
    assert_memory_equal(result.spki_der, spki, spki_length);

    OPENSSL_free(subject);
    OPENSSL_free(spki);
    OSSL_LIB_CTX_free(libctx);
    free(pem);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
}

static void test_upper_case_prefix_accepted(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    char *pem = make_pem(key, EVP_sha256(), "UUID:0F8AB3C2-7D6E-4A51-9B2C-3E4F5A6B7C8D", NULL);
    struct csr_result result;
    char err[128] = "";
    char device_id[UUID_STRING_LENGTH + 1];

    (void)state;
    assert_int_equal(csr_check(NULL, pem, strlen(pem), &result, err, sizeof(err)), 0);
    uuid_format(&result.device_id, device_id);
    assert_string_equal(device_id, DEVICE_ID);
    free(pem);
    EVP_PKEY_free(key);
}

static void test_tampered_signature(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    struct request_spec spec = {key, EVP_sha256(), {"uuid:" DEVICE_ID, NULL}};
    X509_REQ *req = make_request(&spec);
    unsigned char *der = NULL;
    int length = i2d_X509_REQ(req, &der);

    (void)state;
    /* The last byte is inside the ECDSA signature's s value. */
    der[length - 1] ^= 0x01;
    char *pem = der_to_pem(der, length);
    expect_failure(pem, strlen(pem), "CSR signature does not verify");
    free(pem);
    OPENSSL_free(der);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
}

static void test_rsa_key_rejected(void **state)
{
    EVP_PKEY *key = EVP_RSA_gen(2048);
    char *pem = make_pem(key, EVP_sha256(), "uuid:" DEVICE_ID, NULL);

    (void)state;
    expect_failure(pem, strlen(pem), "CSR key is not EC P-256");
    free(pem);
    EVP_PKEY_free(key);
}

static void test_p384_key_rejected(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-384");
    char *pem = make_pem(key, EVP_sha256(), "uuid:" DEVICE_ID, NULL);

    (void)state;
    expect_failure(pem, strlen(pem), "CSR key is not EC P-256");
    free(pem);
    EVP_PKEY_free(key);
}

static void test_sha384_signature_rejected(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    char *pem = make_pem(key, EVP_sha384(), "uuid:" DEVICE_ID, NULL);

    (void)state;
    expect_failure(pem, strlen(pem), "CSR signature algorithm is not ecdsa-with-SHA256");
    free(pem);
    EVP_PKEY_free(key);
}

static void test_cn_without_prefix_rejected(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    char *pem = make_pem(key, EVP_sha256(), DEVICE_ID, NULL);

    (void)state;
    expect_failure(pem, strlen(pem), "CSR subject CN is not uuid:<device id>");
    free(pem);
    EVP_PKEY_free(key);
}

static void test_cn_with_bad_uuid_rejected(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    char *bad = make_pem(key, EVP_sha256(), "uuid:0f8ab3c2-7d6e-4a51-9b2c-3e4f5a6b7c8x", NULL);
    char *nil = make_pem(key, EVP_sha256(), "uuid:00000000-0000-0000-0000-000000000000", NULL);
    char *trailing = make_pem(key, EVP_sha256(), "uuid:" DEVICE_ID " ", NULL);

    (void)state;
    expect_failure(bad, strlen(bad), "CSR subject CN is not uuid:<device id>");
    expect_failure(nil, strlen(nil), "CSR subject CN is not uuid:<device id>");
    expect_failure(trailing, strlen(trailing), "CSR subject CN is not uuid:<device id>");
    free(bad);
    free(nil);
    free(trailing);
    EVP_PKEY_free(key);
}

static void test_missing_or_repeated_cn_rejected(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    char *none = make_pem(key, EVP_sha256(), NULL, NULL);
    char *two = make_pem(key, EVP_sha256(), "uuid:" DEVICE_ID, "uuid:" DEVICE_ID);

    (void)state;
    expect_failure(none, strlen(none), "CSR subject CN is not uuid:<device id>");
    expect_failure(two, strlen(two), "CSR subject CN is not uuid:<device id>");
    free(none);
    free(two);
    EVP_PKEY_free(key);
}

static void test_garbage_rejected(void **state)
{
    const char *garbage = "-----BEGIN CERTIFICATE REQUEST-----\n%%%%not base64%%%%\n"
                          "-----END CERTIFICATE REQUEST-----\n";
    const char *text = "hello, this is not a CSR";

    (void)state;
    expect_failure(garbage, strlen(garbage), "CSR is not valid PEM");
    expect_failure(text, strlen(text), "CSR is not valid PEM");
    expect_failure(text, 0, "CSR is empty");
}

static void test_wrong_pem_type_rejected(void **state)
{
    unsigned char der[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;

    (void)state;
    assert_true(PEM_write_bio(bio, "CERTIFICATE", "", der, sizeof(der)) > 0);
    long length = BIO_get_mem_data(bio, &data);
    expect_failure(data, (size_t)length, "CSR is not valid PEM");
    BIO_free(bio);
}

static void test_truncated_der_rejected(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    struct request_spec spec = {key, EVP_sha256(), {"uuid:" DEVICE_ID, NULL}};
    X509_REQ *req = make_request(&spec);
    unsigned char *der = NULL;
    int length = i2d_X509_REQ(req, &der);

    (void)state;
    char *pem = der_to_pem(der, length - 10);
    expect_failure(pem, strlen(pem), "CSR is not a valid PKCS#10 request");
    free(pem);
    OPENSSL_free(der);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
}

static void test_oversize_rejected(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    char *pem = make_pem(key, EVP_sha256(), "uuid:" DEVICE_ID, NULL);
    size_t length = strlen(pem);
    char *padded = malloc(CSR_MAX_PEM + 1);
    unsigned char big_der[CSR_MAX_DER + 16] = {0};

    (void)state;
    /* A valid request followed by padding beyond the PEM limit. */
    memcpy(padded, pem, length);
    memset(padded + length, '\n', CSR_MAX_PEM + 1 - length);
    expect_failure(padded, CSR_MAX_PEM + 1, "CSR is too large");
    /* Small enough as PEM text but with a DER body above CSR_MAX_DER. */
    char *big = der_to_pem(big_der, sizeof(big_der));
    assert_true(strlen(big) <= CSR_MAX_PEM);
    expect_failure(big, strlen(big), "CSR is too large");
    free(big);
    free(padded);
    free(pem);
    EVP_PKEY_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_request),
        cmocka_unit_test(test_upper_case_prefix_accepted),
        cmocka_unit_test(test_tampered_signature),
        cmocka_unit_test(test_rsa_key_rejected),
        cmocka_unit_test(test_p384_key_rejected),
        cmocka_unit_test(test_sha384_signature_rejected),
        cmocka_unit_test(test_cn_without_prefix_rejected),
        cmocka_unit_test(test_cn_with_bad_uuid_rejected),
        cmocka_unit_test(test_missing_or_repeated_cn_rejected),
        cmocka_unit_test(test_garbage_rejected),
        cmocka_unit_test(test_wrong_pem_type_rejected),
        cmocka_unit_test(test_truncated_der_rejected),
        cmocka_unit_test(test_oversize_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
