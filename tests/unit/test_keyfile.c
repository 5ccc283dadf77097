/*
 * test_keyfile: the private key permission policy (crypto/keyfile.h), that
 * the loaders of private keys apply it, and that the demo PKI writes keys
 * the default policy accepts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "tests/unit/temp_dir.h"
#include "crypto/issuer.h"
#include "crypto/jwt.h"
#include "crypto/keyfile.h"
#include "crypto/pki.h"
#include "dataplane/tls.h"

static char folder[64];

static int setup(void **state)
{
    char err[256];

    strcpy(folder, "/tmp/test_keyfile.XXXXXX");
    if (mkdtemp(folder) == NULL)
        return -1;
    if (pki_generate(folder, 1, err, sizeof(err)) != 0) {
        fprintf(stderr, "pki_generate: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    temp_dir_remove(folder);
    return 0;
}

static void path_of(const char *name, char *out, size_t length)
{
    snprintf(out, length, "%s/%s", folder, name);
}

/* The demo's hub CA key, with mode. */
static void hub_key_with_mode(mode_t mode, char *path, size_t length)
{
    path_of("hub-ca.key", path, length);
    assert_int_equal(chmod(path, mode), 0);
}

/* Runs keyfile_check with stderr captured into captured (the warning goes there). */
static int check_capturing(const char *path, enum keyfile_policy policy, char *err,
                           size_t err_length, char *captured, size_t captured_length)
{
    char log_path[PATH_MAX];
    int saved = dup(2);
    int log_fd;
    int rc;
    ssize_t length;

    path_of("stderr.log", log_path, sizeof(log_path));
    log_fd = open(log_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && log_fd >= 0);
    assert_true(dup2(log_fd, 2) >= 0);
    rc = keyfile_check(path, policy, err, err_length);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    length = pread(log_fd, captured, captured_length - 1, 0);
    close(log_fd);
    captured[length > 0 ? length : 0] = '\0';
    return rc;
}

static void test_owner_only_key_is_accepted(void **state)
{
    char path[PATH_MAX];
    char err[512] = "";

    hub_key_with_mode(0600, path, sizeof(path));
    assert_int_equal(keyfile_check(path, KEYFILE_REFUSE, err, sizeof(err)), 0);
    hub_key_with_mode(0400, path, sizeof(path));
    assert_int_equal(keyfile_check(path, KEYFILE_REFUSE, err, sizeof(err)), 0);
}

static void refused_with_mode(mode_t mode, const char *mode_text)
{
    char path[PATH_MAX];
    char err[512] = "";

    hub_key_with_mode(mode, path, sizeof(path));
    assert_int_equal(keyfile_check(path, KEYFILE_REFUSE, err, sizeof(err)), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, mode_text));
    assert_non_null(strstr(err, "group or others"));
}

static void test_group_readable_key_is_refused(void **state)
{
    refused_with_mode(0640, "0640");
}

static void test_world_readable_key_is_refused(void **state)
{
    refused_with_mode(0644, "0644");
}

static void test_world_only_readable_key_is_refused(void **state)
{
    refused_with_mode(0604, "0604");
}

static void test_group_writable_key_is_refused(void **state)
{
    refused_with_mode(0620, "0620");
}

static void test_warn_policy_accepts_and_logs(void **state)
{
    static const mode_t modes[] = {0640, 0644, 0604};
    char path[PATH_MAX];
    char err[512] = "";
    char captured[2048];

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        hub_key_with_mode(modes[i], path, sizeof(path));
        assert_int_equal(
            check_capturing(path, KEYFILE_WARN, err, sizeof(err), captured, sizeof(captured)), 0);
        assert_non_null(strstr(captured, "level=warn"));
        assert_non_null(strstr(captured, path));
    }
    /* An owner-only key gives no warning. */
    hub_key_with_mode(0600, path, sizeof(path));
    assert_int_equal(
        check_capturing(path, KEYFILE_WARN, err, sizeof(err), captured, sizeof(captured)), 0);
    assert_string_equal(captured, "");
}

static void test_missing_key_is_named(void **state)
{
    char path[PATH_MAX];
    char err[512] = "";

    path_of("absent.key", path, sizeof(path));
    assert_int_equal(keyfile_check(path, KEYFILE_WARN, err, sizeof(err)), -1);
    char expected[PATH_MAX + 64];
    snprintf(expected, sizeof(expected), "cannot read private key %s: No such file or directory",
             path);
    assert_string_equal(err, expected);
}

/*
 * An unreadable key is named with the reason. Root reads everything, so as
 * root the check runs in a child that became nobody first.
 */
