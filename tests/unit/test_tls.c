/*
 * test_tls: a server and a client tls_conn in one thread, with the test
 * moving ciphertext between them, over certificates from the demo PKI.
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
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tests/unit/temp_dir.h"
#include "crypto/lean_provider.h"
#include "crypto/pki.h"
#include "dataplane/tls.h"

static char pki_dir[64];
static char server_cert[128], server_key[128], device_cert[128], device_key[128];
static char dps_root[128], mfg_intermediate[128];

struct verify_probe {
    int calls;
    int result;
    char leaf_cn[64];
    int chain_length;
    X509 *chain_first;
};

static int probe_verify(void *conn_user, X509 *leaf, STACK_OF(X509) * chain)
{
    struct verify_probe *probe = conn_user;

    probe->calls++;
    X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, probe->leaf_cn,
                              sizeof(probe->leaf_cn));
    probe->chain_length = chain != NULL ? sk_X509_num(chain) : -1;
    if (probe->chain_length > 0) {
        X509_free(probe->chain_first);
        probe->chain_first = X509_dup(sk_X509_value(chain, 0));
    }
    return probe->result;
}

struct pair {
    SSL_CTX *server_ctx;
    SSL_CTX *client_ctx;
    struct tls_conn *server;
    struct tls_conn *client;
    struct verify_probe probe;
};

/* Moves pending ciphertext from one side to the other, in uneven pieces. */
static size_t transfer(struct tls_conn *from, struct tls_conn *to)
{
    size_t moved = 0;
    size_t length;
    const uint8_t *data;

    while ((data = tls_conn_output(from, &length)) != NULL) {
        size_t piece = length > 1000 ? 1000 : length;
        assert_int_equal(tls_conn_feed(to, data, piece), 0);
        tls_conn_consume_output(from, piece);
        moved += piece;
    }
    return moved;
}

static void pair_open(struct pair *pair, SSL_CTX *server_ctx, SSL_CTX *client_ctx)
{
    memset(&pair->probe, 0, sizeof(pair->probe));
    pair->server_ctx = server_ctx;
    pair->client_ctx = client_ctx;
    pair->server = tls_conn_new(server_ctx, true, &pair->probe);
    pair->client = tls_conn_new(client_ctx, false, NULL);
    assert_non_null(pair->server);
    assert_non_null(pair->client);
}

static void pair_close(struct pair *pair)
{
    tls_conn_free(pair->server);
    tls_conn_free(pair->client);
    SSL_CTX_free(pair->server_ctx);
    SSL_CTX_free(pair->client_ctx);
    X509_free(pair->probe.chain_first);
}

static SSL_CTX *server_context(OSSL_LIB_CTX *libctx)
{
    char err[256];
    SSL_CTX *ctx =
        tls_server_context(libctx, server_cert, server_key, probe_verify, err, sizeof(err));
    if (ctx == NULL)
        fail_msg("server context: %s", err);
    return ctx;
}

static SSL_CTX *client_context(OSSL_LIB_CTX *libctx)
{
    char err[256];
    SSL_CTX *ctx = tls_client_context(libctx, device_cert, device_key, dps_root, err, sizeof(err));
    if (ctx == NULL)
        fail_msg("client context: %s", err);
    return ctx;
}

/* Runs both handshakes until each side is done or failed; returns both results. */
static void handshake(struct pair *pair, int *server_result, int *client_result)
{
    int server = TLS_AGAIN, client = TLS_AGAIN;

    for (int round = 0; round < 20; round++) {
        if (client == TLS_AGAIN)
            client = tls_conn_handshake(pair->client);
        transfer(pair->client, pair->server);
        if (server == TLS_AGAIN)
            server = tls_conn_handshake(pair->server);
        size_t moved = transfer(pair->server, pair->client);
        if (server != TLS_AGAIN && client != TLS_AGAIN && moved == 0)
            break;
    }
    *server_result = server;
    *client_result = client;
}

static void open_established(struct pair *pair)
{
    int server, client;

    pair_open(pair, server_context(NULL), client_context(NULL));
    handshake(pair, &server, &client);
    assert_int_equal(server, TLS_DONE);
    assert_int_equal(client, TLS_DONE);
}

static void test_handshake_tls12_ecdsa(void **state)
{
    struct pair pair;

    open_established(&pair);
    assert_string_equal(tls_conn_version(pair.server), "TLSv1.2");
    assert_string_equal(tls_conn_version(pair.client), "TLSv1.2");
    assert_memory_equal(tls_conn_cipher(pair.server), "ECDHE-ECDSA-", 12);
    assert_string_equal(tls_conn_cipher(pair.server), tls_conn_cipher(pair.client));
    pair_close(&pair);
}

