/*
 * test_csr: a device's certificate signing request is accepted only when it
 * is well-formed PEM, self-signed with ECDSA P-256 / SHA-256 and names the
 * device as CN=uuid:<device id>; the extracted device id and key are exactly
 * the request's, whatever else its subject holds (nothing of the subject but
 * the id is handed on: the certificate's subject is built from it).
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
#include "crypto/lean_provider.h"

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

/* A valid request of key's: CN=uuid:DEVICE_ID, signed with SHA-256. */
static X509_REQ *valid_request(EVP_PKEY *key)
{
    struct request_spec spec = {key, EVP_sha256(), {"uuid:" DEVICE_ID, NULL}};
    return make_request(&spec);
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

/* The device id a check extracted is DEVICE_ID. */
static void assert_device_id(const struct csr_result *result)
{
    char device_id[UUID_STRING_LENGTH + 1];
    uuid_format(&result->device_id, device_id);
    assert_string_equal(device_id, DEVICE_ID);
}

/* req with subject name and key's public key, signed with key (ECDSA with SHA-256). */
static void sign_request(X509_REQ *req, X509_NAME *name, EVP_PKEY *key)
{
    assert_int_equal(X509_REQ_set_subject_name(req, name), 1);
    assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
    assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
}

static void expect_failure(const char *pem, size_t length, const char *reason)
{
    struct csr_result result;
    char err[128] = "";

    assert_int_equal(csr_check(NULL, pem, length, &result, err, sizeof(err)), -1);
    assert_string_equal(err, reason);
}

/*
 * A small DER writer for requests OpenSSL would not produce: the parts are
 * given as DER, the writer signs the certificationRequestInfo with key.
 */
struct der_buffer {
    unsigned char data[2048];
    size_t length;
};

static void put_bytes(struct der_buffer *out, const void *bytes, size_t length)
{
    assert_true(out->length + length <= sizeof(out->data));
    memcpy(out->data + out->length, bytes, length);
    out->length += length;
}

static void put_tlv(struct der_buffer *out, unsigned char tag, const void *content, size_t length)
{
    unsigned char header[4] = {tag};
    size_t header_length = 2;

    if (length < 0x80) {
        header[1] = (unsigned char)length;
    } else if (length < 0x100) {
        header[1] = 0x81;
        header[2] = (unsigned char)length;
        header_length = 3;
    } else {
        header[1] = 0x82;
        header[2] = (unsigned char)(length >> 8);
        header[3] = (unsigned char)length;
        header_length = 4;
    }
    put_bytes(out, header, header_length);
    put_bytes(out, content, length);
}

static const unsigned char VERSION_0[] = {0x02, 0x01, 0x00};
static const unsigned char NO_ATTRIBUTES[] = {0xa0, 0x00};
static const unsigned char ECDSA_SHA256[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                             0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};

struct request_parts {
    const unsigned char *version;
    size_t version_length;
    struct der_buffer subject;
    struct der_buffer spki;
    const unsigned char *algorithm;
    size_t algorithm_length;
    const char *digest;
};

/* Parts of a valid request for key, subject O=Example, CN=uuid:DEVICE_ID. */
static void default_parts(EVP_PKEY *key, struct request_parts *parts)
{
    X509_NAME *name = X509_NAME_new();
    unsigned char *cursor;

    memset(parts, 0, sizeof(*parts));
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                                (const unsigned char *)"Example", -1, -1, 0),
                     1);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                (const unsigned char *)"uuid:" DEVICE_ID, -1, -1,
                                                0),
                     1);
    cursor = parts->subject.data;
    parts->subject.length = (size_t)i2d_X509_NAME(name, &cursor);
    cursor = parts->spki.data;
    parts->spki.length = (size_t)i2d_PUBKEY(key, &cursor);
    parts->version = VERSION_0;
    parts->version_length = sizeof(VERSION_0);
    parts->algorithm = ECDSA_SHA256;
    parts->algorithm_length = sizeof(ECDSA_SHA256);
    parts->digest = "SHA256";
    X509_NAME_free(name);
}

