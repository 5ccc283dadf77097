/*
 * bench-handshake: CPU cost of a bare mutual-TLS 1.2 handshake, in process.
 *
 * A server context (dps-server.pem) and a client context presenting
 * devices/device-0001.pem, each in its own OSSL_LIB_CTX as the daemon's
 * shards and the load generator use them, handshake over memory BIOs in one
 * thread. The server's verifier accepts every chain without looking at it,
 * so what is measured is OpenSSL's own handshake processing, the floor under
 * any attestation cost. Each side's calls are timed with the thread CPU
 * clock; results are key=value lines.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "crypto/pki.h"
#include "dataplane/tls.h"

#define WARMUP_HANDSHAKES 10

static int accept_any_chain(void *conn_user, X509 *leaf, STACK_OF(X509) * chain)
{
    return 0;
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

/* Hands one side's pending ciphertext to the other side. */
static int transfer(struct tls_conn *from, struct tls_conn *to)
{
    size_t length;
    const uint8_t *data = tls_conn_output(from, &length);

    if (data == NULL)
        return 0;
    if (tls_conn_feed(to, data, length) != 0)
        return -1;
    tls_conn_consume_output(from, length);
    return 1;
}

struct side_times {
    double server_us;
    double client_us;
};

/*
 * One full handshake. Creating and freeing a connection counts for its side,
 * as does feeding it ciphertext and draining its output: everything the
 * daemon would do per connection apart from socket I/O.
 */
static int one_handshake(SSL_CTX *server_ctx, SSL_CTX *client_ctx, struct side_times *times,
                         char *protocol, size_t protocol_length, char *cipher, size_t cipher_length)
{
    double start = thread_cpu_us();
    struct tls_conn *client = tls_conn_new(client_ctx, false, NULL);
    int client_result = client != NULL ? tls_conn_handshake(client) : TLS_FAILED;
    double mark = thread_cpu_us();
    times->client_us += mark - start;

    struct tls_conn *server = tls_conn_new(server_ctx, true, NULL);
    times->server_us += thread_cpu_us() - mark;
    int server_result = server != NULL ? TLS_AGAIN : TLS_FAILED;
    int result = -1;

    for (int round = 0; round < 10 && server_result == TLS_AGAIN; round++) {
        mark = thread_cpu_us();
        if (transfer(client, server) < 0) /* the client's flight lands on the server */
            break;
        server_result = tls_conn_handshake(server);
        double server_end = thread_cpu_us();
        times->server_us += server_end - mark;
        if (transfer(server, client) < 0)
            break;
        if (client_result == TLS_AGAIN)
            client_result = tls_conn_handshake(client);
        times->client_us += thread_cpu_us() - server_end;
    }
    if (server_result == TLS_DONE && client_result == TLS_DONE) {
        snprintf(protocol, protocol_length, "%s", tls_conn_version(server));
        snprintf(cipher, cipher_length, "%s", tls_conn_cipher(server));
        result = 0;
    } else {
        fprintf(stderr, "bench-handshake: handshake failed: server %s, client %s\n",
                server != NULL ? tls_conn_error(server) : "no connection",
                client != NULL ? tls_conn_error(client) : "no connection");
    }
    mark = thread_cpu_us();
    tls_conn_free(server);
    double server_end = thread_cpu_us();
    times->server_us += server_end - mark;
    tls_conn_free(client);
    times->client_us += thread_cpu_us() - server_end;
    return result;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: bench-handshake --pki DIR [--count N]\n");
}

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"pki", required_argument, NULL, 'p'},
        {"count", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *pki_dir = NULL;
    long count = 500;
    char *end;
    int option;
    char err[512], server_cert[4096], server_key[4096], device_cert[4096], device_key[4096],
        ca[4096];

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
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (pki_dir == NULL || count <= 0 || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (pki_generate(pki_dir, 1, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench-handshake: %s\n", err);
        return 1;
    }
    snprintf(server_cert, sizeof(server_cert), "%s/dps-server.pem", pki_dir);
    snprintf(server_key, sizeof(server_key), "%s/dps-server.key", pki_dir);
    snprintf(ca, sizeof(ca), "%s/dps-root.pem", pki_dir);
    pki_device_path(pki_dir, 1, ".pem", device_cert, sizeof(device_cert));
    pki_device_path(pki_dir, 1, ".key", device_key, sizeof(device_key));

    OSSL_LIB_CTX *server_libctx = OSSL_LIB_CTX_new();
    OSSL_LIB_CTX *client_libctx = OSSL_LIB_CTX_new();
    SSL_CTX *server_ctx = NULL, *client_ctx = NULL;
    int status = 1;

    if (server_libctx == NULL || client_libctx == NULL) {
        fprintf(stderr, "bench-handshake: cannot create library contexts\n");
        goto done;
    }
    server_ctx = tls_server_context(server_libctx, server_cert, server_key, accept_any_chain, err,
                                    sizeof(err));
    if (server_ctx == NULL) {
        fprintf(stderr, "bench-handshake: %s\n", err);
        goto done;
    }
    client_ctx = tls_client_context(client_libctx, device_cert, device_key, ca, err, sizeof(err));
    if (client_ctx == NULL) {
        fprintf(stderr, "bench-handshake: %s\n", err);
        goto done;
    }

    struct side_times warmup = {0, 0}, times = {0, 0};
    char protocol[32] = "", cipher[64] = "";
    for (int i = 0; i < WARMUP_HANDSHAKES; i++)
        if (one_handshake(server_ctx, client_ctx, &warmup, protocol, sizeof(protocol), cipher,
                          sizeof(cipher)) != 0)
            goto done;
    double started = wall_us();
    for (long i = 0; i < count; i++)
        if (one_handshake(server_ctx, client_ctx, &times, protocol, sizeof(protocol), cipher,
                          sizeof(cipher)) != 0)
            goto done;
    double elapsed = wall_us() - started;

    printf("# in-process mutual TLS handshakes over memory BIOs, one thread, each side in its own "
           "OSSL_LIB_CTX\n");
    printf("# the server's verifier accepts every chain (returns 0): OpenSSL's own handshake "
           "processing only, no attestation\n");
    printf("openssl_version=%s\n", OpenSSL_version(OPENSSL_VERSION_STRING));
    printf("handshakes=%ld\n", count);
    printf("tls_version=%s\n", protocol);
    printf("tls_cipher=%s\n", cipher);
    printf("bare_mtls_handshake_server_cpu_us=%.0f\n", times.server_us / (double)count);
    printf("bare_mtls_handshake_client_cpu_us=%.0f\n", times.client_us / (double)count);
    printf("wall_us_per_handshake=%.0f\n", elapsed / (double)count);
    status = 0;
done:
    SSL_CTX_free(server_ctx);
    SSL_CTX_free(client_ctx);
    OSSL_LIB_CTX_free(server_libctx);
    OSSL_LIB_CTX_free(client_libctx);
    return status;
}
