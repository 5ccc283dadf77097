/*
 * test_attestation: enrollment-group matching and manufacturer chain
 * verification against the demo PKI, plus certificates made here for the
 * cases the demo PKI does not cover (expired, forged issuer, no EKU, issued
 * by the root directly).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tests/unit/pki_files.h"
#include "tests/unit/temp_dir.h"
#include "crypto/attestation.h"
#include "crypto/pki.h"

#define GROUP_A "11111111-1111-4111-8111-111111111111"
#define GROUP_B "22222222-2222-4222-8222-222222222222"
#define MAX_GROUPS 4

struct fixture {
    char dir[64];
    char paths[MAX_GROUPS][PATH_MAX];
    struct config_group groups[MAX_GROUPS];
    struct config config;
    X509 *intermediate;
    EVP_PKEY *intermediate_key;
    X509 *root;
    EVP_PKEY *root_key;
};

static X509 *read_certificate_file(const char *path, STACK_OF(X509) * *rest)
{
    FILE *file = fopen(path, "r");
    X509 *first;
    X509 *next;

    assert_non_null(file);
    first = PEM_read_X509(file, NULL, NULL, NULL);
    assert_non_null(first);
    if (rest != NULL) {
        *rest = sk_X509_new_null();
        while ((next = PEM_read_X509(file, NULL, NULL, NULL)) != NULL)
            sk_X509_push(*rest, next);
    }
    fclose(file);
    return first;
}

static EVP_PKEY *read_key_file(const char *path)
{
    FILE *file = fopen(path, "r");
    EVP_PKEY *key;

    assert_non_null(file);
    key = PEM_read_PrivateKey(file, NULL, NULL, NULL);
    fclose(file);
    assert_non_null(key);
    return key;
}

static void fixture_path(const struct fixture *fixture, const char *name, char *out, size_t length)
{
    snprintf(out, length, "%s/%s", fixture->dir, name);
}

static int setup(void **state)
{
    struct fixture *fixture = calloc(1, sizeof(*fixture));
    char err[256];
    char path[PATH_MAX];

    if (fixture == NULL)
        return -1;
    strcpy(fixture->dir, "/tmp/test_attestation.XXXXXX");
    if (mkdtemp(fixture->dir) == NULL)
        return -1;
    if (pki_generate(fixture->dir, 2, err, sizeof(err)) != 0) {
        fprintf(stderr, "pki_generate: %s\n", err);
        return -1;
    }
    fixture_path(fixture, "mfg-intermediate.pem", path, sizeof(path));
    fixture->intermediate = read_certificate_file(path, NULL);
    fixture_path(fixture, "mfg-intermediate.key", path, sizeof(path));
    fixture->intermediate_key = read_key_file(path);
    fixture_path(fixture, "mfg-root.pem", path, sizeof(path));
    fixture->root = read_certificate_file(path, NULL);
    fixture_path(fixture, "mfg-root.key", path, sizeof(path));
    fixture->root_key = read_key_file(path);
    fixture->config.groups = fixture->groups;
    *state = fixture;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fixture = *state;

    X509_free(fixture->intermediate);
    EVP_PKEY_free(fixture->intermediate_key);
    X509_free(fixture->root);
    EVP_PKEY_free(fixture->root_key);
    temp_dir_remove(fixture->dir);
    free(fixture);
    return 0;
}

/* Appends a group whose CA chain is the file name in the fixture folder. */
static void add_group(struct fixture *fixture, const char *id, const char *chain_name,
                      bool expired_certificate_enabled)
{
    size_t index = fixture->config.group_count++;

    char path[PATH_MAX];

    assert_true(index < MAX_GROUPS);
    fixture_path(fixture, chain_name, path, sizeof(path));
    memcpy(fixture->paths[index], path, sizeof(path));
    fixture->groups[index] = (struct config_group){
        .id = (char *)id,
        .owner = "1",
        .name = (char *)id,
        .ca_chain_file = fixture->paths[index],
        .expired_certificate_enabled = expired_certificate_enabled,
    };
}

static struct attestation *create(struct fixture *fixture)
{
    char err[512] = "";
    struct attestation *attestation = attestation_create(NULL, &fixture->config, err, sizeof(err));

    if (attestation == NULL)
        fail_msg("attestation_create: %s", err);
    return attestation;
}

static X509 *device_certificate(const struct fixture *fixture, const char *name,
                                STACK_OF(X509) * *rest)
{
    char path[PATH_MAX];

    fixture_path(fixture, name, path, sizeof(path));
    return read_certificate_file(path, rest);
}

/*
 * Issues a certificate valid from now+not_before_offset to now+not_after_offset
 * (seconds). issuer NULL: self-signed. extended_key_usage NULL: no EKU.
 */
