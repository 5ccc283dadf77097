/*
 * test_issuer: identity certificates issued by a hub CA (EC intermediate
 * under an EC root, a self-signed EC CA, an RSA root) verify up to the root,
 * carry exactly the PROTOCOL.md 2.4 fields, are canonical DER (OpenSSL
 * re-encodes them byte for byte), encode validity as RFC 5280 requires, have
 * exactly CN=uuid:<device id> as their subject, and bad CA files, device ids
 * that are not non-nil UUIDs and malformed keys are refused with an error.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tests/unit/pki_files.h"
#include "crypto/issuer.h"

#define DEVICE_ID "0f8ab3c2-7d6e-4a51-9b2c-3e4f5a6b7c8d"

struct fixture {
    char dir[64];
    EVP_PKEY *root_key, *intermediate_key, *rsa_key, *device_key;
    X509 *root, *intermediate, *rsa_root;
    char chain_file[128], intermediate_key_file[128];
    char root_file[128], root_key_file[128];
    char rsa_file[128], rsa_key_file[128];
    char misordered_file[128], leaf_file[128];
    char issued_file[128], text_file[128];
    OSSL_LIB_CTX *libctx;
    uint8_t subject_der[256]; /* CN=uuid:DEVICE_ID as OpenSSL encodes it (UTF8String) */
    size_t subject_length;
    uint8_t spki_der[256];
    size_t spki_length;
};

static char *certificate_pem(X509 *certificate)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    PEM_write_bio_X509(bio, certificate);
    long length = BIO_get_mem_data(bio, &data);
    char *pem = strndup(data, (size_t)length);
    BIO_free(bio);
    return pem;
}

static void path_in(struct fixture *f, char *out, const char *name)
{
    snprintf(out, 128, "%s/%s", f->dir, name);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    strcpy(f->dir, "/tmp/test_issuer.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->root_key = EVP_EC_gen("P-256");
    f->intermediate_key = EVP_EC_gen("P-256");
    f->rsa_key = EVP_RSA_gen(2048);
    f->device_key = EVP_EC_gen("P-256");
    f->root = make_ca(f->root_key, "Hub Root", NULL, NULL);
    f->intermediate = make_ca(f->intermediate_key, "Hub CA", f->root, f->root_key);
    f->rsa_root = make_ca(f->rsa_key, "Hub RSA Root", NULL, NULL);

    path_in(f, f->chain_file, "hub-ca.pem");
    path_in(f, f->intermediate_key_file, "hub-ca.key");
    path_in(f, f->root_file, "hub-root.pem");
    path_in(f, f->root_key_file, "hub-root.key");
    path_in(f, f->rsa_file, "rsa-root.pem");
    path_in(f, f->rsa_key_file, "rsa-root.key");
    path_in(f, f->misordered_file, "misordered.pem");
    path_in(f, f->leaf_file, "leaf.pem");
    path_in(f, f->issued_file, "issued.pem");
    path_in(f, f->text_file, "issued.txt");
    write_certificates(f->chain_file, f->intermediate, f->root);
    write_key(f->intermediate_key_file, f->intermediate_key);
    write_certificates(f->root_file, f->root, NULL);
    write_key(f->root_key_file, f->root_key);
    write_certificates(f->rsa_file, f->rsa_root, NULL);
    write_key(f->rsa_key_file, f->rsa_key);
    write_certificates(f->misordered_file, f->root, f->intermediate);

    X509_NAME *subject = X509_NAME_new();
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                               (const unsigned char *)"uuid:" DEVICE_ID, -1, -1, 0);
    unsigned char *cursor = f->subject_der;
    f->subject_length = (size_t)i2d_X509_NAME(subject, &cursor);
    X509_NAME_free(subject);
    cursor = f->spki_der;
    f->spki_length = (size_t)i2d_PUBKEY(f->device_key, &cursor);

    /* A leaf (not a CA) to use as a wrong CA file. */
    X509 *leaf = X509_new();
    X509_set_version(leaf, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(leaf), 7);
    X509_set_subject_name(leaf, X509_get_subject_name(f->root));
    X509_set_issuer_name(leaf, X509_get_subject_name(f->root));
    X509_gmtime_adj(X509_getm_notBefore(leaf), 0);
    X509_gmtime_adj(X509_getm_notAfter(leaf), 86400);
    X509_set_pubkey(leaf, f->root_key);
    add_extension(leaf, leaf, NID_basic_constraints, "critical,CA:FALSE");
    X509_sign(leaf, f->root_key, EVP_sha256());
    write_certificates(f->leaf_file, leaf, NULL);
    X509_free(leaf);

    f->libctx = OSSL_LIB_CTX_new();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    const char *files[] = {
        f->chain_file,   f->intermediate_key_file, f->root_file, f->root_key_file, f->rsa_file,
        f->rsa_key_file, f->misordered_file,       f->leaf_file, f->issued_file,   f->text_file};

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(files[i]);
    rmdir(f->dir);
    EVP_PKEY_free(f->root_key);
    EVP_PKEY_free(f->intermediate_key);
    EVP_PKEY_free(f->rsa_key);
    EVP_PKEY_free(f->device_key);
    X509_free(f->root);
    X509_free(f->intermediate);
    X509_free(f->rsa_root);
    OSSL_LIB_CTX_free(f->libctx);
    free(f);
    return 0;
}

