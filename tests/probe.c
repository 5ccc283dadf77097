/*
 * dps-probe: a test client that sends one hand-made exchange to a DPS
 * endpoint over mutual TLS and prints what came back, so the integration
 * tests can check error paths the well-behaved device flow never takes:
 *
 *   dps-probe --endpoint HOST:PORT --cert F --key F [--ca F] ACTION
 *     --get PATH [--accept N]        a GET; prints "code=C.DD" and the payload
 *     --post PATH [--content-format N] [--payload-hex HEX]
 *     --bad-csr DEVICE_ID            POST credentials with a CSR whose signature is broken
 *     --csr FILE [--di DEVICE_ID]    POST credentials with the PEM CSR in FILE (and "di")
 *     --raw HEX                      sends raw bytes after the handshake; prints
 *                                    "code=..." for an answer or "closed"
 *   --wait-stdin                     after the handshake, prints "handshake-ok" and waits
 *                                    for a line on standard input before sending
 *   --drop                           closes the connection right after sending, without
 *                                    waiting for the answer; prints "dropped"
 *   --bind ADDR                      connects from this local address (127.0.0.2, ...)
 *   --proxy-hex HEX                  sends these bytes first, before TLS (a PROXY header)
 *
 * It prints "handshake-failed" when TLS fails. Exit 0 when the exchange
 * completed (whatever the code), 1 otherwise.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "common/address.h"
#include "dataplane/coap_tcp.h"
#include "dataplane/tls.h"
#include "tests/device_options.h"

struct probe {
    int fd;
    struct tls_conn *tls;
    uint8_t input[70000];
    size_t input_length;
};

static int probe_flush(struct probe *probe)
{
    size_t length;
    const uint8_t *data = tls_conn_output(probe->tls, &length);
    while (length > 0) {
        ssize_t n = send(probe->fd, data, length, MSG_NOSIGNAL);
        if (n < 0) {
            return -1;
        }
        tls_conn_consume_output(probe->tls, (size_t)n);
        data = tls_conn_output(probe->tls, &length);
    }
    return 0;
}

/* Reads more ciphertext; 0, or -1 when the peer closed or 10 s passed. */
static int probe_receive(struct probe *probe)
{
    struct pollfd pfd = {.fd = probe->fd, .events = POLLIN};
    if (poll(&pfd, 1, 10000) <= 0) {
        return -1;
    }
    uint8_t buffer[16384];
    ssize_t n = recv(probe->fd, buffer, sizeof(buffer), 0);
    if (n <= 0) {
        return -1;
    }
    return tls_conn_feed(probe->tls, buffer, (size_t)n);
}

static int probe_connect(struct probe *probe, const char *endpoint, const char *bind_address)
{
    char host[256], service[8];
    uint16_t port;
    if (address_split(endpoint, host, sizeof(host), &port) != 0) {
        return -1;
    }
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *result;
    if (getaddrinfo(host, service, &hints, &result) != 0) {
        return -1;
    }
    probe->fd = socket(result->ai_family, SOCK_STREAM, 0);
    if (bind_address != NULL) {
        struct addrinfo *local;
        if (getaddrinfo(bind_address, NULL, &hints, &local) != 0) {
            freeaddrinfo(result);
            return -1;
        }
        int bound = bind(probe->fd, local->ai_addr, local->ai_addrlen);
        freeaddrinfo(local);
        if (bound != 0) {
            freeaddrinfo(result);
            return -1;
        }
    }
    int rc = connect(probe->fd, result->ai_addr, result->ai_addrlen);
    freeaddrinfo(result);
    return rc;
}

static int probe_handshake(struct probe *probe)
{
    for (;;) {
        int status = tls_conn_handshake(probe->tls);
        probe_flush(probe);
        if (status == TLS_DONE) {
            return 0;
        }
        if (status == TLS_FAILED || probe_receive(probe) != 0) {
            return -1;
        }
    }
}

/*
 * Waits for the next non-signalling message. Returns 1 with it decoded,
 * 0 when the connection closed first, -1 on a broken answer.
 */
