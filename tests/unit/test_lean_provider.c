/*
 * test_lean_provider: what a lean library context reads (crypto/lean_provider.h):
 * EC and RSA keys and certificates as the default provider would, other key
 * types not on OpenSSL 3.0, and contexts made and freed again and again.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tests/unit/temp_dir.h"
#include "crypto/lean_provider.h"
#include "crypto/pki.h"

static char pki_dir[64];

static OSSL_LIB_CTX *lean(void)
{
    char err[256] = "";
    OSSL_LIB_CTX *libctx = lean_libctx_new(err, sizeof(err));
    if (libctx == NULL)
        fail_msg("lean_libctx_new: %s", err);
    return libctx;
}

static BIO *pki_file(const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", pki_dir, name);
    BIO *bio = BIO_new_file(path, "r");
    assert_non_null(bio);
    return bio;
}

/* The SubjectPublicKeyInfo of a key made in the default context, decoded in libctx. */
static EVP_PKEY *decode_public(OSSL_LIB_CTX *libctx, EVP_PKEY *key)
{
    unsigned char *der = NULL;
    int length = i2d_PUBKEY(key, &der);
    assert_true(length > 0);
    const unsigned char *cursor = der;
    EVP_PKEY *decoded = d2i_PUBKEY_ex(NULL, &cursor, length, libctx, NULL);
    OPENSSL_free(der);
    ERR_clear_error();
    return decoded;
}

static void test_applies_to_openssl_3_0_only(void **state)
{
    (void)state;
    assert_int_equal(lean_provider_applies(),
                     OPENSSL_version_major() == 3 && OPENSSL_version_minor() == 0);
}

static void test_reads_ec_keys_and_certificates(void **state)
{
    (void)state;
    OSSL_LIB_CTX *libctx = lean();
    BIO *bio = pki_file("dps-server.key");
    EVP_PKEY *key = PEM_read_bio_PrivateKey_ex(bio, NULL, NULL, NULL, libctx, NULL);
    BIO_free(bio);
    assert_non_null(key);
    assert_true(EVP_PKEY_is_a(key, "EC"));

    bio = pki_file("mfg-chain.pem");
    X509 *certificate = X509_new_ex(libctx, NULL);
    assert_non_null(PEM_read_bio_X509(bio, &certificate, NULL, NULL));
    BIO_free(bio);
    assert_non_null(X509_get0_pubkey(certificate));
    assert_true(EVP_PKEY_is_a(X509_get0_pubkey(certificate), "EC"));

    /* A signature made with the private key verifies with the key read back. */
    unsigned char signature[128];
    size_t signature_length = sizeof(signature);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit_ex(md, NULL, "SHA256", libctx, NULL, key, NULL), 1);
    assert_int_equal(
        EVP_DigestSign(md, signature, &signature_length, (const unsigned char *)"lean", 4), 1);
    EVP_MD_CTX_free(md);
    EVP_PKEY *public_key = decode_public(libctx, key);
    assert_non_null(public_key);
    md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit_ex(md, NULL, "SHA256", libctx, NULL, public_key, NULL),
                     1);
    assert_int_equal(
        EVP_DigestVerify(md, signature, signature_length, (const unsigned char *)"lean", 4), 1);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(public_key);
    X509_free(certificate);
    EVP_PKEY_free(key);
    lean_libctx_free(libctx);
    assert_int_equal(ERR_peek_error(), 0);
}

/* A private key written by OpenSSL as PEM text, read back in libctx. */
static EVP_PKEY *pem_round_trip(OSSL_LIB_CTX *libctx, EVP_PKEY *key, bool traditional)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    if (traditional)
        assert_int_equal(PEM_write_bio_PrivateKey_traditional(bio, key, NULL, NULL, 0, NULL, NULL),
                         1);
    else
        assert_int_equal(PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL), 1);
    EVP_PKEY *read = PEM_read_bio_PrivateKey_ex(bio, NULL, NULL, NULL, libctx, NULL);
    BIO_free(bio);
    return read;
}

/* PKCS#8 and the type-specific forms ("EC PRIVATE KEY", "RSA PRIVATE KEY") both read, and
 * public keys. */
static void test_reads_private_key_forms(void **state)
{
    (void)state;
    OSSL_LIB_CTX *libctx = lean();
    EVP_PKEY *keys[] = {EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"),
                        EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024)};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        assert_non_null(keys[i]);
        for (int traditional = 0; traditional < 2; traditional++) {
            EVP_PKEY *read = pem_round_trip(libctx, keys[i], traditional != 0);
            assert_non_null(read);
            assert_int_equal(EVP_PKEY_eq(keys[i], read), 1);
            EVP_PKEY_free(read);
        }
        /* And the public key as "PUBLIC KEY" text. */
        BIO *bio = BIO_new(BIO_s_mem());
        assert_non_null(bio);
        assert_int_equal(PEM_write_bio_PUBKEY(bio, keys[i]), 1);
        EVP_PKEY *public_key = PEM_read_bio_PUBKEY_ex(bio, NULL, NULL, NULL, libctx, NULL);
        BIO_free(bio);
        assert_non_null(public_key);
        assert_int_equal(EVP_PKEY_eq(keys[i], public_key), 1);
        EVP_PKEY_free(public_key);
        EVP_PKEY_free(keys[i]);
    }
    lean_libctx_free(libctx);
    ERR_clear_error();
}