static struct issuer *load(struct fixture *f, const char *cert_file, const char *key_file)
{
    char err[256] = "";
    struct issuer *issuer = issuer_load(f->libctx, cert_file, key_file, err, sizeof(err));
    if (issuer == NULL)
        fail_msg("issuer_load: %s", err);
    return issuer;
}

static X509 *issue_valid(struct fixture *f, struct issuer *issuer, time_t not_before,
                         time_t not_after, struct issued_certificate *out)
{
    char err[256] = "";

    if (issuer_issue(issuer, DEVICE_ID, f->spki_der, f->spki_length, not_before, not_after, out,
                     err, sizeof(err)) != 0)
        fail_msg("issuer_issue: %s", err);
    BIO *bio = BIO_new_mem_buf(out->pem, -1);
    X509 *leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(leaf);
    return leaf;
}

static X509 *issue(struct fixture *f, struct issuer *issuer, struct issued_certificate *out)
{
    time_t now = time(NULL);

    return issue_valid(f, issuer, now - 60, now + 365L * 86400, out);
}

/* The DER of the first certificate in pem. */
static unsigned char *first_der(const char *pem, long *length)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;

    assert_int_equal(PEM_read_bio(bio, &name, &header, &der, length), 1);
    assert_string_equal(name, "CERTIFICATE");
    OPENSSL_free(name);
    OPENSSL_free(header);
    BIO_free(bio);
    return der;
}

static void verify_with_store(X509 *root, X509 *intermediate, X509 *leaf, int purpose)
{
    X509_STORE *store = X509_STORE_new();
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    X509_STORE_CTX *context = X509_STORE_CTX_new();

    X509_STORE_add_cert(store, root);
    if (intermediate != NULL)
        sk_X509_push(untrusted, intermediate);
    assert_int_equal(X509_STORE_CTX_init(context, store, leaf, untrusted), 1);
    X509_STORE_CTX_set_purpose(context, purpose);
    if (X509_verify_cert(context) != 1)
        fail_msg("chain does not verify: %s",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(context)));
    X509_STORE_CTX_free(context);
    sk_X509_free(untrusted);
    X509_STORE_free(store);
}

static void test_issued_certificate_verifies(void **state)
{
    struct fixture *f = *state;
    struct issuer *issuer = load(f, f->chain_file, f->intermediate_key_file);
    struct issued_certificate out;
    X509 *leaf = issue(f, issuer, &out);

    assert_int_equal(X509_verify(leaf, f->intermediate_key), 1);
    assert_int_equal(X509_verify(leaf, f->root_key), 0);
    verify_with_store(f->root, f->intermediate, leaf, X509_PURPOSE_SSL_CLIENT);
    verify_with_store(f->root, f->intermediate, leaf, X509_PURPOSE_SSL_SERVER);
    assert_int_equal(X509_get_signature_nid(leaf), NID_ecdsa_with_SHA256);
    X509_free(leaf);
    free(out.pem);
    issuer_free(issuer);
}

