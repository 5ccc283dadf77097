/*
 * bench-handshake: server CPU of a mutual-TLS 1.2 handshake, in process,
 * five ways side by side in one run.
 *
 *   plain          a plain OpenSSL server loop: SSL_CTX_new_ex, the certificate
 *                  chain and key files, SSL_new, two memory BIOs,
 *                  SSL_do_handshake, OpenSSL's defaults otherwise; its
 *                  certificate verify callback accepts every chain.
 *   plain_verify   the same, OpenSSL verifying the device's chain itself
 *                  against the manufacturer chain file (X509_verify_cert, as
 *                  HAProxy or s_server -Verify would).
 *   bare           dataplane/tls.c as the daemon's shards drive it (its
 *                  protocol profile, its connection object), the verifier
 *                  accepting every chain: tls.c's own cost over plain.
 *   bare_verify    bare with mutual TLS as any server does it: tls.c's
 *                  context with its verifier removed, libssl verifying the
 *                  device's chain itself (SSL_VERIFY_PEER |
 *                  SSL_VERIFY_FAIL_IF_NO_PEER_CERT, X509_verify_cert against
 *                  a store holding the manufacturer chain file).
 *   attested       bare with the daemon's verifier: attestation_verify of the
 *                  device's chain against an enrollment group of the same
 *                  chain file (group matching, partial-chain verification,
 *                  the record id and key hash), then the leaf as PEM for the
 *                  record, as dataplane/shard.c's conn_verify does. Every
 *                  handshake is a device's first: the attestation object
 *                  (and its verified-leaf cache) is made anew, outside the
 *                  clock, before a device comes back.
 *
 * Each side has its own OSSL_LIB_CTX, as the daemon's shards and the load
 * generator do; the same devices (--devices of the PKI, in turn) drive
 * every variant. The variants take turns in rounds, each round in another
 * order, so the machine's noise falls on all of them alike; compare them as
 * ratios. Only the server's calls are timed (thread CPU clock): creating and
 * freeing its connection, feeding it ciphertext, its handshake steps and
 * draining its output (the functions named bench_server_*, for callgrind's
 * --toggle-collect: perf/instructions.sh counts them). Results are key=value
 * lines.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/domain.h"
#include "crypto/attestation.h"
#include "crypto/lean_provider.h"
#include "crypto/pki.h"
#include "dataplane/tls.h"

#define WARMUP_HANDSHAKES 10
#define ROUNDS 10
#define MAX_DEVICES 1000
#define MAX_FLIGHTS 10

enum variant { PLAIN, PLAIN_VERIFY, BARE, BARE_VERIFY, ATTESTED, VARIANTS };

static const char *const VARIANT_NAMES[VARIANTS] = {"plain", "plain_verify", "bare", "bare_verify",
                                                    "attested"};

/* The variants a dataplane/tls.c connection serves, in a shard's kind of library context. */
static bool uses_tls_c(enum variant variant)
{
    return variant == BARE || variant == BARE_VERIFY || variant == ATTESTED;
}

static double thread_cpu_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return (double)now.tv_sec * 1e6 + (double)now.tv_nsec / 1e3;
}

static double wall_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec * 1e6 + (double)now.tv_nsec / 1e3;
}

/* ---- the server side: a plain OpenSSL connection or a tls.c one ---- */

struct server_conn {
    SSL *ssl; /* plain */
    BIO *rbio, *wbio;
    struct tls_conn *tls; /* bare, bare_verify, attested */
};

struct bench {
    OSSL_LIB_CTX *server_libctx[VARIANTS];
    SSL_CTX *server_ctx[VARIANTS];
    struct attestation *attestation;
    struct config config;
    struct config_group group;
    char group_id[40], group_owner[8], chain_file[4096];
    struct attestation_stats stats; /* of the attestation objects renewed so far */
    unsigned devices;
    SSL_CTX **client_ctx; /* one per device, in the client's library context */
    OSSL_LIB_CTX *client_libctx;
    bool attested_ok;
};

static struct bench *the_bench; /* the attested verifier's attestation object */

static int accept_any_chain(void *conn_user, X509 *leaf, STACK_OF(X509) * chain)
{
    (void)conn_user;
    (void)leaf;
    (void)chain;
    return 0;
}

