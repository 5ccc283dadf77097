/*
 * pki_files: for unit tests that need a CA hierarchy on disk: CA
 * certificates made in memory and certificates and keys written as PEM.
 * Include after cmocka.h; a test uses what it needs.
 */
#ifndef DPS_TESTS_PKI_FILES_H
#define DPS_TESTS_PKI_FILES_H

#include <stdio.h>
#include <stdlib.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

__attribute__((unused)) static void add_extension(X509 *certificate, X509 *issuer, int nid,
                                                  const char *value)
{
    X509V3_CTX context;
    X509V3_set_ctx(&context, issuer, certificate, NULL, NULL, 0);
    X509_EXTENSION *extension = X509V3_EXT_nconf_nid(NULL, &context, nid, value);
    assert_non_null(extension);
    assert_int_equal(X509_add_ext(certificate, extension, -1), 1);
    X509_EXTENSION_free(extension);
}

/* A CA certificate for key, signed by issuer_key (self-signed when issuer is NULL). */
__attribute__((unused)) static X509 *make_ca(EVP_PKEY *key, const char *common_name, X509 *issuer,
                                             EVP_PKEY *issuer_key)
{
    X509 *certificate = X509_new();
    X509_NAME *name = X509_NAME_new();

    assert_int_equal(X509_set_version(certificate, X509_VERSION_3), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(certificate), (long)(random() & 0xffffff) + 1);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)common_name, -1, -1,
                               0);
    X509_set_subject_name(certificate, name);
    X509_set_issuer_name(certificate, issuer ? X509_get_subject_name(issuer) : name);
    X509_NAME_free(name);
    X509_gmtime_adj(X509_getm_notBefore(certificate), -3600);
    X509_gmtime_adj(X509_getm_notAfter(certificate), 3650L * 86400);
    X509_set_pubkey(certificate, key);
    X509 *signer = issuer ? issuer : certificate;
    add_extension(certificate, signer, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(certificate, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_extension(certificate, signer, NID_subject_key_identifier, "hash");
    if (issuer != NULL)
        add_extension(certificate, signer, NID_authority_key_identifier, "keyid:always");
    assert_true(X509_sign(certificate, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return certificate;
}

__attribute__((unused)) static void write_certificates(const char *path, X509 *first, X509 *second)
{
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    assert_int_equal(PEM_write_X509(file, first), 1);
    if (second != NULL)
        assert_int_equal(PEM_write_X509(file, second), 1);
    fclose(file);
}

__attribute__((unused)) static void write_key(const char *path, EVP_PKEY *key)
{
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    assert_int_equal(PEM_write_PrivateKey(file, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(file);
}

#endif
