/*
 * test_pki: the demo PKI is complete, verifies with the openssl command-line
 * tool for the purposes it is used for, keeps existing files, and carries
 * the names, extensions and validity periods pki.h promises.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tests/unit/temp_dir.h"
#include "crypto/pki.h"

#define DEVICE_COUNT 3

/* The certificates written with their keys (NAME.pem and NAME.key), then the files alone. */
static const char *const EXPECTED_PAIRS[] = {
    "mfg-root", "mfg-intermediate", "dps-root",     "dps-server",          "hub-root",
    "hub-ca",   "rogue-root",       "rogue-device", "noclientauth-device",
};
static const char *const EXPECTED_SINGLES[] = {"mfg-chain.pem", "token.key", "token.pub.pem"};
#define PAIR_COUNT (sizeof(EXPECTED_PAIRS) / sizeof(*EXPECTED_PAIRS))
#define EXPECTED_COUNT (2 * PAIR_COUNT + sizeof(EXPECTED_SINGLES) / sizeof(*EXPECTED_SINGLES))

/* The name of expected file i, from 0 to EXPECTED_COUNT - 1. */
static const char *expected_file(size_t i, char name[64])
{
    if (i >= 2 * PAIR_COUNT)
        return EXPECTED_SINGLES[i - 2 * PAIR_COUNT];
    snprintf(name, 64, "%s%s", EXPECTED_PAIRS[i / 2], i % 2 == 0 ? ".pem" : ".key");
    return name;
}

struct fixture {
    char dir[64];
};

static int setup(void **state)
{
    struct fixture *fixture = calloc(1, sizeof(*fixture));
    char err[256];

    if (fixture == NULL)
        return -1;
    strcpy(fixture->dir, "/tmp/test_pki.XXXXXX");
    if (mkdtemp(fixture->dir) == NULL)
        return -1;
    if (pki_generate(fixture->dir, DEVICE_COUNT, err, sizeof(err)) != 0) {
        fprintf(stderr, "pki_generate: %s\n", err);
        return -1;
    }
    *state = fixture;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fixture = *state;

    temp_dir_remove(fixture->dir);
    free(fixture);
    return 0;
}

static void path_in(const struct fixture *fixture, const char *name, char *out, size_t length)
{
    snprintf(out, length, "%s/%s", fixture->dir, name);
}

static X509 *read_certificate_at(const char *path, int position)
{
    FILE *file = fopen(path, "r");
    X509 *certificate = NULL;

    assert_non_null(file);
    for (int i = 0; i <= position; i++) {
        X509_free(certificate);
        certificate = PEM_read_X509(file, NULL, NULL, NULL);
        if (certificate == NULL)
            break;
    }
    fclose(file);
    return certificate;
}

static X509 *read_certificate(const struct fixture *fixture, const char *name)
{
    char path[PATH_MAX];

    path_in(fixture, name, path, sizeof(path));
    return read_certificate_at(path, 0);
}

static int count_certificates(const char *path)
{
    int count = 0;
    X509 *certificate;

    while ((certificate = read_certificate_at(path, count)) != NULL) {
        X509_free(certificate);
        count++;
    }
    return count;
}

static int openssl_verify(const struct fixture *fixture, const char *arguments)
{
    char command[1024];

    snprintf(command, sizeof(command), "cd %s && openssl verify %s >/dev/null 2>&1", fixture->dir,
             arguments);
    return system(command);
}

static void common_name_of(X509 *certificate, char *out, size_t length)
{
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(certificate), NID_commonName, out,
                                          (int)length) > 0);
}

static long long validity_seconds(X509 *certificate)
{
    int days;
    int seconds;

    assert_int_equal(ASN1_TIME_diff(&days, &seconds, X509_get0_notBefore(certificate),
                                    X509_get0_notAfter(certificate)),
                     1);
    return (long long)days * 86400 + seconds;
}