/* What dataplane/shard.c's conn_verify does for a device, the blocklist lookup aside. */
static int attest_chain(void *conn_user, X509 *leaf, STACK_OF(X509) * chain)
{
    struct attestation_result result;
    char reason[160];

    (void)conn_user;
    if (attestation_verify(the_bench->attestation, leaf, chain, time(NULL), &result, reason,
                           sizeof(reason)) != 0) {
        fprintf(stderr, "bench-handshake: attestation refused the device: %s\n", reason);
        return -1;
    }
    char *pem = attestation_leaf_pem(leaf);
    if (pem == NULL)
        return -1;
    free(pem);
    the_bench->attested_ok = true;
    return 0;
}

static int plain_accept_any(X509_STORE_CTX *store, void *arg)
{
    (void)store;
    (void)arg;
    return 1;
}

/* The textbook server context: certificate chain and key files, peer certificate required. */
static SSL_CTX *plain_server_context(OSSL_LIB_CTX *libctx, const char *cert, const char *key,
                                     const char *verify_chain)
{
    SSL_CTX *ctx = SSL_CTX_new_ex(libctx, NULL, TLS_server_method());

    if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        (verify_chain != NULL && SSL_CTX_load_verify_locations(ctx, verify_chain, NULL) != 1)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    if (verify_chain == NULL)
        SSL_CTX_set_cert_verify_callback(ctx, plain_accept_any, NULL);
    return ctx;
}

__attribute__((noinline)) static int bench_server_new(struct bench *bench, enum variant variant,
                                                      struct server_conn *conn)
{
    memset(conn, 0, sizeof(*conn));
    if (uses_tls_c(variant)) {
        conn->tls = tls_conn_new(bench->server_ctx[variant], true, NULL);
        return conn->tls != NULL ? 0 : -1;
    }
    conn->ssl = SSL_new(bench->server_ctx[variant]);
    conn->rbio = BIO_new(BIO_s_mem());
    conn->wbio = BIO_new(BIO_s_mem());
    if (conn->ssl == NULL || conn->rbio == NULL || conn->wbio == NULL) {
        BIO_free(conn->rbio);
        BIO_free(conn->wbio);
        SSL_free(conn->ssl);
        memset(conn, 0, sizeof(*conn));
        return -1;
    }
    BIO_set_mem_eof_return(conn->rbio, -1);
    BIO_set_mem_eof_return(conn->wbio, -1);
    SSL_set_bio(conn->ssl, conn->rbio, conn->wbio);
    SSL_set_accept_state(conn->ssl);
    return 0;
}

__attribute__((noinline)) static void bench_server_free(struct server_conn *conn)
{
    tls_conn_free(conn->tls);
    SSL_free(conn->ssl); /* frees both BIOs */
}

/* TLS_DONE, TLS_AGAIN or TLS_FAILED, as tls_conn_handshake. */
__attribute__((noinline)) static int bench_server_handshake(struct server_conn *conn)
{
    if (conn->tls != NULL)
        return tls_conn_handshake(conn->tls);
    int result = SSL_do_handshake(conn->ssl);
    if (result == 1)
        return TLS_DONE;
    int error = SSL_get_error(conn->ssl, result);
    ERR_clear_error();
    return error == SSL_ERROR_WANT_READ ? TLS_AGAIN : TLS_FAILED;
}

__attribute__((noinline)) static int bench_server_feed(struct server_conn *conn,
                                                       const uint8_t *data, size_t length)
{
    if (conn->tls != NULL)
        return tls_conn_feed(conn->tls, data, length);
    return BIO_write(conn->rbio, data, (int)length) == (int)length ? 0 : -1;
}

/* Copies the server's pending output into out (client-side buffer); its length. */
__attribute__((noinline)) static size_t bench_server_drain(struct server_conn *conn, uint8_t **out,
                                                           size_t *capacity)
{
    const uint8_t *data;
    char *plain_data = NULL;
    size_t length;

    if (conn->tls != NULL) {
        data = tls_conn_output(conn->tls, &length);
        if (data == NULL)
            return 0;
    } else {
        long pending = BIO_get_mem_data(conn->wbio, &plain_data);
        if (pending <= 0)
            return 0;
        data = (const uint8_t *)plain_data;
        length = (size_t)pending;
    }
    if (length > *capacity) {
        uint8_t *grown = realloc(*out, length);
        if (grown == NULL)
            return 0;
        *out = grown;
        *capacity = length;
    }
    memcpy(*out, data, length);
    if (conn->tls != NULL)
        tls_conn_consume_output(conn->tls, length);
    else
        (void)BIO_reset(conn->wbio);
    return length;
}