static void test_fields(void **state)
{
    struct fixture *f = *state;
    struct issuer *issuer = load(f, f->chain_file, f->intermediate_key_file);
    struct issued_certificate out;
    X509 *leaf = issue(f, issuer, &out);

    assert_int_equal(X509_get_version(leaf), X509_VERSION_3);
    assert_int_equal(
        X509_NAME_cmp(X509_get_issuer_name(leaf), X509_get_subject_name(f->intermediate)), 0);
    unsigned char *subject = NULL;
    int subject_length = i2d_X509_NAME(X509_get_subject_name(leaf), &subject);
    assert_int_equal(subject_length, f->subject_length);
    assert_memory_equal(subject, f->subject_der, f->subject_length);
    OPENSSL_free(subject);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(leaf), f->device_key), 1);
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notBefore(leaf), out.not_before), 0);
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notAfter(leaf), out.not_after), 0);
    assert_true(out.not_after - out.not_before > 3600);
    X509_free(leaf);
    free(out.pem);
    issuer_free(issuer);
}

static void test_extensions(void **state)
{
    struct fixture *f = *state;
    struct issuer *issuer = load(f, f->chain_file, f->intermediate_key_file);
    struct issued_certificate out;
    X509 *leaf = issue(f, issuer, &out);
    char oid[64];

    assert_int_equal(X509_get_ext_count(leaf), 5);
    /* basicConstraints critical CA:FALSE */
    int critical = -1;
    BASIC_CONSTRAINTS *constraints = X509_get_ext_d2i(leaf, NID_basic_constraints, &critical, NULL);
    assert_non_null(constraints);
    assert_int_equal(critical, 1);
    assert_false(constraints->ca);
    BASIC_CONSTRAINTS_free(constraints);
    assert_int_equal(X509_check_ca(leaf), 0);
    /* keyUsage critical digitalSignature + keyAgreement */
    int index = X509_get_ext_by_NID(leaf, NID_key_usage, -1);
    assert_true(index >= 0);
    assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(leaf, index)), 1);
    assert_int_equal(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT);
    /* extendedKeyUsage serverAuth, clientAuth, OCF identity */
    EXTENDED_KEY_USAGE *usage = X509_get_ext_d2i(leaf, NID_ext_key_usage, &critical, NULL);
    assert_non_null(usage);
    assert_int_equal(critical, 0);
    assert_int_equal(sk_ASN1_OBJECT_num(usage), 3);
    assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(usage, 0)), NID_server_auth);
    assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(usage, 1)), NID_client_auth);
    OBJ_obj2txt(oid, sizeof(oid), sk_ASN1_OBJECT_value(usage, 2), 1);
    assert_string_equal(oid, "1.3.6.1.4.1.44924.1.6");
    EXTENDED_KEY_USAGE_free(usage);
    /* subjectKeyIdentifier = SHA-1 of the key; authorityKeyIdentifier = the CA's */
    const ASN1_OCTET_STRING *subject_id = X509_get0_subject_key_id(leaf);
    assert_non_null(subject_id);
    unsigned char digest[20];
    unsigned int digest_length = 0;
    X509_pubkey_digest(leaf, EVP_sha1(), digest, &digest_length);
    assert_int_equal(ASN1_STRING_length(subject_id), 20);
    assert_memory_equal(ASN1_STRING_get0_data(subject_id), digest, 20);
    const ASN1_OCTET_STRING *authority_id = X509_get0_authority_key_id(leaf);
    assert_non_null(authority_id);
    assert_int_equal(ASN1_STRING_cmp(authority_id, X509_get0_subject_key_id(f->intermediate)), 0);
    X509_free(leaf);
    free(out.pem);
    issuer_free(issuer);
}