static X509 *make_certificate(const char *common_name, X509 *issuer, EVP_PKEY *issuer_key,
                              long not_before_offset, long not_after_offset,
                              const char *extended_key_usage, bool is_ca, EVP_PKEY **key_out)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *certificate = X509_new();
    static long serial = 1000;
    time_t now = time(NULL);
    X509_NAME *name = X509_get_subject_name(certificate);

    assert_non_null(key);
    assert_non_null(certificate);
    assert_int_equal(X509_set_version(certificate, X509_VERSION_3), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(certificate), serial++);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"Demo Manufacturer",
                               -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)common_name, -1,
                               -1, 0);
    X509_set_issuer_name(certificate, X509_get_subject_name(issuer != NULL ? issuer : certificate));
    ASN1_TIME_adj(X509_getm_notBefore(certificate), now, 0, not_before_offset);
    ASN1_TIME_adj(X509_getm_notAfter(certificate), now, 0, not_after_offset);
    X509_set_pubkey(certificate, key);
    add_extension(certificate, issuer != NULL ? issuer : certificate, NID_basic_constraints,
                  is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    add_extension(certificate, issuer != NULL ? issuer : certificate, NID_key_usage,
                  is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    if (extended_key_usage != NULL)
        add_extension(certificate, issuer != NULL ? issuer : certificate, NID_ext_key_usage,
                      extended_key_usage);
    assert_true(X509_sign(certificate, issuer_key != NULL ? issuer_key : key, EVP_sha256()) > 0);
    if (key_out != NULL)
        *key_out = key;
    else
        EVP_PKEY_free(key);
    return certificate;
}

static STACK_OF(X509) * chain_of(X509 *first, X509 *second)
{
    STACK_OF(X509) *chain = sk_X509_new_null();

    assert_non_null(chain);
    if (first != NULL)
        sk_X509_push(chain, first);
    if (second != NULL)
        sk_X509_push(chain, second);
    return chain;
}

/* RFC 4122 version 5 over the X.500 namespace, written out here independently of uuid.c. */
static void expected_record_id(X509 *leaf, uint8_t out[16])
{
    static const uint8_t x500[16] = {0x6b, 0xa7, 0xb8, 0x14, 0x9d, 0xad, 0x11, 0xd1,
                                     0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8};
    unsigned char *der = NULL;
    int der_length = i2d_PUBKEY(X509_get0_pubkey(leaf), &der);
    unsigned char input[512];
    unsigned char digest[20];

    assert_true(der_length > 0 && (size_t)der_length + 16 <= sizeof(input));
    memcpy(input, x500, 16);
    memcpy(input + 16, der, (size_t)der_length);
    OPENSSL_free(der);
    assert_int_equal(EVP_Digest(input, 16 + (size_t)der_length, digest, NULL, EVP_sha1(), NULL), 1);
    memcpy(out, digest, 16);
    out[6] = (uint8_t)((out[6] & 0x0f) | 0x50);
    out[8] = (uint8_t)((out[8] & 0x3f) | 0x80);
}

static void test_demo_device_matches_and_verifies(void **state)
{
    struct fixture *fixture = *state;
    struct attestation *attestation;
    STACK_OF(X509) * rest;
    X509 *leaf;
    struct attestation_result result;
    char err[512] = "";
    unsigned char *der = NULL;
    int der_length;
    uint8_t sha256[32];
    const ASN1_INTEGER *serial;

    add_group(fixture, GROUP_A, "rogue-root.pem", false);
    add_group(fixture, GROUP_B, "mfg-chain.pem", false);
    attestation = create(fixture);
    leaf = device_certificate(fixture, "devices/device-0001.pem", &rest);
    assert_int_equal(sk_X509_num(rest), 1);

    assert_int_equal(
        attestation_verify(attestation, leaf, rest, time(NULL), &result, err, sizeof(err)), 0);
    assert_int_equal(result.group_index, 1);
    assert_string_equal(result.leaf_common_name, "Demo Device 0001");

    serial = X509_get0_serialNumber(leaf);
    assert_int_equal(result.leaf_serial_length, (size_t)ASN1_STRING_length(serial));
    assert_memory_equal(result.leaf_serial, ASN1_STRING_get0_data(serial),
                        result.leaf_serial_length);

    der_length = i2d_PUBKEY(X509_get0_pubkey(leaf), &der);
    assert_true(der_length > 0);
    assert_int_equal(EVP_Digest(der, (size_t)der_length, sha256, NULL, EVP_sha256(), NULL), 1);
    OPENSSL_free(der);
    assert_memory_equal(result.spki_sha256, sha256, sizeof(sha256));

    sk_X509_pop_free(rest, X509_free);
    X509_free(leaf);
    attestation_free(attestation);
}

static void test_record_id_is_stable_uuid_v5_of_spki(void **state)
{
    struct fixture *fixture = *state;
    struct attestation *first;
    struct attestation *second;
    STACK_OF(X509) * rest;
    X509 *leaf;
    X509 *other;
    struct attestation_result a;
    struct attestation_result b;
    struct attestation_result c;
    char err[512] = "";
    uint8_t expected[16];
    OSSL_LIB_CTX *libctx = OSSL_LIB_CTX_new();

    assert_non_null(libctx);
    add_group(fixture, GROUP_A, "mfg-chain.pem", false);
    first = create(fixture);
    second = attestation_create(libctx, &fixture->config, err, sizeof(err));
    assert_non_null(second);
    leaf = device_certificate(fixture, "devices/device-0001.pem", &rest);
    other = device_certificate(fixture, "devices/device-0002.pem", NULL);

    assert_int_equal(attestation_verify(first, leaf, rest, time(NULL), &a, err, sizeof(err)), 0);
    assert_int_equal(attestation_verify(second, leaf, NULL, time(NULL), &b, err, sizeof(err)), 0);
    assert_int_equal(attestation_verify(first, other, NULL, time(NULL), &c, err, sizeof(err)), 0);
    assert_memory_equal(a.record_id.bytes, b.record_id.bytes, 16);
    expected_record_id(leaf, expected);
    assert_memory_equal(a.record_id.bytes, expected, 16);
    assert_memory_not_equal(a.record_id.bytes, c.record_id.bytes, 16);

    sk_X509_pop_free(rest, X509_free);
    X509_free(leaf);
    X509_free(other);
    attestation_free(first);
    attestation_free(second);
    OSSL_LIB_CTX_free(libctx);
}

static void test_rogue_device_matches_no_group(void **state)
{
    struct fixture *fixture = *state;
    struct attestation *attestation;
    X509 *leaf;
    struct attestation_result result;
    char err[512] = "";

    add_group(fixture, GROUP_A, "mfg-chain.pem", false);
    attestation = create(fixture);
    leaf = device_certificate(fixture, "rogue-device.pem", NULL);

    assert_int_equal(
        attestation_verify(attestation, leaf, NULL, time(NULL), &result, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no enrollment group matches issuer"));
    assert_non_null(strstr(err, "CN=Rogue Manufacturer Root CA"));

    X509_free(leaf);
    attestation_free(attestation);
}

static void test_forged_issuer_name_matches_no_group(void **state)
{
    struct fixture *fixture = *state;
    struct attestation *attestation;
    EVP_PKEY *forged_key;
    X509 *forged_ca;
    X509 *leaf;
    struct attestation_result result;
    char err[512] = "";

    /* Same subject as the real intermediate, different key. */
    forged_ca = make_certificate("Demo Manufacturer Intermediate CA", NULL, NULL, -3600, 86400,
                                 NULL, true, &forged_key);
    leaf = make_certificate("Forged Device", forged_ca, forged_key, -3600, 86400, "clientAuth",
                            false, NULL);
    add_group(fixture, GROUP_A, "mfg-chain.pem", false);
    attestation = create(fixture);

    /* The name points at the group; the signature proves it false. */
    assert_int_equal(
        attestation_verify(attestation, leaf, NULL, time(NULL), &result, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "signature failure"));

    X509_free(leaf);
    X509_free(forged_ca);
    EVP_PKEY_free(forged_key);
    attestation_free(attestation);
}

static void test_device_without_client_auth_is_refused(void **state)
{
    struct fixture *fixture = *state;
    struct attestation *attestation;
    STACK_OF(X509) * rest;
    X509 *leaf;
    X509 *no_eku;
    struct attestation_result result;
    char err[512] = "";

    add_group(fixture, GROUP_A, "mfg-chain.pem", false);
    attestation = create(fixture);
    leaf = device_certificate(fixture, "noclientauth-device.pem", &rest);
    assert_int_equal(
        attestation_verify(attestation, leaf, rest, time(NULL), &result, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "leaf lacks extended key usage clientAuth"));

    /* No EKU extension at all is "any purpose" to OpenSSL, but not to us. */
    no_eku = make_certificate("Device Without EKU", fixture->intermediate,
                              fixture->intermediate_key, -3600, 86400, NULL, false, NULL);
    err[0] = '\0';
    assert_int_equal(
        attestation_verify(attestation, no_eku, NULL, time(NULL), &result, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "clientAuth"));

    sk_X509_pop_free(rest, X509_free);
    X509_free(leaf);
    X509_free(no_eku);
    attestation_free(attestation);
}

/* A device certificate from the demo intermediate whose CN is exactly the length bytes given. */
static X509 *leaf_with_common_name(const struct fixture *fixture, const char *common_name,
                                   size_t length)
{
    X509 *leaf = make_certificate("placeholder", fixture->intermediate, fixture->intermediate_key,
                                  -3600, 86400, "clientAuth", false, NULL);
    X509_NAME *name = X509_NAME_new();

    /* V_ASN1_UTF8STRING, not MBSTRING_UTF8: OpenSSL would refuse a CN over 64 itself. */
    assert_non_null(name);
    assert_int_equal(X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_UTF8STRING,
                                                (const unsigned char *)common_name, (int)length, -1,
                                                0),
                     1);
    assert_int_equal(X509_set_subject_name(leaf, name), 1);
    X509_NAME_free(name);
    assert_true(X509_sign(leaf, fixture->intermediate_key, EVP_sha256()) > 0);
    return leaf;
}

/*
 * The leaf's CN is kept whole up to RFC 5280's 64 characters, however many
 * bytes they take; a longer one, or one holding NUL, is refused, never cut
 * (a cut could split a character and leave the record without valid text).
 */
static void test_leaf_common_name_is_kept_whole_or_refused(void **state)
{
    struct fixture *fixture = *state;
    struct attestation_result result;
    char err[512] = "";
    char name[4 * ATTESTATION_CN_MAX_CHARACTERS + 8] = "";

    add_group(fixture, GROUP_A, "mfg-chain.pem", false);
    struct attestation *attestation = create(fixture);

    /* 64 characters of 4 bytes: 256 bytes. */
    for (size_t i = 0; i < ATTESTATION_CN_MAX_CHARACTERS; i++)
        strcat(name, "\U0001F511");
    X509 *leaf = leaf_with_common_name(fixture, name, strlen(name));
    assert_int_equal(
        attestation_verify(attestation, leaf, NULL, time(NULL), &result, err, sizeof(err)), 0);
    assert_string_equal(result.leaf_common_name, name);
    X509_free(leaf);

    /* 64 characters of 2 bytes, the cut the old 128-byte field made in the middle of one. */
    name[0] = '\0';
    for (size_t i = 0; i < ATTESTATION_CN_MAX_CHARACTERS; i++)
        strcat(name, "\u00e9");
    leaf = leaf_with_common_name(fixture, name, strlen(name));
    assert_int_equal(
        attestation_verify(attestation, leaf, NULL, time(NULL), &result, err, sizeof(err)), 0);
    assert_string_equal(result.leaf_common_name, name);
    X509_free(leaf);

    strcat(name, "x"); /* 65 characters */
    leaf = leaf_with_common_name(fixture, name, strlen(name));
    assert_int_equal(
        attestation_verify(attestation, leaf, NULL, time(NULL), &result, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "common name is longer than 64 characters"));
    X509_free(leaf);

    leaf = leaf_with_common_name(fixture, "Device\0 0001", 12);
    err[0] = '\0';
    assert_int_equal(
        attestation_verify(attestation, leaf, NULL, time(NULL), &result, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "common name holds a NUL character"));
    X509_free(leaf);
    attestation_free(attestation);
}

static void test_leaf_alone_or_with_chain_verifies(void **state)
{
    struct fixture *fixture = *state;
    struct attestation *attestation;
    X509 *leaf;
    STACK_OF(X509) * with_intermediate;
    STACK_OF(X509) * with_root_too;
    struct attestation_result result;
    char err[512] = "";

    add_group(fixture, GROUP_A, "mfg-chain.pem", false);
    attestation = create(fixture);
    leaf = device_certificate(fixture, "devices/device-0002.pem", NULL);
    with_intermediate = chain_of(fixture->intermediate, NULL);
    with_root_too = chain_of(fixture->intermediate, fixture->root);

    assert_int_equal(
        attestation_verify(attestation, leaf, NULL, time(NULL), &result, err, sizeof(err)), 0);
    assert_int_equal(attestation_verify(attestation, leaf, with_intermediate, time(NULL), &result,
                                        err, sizeof(err)),
                     0);
    assert_int_equal(
        attestation_verify(attestation, leaf, with_root_too, time(NULL), &result, err, sizeof(err)),
        0);
    assert_int_equal(result.group_index, 0);

    sk_X509_free(with_intermediate);
    sk_X509_free(with_root_too);
    X509_free(leaf);
    attestation_free(attestation);
}

static void test_groups_with_the_same_first_ca_are_refused(void **state)
{
    struct fixture *fixture = *state;
    char err[512] = "";

    add_group(fixture, GROUP_A, "mfg-chain.pem", false);
    add_group(fixture, GROUP_B, "mfg-chain.pem", true);
    assert_null(attestation_create(NULL, &fixture->config, err, sizeof(err)));
    assert_non_null(strstr(err, GROUP_A));
    assert_non_null(strstr(err, GROUP_B));
}

/* Group A's first CA is the root, group B's the intermediate: the lowest certificate decides. */
static void test_lowest_certificate_decides_the_group(void **state)
{
    struct fixture *fixture = *state;
    STACK_OF(X509) * rest;
    X509 *leaf = device_certificate(fixture, "devices/device-0001.pem", &rest);
    X509 *direct = make_certificate("Device Issued By Root", fixture->root, fixture->root_key,
                                    -3600, 86400, "clientAuth", false, NULL);
    struct attestation_result result;
    char err[512] = "";

    for (int order = 0; order < 2; order++) {
        struct attestation *attestation;

        fixture->config.group_count = 0;
        add_group(fixture, order == 0 ? GROUP_A : GROUP_B,
                  order == 0 ? "mfg-root.pem" : "mfg-chain.pem", false);
        add_group(fixture, order == 0 ? GROUP_B : GROUP_A,
                  order == 0 ? "mfg-chain.pem" : "mfg-root.pem", false);
        attestation = create(fixture);

        assert_int_equal(
            attestation_verify(attestation, leaf, rest, time(NULL), &result, err, sizeof(err)), 0);
        assert_string_equal(fixture->groups[result.group_index].id, GROUP_B);
        assert_int_equal(
            attestation_verify(attestation, leaf, NULL, time(NULL), &result, err, sizeof(err)), 0);
        assert_string_equal(fixture->groups[result.group_index].id, GROUP_B);
        assert_int_equal(
            attestation_verify(attestation, direct, NULL, time(NULL), &result, err, sizeof(err)),
            0);
        assert_string_equal(fixture->groups[result.group_index].id, GROUP_A);
        attestation_free(attestation);
    }

    sk_X509_pop_free(rest, X509_free);
    X509_free(leaf);
    X509_free(direct);
}

/* With only the root configured, the presented intermediate is what the root issued. */
static void test_root_group_matches_through_presented_intermediate(void **state)
{
    struct fixture *fixture = *state;
    struct attestation *attestation;
    STACK_OF(X509) * rest;
    X509 *leaf = device_certificate(fixture, "devices/device-0001.pem", &rest);
    struct attestation_result result;
    char err[512] = "";

    add_group(fixture, GROUP_A, "mfg-root.pem", false);
    attestation = create(fixture);
    assert_int_equal(
        attestation_verify(attestation, leaf, rest, time(NULL), &result, err, sizeof(err)), 0);
    assert_int_equal(result.group_index, 0);
    assert_int_equal(
        attestation_verify(attestation, leaf, NULL, time(NULL), &result, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no enrollment group matches"));

    sk_X509_pop_free(rest, X509_free);
    X509_free(leaf);
    attestation_free(attestation);
}

/*
 * The leaf expired a year ago; its CA is older, as a real manufacturer's
 * would be, so the whole chain is valid at the leaf's midpoint.
 */
static void test_expired_leaf_needs_expired_certificate_enabled(void **state)
{
    struct fixture *fixture = *state;
    struct attestation *strict;
    struct attestation *lenient;
    EVP_PKEY *old_root_key;
    X509 *old_root = make_certificate("Old Manufacturer Root CA", NULL, NULL, -3 * 365 * 86400L,
                                      10 * 365 * 86400L, NULL, true, &old_root_key);
    X509 *expired = make_certificate("Expired Device", old_root, old_root_key, -2 * 365 * 86400L,
                                     -365 * 86400L, "clientAuth", false, NULL);
    struct attestation_result result;
    char err[512] = "";
    char path[PATH_MAX];
    FILE *file;

    fixture_path(fixture, "old-root.pem", path, sizeof(path));
    file = fopen(path, "w");
    assert_non_null(file);
    assert_int_equal(PEM_write_X509(file, old_root), 1);
    fclose(file);
    add_group(fixture, GROUP_A, "old-root.pem", false);
    strict = create(fixture);
    fixture->groups[0].expired_certificate_enabled = true;
    lenient = create(fixture);

    assert_int_equal(
        attestation_verify(strict, expired, NULL, time(NULL), &result, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "certificate has expired"));
    assert_int_equal(
        attestation_verify(lenient, expired, NULL, time(NULL), &result, err, sizeof(err)), 0);
    assert_string_equal(result.leaf_common_name, "Expired Device");

    X509_free(expired);
    X509_free(old_root);
    EVP_PKEY_free(old_root_key);
    attestation_free(strict);
    attestation_free(lenient);
}

static void test_verification_uses_the_given_time(void **state)
{
    struct fixture *fixture = *state;
    struct attestation *attestation;
    X509 *leaf = device_certificate(fixture, "devices/device-0001.pem", NULL);
    struct attestation_result result;
    char err[512] = "";
    time_t now = time(NULL);

    add_group(fixture, GROUP_A, "mfg-chain.pem", false);
    attestation = create(fixture);
    assert_int_equal(attestation_verify(attestation, leaf, NULL, now + 6 * 365 * 86400L, &result,
                                        err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "certificate has expired"));
    assert_int_equal(
        attestation_verify(attestation, leaf, NULL, now - 86400, &result, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not yet valid"));

    X509_free(leaf);
    attestation_free(attestation);
}

static void test_chain_without_root_is_refused(void **state)
{
    struct fixture *fixture = *state;
    char err[512] = "";

    add_group(fixture, GROUP_A, "mfg-intermediate.pem", false);
    assert_null(attestation_create(NULL, &fixture->config, err, sizeof(err)));
    assert_non_null(strstr(err, GROUP_A));
    assert_non_null(strstr(err, "self-signed"));
}

static void test_missing_chain_file_is_refused(void **state)
{
    struct fixture *fixture = *state;
    char err[512] = "";

    add_group(fixture, GROUP_A, "no-such-chain.pem", false);
    assert_null(attestation_create(NULL, &fixture->config, err, sizeof(err)));
    assert_non_null(strstr(err, "no-such-chain.pem"));
}

static void test_chain_out_of_order_is_refused(void **state)
{
    struct fixture *fixture = *state;
    char path[4096], err[512] = "";
    X509 *unrelated, *root;
    FILE *out;

    /* The hub's CA, then the manufacturer root: the first is not issued by the second. */
    fixture_path(fixture, "hub-ca.pem", path, sizeof(path));
    unrelated = read_certificate_file(path, NULL);
    fixture_path(fixture, "mfg-root.pem", path, sizeof(path));
    root = read_certificate_file(path, NULL);
    fixture_path(fixture, "bad-chain.pem", path, sizeof(path));
    out = fopen(path, "w");
    assert_non_null(out);
    assert_int_equal(PEM_write_X509(out, unrelated), 1);
    assert_int_equal(PEM_write_X509(out, root), 1);
    fclose(out);
    add_group(fixture, GROUP_A, "bad-chain.pem", false);
    assert_null(attestation_create(NULL, &fixture->config, err, sizeof(err)));
    assert_non_null(strstr(err, "is not issued by the next one"));
    X509_free(unrelated);
    X509_free(root);
}

static void test_second_connection_hits_the_verified_leaf_cache(void **state)
{
    struct fixture *fixture = *state;
    struct attestation *attestation;
    X509 *leaf = device_certificate(fixture, "devices/device-0001.pem", NULL);
    struct attestation_result first, second;
    struct attestation_stats stats;
    char err[512] = "";
    time_t now = time(NULL);

    add_group(fixture, GROUP_A, "mfg-chain.pem", false);
    attestation = create(fixture);
    assert_int_equal(attestation_verify(attestation, leaf, NULL, now, &first, err, sizeof(err)), 0);
    assert_int_equal(
        attestation_verify(attestation, leaf, NULL, now + 1, &second, err, sizeof(err)), 0);
    attestation_get_stats(attestation, &stats);
    assert_int_equal(stats.verifications, 1);
    assert_int_equal(stats.cache_hits, 1);
    assert_memory_equal(&first, &second, sizeof(first));

    /* Never past the cache lifetime, and never for a time before the verification. */
    assert_int_equal(
        attestation_verify(attestation, leaf, NULL, now + 601, &second, err, sizeof(err)), 0);
    assert_int_equal(attestation_verify(attestation, leaf, NULL, now + 6 * 365 * 86400L, &second,
                                        err, sizeof(err)),
                     -1);
    assert_int_equal(
        attestation_verify(attestation, leaf, NULL, now - 86400, &second, err, sizeof(err)), -1);
    attestation_get_stats(attestation, &stats);
    assert_int_equal(stats.verifications, 4);
    assert_int_equal(stats.cache_hits, 1);

    X509_free(leaf);
    attestation_free(attestation);
}

static void test_leaf_pem_round_trips(void **state)
{
    struct fixture *fixture = *state;
    X509 *leaf = device_certificate(fixture, "devices/device-0001.pem", NULL);
    char *pem = attestation_leaf_pem(leaf);
    BIO *bio;
    X509 *parsed;

    assert_non_null(pem);
    assert_int_equal(strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28), 0);
    bio = BIO_new_mem_buf(pem, -1);
    parsed = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    assert_non_null(parsed);
    assert_int_equal(X509_cmp(parsed, leaf), 0);
    /* Only the leaf, not its chain. */
    assert_null(strstr(strstr(pem, "END CERTIFICATE") + 1, "BEGIN CERTIFICATE"));
    /* Byte for byte what OpenSSL's PEM writer gives. */
    BIO *written = BIO_new(BIO_s_mem());
    char *data;
    assert_int_equal(PEM_write_bio_X509(written, leaf), 1);
    long written_length = BIO_get_mem_data(written, &data);
    assert_int_equal(strlen(pem), (size_t)written_length);
    assert_memory_equal(pem, data, (size_t)written_length);
    BIO_free(written);

    X509_free(parsed);
    BIO_free(bio);
    free(pem);
    X509_free(leaf);
}

/*
 * Writes a CRL signed by issuer_key into the fixture folder as name, listing
 * revoked (may be NULL), valid from an hour ago for valid_seconds (negative:
 * already expired).
 */
static void write_crl(const struct fixture *fixture, const char *name, X509 *issuer,
                      EVP_PKEY *issuer_key, X509 *revoked, long valid_seconds)
{
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *time_value = ASN1_TIME_new();
    char path[PATH_MAX];
    FILE *file;
    time_t now = time(NULL);

    assert_non_null(crl);
    assert_non_null(time_value);
    assert_int_equal(X509_CRL_set_version(crl, X509_CRL_VERSION_2), 1);
    assert_int_equal(X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)), 1);
    ASN1_TIME_adj(time_value, now, 0, valid_seconds < 0 ? 2 * valid_seconds : -3600);
    assert_int_equal(X509_CRL_set1_lastUpdate(crl, time_value), 1);
    ASN1_TIME_adj(time_value, now, 0, valid_seconds);
    assert_int_equal(X509_CRL_set1_nextUpdate(crl, time_value), 1);
    if (revoked != NULL) {
        X509_REVOKED *entry = X509_REVOKED_new();
        ASN1_TIME_adj(time_value, now, 0, -60);
        assert_int_equal(X509_REVOKED_set_serialNumber(entry, X509_get_serialNumber(revoked)), 1);
        assert_int_equal(X509_REVOKED_set_revocationDate(entry, time_value), 1);
        assert_int_equal(X509_CRL_add0_revoked(crl, entry), 1);
    }
    assert_int_equal(X509_CRL_sort(crl), 1);
    assert_true(X509_CRL_sign(crl, issuer_key, EVP_sha256()) > 0);
    fixture_path(fixture, name, path, sizeof(path));
    file = fopen(path, "w");
    assert_non_null(file);
    assert_int_equal(PEM_write_X509_CRL(file, crl), 1);
    fclose(file);
    ASN1_TIME_free(time_value);
    X509_CRL_free(crl);
}

/* Gives group index the CRL file name (kept in a buffer that outlives the test). */
static void set_crl(struct fixture *fixture, size_t index, const char *name)
{
    static char path[PATH_MAX];
    static char *crls[1];

    fixture_path(fixture, name, path, sizeof(path));
    crls[0] = path;
    fixture->groups[index].crls = crls;
    fixture->groups[index].crl_count = 1;
}

/* Verifies a demo device against attestation: 0 or -1, with the reason in err. */
static int verify_device(struct fixture *fixture, struct attestation *attestation, const char *name,
                         char *err, size_t err_length)
{
    STACK_OF(X509) * rest;
    X509 *leaf = device_certificate(fixture, name, &rest);
    struct attestation_result result;
    int rc = attestation_verify(attestation, leaf, rest, time(NULL), &result, err, err_length);

    sk_X509_pop_free(rest, X509_free);
    X509_free(leaf);
    return rc;
}

static void test_crl_revoking_a_device_refuses_it(void **state)
{
    struct fixture *fixture = *state;
    X509 *revoked = device_certificate(fixture, "devices/device-0001.pem", NULL);
    char err[512] = "";
    struct attestation *attestation;

    write_crl(fixture, "mfg.crl", fixture->intermediate, fixture->intermediate_key, revoked, 86400);
    add_group(fixture, GROUP_A, "mfg-chain.pem", false);
    set_crl(fixture, 0, "mfg.crl");
    attestation = create(fixture);

    assert_int_equal(
        verify_device(fixture, attestation, "devices/device-0001.pem", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "certificate revoked"));
    assert_int_equal(
        verify_device(fixture, attestation, "devices/device-0002.pem", err, sizeof(err)), 0);
    X509_free(revoked);
    attestation_free(attestation);
}

static void test_crl_not_listing_a_device_accepts_it(void **state)
{
    struct fixture *fixture = *state;
    char err[512] = "";
    struct attestation *attestation;

    write_crl(fixture, "mfg.crl", fixture->intermediate, fixture->intermediate_key, NULL, 86400);
    add_group(fixture, GROUP_A, "mfg-chain.pem", false);
    set_crl(fixture, 0, "mfg.crl");
    attestation = create(fixture);

    assert_int_equal(
        verify_device(fixture, attestation, "devices/device-0001.pem", err, sizeof(err)), 0);
    attestation_free(attestation);
}

static void test_inline_pem_crl_revokes(void **state)
{
    struct fixture *fixture = *state;
    X509 *revoked = device_certificate(fixture, "devices/device-0002.pem", NULL);
    char err[512] = "";
    char path[PATH_MAX];
    char pem[8192];
    char *crls[1] = {pem};
    struct attestation *attestation;
    FILE *file;
    size_t length;

    write_crl(fixture, "mfg.crl", fixture->intermediate, fixture->intermediate_key, revoked, 86400);
    fixture_path(fixture, "mfg.crl", path, sizeof(path));
    file = fopen(path, "r");
    assert_non_null(file);
    length = fread(pem, 1, sizeof(pem) - 1, file);
    fclose(file);
    pem[length] = '\0';
    add_group(fixture, GROUP_A, "mfg-chain.pem", false);
    fixture->groups[0].crls = crls;
    fixture->groups[0].crl_count = 1;
    attestation = create(fixture);

    assert_int_equal(
        verify_device(fixture, attestation, "devices/device-0002.pem", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "revoked"));
    assert_int_equal(
        verify_device(fixture, attestation, "devices/device-0001.pem", err, sizeof(err)), 0);
    X509_free(revoked);
    attestation_free(attestation);
}

static void test_crl_of_another_ca_fails_naming_the_group(void **state)
{
    struct fixture *fixture = *state;
    char path[PATH_MAX];
    X509 *rogue_root;
    EVP_PKEY *rogue_key;
    char err[512] = "";

    fixture_path(fixture, "rogue-root.pem", path, sizeof(path));
    rogue_root = read_certificate_file(path, NULL);
    fixture_path(fixture, "rogue-root.key", path, sizeof(path));
    rogue_key = read_key_file(path);
    write_crl(fixture, "rogue.crl", rogue_root, rogue_key, NULL, 86400);
    add_group(fixture, GROUP_A, "mfg-chain.pem", false);
    set_crl(fixture, 0, "rogue.crl");

    assert_null(attestation_create(NULL, &fixture->config, err, sizeof(err)));
    assert_non_null(strstr(err, GROUP_A));
    assert_non_null(strstr(err, "rogue.crl"));
    assert_non_null(strstr(err, "not signed by a CA of the group's certificate chain"));
    X509_free(rogue_root);
    EVP_PKEY_free(rogue_key);
}

static void test_expired_crl_refuses_devices(void **state)
{
    struct fixture *fixture = *state;
    char err[512] = "";
    struct attestation *attestation;

    write_crl(fixture, "old.crl", fixture->intermediate, fixture->intermediate_key, NULL, -600);
    add_group(fixture, GROUP_A, "mfg-chain.pem", false);
    set_crl(fixture, 0, "old.crl");
    attestation = create(fixture);

    assert_int_equal(
        verify_device(fixture, attestation, "devices/device-0001.pem", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "CRL has expired"));
    attestation_free(attestation);
}

/* The cache belongs to one object: the object built for the new configuration re-verifies. */
static void test_new_crl_is_not_bypassed_by_the_cache(void **state)
{
    struct fixture *fixture = *state;
    X509 *revoked = device_certificate(fixture, "devices/device-0001.pem", NULL);
    char err[512] = "";
    struct attestation *before;
    struct attestation *after;

    add_group(fixture, GROUP_A, "mfg-chain.pem", false);
    before = create(fixture);
    assert_int_equal(verify_device(fixture, before, "devices/device-0001.pem", err, sizeof(err)),
                     0);
    assert_int_equal(verify_device(fixture, before, "devices/device-0001.pem", err, sizeof(err)),
                     0);
    write_crl(fixture, "mfg.crl", fixture->intermediate, fixture->intermediate_key, revoked, 86400);
    set_crl(fixture, 0, "mfg.crl");
    after = create(fixture);

    assert_int_equal(verify_device(fixture, after, "devices/device-0001.pem", err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "revoked"));
    X509_free(revoked);
    attestation_free(before);
    attestation_free(after);
}

/* Reads a fixture file into a malloc'd text. */
static char *read_text(const struct fixture *fixture, const char *name)
{
    char path[PATH_MAX];
    char *text = calloc(1, 16384);
    FILE *file;
    size_t length;

    fixture_path(fixture, name, path, sizeof(path));
    file = fopen(path, "r");
    assert_non_null(file);
    assert_non_null(text);
    length = fread(text, 1, 16383, file);
    fclose(file);
    text[length] = '\0';
    return text;
}

/*
 * Shards each build their own object; a chain one verified is not verified again by another
 * for the same texts (the configuration a snapshot read into memory). Any change of the chain
 * or CRL texts, and the disabled flag, still take effect: the verdict is keyed by their digest.
 */
static void test_verdicts_are_shared_between_shards_of_one_configuration(void **state)
{
    struct fixture *fixture = *state;
    X509 *revoked = device_certificate(fixture, "devices/device-0001.pem", NULL);
    char *chain = read_text(fixture, "mfg-chain.pem");
    char *crl_pem;
    char *crls[1];
    char err[512] = "";
    OSSL_LIB_CTX *libctx = OSSL_LIB_CTX_new();
    struct attestation *first;
    struct attestation *second;
    struct attestation *later;
    struct attestation_stats stats;

    assert_non_null(libctx);
    add_group(fixture, GROUP_A, "mfg-chain.pem", false);
    fixture->groups[0].ca_chain_pem = chain;
    first = create(fixture);
    second = attestation_create(libctx, &fixture->config, err, sizeof(err));
    assert_non_null(second);

    assert_int_equal(verify_device(fixture, first, "devices/device-0001.pem", err, sizeof(err)), 0);
    attestation_get_stats(first, &stats);
    assert_int_equal(stats.verifications, 1);
    assert_int_equal(stats.shared_hits, 0);
    assert_int_equal(verify_device(fixture, second, "devices/device-0001.pem", err, sizeof(err)),
                     0);
    attestation_get_stats(second, &stats);
    assert_int_equal(stats.verifications, 0);
    assert_int_equal(stats.cache_hits, 1);
    assert_int_equal(stats.shared_hits, 1);

    /* A new CRL revoking the device: new texts, new digest, the chain is verified again. */
    write_crl(fixture, "mfg.crl", fixture->intermediate, fixture->intermediate_key, revoked, 86400);
    crl_pem = read_text(fixture, "mfg.crl");
    crls[0] = crl_pem;
    fixture->groups[0].crls = crls;
    fixture->groups[0].crl_count = 1;
    later = attestation_create(libctx, &fixture->config, err, sizeof(err));
    assert_non_null(later);
    assert_int_equal(verify_device(fixture, later, "devices/device-0001.pem", err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "revoked"));
    attestation_get_stats(later, &stats);
    assert_int_equal(stats.shared_hits, 0);
    attestation_free(later);

    /* The same texts with the group disabled: refused before any verdict is looked at. */
    fixture->groups[0].crl_count = 0;
    fixture->groups[0].crls = NULL;
    fixture->groups[0].disabled = true;
    later = attestation_create(libctx, &fixture->config, err, sizeof(err));
    assert_non_null(later);
    assert_int_equal(verify_device(fixture, later, "devices/device-0001.pem", err, sizeof(err)),
                     -1);
    assert_string_equal(err, "enrollment group " GROUP_A " is disabled");
    attestation_free(later);

    X509_free(revoked);
    free(crl_pem);
    free(chain);
    attestation_free(first);
    attestation_free(second);
    OSSL_LIB_CTX_free(libctx);
}

static void test_disabled_group_refuses_its_devices(void **state)
{
    struct fixture *fixture = *state;
    char err[512] = "";
    struct attestation *attestation;

    add_group(fixture, GROUP_A, "rogue-root.pem", false);
    add_group(fixture, GROUP_B, "mfg-chain.pem", false);
    fixture->groups[1].disabled = true;
    attestation = create(fixture);

    assert_int_equal(
        verify_device(fixture, attestation, "devices/device-0001.pem", err, sizeof(err)), -1);
    assert_string_equal(err, "enrollment group " GROUP_B " is disabled");
    assert_int_equal(verify_device(fixture, attestation, "rogue-device.pem", err, sizeof(err)), 0);
    attestation_free(attestation);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FIXTURE_TEST(test_demo_device_matches_and_verifies),
        FIXTURE_TEST(test_record_id_is_stable_uuid_v5_of_spki),
        FIXTURE_TEST(test_rogue_device_matches_no_group),
        FIXTURE_TEST(test_forged_issuer_name_matches_no_group),
        FIXTURE_TEST(test_device_without_client_auth_is_refused),
        FIXTURE_TEST(test_leaf_alone_or_with_chain_verifies),
        FIXTURE_TEST(test_leaf_common_name_is_kept_whole_or_refused),
        FIXTURE_TEST(test_groups_with_the_same_first_ca_are_refused),
        FIXTURE_TEST(test_lowest_certificate_decides_the_group),
        FIXTURE_TEST(test_root_group_matches_through_presented_intermediate),
        FIXTURE_TEST(test_expired_leaf_needs_expired_certificate_enabled),
        FIXTURE_TEST(test_verification_uses_the_given_time),
        FIXTURE_TEST(test_chain_without_root_is_refused),
        FIXTURE_TEST(test_missing_chain_file_is_refused),
        FIXTURE_TEST(test_chain_out_of_order_is_refused),
        FIXTURE_TEST(test_second_connection_hits_the_verified_leaf_cache),
        FIXTURE_TEST(test_leaf_pem_round_trips),
        FIXTURE_TEST(test_crl_revoking_a_device_refuses_it),
        FIXTURE_TEST(test_crl_not_listing_a_device_accepts_it),
        FIXTURE_TEST(test_inline_pem_crl_revokes),
        FIXTURE_TEST(test_crl_of_another_ca_fails_naming_the_group),
        FIXTURE_TEST(test_expired_crl_refuses_devices),
        FIXTURE_TEST(test_new_crl_is_not_bypassed_by_the_cache),
        FIXTURE_TEST(test_disabled_group_refuses_its_devices),
        FIXTURE_TEST(test_verdicts_are_shared_between_shards_of_one_configuration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