static const char *server_version(struct server_conn *conn)
{
    return conn->tls != NULL ? tls_conn_version(conn->tls) : SSL_get_version(conn->ssl);
}

static const char *server_cipher(struct server_conn *conn)
{
    return conn->tls != NULL ? tls_conn_cipher(conn->tls) : SSL_get_cipher_name(conn->ssl);
}

/* ---- one handshake ---- */

struct handshake_info {
    char protocol[32];
    char cipher[64];
};

/*
 * One full handshake of device against variant's server. The server's time
 * is added to *server_us, the client's to *client_us (the client is always
 * tls.c with the device's identity).
 */
static int one_handshake(struct bench *bench, enum variant variant, unsigned device,
                         double *server_us, double *client_us, struct handshake_info *info)
{
    static uint8_t *buffer;
    static size_t capacity;
    struct server_conn server;
    double start = thread_cpu_us();
    struct tls_conn *client = tls_conn_new(bench->client_ctx[device], false, NULL);
    int client_result = client != NULL ? tls_conn_handshake(client) : TLS_FAILED;
    double mark = thread_cpu_us();
    *client_us += mark - start;

    int server_result = bench_server_new(bench, variant, &server) == 0 ? TLS_AGAIN : TLS_FAILED;
    double server_end = thread_cpu_us();
    *server_us += server_end - mark;
    int result = -1;

    for (int flight = 0; flight < MAX_FLIGHTS && server_result == TLS_AGAIN; flight++) {
        size_t length;
        const uint8_t *data = client != NULL ? tls_conn_output(client, &length) : NULL;
        if (data == NULL)
            break;
        /* The client's flight lands on the server: what a socket read would deliver. */
        if (length > capacity) {
            uint8_t *grown = realloc(buffer, length);
            if (grown == NULL)
                break;
            buffer = grown;
            capacity = length;
        }
        memcpy(buffer, data, length);
        tls_conn_consume_output(client, length);
        mark = thread_cpu_us();
        *client_us += mark - server_end;
        if (bench_server_feed(&server, buffer, length) != 0) {
            server_result = TLS_FAILED;
            break;
        }
        server_result = bench_server_handshake(&server);
        length = bench_server_drain(&server, &buffer, &capacity);
        server_end = thread_cpu_us();
        *server_us += server_end - mark;
        if (length > 0 && tls_conn_feed(client, buffer, length) != 0)
            break;
        if (client_result == TLS_AGAIN)
            client_result = tls_conn_handshake(client);
        double client_end = thread_cpu_us();
        *client_us += client_end - server_end;
        server_end = client_end;
    }
    if (server_result == TLS_DONE && client_result == TLS_DONE) {
        snprintf(info->protocol, sizeof(info->protocol), "%s", server_version(&server));
        snprintf(info->cipher, sizeof(info->cipher), "%s", server_cipher(&server));
        result = 0;
    } else {
        fprintf(stderr, "bench-handshake: %s handshake failed: server %s, client %s\n",
                VARIANT_NAMES[variant],
                server.tls != NULL ? tls_conn_error(server.tls) : "(see above)",
                client != NULL ? tls_conn_error(client) : "no connection");
    }
    mark = thread_cpu_us();
    bench_server_free(&server);
    server_end = thread_cpu_us();
    *server_us += server_end - mark;
    tls_conn_free(client);
    *client_us += thread_cpu_us() - server_end;
    return result;
}

/* ---- set-up ---- */

static void usage(FILE *out)
{
    fprintf(out, "usage: bench-handshake --pki DIR [--count N] [--devices N] "
                 "[--variants plain,plain_verify,bare,bare_verify,attested]\n");
}