static void build_request(EVP_PKEY *key, const struct request_parts *parts, struct der_buffer *out)
{
    struct der_buffer fields = {.length = 0};
    struct der_buffer info = {.length = 0};
    struct der_buffer body = {.length = 0};
    unsigned char signature[1 + 160] = {0};
    size_t signature_length = sizeof(signature) - 1;
    EVP_MD_CTX *md = EVP_MD_CTX_new();

    put_bytes(&fields, parts->version, parts->version_length);
    put_bytes(&fields, parts->subject.data, parts->subject.length);
    put_bytes(&fields, parts->spki.data, parts->spki.length);
    put_bytes(&fields, NO_ATTRIBUTES, sizeof(NO_ATTRIBUTES));
    put_tlv(&info, 0x30, fields.data, fields.length);
    assert_int_equal(EVP_DigestSignInit_ex(md, NULL, parts->digest, NULL, NULL, key, NULL), 1);
    assert_int_equal(EVP_DigestSign(md, signature + 1, &signature_length, info.data, info.length),
                     1);
    EVP_MD_CTX_free(md);
    put_bytes(&body, info.data, info.length);
    put_bytes(&body, parts->algorithm, parts->algorithm_length);
    put_tlv(&body, 0x03, signature, signature_length + 1);
    out->length = 0;
    put_tlv(out, 0x30, body.data, body.length);
}

/* A valid request for key, hand-built: its parts and its DER. */
static void default_request(EVP_PKEY *key, struct request_parts *parts, struct der_buffer *der)
{
    default_parts(key, parts);
    build_request(key, parts, der);
}

/* The size of a DER header of at most two length bytes. */
static size_t header_length(const unsigned char *der)
{
    return der[1] < 0x80 ? 2 : 2 + (size_t)(der[1] & 0x7f);
}

static void expect_der_failure(const unsigned char *der, size_t length, const char *reason)
{
    char *pem = der_to_pem(der, (long)length);
    expect_failure(pem, strlen(pem), reason);
    free(pem);
}

static void expect_der_success(const unsigned char *der, size_t length)
{
    char *pem = der_to_pem(der, (long)length);
    struct csr_result result;
    char err[128] = "";

    assert_int_equal(csr_check(NULL, pem, strlen(pem), &result, err, sizeof(err)), 0);
    free(pem);
}

#define NOT_PKCS10 "CSR is not a valid PKCS#10 request"

static void test_valid_request(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509_REQ *req = valid_request(key);
    char *pem = request_pem(req);
    OSSL_LIB_CTX *libctx = OSSL_LIB_CTX_new();
    struct csr_result result;
    char err[128] = "";

    (void)state;
    assert_int_equal(csr_check(libctx, pem, strlen(pem), &result, err, sizeof(err)), 0);
    assert_device_id(&result);

    unsigned char *spki = NULL;
    int spki_length = i2d_PUBKEY(key, &spki);
    assert_int_equal(result.spki_length, spki_length);
    assert_memory_equal(result.spki_der, spki, spki_length);

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

    (void)state;
    assert_int_equal(csr_check(NULL, pem, strlen(pem), &result, err, sizeof(err)), 0);
    assert_device_id(&result);
    free(pem);
    EVP_PKEY_free(key);
}

