/*
 * tls: OpenSSL driven through a pair of memory BIOs per connection.
 *
 * The event loop feeds ciphertext into the read BIO and drains the write
 * BIO; OpenSSL never touches a socket. Contexts are built once (per shard,
 * inside the shard's OSSL_LIB_CTX) with the device client's protocol profile
 * from PROTOCOL.md section 1. Client certificates are checked by a
 * caller-supplied verifier that replaces X509_verify_cert entirely, so the
 * attestation code decides which chains are trusted.
 *
 * OpenSSL reports failures through a per-thread error queue. Every failure
 * is copied into the connection as a short text and the queue is cleared, so
 * one connection's errors never surface in another's SSL_get_error().
 */
#include "dataplane/tls.h"

#include "common/file.h"
#include "crypto/keyfile.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"       \
    "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"
#define TLS_GROUPS "P-256:P-384"
#define TLS_MAX_PLAINTEXT_RECORD 8192

/* The verifier travels in the SSL_CTX's app data (a void *), as POSIX allows. */
_Static_assert(sizeof(tls_verify_fn) == sizeof(void *), "function pointers fit in void *");

struct tls_conn {
    SSL *ssl;
    BIO *rbio;              /* ciphertext from the network, read by OpenSSL */
    BIO *wbio;              /* ciphertext for the network, written by OpenSSL */
    size_t output_consumed; /* bytes of wbio already handed to the socket layer */
    void *user;
    tls_verify_fn verify;
    bool verify_rejected;
    char error[160];
};

/* Copies the first queued OpenSSL error into err (or fallback) and empties the queue. */
static void take_error(char *err, size_t err_length, const char *fallback)
{
    unsigned long code = ERR_peek_error();

    if (err != NULL && err_length > 0) {
        if (code != 0)
            ERR_error_string_n(code, err, err_length);
        else
            snprintf(err, err_length, "%s", fallback);
    }
    ERR_clear_error();
}

/*
 * Empties the thread's error queue before an SSL call whose SSL_get_error() reads it. The queue
 * is empty nearly always: one look then, where ERR_clear_error() walks its 16 slots each time.
 */
static void clear_errors(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

static void conn_fail(struct tls_conn *conn, const char *fallback)
{
    if (conn->verify_rejected) {
        snprintf(conn->error, sizeof(conn->error), "peer certificate rejected by verifier");
        clear_errors();
        return;
    }
    take_error(conn->error, sizeof(conn->error), fallback);
}

/*
 * Replaces OpenSSL's chain verification on the server. The untrusted stack
 * OpenSSL builds holds the whole peer chain, leaf first; the verifier is
 * given the leaf and only the extra certificates, as tls.h promises.
 */
static int server_verify_callback(X509_STORE_CTX *store, void *arg)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct tls_conn *conn = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
    X509 *leaf = X509_STORE_CTX_get0_cert(store);
    STACK_OF(X509) *untrusted = X509_STORE_CTX_get0_untrusted(store);
    STACK_OF(X509) *extra = NULL;
    int accepted;

    (void)arg;
    if (conn == NULL || conn->verify == NULL || leaf == NULL) {
        X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
        return 0;
    }
    extra = sk_X509_new_null();
    if (extra == NULL) {
        X509_STORE_CTX_set_error(store, X509_V_ERR_OUT_OF_MEM);
        return 0;
    }
    for (int i = 0; i < sk_X509_num(untrusted); i++) {
        X509 *cert = sk_X509_value(untrusted, i);
        if (cert == leaf)
            continue;
        if (!sk_X509_push(extra, cert)) {
            sk_X509_free(extra);
            X509_STORE_CTX_set_error(store, X509_V_ERR_OUT_OF_MEM);
            return 0;
        }
    }
    accepted = conn->verify(conn->user, leaf, extra) == 0;
    sk_X509_free(extra);
    if (!accepted) {
        conn->verify_rejected = true;
        X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
        return 0;
    }
    return 1;
}