static int probe_response(struct probe *probe, struct coap_message *message)
{
    for (;;) {
        size_t frame_length;
        int status = coap_tcp_frame_length(probe->input, probe->input_length, sizeof(probe->input),
                                           &frame_length);
        if (status == COAP_OK && frame_length <= probe->input_length) {
            if (coap_tcp_decode(probe->input, frame_length, message) != COAP_OK) {
                return -1;
            }
            if (message->code < COAP_SIGNAL_CSM) {
                return 1;
            }
            memmove(probe->input, probe->input + frame_length, probe->input_length - frame_length);
            probe->input_length -= frame_length;
            continue;
        }
        if (status != COAP_OK && status != COAP_NEED_MORE) {
            return -1;
        }
        int n = tls_conn_read(probe->tls, probe->input + probe->input_length,
                              sizeof(probe->input) - probe->input_length);
        if (n > 0) {
            probe->input_length += (size_t)n;
            continue;
        }
        if (n != TLS_AGAIN || probe_receive(probe) != 0) {
            return 0;
        }
    }
}

static int hex_decode(const char *hex, uint8_t *out, size_t capacity, size_t *length)
{
    size_t n = strlen(hex);
    if (n % 2 != 0 || n / 2 > capacity) {
        return -1;
    }
    for (size_t i = 0; i < n / 2; i++) {
        unsigned value;
        if (sscanf(hex + 2 * i, "%2x", &value) != 1) {
            return -1;
        }
        out[i] = (uint8_t)value;
    }
    *length = n / 2;
    return 0;
}

/* A CBOR text string's head (major type 3) for length; returns the bytes written. */
static size_t text_head(size_t length, uint8_t *out)
{
    if (length < 24) {
        out[0] = (uint8_t)(0x60 | length);
        return 1;
    }
    if (length < 256) {
        out[0] = 0x78;
        out[1] = (uint8_t)length;
        return 2;
    }
    out[0] = 0x79;
    out[1] = (uint8_t)(length >> 8);
    out[2] = (uint8_t)length;
    return 3;
}

static size_t put_text(const char *text, size_t length, uint8_t *out)
{
    size_t head = text_head(length, out);
    memcpy(out + head, text, length);
    return head + length;
}

/*
 * {"di": device_id (when not NULL), "csr": {"encoding": "oic.sec.encoding.pem",
 * "data": pem}}; 0 when it does not fit.
 */
static size_t credentials_payload(const char *device_id, const char *pem, size_t pem_length,
                                  uint8_t *out, size_t capacity)
{
    if (pem_length > 65535 || pem_length + 128 > capacity) {
        return 0;
    }
    size_t length = 0;
    out[length++] = device_id != NULL ? 0xa2 : 0xa1;
    if (device_id != NULL) {
        length += put_text("di", 2, out + length);
        length += put_text(device_id, strlen(device_id), out + length);
    }
    length += put_text("csr", 3, out + length);
    out[length++] = 0xa2;
    length += put_text("encoding", 8, out + length);
    length += put_text("oic.sec.encoding.pem", 20, out + length);
    length += put_text("data", 4, out + length);
    length += put_text(pem, pem_length, out + length);
    return length;
}

/* {"di": device_id, "csr": {"encoding": pem, "data": a CSR with a corrupted signature}} */
static size_t bad_csr_payload(const char *device_id, uint8_t *out, size_t capacity)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509_REQ *request = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    char cn[64];
    snprintf(cn, sizeof(cn), "uuid:%s", device_id);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_REQ_set_subject_name(request, name);
    X509_REQ_set_pubkey(request, key);
    X509_REQ_sign(request, key, EVP_sha256());
    const ASN1_BIT_STRING *signature;
    X509_REQ_get0_signature(request, &signature, NULL);
    ((ASN1_BIT_STRING *)signature)->data[10] ^= 0x55;
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_REQ(bio, request);
    char *pem;
    long pem_length = BIO_get_mem_data(bio, &pem);
    size_t length = credentials_payload(device_id, pem, (size_t)pem_length, out, capacity);
    BIO_free(bio);
    X509_NAME_free(name);
    X509_REQ_free(request);
    EVP_PKEY_free(key);
    return length;
}