static void test_serials(void **state)
{
    struct fixture *f = *state;
    struct issuer *issuer = load(f, f->chain_file, f->intermediate_key_file);
    struct issued_certificate first, second;
    X509 *one = issue(f, issuer, &first);
    X509 *two = issue(f, issuer, &second);

    const ASN1_INTEGER *serial = X509_get0_serialNumber(one);
    assert_int_equal(ASN1_STRING_type(serial), V_ASN1_INTEGER);
    assert_true(ASN1_STRING_length(serial) >= 8);
    assert_int_equal(ASN1_STRING_length(serial), ISSUER_SERIAL_LENGTH);
    assert_memory_equal(ASN1_STRING_get0_data(serial), first.serial, ISSUER_SERIAL_LENGTH);
    assert_true(first.serial[0] != 0 && first.serial[0] < 0x80);
    assert_int_not_equal(ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(two)), 0);
    assert_memory_not_equal(first.serial, second.serial, ISSUER_SERIAL_LENGTH);
    /* DER: a positive INTEGER of exactly 16 content bytes. */
    unsigned char *der = NULL;
    int length = i2d_ASN1_INTEGER(serial, &der);
    assert_int_equal(length, 2 + ISSUER_SERIAL_LENGTH);
    OPENSSL_free(der);
    X509_free(one);
    X509_free(two);
    free(first.pem);
    free(second.pem);
    issuer_free(issuer);
}

static void test_chain_and_root_pem(void **state)
{
    struct fixture *f = *state;
    struct issuer *issuer = load(f, f->chain_file, f->intermediate_key_file);
    struct issued_certificate out;
    X509 *leaf = issue(f, issuer, &out);
    char *intermediate_pem = certificate_pem(f->intermediate);
    char *root_pem = certificate_pem(f->root);
    char *leaf_pem = certificate_pem(leaf);

    assert_string_equal(issuer_chain_pem(issuer), intermediate_pem);
    assert_string_equal(issuer_root_pem(issuer), root_pem);
    assert_int_equal(strlen(out.pem), strlen(leaf_pem) + strlen(intermediate_pem));
    assert_memory_equal(out.pem, leaf_pem, strlen(leaf_pem));
    assert_string_equal(out.pem + strlen(leaf_pem), intermediate_pem);
    free(intermediate_pem);
    free(root_pem);
    free(leaf_pem);
    X509_free(leaf);
    free(out.pem);
    issuer_free(issuer);
}

static void test_self_signed_ca(void **state)
{
    struct fixture *f = *state;
    struct issuer *issuer = load(f, f->root_file, f->root_key_file);
    struct issued_certificate out;
    X509 *leaf = issue(f, issuer, &out);
    char *root_pem = certificate_pem(f->root);
    char *leaf_pem = certificate_pem(leaf);

    assert_string_equal(issuer_chain_pem(issuer), "");
    assert_string_equal(issuer_root_pem(issuer), root_pem);
    assert_string_equal(out.pem, leaf_pem);
    verify_with_store(f->root, NULL, leaf, X509_PURPOSE_SSL_CLIENT);
    free(root_pem);
    free(leaf_pem);
    X509_free(leaf);
    free(out.pem);
    issuer_free(issuer);
}

static void test_rsa_ca(void **state)
{
    struct fixture *f = *state;
    struct issuer *issuer = load(f, f->rsa_file, f->rsa_key_file);
    struct issued_certificate out;
    X509 *leaf = issue(f, issuer, &out);

    assert_int_equal(X509_get_signature_nid(leaf), NID_sha256WithRSAEncryption);
    assert_int_equal(X509_verify(leaf, f->rsa_key), 1);
    verify_with_store(f->rsa_root, NULL, leaf, X509_PURPOSE_SSL_SERVER);
    X509_free(leaf);
    free(out.pem);
    issuer_free(issuer);
}

static void expect_load_failure(struct fixture *f, const char *cert_file, const char *key_file,
                                const char *named_file)
{
    char err[512] = "";

    assert_null(issuer_load(f->libctx, cert_file, key_file, err, sizeof(err)));
    if (strstr(err, named_file) == NULL)
        fail_msg("error \"%s\" does not name %s", err, named_file);
}

static void test_mismatched_key(void **state)
{
    struct fixture *f = *state;

    expect_load_failure(f, f->chain_file, f->root_key_file, f->root_key_file);
    expect_load_failure(f, f->root_file, f->rsa_key_file, f->rsa_key_file);
}