static void test_all_files_created(void **state)
{
    struct fixture *fixture = *state;
    char path[PATH_MAX];

    for (size_t i = 0; i < EXPECTED_COUNT; i++) {
        char name[64];
        path_in(fixture, expected_file(i, name), path, sizeof(path));
        assert_int_equal(access(path, R_OK), 0);
    }
    for (unsigned index = 1; index <= DEVICE_COUNT; index++) {
        pki_device_path(fixture->dir, index, ".pem", path, sizeof(path));
        assert_int_equal(access(path, R_OK), 0);
        pki_device_path(fixture->dir, index, ".key", path, sizeof(path));
        assert_int_equal(access(path, R_OK), 0);
    }
    pki_device_path(fixture->dir, DEVICE_COUNT + 1, ".pem", path, sizeof(path));
    assert_int_not_equal(access(path, F_OK), 0);
}

static void test_device_path_format(void **state)
{
    char path[PATH_MAX];

    (void)state;
    assert_int_equal(pki_device_path("/x", 7, ".key", path, sizeof(path)), 0);
    assert_string_equal(path, "/x/devices/device-0007.key");
    assert_int_equal(pki_device_path("/x", 12345, ".pem", path, sizeof(path)), 0);
    assert_string_equal(path, "/x/devices/device-12345.pem");

    /* A path that does not fit is refused, never shortened to another file's name. */
    char small[sizeof("/x/devices/device-0007.key")];
    assert_int_equal(pki_device_path("/x", 7, ".key", small, sizeof(small)), 0);
    assert_int_equal(pki_device_path("/x", 7, ".pem.tmp", small, sizeof(small)), -1);
    assert_string_equal(small, "");
}

static void test_keys_are_private_pkcs8(void **state)
{
    struct fixture *fixture = *state;
    char path[PATH_MAX];
    struct stat info;

    for (size_t i = 0; i < EXPECTED_COUNT; i++) {
        char buffer[64];
        const char *name = expected_file(i, buffer);
        size_t length = strlen(name);
        char line[64] = "";
        FILE *file;

        if (length < 4 || strcmp(name + length - 4, ".key") != 0)
            continue;
        path_in(fixture, name, path, sizeof(path));
        assert_int_equal(stat(path, &info), 0);
        assert_int_equal(info.st_mode & 0777, 0600);
        file = fopen(path, "r");
        assert_non_null(file);
        assert_non_null(fgets(line, sizeof(line), file));
        fclose(file);
        assert_string_equal(line, "-----BEGIN PRIVATE KEY-----\n");
    }
    pki_device_path(fixture->dir, 1, ".key", path, sizeof(path));
    assert_int_equal(stat(path, &info), 0);
    assert_int_equal(info.st_mode & 0777, 0600);
}

static void test_openssl_verifies_chains(void **state)
{
    struct fixture *fixture = *state;

    assert_int_equal(openssl_verify(fixture, "-CAfile mfg-root.pem -untrusted mfg-intermediate.pem "
                                             "devices/device-0001.pem"),
                     0);
    assert_int_equal(openssl_verify(fixture, "-purpose sslclient -CAfile mfg-root.pem -untrusted "
                                             "mfg-intermediate.pem devices/device-0003.pem"),
                     0);
    assert_int_equal(openssl_verify(fixture, "-CAfile hub-root.pem hub-ca.pem"), 0);
    assert_int_equal(openssl_verify(fixture, "-purpose sslserver -CAfile dps-root.pem "
                                             "dps-server.pem"),
                     0);
    assert_int_equal(openssl_verify(fixture, "-CAfile mfg-root.pem mfg-chain.pem"), 0);
}

static void test_openssl_refuses_the_negative_material(void **state)
{
    struct fixture *fixture = *state;

    assert_int_not_equal(openssl_verify(fixture, "-CAfile mfg-root.pem -untrusted "
                                                 "mfg-intermediate.pem rogue-device.pem"),
                         0);
    assert_int_equal(openssl_verify(fixture, "-CAfile rogue-root.pem rogue-device.pem"), 0);
    assert_int_equal(openssl_verify(fixture, "-CAfile mfg-root.pem -untrusted "
                                             "mfg-intermediate.pem noclientauth-device.pem"),
                     0);
    assert_int_not_equal(openssl_verify(fixture, "-purpose sslclient -CAfile mfg-root.pem "
                                                 "-untrusted mfg-intermediate.pem "
                                                 "noclientauth-device.pem"),
                         0);
}