/* The credentials payload for the PEM CSR in path; 0 when it cannot be read or does not fit. */
static size_t file_csr_payload(const char *path, const char *device_id, uint8_t *out,
                               size_t capacity)
{
    static char pem[16384];
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        return 0;
    }
    size_t pem_length = fread(pem, 1, sizeof(pem), file);
    fclose(file);
    return pem_length < sizeof(pem) ? credentials_payload(device_id, pem, pem_length, out, capacity)
                                    : 0;
}

static size_t path_options(const char *path, struct coap_option *options, size_t capacity)
{
    size_t count = 0;
    const char *segment = path;
    while (*segment == '/') {
        segment++;
    }
    while (*segment != '\0' && count < capacity) {
        const char *end = strchr(segment, '/');
        size_t length = end != NULL ? (size_t)(end - segment) : strlen(segment);
        options[count++] =
            (struct coap_option){COAP_OPTION_URI_PATH, (uint16_t)length, (const uint8_t *)segment};
        segment += length;
        while (*segment == '/') {
            segment++;
        }
    }
    return count;
}

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        DEVICE_LONG_OPTIONS,
        {"get", required_argument, NULL, 'g'},
        {"post", required_argument, NULL, 'p'},
        {"accept", required_argument, NULL, 'A'},
        {"content-format", required_argument, NULL, 'F'},
        {"payload-hex", required_argument, NULL, 'P'},
        {"bad-csr", required_argument, NULL, 'b'},
        {"csr", required_argument, NULL, 'C'},
        {"di", required_argument, NULL, 'D'},
        {"raw", required_argument, NULL, 'r'},
        {"wait-stdin", no_argument, NULL, 'w'},
        {"drop", no_argument, NULL, 'd'},
        {"bind", required_argument, NULL, 'B'},
        {"proxy-hex", required_argument, NULL, 'X'},
        {NULL, 0, NULL, 0},
    };
    struct device_options device = {0};
    const char *path = NULL;
    const char *payload_hex = NULL, *bad_csr = NULL, *raw = NULL, *csr_file = NULL, *di = NULL;
    const char *bind_address = NULL, *proxy_hex = NULL;
    uint8_t method = 0;
    bool wait_stdin = false, drop = false;
    long accept = -1, content_format = -1;
    int c;
    while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        if (device_option(&device, c))
            continue;
        switch (c) {
        case 'g':
            method = COAP_GET;
            path = optarg;
            break;
        case 'p':
            method = COAP_POST;
            path = optarg;
            break;
        case 'A':
            accept = strtol(optarg, NULL, 10);
            break;
        case 'F':
            content_format = strtol(optarg, NULL, 10);
            break;
        case 'P':
            payload_hex = optarg;
            break;
        case 'b':
            bad_csr = optarg;
            method = COAP_POST;
            path = "/api/v1/provisioning/credentials";
            break;
        case 'C':
            csr_file = optarg;
            method = COAP_POST;
            path = "/api/v1/provisioning/credentials";
            break;
        case 'D':
            di = optarg;
            break;
        case 'r':
            raw = optarg;
            break;
        case 'w':
            wait_stdin = true;
            break;
        case 'd':
            drop = true;
            break;
        case 'B':
            bind_address = optarg;
            break;
        case 'X':
            proxy_hex = optarg;
            break;
        default:
            return 2;
        }
    }
    if (device.endpoint == NULL || device.cert == NULL || device.key == NULL ||
        (path == NULL && raw == NULL)) {
        fprintf(stderr, "usage: see the comment at the top of tests/probe.c\n");
        return 2;
    }
    char err[256];
    SSL_CTX *ctx = tls_client_context(NULL, device.cert, device.key, device.ca, err, sizeof(err));
    if (ctx == NULL) {
        fprintf(stderr, "dps-probe: %s\n", err);
        return 1;
    }
    static struct probe probe;
    if (probe_connect(&probe, device.endpoint, bind_address) != 0) {
        fprintf(stderr, "dps-probe: cannot connect to %s: %s\n", device.endpoint, strerror(errno));
        return 1;
    }
    if (proxy_hex != NULL) {
        static uint8_t header[4096];
        size_t header_length;
        if (hex_decode(proxy_hex, header, sizeof(header), &header_length) != 0) {
            fprintf(stderr, "dps-probe: --proxy-hex needs hex\n");
            return 2;
        }
        if (send(probe.fd, header, header_length, MSG_NOSIGNAL) != (ssize_t)header_length) {
            printf("closed\n");
            return 0;
        }
    }
    probe.tls = tls_conn_new(ctx, false, NULL);
    if (probe_handshake(&probe) != 0) {
        printf("handshake-failed\n");
        return 0;
    }
    if (wait_stdin) {
        char line[16];
        printf("handshake-ok\n");
        fflush(stdout);
        if (fgets(line, sizeof(line), stdin) == NULL) {
            return 1;
        }
    }
    static uint8_t frame[70000];
    size_t frame_length = 0;
    if (raw != NULL) {
        if (hex_decode(raw, frame, sizeof(frame), &frame_length) != 0) {
            fprintf(stderr, "dps-probe: --raw needs hex\n");
            return 2;
        }
    } else {
        static uint8_t payload[65536];
        size_t payload_length = 0;
        if (payload_hex != NULL &&
            hex_decode(payload_hex, payload, sizeof(payload), &payload_length) != 0) {
            fprintf(stderr, "dps-probe: --payload-hex needs hex\n");
            return 2;
        }
        if (bad_csr != NULL) {
            payload_length = bad_csr_payload(bad_csr, payload, sizeof(payload));
        } else if (csr_file != NULL) {
            payload_length = file_csr_payload(csr_file, di, payload, sizeof(payload));
            if (payload_length == 0) {
                fprintf(stderr, "dps-probe: cannot read a CSR from %s\n", csr_file);
                return 2;
            }
        }
        if ((bad_csr != NULL || csr_file != NULL) && content_format < 0) {
            content_format = COAP_FORMAT_OCF_CBOR;
        }
        struct coap_option options[16];
        uint8_t storage[3][4];
        size_t count = path_options(path, options, 12);
        if (content_format >= 0) {
            coap_option_make_uint(&options[count++], COAP_OPTION_CONTENT_FORMAT,
                                  (uint32_t)content_format, storage[0]);
        }
        if (accept >= 0) {
            coap_option_make_uint(&options[count++], COAP_OPTION_ACCEPT, (uint32_t)accept,
                                  storage[1]);
        }
        coap_option_make_uint(&options[count++], COAP_OPTION_OCF_ACCEPT_VERSION, 2048, storage[2]);
        uint8_t token[8];
        RAND_bytes(token, sizeof(token));
        long length = coap_tcp_encode(frame, sizeof(frame), method, token, sizeof(token), options,
                                      count, payload, payload_length);
        if (length < 0) {
            fprintf(stderr, "dps-probe: cannot encode the request\n");
            return 1;
        }
        frame_length = (size_t)length;
    }
    if (tls_conn_write(probe.tls, frame, frame_length) != 0 || probe_flush(&probe) != 0) {
        printf("closed\n");
        return 0;
    }
    if (drop) {
        close(probe.fd);
        printf("dropped\n");
        return 0;
    }
    struct coap_message message;
    int status = probe_response(&probe, &message);
    if (status == 0) {
        printf("closed\n");
        return 0;
    }
    if (status < 0) {
        printf("broken-response\n");
        return 1;
    }
    const struct coap_option *max_age = coap_message_option(&message, COAP_OPTION_MAX_AGE);
    uint32_t seconds;
    printf("code=%d.%02d ", message.code >> 5, message.code & 31);
    if (max_age != NULL && coap_option_uint(max_age, &seconds) == 0) {
        printf("max-age=%u ", seconds);
    }
    printf("payload=%.*s\n", (int)message.payload_length,
           message.payload != NULL ? (const char *)message.payload : "");
    /* After an answer to raw input, tell whether the server then closed. */
    if (raw != NULL) {
        struct coap_message next;
        probe.input_length = 0;
        printf("%s\n", probe_response(&probe, &next) == 0 ? "closed" : "open");
    }
    return 0;
}