static void test_unreadable_key_is_named(void **state)
{
    char path[PATH_MAX];
    char expected[PATH_MAX + 64];
    char err[512] = "";

    hub_key_with_mode(0600, path, sizeof(path));
    snprintf(expected, sizeof(expected), "cannot read private key %s: Permission denied", path);
    if (geteuid() != 0) {
        assert_int_equal(chmod(path, 0000), 0);
        assert_int_equal(keyfile_check(path, KEYFILE_REFUSE, err, sizeof(err)), -1);
        assert_string_equal(err, expected);
        return;
    }
    assert_int_equal(chmod(folder, 0755), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        int ok = setgid(65534) == 0 && setuid(65534) == 0 &&
                 keyfile_check(path, KEYFILE_REFUSE, err, sizeof(err)) == -1 &&
                 strcmp(err, expected) == 0;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_directory_is_refused(void **state)
{
    char path[PATH_MAX];
    char err[512] = "";

    path_of("devices", path, sizeof(path));
    assert_int_equal(keyfile_check(path, KEYFILE_WARN, err, sizeof(err)), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "not a regular file"));
}

static void test_demo_pki_keys_are_owner_only(void **state)
{
    static const char *const keys[] = {
        "mfg-root.key",     "mfg-intermediate.key",   "dps-root.key",
        "dps-server.key",   "hub-root.key",           "hub-ca.key",
        "token.key",        "operator.key",           "rogue-root.key",
        "rogue-device.key", "noclientauth-device.key"};
    char path[PATH_MAX];
    char err[512] = "";
    struct stat st;

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        path_of(keys[i], path, sizeof(path));
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        if (keyfile_check(path, KEYFILE_REFUSE, err, sizeof(err)) != 0)
            fail_msg("%s", err);
    }
    pki_device_path(folder, 1, ".key", path, sizeof(path));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

/* The loaders apply the process-wide policy; before one is set only readability counts. */
static void test_loaders_apply_the_process_policy(void **state)
{
    char cert[PATH_MAX];
    char key[PATH_MAX];
    char token[PATH_MAX];
    char server_cert[PATH_MAX];
    char server_key[PATH_MAX];
    char err[512] = "";
    struct issuer *issuer;
    struct jwt_key *jwt;
    SSL_CTX *ctx;

    path_of("hub-ca.pem", cert, sizeof(cert));
    hub_key_with_mode(0644, key, sizeof(key));
    path_of("token.key", token, sizeof(token));
    assert_int_equal(chmod(token, 0644), 0);
    path_of("dps-server.pem", server_cert, sizeof(server_cert));
    path_of("dps-server.key", server_key, sizeof(server_key));
    assert_int_equal(chmod(server_key, 0640), 0);

    issuer = issuer_load(NULL, cert, key, err, sizeof(err));
    assert_non_null(issuer);
    issuer_free(issuer);

    keyfile_set_policy(KEYFILE_REFUSE);
    assert_null(issuer_load(NULL, cert, key, err, sizeof(err)));
    assert_non_null(strstr(err, key));
    assert_null(jwt_key_load(NULL, token, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, token));
    assert_null(tls_server_context(NULL, server_cert, server_key, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, server_key));
    assert_non_null(strstr(err, "0640"));

    keyfile_set_policy(KEYFILE_WARN);
    issuer = issuer_load(NULL, cert, key, err, sizeof(err));
    assert_non_null(issuer);
    issuer_free(issuer);
    jwt = jwt_key_load(NULL, token, NULL, err, sizeof(err));
    assert_non_null(jwt);
    jwt_key_free(jwt);
    ctx = tls_server_context(NULL, server_cert, server_key, NULL, err, sizeof(err));
    assert_non_null(ctx);
    SSL_CTX_free(ctx);

    keyfile_set_policy(KEYFILE_REFUSE);
    assert_int_equal(chmod(key, 0600), 0);
    issuer = issuer_load(NULL, cert, key, err, sizeof(err));
    assert_non_null(issuer);
    issuer_free(issuer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FIXTURE_TEST(test_owner_only_key_is_accepted),
        FIXTURE_TEST(test_group_readable_key_is_refused),
        FIXTURE_TEST(test_world_readable_key_is_refused),
        FIXTURE_TEST(test_world_only_readable_key_is_refused),
        FIXTURE_TEST(test_group_writable_key_is_refused),
        FIXTURE_TEST(test_warn_policy_accepts_and_logs),
        FIXTURE_TEST(test_missing_key_is_named),
        FIXTURE_TEST(test_unreadable_key_is_named),
        FIXTURE_TEST(test_directory_is_refused),
        FIXTURE_TEST(test_demo_pki_keys_are_owner_only),
        FIXTURE_TEST(test_loaders_apply_the_process_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