static void test_reads_rsa_keys(void **state)
{
    (void)state;
    OSSL_LIB_CTX *libctx = lean();
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(libctx, NULL, "RSA", (size_t)1024);
    assert_non_null(rsa);
    EVP_PKEY *decoded = decode_public(libctx, rsa);
    assert_non_null(decoded);
    assert_int_equal(EVP_PKEY_eq(rsa, decoded), 1);
    EVP_PKEY_free(decoded);
    EVP_PKEY_free(rsa);
    lean_libctx_free(libctx);
}

/* A certificate made in the default context, read back in libctx from its DER. */
static X509 *reread(OSSL_LIB_CTX *libctx, X509 *certificate)
{
    unsigned char *der = NULL;
    int length = i2d_X509(certificate, &der);
    assert_true(length > 0);
    const unsigned char *cursor = der;
    X509 *copy = X509_new_ex(libctx, NULL);
    assert_non_null(d2i_X509(&copy, &cursor, length));
    OPENSSL_free(der);
    return copy;
}

/* An EC device certificate signed by an RSA manufacturer CA verifies in a lean context. */
static void test_rsa_issuer_verifies(void **state)
{
    (void)state;
    EVP_PKEY *ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *leaf = X509_new();
    assert_non_null(ca_key);
    assert_non_null(leaf_key);
    assert_non_null(leaf);
    X509_NAME *name = X509_get_subject_name(leaf);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"leaf", -1, -1, 0);
    X509_set_issuer_name(leaf, name);
    ASN1_INTEGER_set(X509_get_serialNumber(leaf), 7);
    X509_gmtime_adj(X509_getm_notBefore(leaf), 0);
    X509_gmtime_adj(X509_getm_notAfter(leaf), 3600);
    X509_set_pubkey(leaf, leaf_key);
    assert_true(X509_sign(leaf, ca_key, EVP_sha256()) > 0);

    OSSL_LIB_CTX *libctx = lean();
    X509 *copy = reread(libctx, leaf);
    EVP_PKEY *ca_public = decode_public(libctx, ca_key);
    assert_non_null(ca_public);
    assert_int_equal(X509_verify(copy, ca_public), 1);
    assert_true(EVP_PKEY_is_a(X509_get0_pubkey(copy), "EC"));
    EVP_PKEY_free(ca_public);
    X509_free(copy);
    lean_libctx_free(libctx);
    X509_free(leaf);
    EVP_PKEY_free(leaf_key);
    EVP_PKEY_free(ca_key);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_other_key_types_only_without_lean(void **state)
{
    (void)state;
    OSSL_LIB_CTX *libctx = lean();
    EVP_PKEY *ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(ed25519);
    EVP_PKEY *decoded = decode_public(libctx, ed25519);
    if (lean_provider_applies())
        assert_null(decoded);
    else
        assert_non_null(decoded);
    EVP_PKEY_free(decoded);
    EVP_PKEY_free(ed25519);
    lean_libctx_free(libctx);
}

static void test_many_contexts(void **state)
{
    (void)state;
    OSSL_LIB_CTX *contexts[8];

    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 8; i++)
            contexts[i] = lean();
        for (int i = 0; i < 8; i++) {
            EVP_MD *sha256 = EVP_MD_fetch(contexts[i], "SHA256", NULL);
            assert_non_null(sha256);
            EVP_MD_free(sha256);
        }
        for (int i = 7; i >= 0; i--)
            lean_libctx_free(contexts[i]);
    }
    lean_libctx_free(NULL);
}

static int setup(void **state)
{
    char err[256];

    (void)state;
    strcpy(pki_dir, "/tmp/test_lean.XXXXXX");
    if (mkdtemp(pki_dir) == NULL)
        return -1;
    if (pki_generate(pki_dir, 1, err, sizeof(err)) != 0) {
        fprintf(stderr, "pki_generate: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return temp_dir_remove(pki_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_applies_to_openssl_3_0_only),
        cmocka_unit_test(test_reads_ec_keys_and_certificates),
        cmocka_unit_test(test_reads_rsa_keys),
        cmocka_unit_test(test_reads_private_key_forms),
        cmocka_unit_test(test_rsa_issuer_verifies),
        cmocka_unit_test(test_other_key_types_only_without_lean),
        cmocka_unit_test(test_many_contexts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
