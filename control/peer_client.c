/*
 * peer_client: see peer_client.h. A blocking socket with send and receive
 * timeouts (stall_ms), optionally under an OpenSSL client session; the
 * answer is read through a small buffer: the status line, the headers, then
 * the body, plain (until the peer closes, Content-Length) or chunked.
 */
#include "control/peer_client.h"
#include "common/address.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#define PEER_BUFFER 16384
#define PEER_LINE_MAX 8192

struct peer {
    int socket;
    SSL_CTX *tls_context;
    SSL *tls;
    unsigned char buffer[PEER_BUFFER];
    size_t start, end;
    char *err;
    size_t err_length;
};

/* err = what: detail. */
static int fail(struct peer *peer, const char *what, const char *detail)
{
    snprintf(peer->err, peer->err_length, "%s: %s", what, detail);
    return -1;
}

/* scheme://HOST:PORT into its parts (common/address.h; the port as text). */
static int parse_url(const char *url, bool *tls, char *host, size_t host_size, char *port,
                     size_t port_size)
{
    const char *rest;
    if (strncmp(url, "http://", 7) == 0) {
        *tls = false;
        rest = url + 7;
    } else if (strncmp(url, "https://", 8) == 0) {
        *tls = true;
        rest = url + 8;
    } else {
        return -1;
    }
    uint16_t number;
    if (address_split(rest, host, host_size, &number) != 0)
        return -1;
    snprintf(port, port_size, "%u", (unsigned)number);
    return 0;
}

static bool is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