static void test_missing_files(void **state)
{
    struct fixture *f = *state;
    char missing[160];

    snprintf(missing, sizeof(missing), "%s/missing.pem", f->dir);
    expect_load_failure(f, missing, f->intermediate_key_file, missing);
    expect_load_failure(f, f->chain_file, missing, missing);
    /* A certificate file given as the key, and a key file as certificates. */
    expect_load_failure(f, f->chain_file, f->chain_file, f->chain_file);
    expect_load_failure(f, f->intermediate_key_file, f->intermediate_key_file,
                        f->intermediate_key_file);
}

static void test_not_a_ca(void **state)
{
    struct fixture *f = *state;

    expect_load_failure(f, f->leaf_file, f->root_key_file, f->leaf_file);
}

static void test_misordered_chain(void **state)
{
    struct fixture *f = *state;

    expect_load_failure(f, f->misordered_file, f->root_key_file, f->misordered_file);
}

static void test_bad_input(void **state)
{
    struct fixture *f = *state;
    struct issuer *issuer = load(f, f->chain_file, f->intermediate_key_file);
    struct issued_certificate out;
    char err[256] = "";
    time_t now = time(NULL);

    assert_int_equal(issuer_issue(issuer, "uuid:" DEVICE_ID, f->spki_der, f->spki_length, now,
                                  now + 86400, &out, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "certificate device id is not a non-nil UUID");
    assert_int_equal(issuer_issue(issuer, DEVICE_ID, f->spki_der, f->spki_length - 1, now,
                                  now + 86400, &out, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "certificate key is not a DER SubjectPublicKeyInfo");
    assert_int_equal(issuer_issue(issuer, DEVICE_ID, f->spki_der, f->spki_length, now, now, &out,
                                  err, sizeof(err)),
                     -1);
    assert_null(out.pem);
    issuer_free(issuer);
}

/*
 * OpenSSL's encoder, forced to re-encode the TBSCertificate and each
 * extension value from the parsed fields, reproduces the issued bytes.
 */
static void assert_canonical_der(const char *pem)
{
    long length = 0;
    unsigned char *der = first_der(pem, &length);
    const unsigned char *cursor = der;
    X509 *leaf = d2i_X509(NULL, &cursor, length);
    unsigned char *tbs = NULL, *encoded = NULL;

    assert_non_null(leaf);
    assert_ptr_equal(cursor, der + length);
    assert_true(i2d_re_X509_tbs(leaf, &tbs) > 0);
    int encoded_length = i2d_X509(leaf, &encoded);
    assert_int_equal(encoded_length, length);
    assert_memory_equal(encoded, der, (size_t)length);
    for (int i = 0; i < X509_get_ext_count(leaf); i++) {
        X509_EXTENSION *extension = X509_get_ext(leaf, i);
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(extension));
        void *value = X509V3_EXT_d2i(extension);
        assert_non_null(value);
        X509_EXTENSION *again = X509V3_EXT_i2d(nid, X509_EXTENSION_get_critical(extension), value);
        assert_non_null(again);
        assert_int_equal(
            ASN1_STRING_cmp(X509_EXTENSION_get_data(again), X509_EXTENSION_get_data(extension)), 0);
        X509_EXTENSION_free(again);
        ASN1_item_free(value, ASN1_ITEM_ptr(X509V3_EXT_get(extension)->it));
    }
    OPENSSL_free(tbs);
    OPENSSL_free(encoded);
    OPENSSL_free(der);
    X509_free(leaf);
}

static void test_der_is_canonical(void **state)
{
    struct fixture *f = *state;
    struct issuer *ec = load(f, f->chain_file, f->intermediate_key_file);
    struct issuer *rsa = load(f, f->rsa_file, f->rsa_key_file);
    struct issued_certificate out;

    for (int i = 0; i < 8; i++) {
        X509_free(issue(f, i % 2 ? rsa : ec, &out));
        assert_canonical_der(out.pem);
        free(out.pem);
    }
    issuer_free(ec);
    issuer_free(rsa);
}

/* Verified against the public key in the CA certificate; one flipped TBS bit breaks it. */
static void test_signature_matches_ca_certificate(void **state)
{
    struct fixture *f = *state;
    struct issuer *ec = load(f, f->chain_file, f->intermediate_key_file);
    struct issuer *rsa = load(f, f->rsa_file, f->rsa_key_file);
    struct issued_certificate ec_out, rsa_out;
    X509 *ec_leaf = issue(f, ec, &ec_out);
    X509 *rsa_leaf = issue(f, rsa, &rsa_out);

    assert_int_equal(X509_verify(ec_leaf, X509_get0_pubkey(f->intermediate)), 1);
    assert_int_equal(X509_verify(rsa_leaf, X509_get0_pubkey(f->rsa_root)), 1);
    assert_int_not_equal(X509_verify(rsa_leaf, X509_get0_pubkey(f->intermediate)), 1);

    long length = 0;
    unsigned char *der = first_der(ec_out.pem, &length);
    /* Certificate and TBSCertificate headers (4 + 4), version (5), serial tag (2). */
    assert_memory_equal(der + 15, ec_out.serial, ISSUER_SERIAL_LENGTH);
    der[20] ^= 0x01;
    const unsigned char *cursor = der;
    X509 *tampered = d2i_X509(NULL, &cursor, length);
    assert_non_null(tampered);
    assert_int_not_equal(X509_verify(tampered, X509_get0_pubkey(f->intermediate)), 1);
    X509_free(tampered);
    OPENSSL_free(der);
    X509_free(ec_leaf);
    X509_free(rsa_leaf);
    free(ec_out.pem);
    free(rsa_out.pem);
    issuer_free(ec);
    issuer_free(rsa);
}

/*
 * One issuer signs certificate after certificate, each one valid: the signing
 * context a signature finalised is readied again. Copying the template into it
 * without a reset crashed on the second certificate with OpenSSL 3.5.
 */
static void test_many_certificates_from_one_issuer(void **state)
{
    struct fixture *f = *state;
    struct issuer *ec = load(f, f->chain_file, f->intermediate_key_file);
    struct issuer *rsa = load(f, f->rsa_file, f->rsa_key_file);
    struct issued_certificate out;

    for (int i = 0; i < 12; i++) {
        int use_rsa = i >= 6 && i % 2 == 1;
        X509 *leaf = issue(f, use_rsa ? rsa : ec, &out);
        assert_int_equal(
            X509_verify(leaf, X509_get0_pubkey(use_rsa ? f->rsa_root : f->intermediate)), 1);
        X509_free(leaf);
        free(out.pem);
    }
    issuer_free(ec);
    issuer_free(rsa);
}

static time_t utc(int year, int month, int day, int hour, int minute, int second)
{
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = month - 1,
                    .tm_mday = day,
                    .tm_hour = hour,
                    .tm_min = minute,
                    .tm_sec = second};
    return timegm(&tm);
}