static void test_tampered_signature(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509_REQ *req = valid_request(key);
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

#define BAD_CN "CSR subject CN is not uuid:<device id>"

/* A request by key (then freed) with digest and the common names is refused with reason. */
static void expect_request_refused(EVP_PKEY *key, const EVP_MD *digest, const char *cn,
                                   const char *second_cn, const char *reason)
{
    char *pem = make_pem(key, digest, cn, second_cn);
    expect_failure(pem, strlen(pem), reason);
    free(pem);
    EVP_PKEY_free(key);
}

static void test_rsa_key_rejected(void **state)
{
    (void)state;
    expect_request_refused(EVP_RSA_gen(2048), EVP_sha256(), "uuid:" DEVICE_ID, NULL,
                           "CSR key is not EC P-256");
}

static void test_p384_key_rejected(void **state)
{
    (void)state;
    expect_request_refused(EVP_EC_gen("P-384"), EVP_sha256(), "uuid:" DEVICE_ID, NULL,
                           "CSR key is not EC P-256");
}

static void test_sha384_signature_rejected(void **state)
{
    (void)state;
    expect_request_refused(EVP_EC_gen("P-256"), EVP_sha384(), "uuid:" DEVICE_ID, NULL,
                           "CSR signature algorithm is not ecdsa-with-SHA256");
}

static void test_cn_without_prefix_rejected(void **state)
{
    (void)state;
    expect_request_refused(EVP_EC_gen("P-256"), EVP_sha256(), DEVICE_ID, NULL, BAD_CN);
}

static void test_cn_with_bad_uuid_rejected(void **state)
{
    static const char *const names[] = {
        "uuid:0f8ab3c2-7d6e-4a51-9b2c-3e4f5a6b7c8x", /* not hexadecimal */
        "uuid:00000000-0000-0000-0000-000000000000", /* nil */
        "uuid:" DEVICE_ID " ",                       /* trailing space */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        expect_request_refused(EVP_EC_gen("P-256"), EVP_sha256(), names[i], NULL, BAD_CN);
}

static void test_missing_or_repeated_cn_rejected(void **state)
{
    (void)state;
    expect_request_refused(EVP_EC_gen("P-256"), EVP_sha256(), NULL, NULL, BAD_CN);
    expect_request_refused(EVP_EC_gen("P-256"), EVP_sha256(), "uuid:" DEVICE_ID, "uuid:" DEVICE_ID,
                           BAD_CN);
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
    X509_REQ *req = valid_request(key);
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

/*
 * Whatever else the subject holds (country, organisation, a multi-valued RDN),
 * the device id and key are what OpenSSL extracts, and nothing else is kept.
 */
static void test_results_equal_openssl_decoding(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    struct csr_result result;
    char err[128] = "";

    (void)state;
    assert_int_equal(
        X509_NAME_add_entry_by_txt(name, "C", MBSTRING_ASC, (const unsigned char *)"DE", -1, -1, 0),
        1);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                                (const unsigned char *)"B\xc3\xa4"
                                                                       "ckerei",
                                                -1, -1, 0),
                     1);
    /* A multi-valued RDN: OU and CN in one SET. */
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_ASC,
                                                (const unsigned char *)"Ovens", -1, -1, 0),
                     1);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", V_ASN1_PRINTABLESTRING,
                                                (const unsigned char *)"uuid:" DEVICE_ID, -1, -1,
                                                1),
                     1);
    sign_request(req, name, key);
    char *pem = request_pem(req);
    assert_int_equal(csr_check(NULL, pem, strlen(pem), &result, err, sizeof(err)), 0);

    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509_REQ *decoded = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    assert_non_null(decoded);
    unsigned char *spki = NULL;
    int spki_length = i2d_PUBKEY(X509_REQ_get0_pubkey(decoded), &spki);
    assert_int_equal(result.spki_length, spki_length);
    assert_memory_equal(result.spki_der, spki, spki_length);
    assert_device_id(&result);

    OPENSSL_free(spki);
    X509_REQ_free(decoded);
    BIO_free(bio);
    free(pem);
    X509_NAME_free(name);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
}

static void test_printable_and_ia5_cn_accepted(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    const int types[] = {V_ASN1_PRINTABLESTRING, V_ASN1_IA5STRING, V_ASN1_UTF8STRING};

    (void)state;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        X509_REQ *req = X509_REQ_new();
        X509_NAME *name = X509_NAME_new();
        assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", types[i],
                                                    (const unsigned char *)"uuid:" DEVICE_ID, -1,
                                                    -1, 0),
                         1);
        sign_request(req, name, key);
        char *pem = request_pem(req);
        struct csr_result result;
        char err[128] = "";
        assert_int_equal(csr_check(NULL, pem, strlen(pem), &result, err, sizeof(err)), 0);
        assert_device_id(&result);
        free(pem);
        X509_NAME_free(name);
        X509_REQ_free(req);
    }
    EVP_PKEY_free(key);
}