/* Settings shared by both sides: the device client's suites and groups, no resumption. */
static int apply_common(SSL_CTX *ctx)
{
    if (!SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS))
        return -1;
    if (!SSL_CTX_set1_groups_list(ctx, TLS_GROUPS))
        return -1;
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
    if (!SSL_CTX_set_max_send_fragment(ctx, TLS_MAX_PLAINTEXT_RECORD))
        return -1;
    return 0;
}

#define TLS_FILE_LIMIT (1024 * 1024)

SSL_CTX *tls_server_context(OSSL_LIB_CTX *libctx, const char *cert_file, const char *key_file,
                            tls_verify_fn verify, char *err, size_t err_length)
{
    char reason[300];
    char *cert_pem = NULL, *key_pem = NULL;
    SSL_CTX *ctx = NULL;

    if (keyfile_check_loaded(key_file, err, err_length) != 0)
        return NULL;
    cert_pem = file_read_text(cert_file, TLS_FILE_LIMIT, NULL, reason, sizeof(reason));
    if (cert_pem != NULL)
        key_pem = file_read_text(key_file, TLS_FILE_LIMIT, NULL, reason, sizeof(reason));
    if (key_pem == NULL)
        snprintf(err, err_length, "tls server context: %s", reason);
    else
        ctx = tls_server_context_pem(libctx, cert_pem, key_pem, verify, err, err_length);
    free(cert_pem);
    file_free_secret(key_pem);
    return ctx;
}

/* The first certificate becomes the context's, the others its chain. 1 on success. */
static int use_certificate_chain_pem(SSL_CTX *ctx, OSSL_LIB_CTX *libctx, const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    int ok = 0;

    for (int index = 0; bio != NULL; index++) {
        X509 *cert = X509_new_ex(libctx, NULL);
        if (cert == NULL || PEM_read_bio_X509(bio, &cert, NULL, NULL) == NULL) {
            X509_free(cert);
            unsigned long error = ERR_peek_last_error();
            /* The end of the text after at least one certificate is the normal end. */
            if (index > 0 && ERR_GET_REASON(error) == PEM_R_NO_START_LINE) {
                clear_errors();
                ok = 1;
            }
            break;
        }
        if (index == 0 ? SSL_CTX_use_certificate(ctx, cert) != 1
                       : SSL_CTX_add0_chain_cert(ctx, cert) != 1) {
            X509_free(cert);
            break;
        }
        if (index == 0)
            X509_free(cert);
    }
    BIO_free(bio);
    return ok;
}

/* A daemon has no terminal to ask for a passphrase: an encrypted key fails to load. */
static int no_passphrase(char *buffer, int size, int rwflag, void *user)
{
    (void)buffer;
    (void)size;
    (void)rwflag;
    (void)user;
    return -1;
}

static EVP_PKEY *private_key_pem(OSSL_LIB_CTX *libctx, const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *key = NULL;

    if (bio != NULL)
        key = PEM_read_bio_PrivateKey_ex(bio, NULL, no_passphrase, NULL, libctx, NULL);
    BIO_free(bio);
    return key;
}

SSL_CTX *tls_server_context_pem(OSSL_LIB_CTX *libctx, const char *cert_pem, const char *key_pem,
                                tls_verify_fn verify, char *err, size_t err_length)
{
    SSL_CTX *ctx = SSL_CTX_new_ex(libctx, NULL, TLS_server_method());
    const char *step = "SSL_CTX_new_ex";
    EVP_PKEY *key = NULL;

    if (ctx == NULL)
        goto fail;
    step = "protocol settings";
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) || apply_common(ctx) != 0)
        goto fail;
    /* TLS 1.3 would otherwise send session tickets even with SSL_OP_NO_TICKET. */
    if (!SSL_CTX_set_num_tickets(ctx, 0))
        goto fail;
    step = "certificate chain";
    if (use_certificate_chain_pem(ctx, libctx, cert_pem) != 1)
        goto fail;
    step = "private key";
    key = private_key_pem(libctx, key_pem);
    if (key == NULL || SSL_CTX_use_PrivateKey(ctx, key) != 1)
        goto fail;
    EVP_PKEY_free(key);
    key = NULL;
    step = "key does not match certificate";
    if (SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, server_verify_callback, NULL);
    /* The verifier is per context; connections pick it up in tls_conn_new(). */
    void *stored;
    memcpy(&stored, &verify, sizeof(stored));
    if (!SSL_CTX_set_app_data(ctx, stored))
        goto fail;
    clear_errors();
    return ctx;