static void test_verifier_sees_leaf_and_chain(void **state)
{
    struct pair pair;
    X509 *intermediate = NULL;
    FILE *file = fopen(mfg_intermediate, "r");

    assert_non_null(file);
    intermediate = PEM_read_X509(file, NULL, NULL, NULL);
    fclose(file);
    assert_non_null(intermediate);

    open_established(&pair);
    assert_int_equal(pair.probe.calls, 1);
    assert_string_equal(pair.probe.leaf_cn, "Demo Device 0001");
    assert_int_equal(pair.probe.chain_length, 1);
    assert_int_equal(X509_cmp(pair.probe.chain_first, intermediate), 0);
    X509_free(intermediate);
    pair_close(&pair);
}

static void test_verifier_rejection_fails_both_sides(void **state)
{
    struct pair pair;
    int server, client;

    pair_open(&pair, server_context(NULL), client_context(NULL));
    pair.probe.result = -1;
    handshake(&pair, &server, &client);
    assert_int_equal(pair.probe.calls, 1);
    assert_int_equal(server, TLS_FAILED);
    /* The alert reached the client, which failed on it rather than waiting. */
    assert_int_equal(client, TLS_FAILED);
    assert_non_null(strstr(tls_conn_error(pair.server), "rejected"));
    assert_non_null(strstr(tls_conn_error(pair.client), "alert"));
    assert_int_equal(ERR_peek_error(), 0);
    pair_close(&pair);
}

static void test_alert_left_in_output(void **state)
{
    struct pair pair;
    size_t length = 0;
    int result = TLS_AGAIN;

    pair_open(&pair, server_context(NULL), client_context(NULL));
    pair.probe.result = -1;
    /* Drive the server alone so its last flight stays unsent in its output. */
    for (int round = 0; round < 10 && result == TLS_AGAIN; round++) {
        tls_conn_handshake(pair.client);
        transfer(pair.client, pair.server);
        result = tls_conn_handshake(pair.server);
        if (result == TLS_AGAIN)
            transfer(pair.server, pair.client);
    }
    assert_int_equal(result, TLS_FAILED);
    const uint8_t *output = tls_conn_output(pair.server, &length);
    assert_non_null(output);
    /* A TLS 1.2 alert record: type 21, fatal (2), bad_certificate (42). */
    assert_true(length >= 7);
    assert_int_equal(output[0], 21);
    assert_int_equal(output[5], 2);
    assert_int_equal(output[6], 42);
    pair_close(&pair);
}

static void test_client_without_certificate_fails(void **state)
{
    struct pair pair;
    int server, client;
    SSL_CTX *bare = SSL_CTX_new(TLS_client_method());

    assert_non_null(bare);
    SSL_CTX_set_max_proto_version(bare, TLS1_2_VERSION);
    pair_open(&pair, server_context(NULL), bare);
    handshake(&pair, &server, &client);
    assert_int_equal(server, TLS_FAILED);
    assert_int_equal(client, TLS_FAILED);
    assert_int_equal(pair.probe.calls, 0);
    assert_non_null(strstr(tls_conn_error(pair.server), "certificate"));
    assert_int_equal(ERR_peek_error(), 0);
    pair_close(&pair);
}

/* Writes length bytes one way and reads them back on the other side. */
static void send_and_check(struct tls_conn *from, struct tls_conn *to, size_t length)
{
    uint8_t *sent = malloc(length);
    uint8_t *received = malloc(length);
    size_t have = 0;

    assert_non_null(sent);
    assert_non_null(received);
    for (size_t i = 0; i < length; i++)
        sent[i] = (uint8_t)(i * 7 + (i >> 9));
    assert_int_equal(tls_conn_write(from, sent, length), 0);
    transfer(from, to);
    while (have < length) {
        int got = tls_conn_read(to, received + have, length - have);
        assert_true(got > 0);
        have += (size_t)got;
    }
    assert_int_equal(tls_conn_read(to, received, length), TLS_AGAIN);
    assert_memory_equal(sent, received, length);
    free(sent);
    free(received);
}

static void test_round_trip_100k_both_ways(void **state)
{
    struct pair pair;

    open_established(&pair);
    send_and_check(pair.client, pair.server, 100 * 1024);
    send_and_check(pair.server, pair.client, 100 * 1024);
    pair_close(&pair);
}