static void test_bmp_string_cn_rejected(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();

    (void)state;
    /* "uuid:<id>" in UCS-2: right text, wrong string type. */
    const char *cn = "uuid:" DEVICE_ID;
    unsigned char bmp[2 * 41] = {0};
    for (size_t i = 0; i < 41; i++)
        bmp[2 * i + 1] = (unsigned char)cn[i];
    assert_int_equal(
        X509_NAME_add_entry_by_txt(name, "CN", V_ASN1_BMPSTRING, bmp, sizeof(bmp), -1, 0), 1);
    sign_request(req, name, key);
    char *pem = request_pem(req);
    expect_failure(pem, strlen(pem), "CSR subject CN is not uuid:<device id>");
    free(pem);
    X509_NAME_free(name);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
}

/* The hand-built request is accepted as is, so each variant below fails for its one change. */
static void test_hand_built_request_accepted(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    struct request_parts parts;
    struct der_buffer der;

    (void)state;
    default_request(key, &parts, &der);
    expect_der_success(der.data, der.length);
    EVP_PKEY_free(key);
}

static void test_off_curve_point_rejected(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    struct request_parts parts;
    struct der_buffer der;

    (void)state;
    default_parts(key, &parts);
    /* y + 1 (or y - 1): the point is no longer on the curve. */
    parts.spki.data[parts.spki.length - 1] ^= 0x01;
    build_request(key, &parts, &der);
    expect_der_failure(der.data, der.length, "CSR key is not EC P-256");
    EVP_PKEY_free(key);
}

/*
 * In a context of lean_libctx_new() the key is made from the context's P-256
 * parameters: the same answers, an off-curve point refused as before.
 */
static void test_lean_context_same_answers(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    char err[128] = "";
    OSSL_LIB_CTX *libctx = lean_libctx_new(err, sizeof(err));
    struct request_parts parts;
    struct der_buffer der;
    struct csr_result result;

    (void)state;
    assert_non_null(libctx);
    assert_non_null(lean_p256_parameters(libctx));
    X509_REQ *req = valid_request(key);
    char *pem = request_pem(req);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(csr_check(libctx, pem, strlen(pem), &result, err, sizeof(err)), 0);
        assert_device_id(&result);
    }
    free(pem);
    X509_REQ_free(req);

    default_parts(key, &parts);
    parts.spki.data[parts.spki.length - 1] ^= 0x01;
    build_request(key, &parts, &der);
    pem = der_to_pem(der.data, (long)der.length);
    assert_int_equal(csr_check(libctx, pem, strlen(pem), &result, err, sizeof(err)), -1);
    assert_string_equal(err, "CSR key is not EC P-256");
    free(pem);

    default_request(key, &parts, &der);
    der.data[der.length - 1] ^= 0x01;
    pem = der_to_pem(der.data, (long)der.length);
    assert_int_equal(csr_check(libctx, pem, strlen(pem), &result, err, sizeof(err)), -1);
    assert_string_equal(err, "CSR signature does not verify");
    free(pem);

    lean_libctx_free(libctx);
    EVP_PKEY_free(key);
}

static void test_compressed_point_rejected(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    struct request_parts parts;
    struct der_buffer der;
    struct der_buffer spki = {.length = 0};
    struct der_buffer algorithm = {.length = 0};
    struct der_buffer key_bits = {.length = 0};

    (void)state;
    default_parts(key, &parts);
    /* The same algorithm, the point as 0x02/0x03 || x. */
    put_bytes(&algorithm, parts.spki.data + 2, 21);
    unsigned char compressed[34] = {0x00, (unsigned char)(0x02 | (parts.spki.data[90] & 1))};
    memcpy(compressed + 2, parts.spki.data + 27, 32);
    put_tlv(&key_bits, 0x03, compressed, sizeof(compressed));
    put_bytes(&algorithm, key_bits.data, key_bits.length);
    put_tlv(&spki, 0x30, algorithm.data, algorithm.length);
    parts.spki = spki;
    build_request(key, &parts, &der);
    expect_der_failure(der.data, der.length, "CSR key is not EC P-256");
    EVP_PKEY_free(key);
}