fail:
    if (err != NULL && err_length > 0) {
        char reason[160];
        take_error(reason, sizeof(reason), "unknown error");
        snprintf(err, err_length, "tls server context: %s: %s", step, reason);
    } else {
        clear_errors();
    }
    EVP_PKEY_free(key);
    SSL_CTX_free(ctx);
    return NULL;
}

/* Client side: the device's profile, TLS 1.2 only, no SNI (set per connection: none). */
static SSL_CTX *client_context_base(OSSL_LIB_CTX *libctx, const char *ca_file, const char **step)
{
    SSL_CTX *ctx = SSL_CTX_new_ex(libctx, NULL, TLS_client_method());

    *step = "SSL_CTX_new_ex";
    if (ctx == NULL)
        return NULL;
    *step = "protocol settings";
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) || apply_common(ctx) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (ca_file != NULL) {
        *step = "CA file";
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
}

static void client_context_error(const char *step, char *err, size_t err_length)
{
    char reason[160];

    take_error(reason, sizeof(reason), "unknown error");
    if (err != NULL && err_length > 0)
        snprintf(err, err_length, "tls client context: %s: %s", step, reason);
}

SSL_CTX *tls_client_context(OSSL_LIB_CTX *libctx, const char *cert_file, const char *key_file,
                            const char *ca_file, char *err, size_t err_length)
{
    const char *step;
    SSL_CTX *ctx = client_context_base(libctx, ca_file, &step);

    if (ctx == NULL)
        goto fail;
    step = "certificate chain";
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
        goto fail;
    step = "private key";
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
        goto fail;
    step = "key does not match certificate";
    if (SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    clear_errors();
    return ctx;
fail:
    client_context_error(step, err, err_length);
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *tls_client_context_mem(OSSL_LIB_CTX *libctx, X509 *cert, STACK_OF(X509) * chain,
                                EVP_PKEY *key, const char *ca_file, char *err, size_t err_length)
{
    const char *step;
    SSL_CTX *ctx = client_context_base(libctx, ca_file, &step);

    if (ctx == NULL)
        goto fail;
    step = "certificate";
    if (SSL_CTX_use_certificate(ctx, cert) != 1)
        goto fail;
    step = "certificate chain";
    if (chain != NULL && SSL_CTX_set1_chain(ctx, chain) != 1)
        goto fail;
    step = "private key";
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1)
        goto fail;
    step = "key does not match certificate";
    if (SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    clear_errors();
    return ctx;
fail:
    client_context_error(step, err, err_length);
    SSL_CTX_free(ctx);
    return NULL;
}

struct tls_conn *tls_conn_new(SSL_CTX *ctx, bool server, void *conn_user)
{
    struct tls_conn *conn = calloc(1, sizeof(*conn));

    if (conn == NULL)
        return NULL;
    conn->user = conn_user;
    if (server) {
        void *stored = SSL_CTX_get_app_data(ctx);
        memcpy(&conn->verify, &stored, sizeof(stored));
    }
    conn->ssl = SSL_new(ctx);
    conn->rbio = BIO_new(BIO_s_mem());
    conn->wbio = BIO_new(BIO_s_mem());
    if (conn->ssl == NULL || conn->rbio == NULL || conn->wbio == NULL) {
        BIO_free(conn->rbio);
        BIO_free(conn->wbio);
        SSL_free(conn->ssl);
        free(conn);
        clear_errors();
        return NULL;
    }
    /* An empty read BIO means "retry later", never end of file. */
    BIO_set_mem_eof_return(conn->rbio, -1);
    BIO_set_mem_eof_return(conn->wbio, -1);
    SSL_set_bio(conn->ssl, conn->rbio, conn->wbio);
    SSL_set_app_data(conn->ssl, conn);
    if (server)
        SSL_set_accept_state(conn->ssl);
    else
        SSL_set_connect_state(conn->ssl);
    return conn;
}

void tls_conn_free(struct tls_conn *conn)
{
    if (conn == NULL)
        return;
    SSL_free(conn->ssl); /* frees both BIOs */
    free(conn);
}

int tls_conn_feed(struct tls_conn *conn, const uint8_t *data, size_t length)
{
    while (length > 0) {
        int chunk = length > INT_MAX ? INT_MAX : (int)length;
        int written = BIO_write(conn->rbio, data, chunk);
        if (written <= 0) {
            take_error(conn->error, sizeof(conn->error), "out of memory");
            return -1;
        }
        data += written;
        length -= (size_t)written;
    }
    return 0;
}

size_t tls_conn_input_buffered(const struct tls_conn *conn)
{
    return BIO_ctrl_pending(conn->rbio) + (size_t)SSL_pending(conn->ssl);
}

/* Maps a non-positive SSL_* return to a tls_status, recording failures. */
static int map_ssl_result(struct tls_conn *conn, int result, const char *what)
{
    switch (SSL_get_error(conn->ssl, result)) {
    case SSL_ERROR_WANT_READ:
        return TLS_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        clear_errors();
        return TLS_CLOSED;
    default:
        conn_fail(conn, what);
        return TLS_FAILED;
    }
}

int tls_conn_handshake(struct tls_conn *conn)
{
    clear_errors();
    int result = SSL_do_handshake(conn->ssl);
    if (result == 1)
        return TLS_DONE;
    result = map_ssl_result(conn, result, "handshake failed");
    return result == TLS_CLOSED ? TLS_FAILED : result;
}

int tls_conn_read(struct tls_conn *conn, uint8_t *buffer, size_t capacity)
{
    int chunk = capacity > INT_MAX ? INT_MAX : (int)capacity;

    if (chunk == 0)
        return TLS_AGAIN;
    clear_errors();
    int result = SSL_read(conn->ssl, buffer, chunk);
    if (result > 0)
        return result;
    return map_ssl_result(conn, result, "read failed");
}

int tls_conn_write(struct tls_conn *conn, const uint8_t *data, size_t length)
{
    while (length > 0) {
        size_t written = 0;
        clear_errors();
        if (SSL_write_ex(conn->ssl, data, length, &written) != 1) {
            conn_fail(conn, "write failed");
            return TLS_FAILED;
        }
        data += written;
        length -= written;
    }
    return 0;
}

void tls_conn_shutdown(struct tls_conn *conn)
{
    clear_errors();
    if (SSL_is_init_finished(conn->ssl))
        SSL_shutdown(conn->ssl);
    clear_errors();
}

const uint8_t *tls_conn_output(struct tls_conn *conn, size_t *length)
{
    char *data = NULL;
    long total = BIO_get_mem_data(conn->wbio, &data);

    if (total <= 0 || (size_t)total <= conn->output_consumed) {
        *length = 0;
        return NULL;
    }
    *length = (size_t)total - conn->output_consumed;
    return (const uint8_t *)data + conn->output_consumed;
}

/*
 * Partial sends only move an offset; once everything was sent the BIO is
 * reset, which keeps its buffer for the next flight instead of shifting bytes.
 */
void tls_conn_consume_output(struct tls_conn *conn, size_t length)
{
    size_t total = (size_t)BIO_ctrl_pending(conn->wbio);

    conn->output_consumed += length;
    if (conn->output_consumed >= total) {
        (void)BIO_reset(conn->wbio);
        conn->output_consumed = 0;
    }
}

const char *tls_conn_error(const struct tls_conn *conn)
{
    return conn->error[0] != '\0' ? conn->error : "no error";
}

const char *tls_conn_version(const struct tls_conn *conn)
{
    return SSL_get_version(conn->ssl);
}

const char *tls_conn_cipher(const struct tls_conn *conn)
{
    const char *name = SSL_get_cipher_name(conn->ssl);
    return name != NULL ? name : "(none)";
}