/* A connected socket within connect_ms, with stall_ms timeouts for every later read and write. */
static int peer_connect(struct peer *peer, const char *host, const char *port, unsigned connect_ms,
                        unsigned stall_ms)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *found;
    int status = getaddrinfo(host, port, &hints, &found);
    if (status != 0)
        return fail(peer, "cannot resolve", gai_strerror(status));
    int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int error = fd < 0 ? errno : 0;
    if (fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) != 0) {
        error = errno;
        if (error == EINPROGRESS) {
            struct pollfd wait = {.fd = fd, .events = POLLOUT};
            socklen_t size = sizeof(error);
            int ready = poll(&wait, 1, (int)connect_ms);
            if (ready == 0)
                error = ETIMEDOUT;
            else if (ready < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) != 0)
                error = errno;
        }
    }
    freeaddrinfo(found);
    if (error != 0) {
        if (fd >= 0)
            close(fd);
        return fail(peer, "cannot connect", strerror(error));
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct timeval timeout = {.tv_sec = stall_ms / 1000, .tv_usec = (stall_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    peer->socket = fd;
    return 0;
}

/* The client certificate (then its chain) and key from PEM text. 0, or -1. */
static int peer_identity(SSL_CTX *context, const char *certificate_pem, const char *key_pem)
{
    BIO *certificates = BIO_new_mem_buf(certificate_pem, -1);
    BIO *key_text = BIO_new_mem_buf(key_pem, -1);
    X509 *leaf = certificates != NULL ? PEM_read_bio_X509(certificates, NULL, NULL, NULL) : NULL;
    EVP_PKEY *key = key_text != NULL ? PEM_read_bio_PrivateKey(key_text, NULL, NULL, NULL) : NULL;
    int status = leaf != NULL && key != NULL && SSL_CTX_use_certificate(context, leaf) == 1 &&
                         SSL_CTX_use_PrivateKey(context, key) == 1 &&
                         SSL_CTX_check_private_key(context) == 1
                     ? 0
                     : -1;
    X509 *chain;
    while (status == 0 && (chain = PEM_read_bio_X509(certificates, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(context, chain) != 1) {
            X509_free(chain);
            status = -1;
        }
    }
    ERR_clear_error(); /* the end of the chain reads as an error */
    X509_free(leaf);
    EVP_PKEY_free(key);
    BIO_free(certificates);
    BIO_free(key_text);
    return status;
}

/*
 * Every certificate of trust_file is a trust anchor, the leaf itself
 * included; the client certificate is presented when the peer asks.
 */
static int peer_tls(struct peer *peer, const char *trust_file, const char *certificate_pem,
                    const char *key_pem)
{
    peer->tls_context = SSL_CTX_new(TLS_client_method());
    if (peer->tls_context == NULL || trust_file == NULL ||
        SSL_CTX_load_verify_locations(peer->tls_context, trust_file, NULL) != 1)
        return fail(peer, "TLS", "cannot load the API certificate as trust");
    if (certificate_pem != NULL && key_pem != NULL &&
        peer_identity(peer->tls_context, certificate_pem, key_pem) != 0)
        return fail(peer, "TLS", "cannot use the API certificate and key as client certificate");
    X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(peer->tls_context), X509_V_FLAG_PARTIAL_CHAIN);
    SSL_CTX_set_verify(peer->tls_context, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_min_proto_version(peer->tls_context, TLS1_2_VERSION);
    peer->tls = SSL_new(peer->tls_context);
    if (peer->tls == NULL || SSL_set_fd(peer->tls, peer->socket) != 1 ||
        SSL_connect(peer->tls) != 1) {
        char reason[256];
        ERR_error_string_n(ERR_get_error(), reason, sizeof(reason));
        return fail(peer, "TLS handshake", reason);
    }
    return 0;
}

static int peer_send(struct peer *peer, const char *text, size_t length)
{
    while (length > 0) {
        ssize_t sent;
        if (peer->tls != NULL) {
            int n = SSL_write(peer->tls, text, (int)length);
            sent = n > 0 ? n : -1;
        } else {
            sent = send(peer->socket, text, length, MSG_NOSIGNAL);
            if (sent < 0 && errno == EINTR)
                continue;
        }
        if (sent <= 0)
            return fail(peer, "cannot send", "timed out or closed");
        text += sent;
        length -= (size_t)sent;
    }
    return 0;
}

/* Refills the buffer: > 0 bytes, 0 at the peer's end, -1 on an error or a stall. */
static ssize_t peer_fill(struct peer *peer)
{
    peer->start = peer->end = 0;
    for (;;) {
        ssize_t got;
        if (peer->tls != NULL) {
            int n = SSL_read(peer->tls, peer->buffer, sizeof(peer->buffer));
            int error = n > 0 ? SSL_ERROR_NONE : SSL_get_error(peer->tls, n);
            got = n > 0 ? n : error == SSL_ERROR_ZERO_RETURN ? 0 : -1;
        } else {
            got = recv(peer->socket, peer->buffer, sizeof(peer->buffer), 0);
            if (got < 0 && errno == EINTR)
                continue;
        }
        if (got < 0)
            return fail(peer, "cannot read", "timed out or reset");
        peer->end = (size_t)got;
        return got;
    }
}

/* One CRLF-terminated line without its CRLF. 0, or -1 (cut or too long). */
static int peer_line(struct peer *peer, char *line, size_t size)
{
    size_t length = 0;
    for (;;) {
        if (peer->start == peer->end) {
            ssize_t got = peer_fill(peer);
            if (got < 0)
                return -1;
            if (got == 0)
                return fail(peer, "answer cut", "in a header or chunk line");
        }
        char c = (char)peer->buffer[peer->start++];
        if (c == '\n') {
            if (length > 0 && line[length - 1] == '\r')
                length--;
            line[length] = '\0';
            return 0;
        }
        if (length + 1 >= size)
            return fail(peer, "answer line", "too long");
        line[length++] = c;
    }
}

static int write_all(struct peer *peer, int fd, const unsigned char *data, size_t length)
{
    while (length > 0) {
        ssize_t written = write(fd, data, length);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return fail(peer, "stopped", "the reader went away");
        data += written;
        length -= (size_t)written;
    }
    return 0;
}

/* Copies length bytes of body (SIZE_MAX: up to the peer's end) to fd. */
static int copy_body(struct peer *peer, int fd, size_t length)
{
    while (length > 0) {
        if (peer->start == peer->end) {
            ssize_t got = peer_fill(peer);
            if (got < 0)
                return -1;
            if (got == 0)
                return length == SIZE_MAX ? 0 : fail(peer, "answer cut", "in its body");
        }
        size_t take = peer->end - peer->start;
        if (take > length)
            take = length;
        if (write_all(peer, fd, peer->buffer + peer->start, take) != 0)
            return -1;
        peer->start += take;
        if (length != SIZE_MAX)
            length -= take;
    }
    return 0;
}

static int copy_chunks(struct peer *peer, int fd)
{
    char line[PEER_LINE_MAX];
    for (;;) {
        if (peer_line(peer, line, sizeof(line)) != 0)
            return -1;
        char *end;
        unsigned long size = strtoul(line, &end, 16);
        if (end == line)
            return fail(peer, "bad chunk size", line);
        if (size == 0)
            break;
        if (copy_body(peer, fd, size) != 0 || peer_line(peer, line, sizeof(line)) != 0)
            return -1;
    }
    /* Trailers, if any, up to the empty line. */
    do {
        if (peer_line(peer, line, sizeof(line)) != 0)
            return -1;
    } while (line[0] != '\0');
    return 0;
}

/* The status line and headers; then the body to fd. */
static int read_answer(struct peer *peer, int fd)
{
    char line[PEER_LINE_MAX];
    if (peer_line(peer, line, sizeof(line)) != 0)
        return -1;
    int status = 0;
    if (sscanf(line, "HTTP/1.%*d %d", &status) != 1)
        return fail(peer, "not HTTP", line);
    bool chunked = false;
    size_t length = SIZE_MAX;
    for (;;) {
        if (peer_line(peer, line, sizeof(line)) != 0)
            return -1;
        if (line[0] == '\0')
            break;
        if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 && strcasestr(line, "chunked"))
            chunked = true;
        else if (strncasecmp(line, "Content-Length:", 15) == 0)
            length = strtoull(line + 15, NULL, 10);
    }
    if (status != 200) {
        snprintf(line, sizeof(line), "%d", status);
        return fail(peer, "answered HTTP", line);
    }
    return chunked ? copy_chunks(peer, fd) : copy_body(peer, fd, length);
}

int peer_get(const char *base_url, const char *trust_file, const char *certificate_pem,
             const char *key_pem, const char *path, const char *token, unsigned connect_ms,
             unsigned stall_ms, int fd, char *err, size_t err_length)
{
    return peer_request("GET", base_url, trust_file, certificate_pem, key_pem, path, token,
                        connect_ms, stall_ms, fd, err, err_length);
}

int peer_request(const char *method, const char *base_url, const char *trust_file,
                 const char *certificate_pem, const char *key_pem, const char *path,
                 const char *token, unsigned connect_ms, unsigned stall_ms, int fd, char *err,
                 size_t err_length)
{
    struct peer *peer = calloc(1, sizeof(*peer));
    if (peer == NULL) {
        snprintf(err, err_length, "out of memory");
        return -1;
    }
    peer->socket = -1;
    peer->err = err;
    peer->err_length = err_length;
    bool tls;
    char host[256], port[8];
    char *request = NULL;
    int status = parse_url(base_url, &tls, host, sizeof(host), port, sizeof(port)) == 0
                     ? 0
                     : fail(peer, "bad peer URL", base_url);
    /*
     * The peers' addresses come from Redis: never hand a token to a peer over
     * plain HTTP off this machine, nor over plain HTTP when this node's own
     * API speaks HTTPS (plain HTTP APIs listen on loopback only).
     */
    if (status == 0 && !tls && (trust_file != NULL || !is_loopback(host)))
        status = fail(peer, "refused",
                      "plain HTTP to a peer that is not on loopback, or from an "
                      "HTTPS node");
    if (status == 0)
        status = peer_connect(peer, host, port, connect_ms, stall_ms);
    if (status == 0 && tls)
        status = peer_tls(peer, trust_file, certificate_pem, key_pem);
    int length = status == 0 ? asprintf(&request,
                                        "%s %s HTTP/1.1\r\nHost: %s:%s\r\n"
                                        "Authorization: Bearer %s\r\n%s: 1\r\n"
                                        "Connection: close\r\n\r\n",
                                        method, path, host, port, token, PEER_FORWARDED_HEADER)
                             : -1;
    if (status == 0 && length < 0) {
        request = NULL;
        status = fail(peer, "request", "out of memory");
    }
    if (status == 0)
        status = peer_send(peer, request, (size_t)length);
    if (status == 0)
        status = read_answer(peer, fd);
    if (request != NULL) {
        explicit_bzero(request, (size_t)length);
        free(request);
    }
    if (peer->tls != NULL) {
        SSL_shutdown(peer->tls);
        SSL_free(peer->tls);
    }
    SSL_CTX_free(peer->tls_context);
    if (peer->socket >= 0)
        close(peer->socket);
    free(peer);
    return status;
}