static void test_records_carry_at_most_8192_bytes(void **state)
{
    struct pair pair;
    static uint8_t data[20000];
    size_t length, offset = 0;
    int records = 0;

    open_established(&pair);
    memset(data, 0x5a, sizeof(data));
    assert_int_equal(tls_conn_write(pair.server, data, sizeof(data)), 0);
    const uint8_t *output = tls_conn_output(pair.server, &length);
    assert_non_null(output);
    while (offset + 5 <= length) {
        size_t record = (size_t)output[offset + 3] << 8 | output[offset + 4];
        assert_int_equal(output[offset], 23);
        /* GCM adds an 8-byte explicit nonce and a 16-byte tag to the plaintext. */
        assert_true(record <= 8192 + 24);
        offset += 5 + record;
        records++;
    }
    assert_int_equal(offset, length);
    assert_true(records >= 3);
    pair_close(&pair);
}

static void test_close_notify_gives_closed(void **state)
{
    struct pair pair;
    uint8_t buffer[64];

    open_established(&pair);
    tls_conn_shutdown(pair.client);
    assert_true(transfer(pair.client, pair.server) > 0);
    assert_int_equal(tls_conn_read(pair.server, buffer, sizeof(buffer)), TLS_CLOSED);
    pair_close(&pair);
}

/* A handshake and data between a server in server_libctx and a client in its own context. */
static void handshake_in(OSSL_LIB_CTX *server_libctx)
{
    struct pair pair;
    int server, client;
    OSSL_LIB_CTX *client_libctx = OSSL_LIB_CTX_new();

    assert_non_null(server_libctx);
    assert_non_null(client_libctx);
    pair_open(&pair, server_context(server_libctx), client_context(client_libctx));
    handshake(&pair, &server, &client);
    assert_int_equal(server, TLS_DONE);
    assert_int_equal(client, TLS_DONE);
    assert_int_equal(pair.probe.calls, 1);
    send_and_check(pair.client, pair.server, 3000);
    pair_close(&pair);
    OSSL_LIB_CTX_free(client_libctx);
}

static void test_own_library_contexts(void **state)
{
    OSSL_LIB_CTX *server_libctx = OSSL_LIB_CTX_new();

    handshake_in(server_libctx);
    OSSL_LIB_CTX_free(server_libctx);
}

/* The shards' library context: lean on OpenSSL 3.0 (crypto/lean_provider.h). */
static void test_lean_library_context(void **state)
{
    char err[256] = "";
    OSSL_LIB_CTX *server_libctx = lean_libctx_new(err, sizeof(err));

    if (server_libctx == NULL)
        fail_msg("lean_libctx_new: %s", err);
    handshake_in(server_libctx);
    lean_libctx_free(server_libctx);
}

static void test_server_context_errors(void **state)
{
    char err[256] = "";
    char missing[160];

    snprintf(missing, sizeof(missing), "%s/missing.key", pki_dir);
    assert_null(tls_server_context(NULL, server_cert, missing, probe_verify, err, sizeof(err)));
    assert_non_null(strstr(err, "private key"));
    /* A key that belongs to another certificate. */
    assert_null(tls_server_context(NULL, server_cert, device_key, probe_verify, err, sizeof(err)));
    assert_non_null(strstr(err, "key values mismatch"));
    assert_int_equal(ERR_peek_error(), 0);
}

static int setup(void **state)
{
    char err[256];

    strcpy(pki_dir, "/tmp/test_tls.XXXXXX");
    if (mkdtemp(pki_dir) == NULL)
        return -1;
    if (pki_generate(pki_dir, 1, err, sizeof(err)) != 0) {
        fprintf(stderr, "pki_generate: %s\n", err);
        return -1;
    }
    snprintf(server_cert, sizeof(server_cert), "%s/dps-server.pem", pki_dir);
    snprintf(server_key, sizeof(server_key), "%s/dps-server.key", pki_dir);
    snprintf(dps_root, sizeof(dps_root), "%s/dps-root.pem", pki_dir);
    snprintf(mfg_intermediate, sizeof(mfg_intermediate), "%s/mfg-intermediate.pem", pki_dir);
    pki_device_path(pki_dir, 1, ".pem", device_cert, sizeof(device_cert));
    pki_device_path(pki_dir, 1, ".key", device_key, sizeof(device_key));
    return 0;
}

static int teardown(void **state)
{
    return temp_dir_remove(pki_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_tls12_ecdsa),
        cmocka_unit_test(test_verifier_sees_leaf_and_chain),
        cmocka_unit_test(test_verifier_rejection_fails_both_sides),
        cmocka_unit_test(test_alert_left_in_output),
        cmocka_unit_test(test_client_without_certificate_fails),
        cmocka_unit_test(test_round_trip_100k_both_ways),
        cmocka_unit_test(test_records_carry_at_most_8192_bytes),
        cmocka_unit_test(test_close_notify_gives_closed),
        cmocka_unit_test(test_own_library_contexts),
        cmocka_unit_test(test_lean_library_context),
        cmocka_unit_test(test_server_context_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