static void assert_time(const ASN1_TIME *time, int type, const char *text, time_t when)
{
    assert_int_equal(ASN1_STRING_type(time), type);
    assert_int_equal(ASN1_STRING_length(time), strlen(text));
    assert_memory_equal(ASN1_STRING_get0_data(time), text, strlen(text));
    assert_int_equal(ASN1_TIME_cmp_time_t(time, when), 0);
}

/* 1950 to 2049: UTCTime (RFC 5280 4.1.2.5), at both ends of the range. */
static void test_validity_utc_time(void **state)
{
    struct fixture *f = *state;
    struct issuer *issuer = load(f, f->chain_file, f->intermediate_key_file);
    struct issued_certificate out;
    time_t first = utc(1950, 1, 1, 0, 0, 0), last = utc(2049, 12, 31, 23, 59, 59);
    X509 *leaf = issue_valid(f, issuer, first, last, &out);

    assert_time(X509_get0_notBefore(leaf), V_ASN1_UTCTIME, "500101000000Z", first);
    assert_time(X509_get0_notAfter(leaf), V_ASN1_UTCTIME, "491231235959Z", last);
    assert_int_equal(out.not_before, first);
    assert_int_equal(out.not_after, last);
    assert_canonical_der(out.pem);
    X509_free(leaf);
    free(out.pem);
    issuer_free(issuer);
}