static void test_device_certificate_contents(void **state)
{
    struct fixture *fixture = *state;
    char path[PATH_MAX];
    char name[128];
    X509 *device;
    X509 *intermediate = read_certificate(fixture, "mfg-intermediate.pem");
    X509 *second;
    long long validity;

    pki_device_path(fixture->dir, 2, ".pem", path, sizeof(path));
    assert_int_equal(count_certificates(path), 2);
    device = read_certificate_at(path, 0);
    second = read_certificate_at(path, 1);
    assert_non_null(device);
    assert_int_equal(X509_cmp(second, intermediate), 0);

    common_name_of(device, name, sizeof(name));
    assert_string_equal(name, "Demo Device 0002");
    common_name_of(intermediate, name, sizeof(name));
    assert_string_equal(name, "Demo Manufacturer Intermediate CA");
    assert_int_equal(X509_check_issued(intermediate, device), X509_V_OK);

    assert_int_equal(X509_check_ca(device), 0);
    assert_true(X509_get_extension_flags(device) & EXFLAG_XKUSAGE);
    assert_int_equal(X509_get_extended_key_usage(device), XKU_SSL_CLIENT);
    assert_int_equal(X509_get_key_usage(device), KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT);
    assert_non_null(X509_get0_subject_key_id(device));
    assert_non_null(X509_get0_authority_key_id(device));
    assert_true(ASN1_STRING_length(X509_get0_serialNumber(device)) >= 8);
    assert_int_equal(X509_get_signature_nid(device), NID_ecdsa_with_SHA256);
    assert_string_equal(EVP_PKEY_get0_type_name(X509_get0_pubkey(device)), "EC");

    validity = validity_seconds(device);
    assert_true(validity >= 1825LL * 86400 + 3000 && validity <= 1827LL * 86400);
    assert_true(X509_cmp_time(X509_get0_notBefore(device), &(time_t){time(NULL) - 3000}) < 0);

    X509_free(device);
    X509_free(second);
    X509_free(intermediate);
}

static void test_ca_certificate_contents(void **state)
{
    struct fixture *fixture = *state;
    const char *names[] = {"mfg-root.pem", "mfg-intermediate.pem", "dps-root.pem",
                           "hub-root.pem", "hub-ca.pem",           "rogue-root.pem"};
    char name[128];
    X509 *root = read_certificate(fixture, "mfg-root.pem");

    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
        X509 *ca = read_certificate(fixture, names[i]);
        long long validity = validity_seconds(ca);
        const ASN1_OCTET_STRING *key_id = X509_get0_subject_key_id(ca);

        assert_int_equal(X509_check_ca(ca), 1);
        assert_int_equal(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
        assert_non_null(key_id);
        assert_non_null(X509_get0_authority_key_id(ca));
        assert_true(validity >= 3650LL * 86400 + 3000 && validity <= 3652LL * 86400);
        X509_free(ca);
    }
    common_name_of(root, name, sizeof(name));
    assert_string_equal(name, "Demo Manufacturer Root CA");
    assert_int_equal(X509_self_signed(root, 1), 1);
    X509_free(root);
}