static void test_wrong_curve_oid_rejected(void **state)
{
    static const unsigned char secp256k1[] = {0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
                                              0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a};
    EVP_PKEY *key = EVP_EC_gen("P-256");
    struct request_parts parts;
    struct der_buffer der;
    struct der_buffer fields = {.length = 0};

    (void)state;
    default_parts(key, &parts);
    /* P-256's point labelled as a secp256k1 key. */
    put_bytes(&fields, secp256k1, sizeof(secp256k1));
    put_bytes(&fields, parts.spki.data + 23, parts.spki.length - 23);
    parts.spki.length = 0;
    put_tlv(&parts.spki, 0x30, fields.data, fields.length);
    build_request(key, &parts, &der);
    expect_der_failure(der.data, der.length, "CSR key is not EC P-256");
    EVP_PKEY_free(key);
}

static void test_signature_algorithm_variants_rejected(void **state)
{
    static const unsigned char with_null[] = {0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                              0xce, 0x3d, 0x04, 0x03, 0x02, 0x05, 0x00};
    static const unsigned char sha384[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                           0x48, 0xce, 0x3d, 0x04, 0x03, 0x03};
    EVP_PKEY *key = EVP_EC_gen("P-256");
    struct request_parts parts;
    struct der_buffer der;

    (void)state;
    default_parts(key, &parts);
    parts.algorithm = with_null;
    parts.algorithm_length = sizeof(with_null);
    build_request(key, &parts, &der);
    expect_der_failure(der.data, der.length, "CSR signature algorithm is not ecdsa-with-SHA256");
    parts.algorithm = sha384;
    parts.algorithm_length = sizeof(sha384);
    parts.digest = "SHA384";
    build_request(key, &parts, &der);
    expect_der_failure(der.data, der.length, "CSR signature algorithm is not ecdsa-with-SHA256");
    EVP_PKEY_free(key);
}

static void test_version_other_than_0_rejected(void **state)
{
    static const unsigned char version_1[] = {0x02, 0x01, 0x01};
    static const unsigned char version_0_padded[] = {0x02, 0x02, 0x00, 0x00};
    EVP_PKEY *key = EVP_EC_gen("P-256");
    struct request_parts parts;
    struct der_buffer der;

    (void)state;
    default_parts(key, &parts);
    parts.version = version_1;
    parts.version_length = sizeof(version_1);
    build_request(key, &parts, &der);
    expect_der_failure(der.data, der.length, NOT_PKCS10);
    parts.version = version_0_padded;
    parts.version_length = sizeof(version_0_padded);
    build_request(key, &parts, &der);
    expect_der_failure(der.data, der.length, NOT_PKCS10);
    EVP_PKEY_free(key);
}

static void test_non_minimal_length_rejected(void **state)
{
    static const unsigned char long_version[] = {0x02, 0x81, 0x01, 0x00};
    EVP_PKEY *key = EVP_EC_gen("P-256");
    struct request_parts parts;
    struct der_buffer der;
    struct der_buffer padded = {.length = 0};

    (void)state;
    default_parts(key, &parts);
    /* A short length written in the long form, inside the signed part. */
    parts.version = long_version;
    parts.version_length = sizeof(long_version);
    build_request(key, &parts, &der);
    expect_der_failure(der.data, der.length, NOT_PKCS10);

    /* The subject's short length written in two bytes, the first zero. */
    default_parts(key, &parts);
    assert_true(parts.subject.length - 2 < 0x80);
    unsigned char header[] = {0x30, 0x82, 0x00, parts.subject.data[1]};
    put_bytes(&padded, header, sizeof(header));
    put_bytes(&padded, parts.subject.data + 2, parts.subject.length - 2);
    parts.subject = padded;
    build_request(key, &parts, &der);
    expect_der_failure(der.data, der.length, NOT_PKCS10);
    EVP_PKEY_free(key);
}

static void test_indefinite_length_rejected(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    struct request_parts parts;
    struct der_buffer der;
    struct der_buffer indefinite = {.length = 0};
    static const unsigned char header[] = {0x30, 0x80};
    static const unsigned char end_of_contents[] = {0x00, 0x00};

    (void)state;
    default_request(key, &parts, &der);
    put_bytes(&indefinite, header, sizeof(header));
    put_bytes(&indefinite, der.data + 3, der.length - 3);
    put_bytes(&indefinite, end_of_contents, sizeof(end_of_contents));
    expect_der_failure(indefinite.data, indefinite.length, NOT_PKCS10);
    EVP_PKEY_free(key);
}