/* Before 1950 and from 2050 on: GeneralizedTime; years past 9999 are refused. */
static void test_validity_generalized_time(void **state)
{
    struct fixture *f = *state;
    struct issuer *issuer = load(f, f->chain_file, f->intermediate_key_file);
    struct issued_certificate out;
    time_t before = utc(1949, 12, 31, 23, 59, 59), after = utc(2050, 1, 1, 0, 0, 0);
    X509 *leaf = issue_valid(f, issuer, before, after, &out);
    char err[256] = "";

    assert_time(X509_get0_notBefore(leaf), V_ASN1_GENERALIZEDTIME, "19491231235959Z", before);
    assert_time(X509_get0_notAfter(leaf), V_ASN1_GENERALIZEDTIME, "20500101000000Z", after);
    assert_canonical_der(out.pem);
    verify_with_store(f->root, f->intermediate, leaf, X509_PURPOSE_SSL_CLIENT);
    X509_free(leaf);
    free(out.pem);

    time_t late = utc(2149, 6, 30, 12, 0, 0);
    leaf = issue_valid(f, issuer, after, late, &out);
    assert_time(X509_get0_notAfter(leaf), V_ASN1_GENERALIZEDTIME, "21490630120000Z", late);
    X509_free(leaf);
    free(out.pem);

    assert_int_equal(issuer_issue(issuer, DEVICE_ID, f->spki_der, f->spki_length, after,
                                  utc(10000, 1, 1, 0, 0, 0), &out, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "certificate validity is outside years 0 to 9999");
    assert_null(out.pem);
    issuer_free(issuer);
}

/* The openssl command-line tool reads the certificate and shows the identity fields. */
static void test_openssl_tool_reads_it(void **state)
{
    struct fixture *f = *state;
    struct issuer *issuer = load(f, f->chain_file, f->intermediate_key_file);
    struct issued_certificate out;
    char command[512], text[8192];

    X509_free(issue(f, issuer, &out));
    FILE *file = fopen(f->issued_file, "w");
    assert_non_null(file);
    fputs(out.pem, file);
    fclose(file);
    snprintf(command, sizeof(command), "openssl x509 -in '%s' -text -noout > '%s' 2>&1",
             f->issued_file, f->text_file);
    assert_int_equal(system(command), 0);
    file = fopen(f->text_file, "r");
    assert_non_null(file);
    size_t length = fread(text, 1, sizeof(text) - 1, file);
    text[length] = '\0';
    fclose(file);
    assert_non_null(strstr(text, "1.3.6.1.4.1.44924.1.6"));
    assert_non_null(strstr(text, "CA:FALSE"));
    assert_non_null(strstr(text, "Digital Signature, Key Agreement"));
    assert_non_null(strstr(text, "TLS Web Server Authentication, TLS Web Client Authentication"));
    assert_non_null(strstr(text, "Subject: CN = uuid:" DEVICE_ID "\n"));
    assert_non_null(strstr(text, "Signature Algorithm: ecdsa-with-SHA256"));
    free(out.pem);
    issuer_free(issuer);
}

static void expect_refused(struct issuer *issuer, const char *device_id, const uint8_t *spki,
                           size_t spki_length, const char *error)
{
    struct issued_certificate out;
    char err[256] = "";
    time_t now = time(NULL);

    assert_int_equal(issuer_issue(issuer, device_id, spki, spki_length, now, now + 86400, &out, err,
                                  sizeof(err)),
                     -1);
    assert_string_equal(err, error);
    assert_null(out.pem);
}

static void test_malformed_device_id_and_key(void **state)
{
    struct fixture *f = *state;
    struct issuer *issuer = load(f, f->chain_file, f->intermediate_key_file);
    uint8_t bad[512];
    const char *not_id = "certificate device id is not a non-nil UUID";
    const char *not_key = "certificate key is not a DER SubjectPublicKeyInfo";

    /* Device ids: none, empty, truncated, trailing text, not hex, nil, a whole subject. */
    expect_refused(issuer, NULL, f->spki_der, f->spki_length, not_id);
    expect_refused(issuer, "", f->spki_der, f->spki_length, not_id);
    expect_refused(issuer, "0f8ab3c2-7d6e-4a51-9b2c-3e4f5a6b7c8", f->spki_der, f->spki_length,
                   not_id);
    expect_refused(issuer, DEVICE_ID ",O=Evil Corp", f->spki_der, f->spki_length, not_id);
    expect_refused(issuer, "0f8ab3c2-7d6e-4a51-9b2c-3e4f5a6b7c8g", f->spki_der, f->spki_length,
                   not_id);
    expect_refused(issuer, "00000000-0000-0000-0000-000000000000", f->spki_der, f->spki_length,
                   not_id);
    expect_refused(issuer, "CN=uuid:" DEVICE_ID, f->spki_der, f->spki_length, not_id);

    /* Keys: a Name, trailing byte, unused bits in the key, a missing key. */
    expect_refused(issuer, DEVICE_ID, f->subject_der, f->subject_length, not_key);
    memcpy(bad, f->spki_der, f->spki_length);
    bad[f->spki_length] = 0;
    expect_refused(issuer, DEVICE_ID, bad, f->spki_length + 1, not_key);
    /* P-256 SPKI: the BIT STRING's unused-bits octet is at offset 25. */
    assert_int_equal(bad[23], 0x03);
    bad[25] = 0x01;
    expect_refused(issuer, DEVICE_ID, bad, f->spki_length, not_key);
    const uint8_t algorithm_only[] = {0x30, 0x0b, 0x30, 0x09, 0x06, 0x07, 0x2a,
                                      0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
    expect_refused(issuer, DEVICE_ID, algorithm_only, sizeof(algorithm_only), not_key);
    expect_refused(issuer, DEVICE_ID, NULL, 0, not_key);
    issuer_free(issuer);
}

/*
 * The subject is one RDN holding one attribute, CN, a UTF8String
 * "uuid:<device id>" in lower case whatever case the id came in: nothing a
 * device puts in its CSR can add to it.
 */
static void test_subject_is_only_the_device_id(void **state)
{
    struct fixture *f = *state;
    struct issuer *issuer = load(f, f->chain_file, f->intermediate_key_file);
    struct issued_certificate out;
    char err[256] = "";
    time_t now = time(NULL);

    assert_int_equal(issuer_issue(issuer, "0F8AB3C2-7D6E-4A51-9B2C-3E4F5A6B7C8D", f->spki_der,
                                  f->spki_length, now, now + 86400, &out, err, sizeof(err)),
                     0);
    assert_canonical_der(out.pem);
    BIO *bio = BIO_new_mem_buf(out.pem, -1);
    X509 *leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    assert_non_null(leaf);
    const X509_NAME *subject = X509_get_subject_name(leaf);
    assert_int_equal(X509_NAME_entry_count(subject), 1);
    const X509_NAME_ENTRY *entry = X509_NAME_get_entry(subject, 0);
    assert_int_equal(OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry)), NID_commonName);
    const ASN1_STRING *value = X509_NAME_ENTRY_get_data(entry);
    assert_int_equal(ASN1_STRING_type(value), V_ASN1_UTF8STRING);
    assert_int_equal(ASN1_STRING_length(value), 41);
    assert_memory_equal(ASN1_STRING_get0_data(value), "uuid:" DEVICE_ID, 41);
    unsigned char *der = NULL;
    int der_length = i2d_X509_NAME(subject, &der);
    assert_int_equal(der_length, f->subject_length);
    assert_memory_equal(der, f->subject_der, f->subject_length);
    assert_int_equal(X509_verify(leaf, f->intermediate_key), 1);
    OPENSSL_free(der);
    X509_free(leaf);
    BIO_free(bio);
    free(out.pem);
    issuer_free(issuer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issued_certificate_verifies),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_extensions),
        cmocka_unit_test(test_serials),
        cmocka_unit_test(test_chain_and_root_pem),
        cmocka_unit_test(test_self_signed_ca),
        cmocka_unit_test(test_rsa_ca),
        cmocka_unit_test(test_mismatched_key),
        cmocka_unit_test(test_missing_files),
        cmocka_unit_test(test_not_a_ca),
        cmocka_unit_test(test_misordered_chain),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_der_is_canonical),
        cmocka_unit_test(test_signature_matches_ca_certificate),
        cmocka_unit_test(test_many_certificates_from_one_issuer),
        cmocka_unit_test(test_validity_utc_time),
        cmocka_unit_test(test_validity_generalized_time),
        cmocka_unit_test(test_openssl_tool_reads_it),
        cmocka_unit_test(test_malformed_device_id_and_key),
        cmocka_unit_test(test_subject_is_only_the_device_id),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
