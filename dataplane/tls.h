/*
 * tls: OpenSSL over memory BIOs, so the event loop owns every byte of I/O.
 *
 * The same layer serves the daemon (server contexts, one per shard, each in
 * the shard's own OSSL_LIB_CTX) and the load generator (client contexts).
 * Ciphertext from the socket goes in with tls_conn_feed(); ciphertext to send
 * comes out of tls_conn_output(). Plaintext goes through tls_conn_read() and
 * tls_conn_write().
 *
 * Server contexts follow PROTOCOL.md section 1: TLS 1.2 (1.3 allowed for
 * other clients), the device client's ECDHE-ECDSA suites, groups P-256 and
 * P-384, no tickets, no session cache, client certificate required and
 * checked by a caller-supplied verifier (attestation), records of at most
 * 8192 bytes of plaintext, SSL_MODE_RELEASE_BUFFERS and
 * SSL_MODE_NO_AUTO_CHAIN (the chain is loaded once at start).
 */
#ifndef DPS_TLS_H
#define DPS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>
#include <openssl/x509.h> /* declares STACK_OF(X509) before the prototypes use it */

/*
 * Called during the handshake with the peer's leaf and the extra certificates
 * it sent. Return 0 to accept, -1 to fail the handshake. conn_user is what
 * tls_conn_new() was given.
 */
typedef int (*tls_verify_fn)(void *conn_user, X509 *leaf, STACK_OF(X509) * chain);

/*
 * Server context from files: the key file passes the key-file policy
 * (crypto/keyfile.h), then both files are read once and handed to
 * tls_server_context_pem().
 */
SSL_CTX *tls_server_context(OSSL_LIB_CTX *libctx, const char *cert_file, const char *key_file,
                            tls_verify_fn verify, char *err, size_t err_length);

/* Server context from PEM text: the certificate then its chain, and the private key. */
SSL_CTX *tls_server_context_pem(OSSL_LIB_CTX *libctx, const char *cert_pem, const char *key_pem,
                                tls_verify_fn verify, char *err, size_t err_length);

/*
 * Client context: presents cert_file (leaf then chain) and key_file, and
 * trusts ca_file for the server's certificate (NULL: no server check).
 * Offers what the device client offers (TLS 1.2, its cipher suites, P-256/P-384).
 */
SSL_CTX *tls_client_context(OSSL_LIB_CTX *libctx, const char *cert_file, const char *key_file,
                            const char *ca_file, char *err, size_t err_length);

/* Same as tls_client_context with the certificate chain and key already in memory. */
SSL_CTX *tls_client_context_mem(OSSL_LIB_CTX *libctx, X509 *cert, STACK_OF(X509) * chain,
                                EVP_PKEY *key, const char *ca_file, char *err, size_t err_length);

struct tls_conn;

struct tls_conn *tls_conn_new(SSL_CTX *ctx, bool server, void *conn_user);
void tls_conn_free(struct tls_conn *conn);

enum tls_status {
    TLS_DONE = 1,    /* handshake complete */
    TLS_AGAIN = 0,   /* needs more input */
    TLS_FAILED = -1, /* handshake or record failure: send pending output, then close */
    TLS_CLOSED = -2, /* peer sent close_notify */
};

/* Appends ciphertext received from the network. 0 or -1 (out of memory). */
int tls_conn_feed(struct tls_conn *conn, const uint8_t *data, size_t length);

/* Bytes received and not yet read as plaintext (ciphertext and decrypted). */
size_t tls_conn_input_buffered(const struct tls_conn *conn);

/* Advances the handshake. TLS_DONE, TLS_AGAIN or TLS_FAILED. */
int tls_conn_handshake(struct tls_conn *conn);

/* Reads decrypted bytes: > 0 count, TLS_AGAIN (0) nothing buffered, TLS_FAILED or TLS_CLOSED. */
int tls_conn_read(struct tls_conn *conn, uint8_t *buffer, size_t capacity);

/* Encrypts plaintext into the output. 0 or TLS_FAILED. */
int tls_conn_write(struct tls_conn *conn, const uint8_t *data, size_t length);

/* Queues a close_notify alert. */
void tls_conn_shutdown(struct tls_conn *conn);

/*
 * Ciphertext waiting to be sent: returns a pointer to it and its length;
 * tls_conn_consume_output() drops what was handed to the socket layer.
 */
const uint8_t *tls_conn_output(struct tls_conn *conn, size_t *length);
void tls_conn_consume_output(struct tls_conn *conn, size_t length);

/* Short text for the last failure (from OpenSSL's error queue or the verifier). */
const char *tls_conn_error(const struct tls_conn *conn);

/* Negotiated protocol and cipher names (after TLS_DONE). */
const char *tls_conn_version(const struct tls_conn *conn);
const char *tls_conn_cipher(const struct tls_conn *conn);

#endif