static void test_server_certificate_contents(void **state)
{
    struct fixture *fixture = *state;
    char path[PATH_MAX];
    X509 *server = read_certificate(fixture, "dps-server.pem");
    X509 *root = read_certificate(fixture, "dps-root.pem");
    unsigned char loopback[4] = {127, 0, 0, 1};

    path_in(fixture, "dps-server.pem", path, sizeof(path));
    assert_int_equal(count_certificates(path), 2);
    assert_int_equal(X509_check_ca(server), 0);
    assert_int_equal(X509_get_key_usage(server), KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_get_extended_key_usage(server), XKU_SSL_SERVER);
    assert_int_equal(X509_check_host(server, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip(server, loopback, sizeof(loopback), 0), 1);
    assert_int_equal(X509_check_issued(root, server), X509_V_OK);
    assert_true(validity_seconds(server) <= 1827LL * 86400);

    path_in(fixture, "hub-ca.pem", path, sizeof(path));
    assert_int_equal(count_certificates(path), 2);
    X509_free(server);
    X509_free(root);
}

static void test_noclientauth_device_has_server_auth_only(void **state)
{
    struct fixture *fixture = *state;
    X509 *device = read_certificate(fixture, "noclientauth-device.pem");
    X509 *intermediate = read_certificate(fixture, "mfg-intermediate.pem");

    assert_int_equal(X509_get_extended_key_usage(device), XKU_SSL_SERVER);
    assert_int_equal(X509_check_issued(intermediate, device), X509_V_OK);
    X509_free(device);
    X509_free(intermediate);
}

static void test_token_key_pair_matches(void **state)
{
    struct fixture *fixture = *state;
    char path[PATH_MAX];
    FILE *file;
    EVP_PKEY *private_key;
    EVP_PKEY *public_key;

    path_in(fixture, "token.key", path, sizeof(path));
    file = fopen(path, "r");
    assert_non_null(file);
    private_key = PEM_read_PrivateKey(file, NULL, NULL, NULL);
    fclose(file);
    path_in(fixture, "token.pub.pem", path, sizeof(path));
    file = fopen(path, "r");
    assert_non_null(file);
    public_key = PEM_read_PUBKEY(file, NULL, NULL, NULL);
    fclose(file);
    assert_non_null(private_key);
    assert_non_null(public_key);
    assert_int_equal(EVP_PKEY_eq(private_key, public_key), 1);
    EVP_PKEY_free(private_key);
    EVP_PKEY_free(public_key);
}

static bool same_file_content(const char *a, const char *b)
{
    char command[3 * PATH_MAX];

    snprintf(command, sizeof(command), "cmp -s %s %s", a, b);
    return system(command) == 0;
}

static void test_rerun_keeps_files_and_fills_gaps(void **state)
{
    struct fixture *fixture = *state;
    char err[256];
    char path[PATH_MAX];
    char saved[128];
    char command[PATH_MAX];

    /* Save a device and the root, remove a device and the server certificate only. */
    snprintf(saved, sizeof(saved), "%s/saved", fixture->dir);
    assert_int_equal(mkdir(saved, 0700), 0);
    snprintf(command, sizeof(command), "cp -p %s/mfg-root.pem %s/mfg-root.key %s/devices/* %s",
             fixture->dir, fixture->dir, fixture->dir, saved);
    assert_int_equal(system(command), 0);
    pki_device_path(fixture->dir, 2, ".pem", path, sizeof(path));
    assert_int_equal(unlink(path), 0);
    pki_device_path(fixture->dir, 2, ".key", path, sizeof(path));
    assert_int_equal(unlink(path), 0);
    path_in(fixture, "dps-server.pem", path, sizeof(path));
    assert_int_equal(unlink(path), 0);

    assert_int_equal(pki_generate(fixture->dir, DEVICE_COUNT + 2, err, sizeof(err)), 0);

    path_in(fixture, "mfg-root.pem", path, sizeof(path));
    snprintf(command, sizeof(command), "%s/mfg-root.pem", saved);
    assert_true(same_file_content(path, command));
    pki_device_path(fixture->dir, 1, ".pem", path, sizeof(path));
    snprintf(command, sizeof(command), "%s/device-0001.pem", saved);
    assert_true(same_file_content(path, command));
    pki_device_path(fixture->dir, 2, ".pem", path, sizeof(path));
    snprintf(command, sizeof(command), "%s/device-0002.pem", saved);
    assert_false(same_file_content(path, command));

    /* The replacement and new devices chain to the same, kept, CAs. */
    assert_int_equal(openssl_verify(fixture, "-CAfile saved/mfg-root.pem -untrusted "
                                             "mfg-intermediate.pem devices/device-0002.pem"),
                     0);
    assert_int_equal(openssl_verify(fixture, "-CAfile saved/mfg-root.pem -untrusted "
                                             "mfg-intermediate.pem devices/device-0005.pem"),
                     0);
    /* The server key was kept; its certificate was reissued for that key. */
    assert_int_equal(openssl_verify(fixture, "-CAfile dps-root.pem dps-server.pem"), 0);
    snprintf(command, sizeof(command),
             "cd %s && test \"$(openssl x509 -in dps-server.pem -noout -pubkey)\" = "
             "\"$(openssl pkey -in dps-server.key -pubout)\"",
             fixture->dir);
    assert_int_equal(system(command), 0);
}

static void test_rerun_refuses_certificate_of_a_replaced_issuer(void **state)
{
    struct fixture *fixture = *state;
    char err[512] = "";
    char path[PATH_MAX];

    path_in(fixture, "mfg-root.key", path, sizeof(path));
    assert_int_equal(unlink(path), 0);
    path_in(fixture, "mfg-root.pem", path, sizeof(path));
    assert_int_equal(unlink(path), 0);

    assert_int_equal(pki_generate(fixture->dir, DEVICE_COUNT, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "mfg-intermediate.pem was not issued by the current Demo "
                                "Manufacturer Root CA"));
}

static void test_ensure_device_issues_missing_devices(void **state)
{
    struct fixture *fixture = *state;
    char err[256];
    char path[PATH_MAX];
    struct stat before;
    struct stat after;

    assert_int_equal(pki_ensure_device(fixture->dir, 250, err, sizeof(err)), 0);
    pki_device_path(fixture->dir, 250, ".pem", path, sizeof(path));
    assert_int_equal(stat(path, &before), 0);
    assert_int_equal(openssl_verify(fixture, "-purpose sslclient -CAfile mfg-root.pem -untrusted "
                                             "mfg-intermediate.pem devices/device-0250.pem"),
                     0);
    assert_int_equal(pki_ensure_device(fixture->dir, 250, err, sizeof(err)), 0);
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
    assert_int_equal(pki_ensure_device(fixture->dir, 0, err, sizeof(err)), -1);
}

static void test_ensure_device_is_fast(void **state)
{
    struct fixture *fixture = *state;
    char err[256];
    struct timespec start;
    struct timespec end;
    double elapsed;

    clock_gettime(CLOCK_MONOTONIC, &start);
    for (unsigned index = 1000; index < 1100; index++)
        assert_int_equal(pki_ensure_device(fixture->dir, index, err, sizeof(err)), 0);
    clock_gettime(CLOCK_MONOTONIC, &end);
    elapsed = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
    /* 100 devices: a few ms each even under sanitizers on a shared machine. */
    assert_true(elapsed < 20.0);
}

static void test_ensure_device_without_pki_fails(void **state)
{
    char dir[] = "/tmp/test_pki_empty.XXXXXX";
    char err[256] = "";

    (void)state;
    assert_non_null(mkdtemp(dir));
    assert_int_equal(pki_ensure_device(dir, 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "mfg-intermediate.key"));
    temp_dir_remove(dir);
}

static void test_generate_into_unwritable_path_fails(void **state)
{
    char err[256] = "";

    (void)state;
    assert_int_equal(pki_generate("/proc/no-such-dir/pki", 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/proc/no-such-dir/pki"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FIXTURE_TEST(test_all_files_created),
        cmocka_unit_test(test_device_path_format),
        FIXTURE_TEST(test_keys_are_private_pkcs8),
        FIXTURE_TEST(test_openssl_verifies_chains),
        FIXTURE_TEST(test_openssl_refuses_the_negative_material),
        FIXTURE_TEST(test_device_certificate_contents),
        FIXTURE_TEST(test_ca_certificate_contents),
        FIXTURE_TEST(test_server_certificate_contents),
        FIXTURE_TEST(test_noclientauth_device_has_server_auth_only),
        FIXTURE_TEST(test_token_key_pair_matches),
        FIXTURE_TEST(test_rerun_keeps_files_and_fills_gaps),
        FIXTURE_TEST(test_rerun_refuses_certificate_of_a_replaced_issuer),
        FIXTURE_TEST(test_ensure_device_issues_missing_devices),
        FIXTURE_TEST(test_ensure_device_is_fast),
        cmocka_unit_test(test_ensure_device_without_pki_fails),
        cmocka_unit_test(test_generate_into_unwritable_path_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