/* "bare,attested" into wanted[]; -1 on an unknown name or an empty list. */
static int parse_variants(const char *list, bool wanted[VARIANTS])
{
    bool any = false;

    for (int v = 0; v < VARIANTS; v++)
        wanted[v] = false;
    while (*list != '\0') {
        size_t length = strcspn(list, ",");
        int found = -1;
        for (int v = 0; v < VARIANTS; v++)
            if (strlen(VARIANT_NAMES[v]) == length && strncmp(list, VARIANT_NAMES[v], length) == 0)
                found = v;
        if (found < 0)
            return -1;
        wanted[found] = true;
        any = true;
        list += length;
        if (*list == ',')
            list++;
    }
    return any ? 0 : -1;
}

static void bench_free(struct bench *bench)
{
    attestation_free(bench->attestation);
    bench->attestation = NULL;
    for (int v = 0; v < VARIANTS; v++) {
        SSL_CTX_free(bench->server_ctx[v]);
        if (uses_tls_c((enum variant)v))
            lean_libctx_free(bench->server_libctx[v]);
        else
            OSSL_LIB_CTX_free(bench->server_libctx[v]);
    }
    for (unsigned d = 0; bench->client_ctx != NULL && d < bench->devices; d++)
        SSL_CTX_free(bench->client_ctx[d]);
    free(bench->client_ctx);
    OSSL_LIB_CTX_free(bench->client_libctx);
}

/* A fresh attestation object: its verified-leaf cache is empty. */
static int renew_attestation(struct bench *bench)
{
    char err[512];

    if (bench->attestation != NULL) {
        struct attestation_stats stats;
        attestation_get_stats(bench->attestation, &stats);
        bench->stats.verifications += stats.verifications;
        bench->stats.cache_hits += stats.cache_hits;
    }
    attestation_free(bench->attestation);
    bench->attestation =
        attestation_create(bench->server_libctx[ATTESTED], &bench->config, err, sizeof(err));
    if (bench->attestation == NULL) {
        fprintf(stderr, "bench-handshake: %s\n", err);
        return -1;
    }
    return 0;
}