static void test_trailing_bytes_rejected(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    struct request_parts parts;
    struct der_buffer der;
    static const unsigned char extra[] = {0x05, 0x00};

    (void)state;
    default_request(key, &parts, &der);
    /* After the request. */
    put_bytes(&der, extra, sizeof(extra));
    expect_der_failure(der.data, der.length, NOT_PKCS10);
    /* Inside the request, after the signature (the outer length adjusted). */
    der.data[2] += sizeof(extra);
    expect_der_failure(der.data, der.length, NOT_PKCS10);
    EVP_PKEY_free(key);
}

static void test_truncated_der_at_every_length_rejected(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    struct request_parts parts;
    struct der_buffer der;

    (void)state;
    default_request(key, &parts, &der);
    for (size_t length = 1; length < der.length; length++)
        expect_der_failure(der.data, length, NOT_PKCS10);
    EVP_PKEY_free(key);
}

/* Random single-byte changes never crash and are never accepted. */
static void test_mutated_der_never_accepted(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    struct request_parts parts;
    struct der_buffer der;
    unsigned int seed = 1;

    (void)state;
    default_request(key, &parts, &der);
    for (int round = 0; round < 600; round++) {
        struct der_buffer mutated = der;
        size_t position = (size_t)rand_r(&seed) % der.length;
        unsigned char change = (unsigned char)(1 + rand_r(&seed) % 255);
        mutated.data[position] ^= change;
        char *pem = der_to_pem(mutated.data, (long)mutated.length);
        struct csr_result result;
        char err[128] = "";
        assert_int_equal(csr_check(NULL, pem, strlen(pem), &result, err, sizeof(err)), -1);
        assert_true(strlen(err) > 0);
        free(pem);
    }
    EVP_PKEY_free(key);
}

static void test_bit_string_unused_bits_rejected(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    struct request_parts parts;
    struct der_buffer der;

    (void)state;
    default_request(key, &parts, &der);
    /* The algorithm and the BIT STRING follow the info, inside the outer SEQUENCE. */
    size_t info = header_length(der.data);
    assert_int_equal(der.data[info + 1], 0x81);
    size_t bit_string =
        info + header_length(der.data + info) + der.data[info + 2] + sizeof(ECDSA_SHA256);
    assert_int_equal(der.data[bit_string], 0x03);
    assert_int_equal(der.data[bit_string + 2], 0x00);
    der.data[bit_string + 2] = 0x01;
    expect_der_failure(der.data, der.length, NOT_PKCS10);
    EVP_PKEY_free(key);
}