static int bench_setup(struct bench *bench, const char *pki_dir)
{
    char err[512], server_cert[4096], server_key[4096], ca[4096];
    char *chain = bench->chain_file;

    snprintf(server_cert, sizeof(server_cert), "%s/dps-server.pem", pki_dir);
    snprintf(server_key, sizeof(server_key), "%s/dps-server.key", pki_dir);
    snprintf(ca, sizeof(ca), "%s/dps-root.pem", pki_dir);
    snprintf(chain, sizeof(bench->chain_file), "%s/mfg-chain.pem", pki_dir);

    /* tls.c's contexts are made as the daemon's shards make theirs (lean_provider.h). */
    for (int v = 0; v < VARIANTS; v++) {
        bench->server_libctx[v] =
            uses_tls_c((enum variant)v) ? lean_libctx_new(err, sizeof(err)) : OSSL_LIB_CTX_new();
        if (bench->server_libctx[v] == NULL) {
            fprintf(stderr, "bench-handshake: cannot create library contexts\n");
            return -1;
        }
    }
    bench->client_libctx = OSSL_LIB_CTX_new();
    if (bench->client_libctx == NULL)
        return -1;
    bench->server_ctx[PLAIN] =
        plain_server_context(bench->server_libctx[PLAIN], server_cert, server_key, NULL);
    bench->server_ctx[PLAIN_VERIFY] =
        plain_server_context(bench->server_libctx[PLAIN_VERIFY], server_cert, server_key, chain);
    if (bench->server_ctx[PLAIN] == NULL || bench->server_ctx[PLAIN_VERIFY] == NULL) {
        ERR_print_errors_fp(stderr);
        fprintf(stderr, "bench-handshake: cannot build the plain OpenSSL server contexts\n");
        return -1;
    }
    bench->server_ctx[BARE] = tls_server_context(bench->server_libctx[BARE], server_cert,
                                                 server_key, accept_any_chain, err, sizeof(err));
    if (bench->server_ctx[BARE] != NULL)
        bench->server_ctx[BARE_VERIFY] =
            tls_server_context(bench->server_libctx[BARE_VERIFY], server_cert, server_key,
                               accept_any_chain, err, sizeof(err));
    if (bench->server_ctx[BARE_VERIFY] != NULL)
        bench->server_ctx[ATTESTED] =
            tls_server_context(bench->server_libctx[ATTESTED], server_cert, server_key,
                               attest_chain, err, sizeof(err));
    if (bench->server_ctx[ATTESTED] == NULL) {
        fprintf(stderr, "bench-handshake: %s\n", err);
        return -1;
    }
    /*
     * Without tls.c's certificate verify callback libssl runs X509_verify_cert itself, against
     * the context's store (tls.c's verifier, left in the context's app data, is never called).
     */
    SSL_CTX_set_cert_verify_callback(bench->server_ctx[BARE_VERIFY], NULL, NULL);
    if (SSL_CTX_load_verify_locations(bench->server_ctx[BARE_VERIFY], chain, NULL) != 1) {
        ERR_print_errors_fp(stderr);
        fprintf(stderr, "bench-handshake: cannot load %s into the bare_verify store\n", chain);
        return -1;
    }

    snprintf(bench->group_id, sizeof(bench->group_id), "00000000-0000-4000-8000-00000000be4c");
    snprintf(bench->group_owner, sizeof(bench->group_owner), "bench");
    bench->group.id = bench->group_id;
    bench->group.owner = bench->group_owner;
    bench->group.ca_chain_file = chain;
    bench->config.groups = &bench->group;
    bench->config.group_count = 1;
    if (renew_attestation(bench) != 0)
        return -1;

    bench->client_ctx = calloc(bench->devices, sizeof(*bench->client_ctx));
    if (bench->client_ctx == NULL)
        return -1;
    for (unsigned d = 0; d < bench->devices; d++) {
        char device_cert[4096], device_key[4096];
        pki_device_path(pki_dir, d + 1, ".pem", device_cert, sizeof(device_cert));
        pki_device_path(pki_dir, d + 1, ".key", device_key, sizeof(device_key));
        bench->client_ctx[d] =
            tls_client_context(bench->client_libctx, device_cert, device_key, ca, err, sizeof(err));
        if (bench->client_ctx[d] == NULL) {
            fprintf(stderr, "bench-handshake: %s\n", err);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"pki", required_argument, NULL, 'p'},     {"count", required_argument, NULL, 'n'},
        {"devices", required_argument, NULL, 'd'}, {"variants", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    const char *pki_dir = NULL;
    long count = 500, devices = 50;
    bool wanted[VARIANTS] = {true, true, true, true, true};
    char *end;
    int option;
    char err[512];

    while ((option = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (option) {
        case 'p':
            pki_dir = optarg;
            break;
        case 'n':
            count = strtol(optarg, &end, 10);
            if (end == optarg || *end != '\0')
                count = 0; /* "10x" is not 10: refused below */
            break;
        case 'd':
            devices = strtol(optarg, &end, 10);
            if (end == optarg || *end != '\0' || devices > MAX_DEVICES)
                devices = 0;
            break;
        case 'v':
            if (parse_variants(optarg, wanted) != 0) {
                usage(stderr);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (pki_dir == NULL || count <= 0 || devices <= 0 || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (pki_generate(pki_dir, (unsigned)devices, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench-handshake: %s\n", err);
        return 1;
    }

    struct bench bench;
    memset(&bench, 0, sizeof(bench));
    bench.devices = (unsigned)devices;
    the_bench = &bench;
    int status = 1;
    if (bench_setup(&bench, pki_dir) != 0)
        goto done;

    double server_us[VARIANTS] = {0}, client_us[VARIANTS] = {0}, warm_server = 0, warm_client = 0;
    long done_count[VARIANTS] = {0};
    struct handshake_info info[VARIANTS];
    memset(info, 0, sizeof(info));
    unsigned device = 0;

    for (int v = 0; v < VARIANTS; v++)
        for (int i = 0; wanted[v] && i < WARMUP_HANDSHAKES; i++)
            if (one_handshake(&bench, (enum variant)v, (unsigned)i % bench.devices, &warm_server,
                              &warm_client, &info[v]) != 0)
                goto done;
    if (wanted[ATTESTED] && !bench.attested_ok)
        goto done;

    /*
     * The devices come in turn, the same for every variant. The attested
     * variant's object is renewed (outside the clock) once every device went
     * through it, so no handshake finds its leaf in the verified-leaf cache,
     * and otherwise kept, as a shard keeps its own.
     */
    if (wanted[ATTESTED] && renew_attestation(&bench) != 0) /* the warm-up's leaves are cached */
        goto done;
    unsigned attested_since_renewal = 0;
    double started = wall_us();
    for (int round = 0; round < ROUNDS; round++) {
        long share = count / ROUNDS + (round < count % ROUNDS ? 1 : 0);
        for (int k = 0; k < VARIANTS; k++) {
            enum variant v = (enum variant)((round + k) % VARIANTS);
            if (!wanted[v])
                continue;
            for (long i = 0; i < share; i++) {
                unsigned d = (device + (unsigned)i) % bench.devices;
                if (v == ATTESTED && attested_since_renewal == bench.devices) {
                    if (renew_attestation(&bench) != 0)
                        goto done;
                    attested_since_renewal = 0;
                }
                if (one_handshake(&bench, v, d, &server_us[v], &client_us[v], &info[v]) != 0)
                    goto done;
                done_count[v]++;
                attested_since_renewal += v == ATTESTED;
            }
        }
        device = (device + (unsigned)share) % bench.devices;
    }
    double elapsed = wall_us() - started;

    if (renew_attestation(&bench) != 0) /* adds the last object's figures */
        goto done;
    double per[VARIANTS];
    for (int v = 0; v < VARIANTS; v++)
        per[v] = done_count[v] > 0 ? server_us[v] / (double)done_count[v] : 0;

    printf(
        "# in-process mutual TLS 1.2 handshakes over memory BIOs, one thread, each side in its "
        "own OSSL_LIB_CTX; server CPU per handshake of each variant, taking turns in %d rounds\n",
        ROUNDS);
    printf("# plain: a plain OpenSSL server loop, accepting any chain; plain_verify: the same, "
           "OpenSSL verifying the chain against mfg-chain.pem\n");
    printf("# bare: dataplane/tls.c, accepting any chain; bare_verify: the same, libssl verifying "
           "the chain against mfg-chain.pem; attested: dataplane/tls.c with the daemon's "
           "attestation (no verified-leaf cache hit)\n");
    printf("openssl_version=%s\n", OpenSSL_version(OPENSSL_VERSION_STRING));
    printf("handshakes=%ld\n", count);
    printf("devices=%ld\n", devices);
    int shown = -1; /* the first variant run: its protocol and cipher are the line's */
    for (int v = VARIANTS - 1; v >= 0; v--)
        if (wanted[v])
            shown = v;
    printf("tls_version=%s\n", info[shown].protocol);
    printf("tls_cipher=%s\n", info[shown].cipher);
    for (int v = 0; v < VARIANTS; v++)
        if (wanted[v] && strcmp(info[v].cipher, info[shown].cipher) != 0)
            printf("tls_cipher_%s=%s\n", VARIANT_NAMES[v], info[v].cipher);
    for (int v = 0; v < VARIANTS; v++)
        if (wanted[v])
            printf("%s_mtls_handshake_server_cpu_us=%.0f\n", VARIANT_NAMES[v], per[v]);
    if (wanted[BARE])
        printf("bare_mtls_handshake_client_cpu_us=%.0f\n", client_us[BARE] / (double)count);
    if (wanted[BARE] && wanted[PLAIN])
        printf("ratio_bare_to_plain=%.3f\n", per[BARE] / per[PLAIN]);
    if (wanted[ATTESTED] && wanted[BARE])
        printf("ratio_attested_to_bare=%.3f\n", per[ATTESTED] / per[BARE]);
    if (wanted[ATTESTED] && wanted[PLAIN_VERIFY])
        printf("ratio_attested_to_plain_verify=%.3f\n", per[ATTESTED] / per[PLAIN_VERIFY]);
    if (wanted[BARE_VERIFY] && wanted[BARE])
        printf("ratio_bare_verify_to_bare=%.3f\n", per[BARE_VERIFY] / per[BARE]);
    if (wanted[ATTESTED] && wanted[BARE_VERIFY])
        printf("ratio_attested_to_bare_verify=%.3f\n", per[ATTESTED] / per[BARE_VERIFY]);
    printf("attestation_cache_hits=%llu\n", (unsigned long long)bench.stats.cache_hits);
    int variant_count = 0;
    for (int v = 0; v < VARIANTS; v++)
        variant_count += wanted[v];
    printf("wall_us_per_handshake=%.0f\n", elapsed / (double)(count * variant_count));
    status = 0;
done:
    bench_free(&bench);
    return status;
}