static void test_pem_framing(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    char *pem = make_pem(key, EVP_sha256(), "uuid:" DEVICE_ID, NULL);
    size_t length = strlen(pem);
    char text[CSR_MAX_PEM];
    struct csr_result result;
    char err[128] = "";

    (void)state;
    /* CRLF line ends, surrounding whitespace and a trailing NUL are accepted. */
    size_t crlf = 0;
    text[crlf++] = '\n';
    for (size_t i = 0; i < length; i++) {
        if (pem[i] == '\n')
            text[crlf++] = '\r';
        text[crlf++] = pem[i];
    }
    text[crlf++] = '\0';
    assert_int_equal(csr_check(NULL, text, crlf, &result, err, sizeof(err)), 0);
    /* The base64 in one long line is accepted. */
    size_t joined = 0;
    for (size_t i = 0; i < length; i++) {
        bool body_line_end = pem[i] == '\n' && i + 1 < length && pem[i + 1] != '-' &&
                             i > strlen("-----BEGIN CERTIFICATE REQUEST-----");
        if (!body_line_end)
            text[joined++] = pem[i];
    }
    assert_int_equal(csr_check(NULL, text, joined, &result, err, sizeof(err)), 0);

    /* Text before the armour, after it, a header line, a mismatched END, a blank line. */
    snprintf(text, sizeof(text), "x%s", pem);
    expect_failure(text, strlen(text), "CSR is not valid PEM");
    snprintf(text, sizeof(text), "%sx", pem);
    expect_failure(text, strlen(text), "CSR is not valid PEM");
    const char *begin_end = strchr(pem, '\n') + 1;
    snprintf(text, sizeof(text), "-----BEGIN CERTIFICATE REQUEST-----\nProc-Type: 4,ENCRYPTED\n%s",
             begin_end);
    expect_failure(text, strlen(text), "CSR is not valid PEM");
    snprintf(text, sizeof(text), "-----BEGIN CERTIFICATE REQUEST-----\n\n%s", begin_end);
    expect_failure(text, strlen(text), "CSR is not valid PEM");
    snprintf(text, sizeof(text), "-----BEGIN NEW CERTIFICATE REQUEST-----\n%s", begin_end);
    expect_failure(text, strlen(text), "CSR is not valid PEM");
    /* The old "NEW CERTIFICATE REQUEST" label, consistently used, is accepted. */
    char *end = strstr(begin_end, "-----END ");
    snprintf(text, sizeof(text),
             "-----BEGIN NEW CERTIFICATE REQUEST-----\n%.*s-----END NEW CERTIFICATE REQUEST-----\n",
             (int)(end - begin_end), begin_end);
    assert_int_equal(csr_check(NULL, text, strlen(text), &result, err, sizeof(err)), 0);
    /* A missing END line. */
    expect_failure(pem, (size_t)(strstr(pem, "-----END") - pem), "CSR is not valid PEM");
    free(pem);
    EVP_PKEY_free(key);
}

static void test_non_canonical_base64_rejected(void **state)
{
    /* "MAE=" is 30 01 with zero spare bits; "MAF=" sets one of them. */
    const char *canonical = "-----BEGIN CERTIFICATE REQUEST-----\nMAE=\n"
                            "-----END CERTIFICATE REQUEST-----\n";
    const char *spare_bits = "-----BEGIN CERTIFICATE REQUEST-----\nMAF=\n"
                             "-----END CERTIFICATE REQUEST-----\n";
    const char *data_after_padding = "-----BEGIN CERTIFICATE REQUEST-----\nMAE=\nMAE=\n"
                                     "-----END CERTIFICATE REQUEST-----\n";
    const char *unpadded = "-----BEGIN CERTIFICATE REQUEST-----\nMAE\n"
                           "-----END CERTIFICATE REQUEST-----\n";

    (void)state;
    /* Valid base64 of a malformed request: past the PEM layer. */
    expect_failure(canonical, strlen(canonical), NOT_PKCS10);
    expect_failure(spare_bits, strlen(spare_bits), "CSR is not valid PEM");
    expect_failure(data_after_padding, strlen(data_after_padding), "CSR is not valid PEM");
    expect_failure(unpadded, strlen(unpadded), "CSR is not valid PEM");
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
        cmocka_unit_test(test_results_equal_openssl_decoding),
        cmocka_unit_test(test_printable_and_ia5_cn_accepted),
        cmocka_unit_test(test_bmp_string_cn_rejected),
        cmocka_unit_test(test_hand_built_request_accepted),
        cmocka_unit_test(test_off_curve_point_rejected),
        cmocka_unit_test(test_lean_context_same_answers),
        cmocka_unit_test(test_compressed_point_rejected),
        cmocka_unit_test(test_wrong_curve_oid_rejected),
        cmocka_unit_test(test_signature_algorithm_variants_rejected),
        cmocka_unit_test(test_version_other_than_0_rejected),
        cmocka_unit_test(test_non_minimal_length_rejected),
        cmocka_unit_test(test_indefinite_length_rejected),
        cmocka_unit_test(test_trailing_bytes_rejected),
        cmocka_unit_test(test_truncated_der_at_every_length_rejected),
        cmocka_unit_test(test_mutated_der_never_accepted),
        cmocka_unit_test(test_bit_string_unused_bits_rejected),
        cmocka_unit_test(test_pem_framing),
        cmocka_unit_test(test_non_canonical_base64_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
