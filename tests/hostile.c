/*
 * dps-hostile: a hostile client for the robustness tests and the idle-memory
 * benchmark. One process holds many non-blocking connections (poll) to a DPS
 * endpoint and misbehaves on each in one chosen way:
 *
 *   dps-hostile MODE --endpoint HOST:PORT [--source ADDR] [--count N]
 *               [--concurrency N] [--hold SECONDS] [--setup-timeout SECONDS]
 *               [--refuse-window SECONDS] [--requests N] [--cert F --key F [--ca F]]
 *
 *   half-open        connect and send nothing
 *   garbage-hello    send random bytes instead of a ClientHello
 *   stall-handshake  send the first half of a ClientHello, then nothing
 *   connect-rate     for --hold seconds, open connections as fast as possible
 *                    (--concurrency at a time), each sending a ClientHello and
 *                    closing once the server answered or closed
 *   TLS modes (need --cert/--key of a device; --ca checks the server):
 *   idle-tls         complete mutual TLS, then stay idle
 *   tls-garbage      complete mutual TLS, then send random plaintext
 *   truncated        complete mutual TLS, then a GET frame cut short, then silence
 *   huge-frame       complete mutual TLS, then a frame header announcing ~4 GiB
 *   request-flood    complete mutual TLS, then send GET /x.plgd.dev/time
 *                    without end, never reading, for --hold seconds
 *   pipeline         complete mutual TLS, then --requests GETs in one write;
 *                    checks the answers come back in order
 *
 * Connections are set up --concurrency at a time (TCP connect, and the TLS
 * handshake in TLS modes). When all are set up, it prints "ready ..." and
 * holds them for --hold seconds while watching what the server does, then
 * closes them and prints one summary line of key=value fields:
 *
 *   opened            TCP connections established
 *   connect_failed    connects that failed
 *   refused           connections the server closed without sending a byte
 *                     within --refuse-window seconds (default 1) of the
 *                     connect: refused at admission, before any TLS work
 *   closed_by_server  every connection the server closed (refusals included)
 *   close_min/max     seconds from connect to the server's close
 *   still_open        connections open when the hold ended
 *   handshakes, handshake_failed, responses, too_large (4.13 answers),
 *   in_order (pipeline: 1 when every answer carried the expected token),
 *   requests_sent, admitted (connect-rate: the server sent TLS bytes)
 *
 * The whole run is bounded by --setup-timeout (default 60) plus --hold.
 * Exit 0 when it ran, 2 for bad usage, 1 when it could not start.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "common/address.h"
#include "dataplane/coap_tcp.h"
#include "dataplane/tls.h"
#include "tests/device_options.h"

#define INPUT_CAPACITY 4096
#define MAX_PIPELINE 64

enum mode {
    MODE_HALF_OPEN,
    MODE_GARBAGE_HELLO,
    MODE_STALL_HANDSHAKE,
    MODE_CONNECT_RATE,
    MODE_IDLE_TLS,
    MODE_TLS_GARBAGE,
    MODE_TRUNCATED,
    MODE_HUGE_FRAME,
    MODE_REQUEST_FLOOD,
    MODE_PIPELINE,
};

static const char *const mode_names[] = {
    "half-open",   "garbage-hello", "stall-handshake", "connect-rate",  "idle-tls",
    "tls-garbage", "truncated",     "huge-frame",      "request-flood", "pipeline",
};

enum client_state {
    CLIENT_FREE,
    CLIENT_CONNECTING,
    CLIENT_HANDSHAKE,
    CLIENT_ACTIVE,
};

struct client {
    int fd;
    enum client_state state;
    struct tls_conn *tls;
    struct timespec opened;
    unsigned long long received;
    uint8_t *input;
    size_t input_length;
    unsigned answered; /* pipeline: responses seen */
};

struct stats {
    unsigned long opened, connect_failed, refused, closed_by_server, still_open;
    unsigned long handshakes, handshake_failed, responses, too_large, requests_sent, admitted;
    double close_min, close_max;
    bool out_of_order;
};

static struct {
    enum mode mode;
    struct sockaddr_in target;
    struct sockaddr_in source;
    bool has_source;
    unsigned long count;
    unsigned long concurrency;
    double hold;
    double setup_timeout;
    double refuse_window;
    unsigned requests;
    SSL_CTX *ctx;
    uint8_t hello[4096]; /* a ClientHello, for stall-handshake and connect-rate */
    size_t hello_length;
    struct stats stats;
} run = {
    .count = 1,
    .concurrency = 64,
    .hold = 5,
    .setup_timeout = 60,
    .refuse_window = 1,
    .requests = 5,
    .stats = {.close_min = -1},
};

static bool mode_uses_tls(enum mode mode)
{
    return mode >= MODE_IDLE_TLS;
}

static double now_s(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static double age_s(const struct client *client)
{
    return now_s() - ((double)client->opened.tv_sec + (double)client->opened.tv_nsec / 1e9);
}

static void raise_fd_limit(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

static int parse_endpoint(const char *endpoint)
{
    const char *scheme = strstr(endpoint, "://");
    if (scheme != NULL) {
        endpoint = scheme + 3;
    }
    char host[256], service[8];
    uint16_t port;
    if (address_split(endpoint, host, sizeof(host), &port) != 0) {
        return -1;
    }
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *result;
    if (getaddrinfo(host, service, &hints, &result) != 0) {
        return -1;
    }
    memcpy(&run.target, result->ai_addr, sizeof(run.target));
    freeaddrinfo(result);
    return 0;
}

/* A ClientHello like the device's (TLS 1.2, P-256/P-384), taken from an in-memory handshake. */
static int make_client_hello(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        return -1;
    }
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set1_groups_list(ctx, "P-256:P-384");
    SSL *ssl = SSL_new(ctx);
    BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, in, out);
    SSL_connect(ssl);
    int n = BIO_read(out, run.hello, (int)sizeof(run.hello));
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (n <= 0) {
        return -1;
    }
    run.hello_length = (size_t)n;
    return 0;
}

static void note_close_time(double seconds)
{
    if (run.stats.close_min < 0 || seconds < run.stats.close_min) {
        run.stats.close_min = seconds;
    }
    if (seconds > run.stats.close_max) {
        run.stats.close_max = seconds;
    }
}

static void client_release(struct client *client)
{
    if (client->fd >= 0) {
        close(client->fd);
    }
    tls_conn_free(client->tls);
    free(client->input);
    *client = (struct client){.fd = -1, .state = CLIENT_FREE};
}

/* The server ended the connection (EOF, reset, or a write that found it gone). */
static void client_closed_by_server(struct client *client)
{
    double age = age_s(client);
    run.stats.closed_by_server++;
    note_close_time(age);
    if (client->received == 0 && age <= run.refuse_window) {
        run.stats.refused++;
    }
    if (client->state == CLIENT_HANDSHAKE) {
        run.stats.handshake_failed++;
    }
    client_release(client);
}

/* Sends raw bytes; 0, or -1 when the server is gone. */
static int send_all(struct client *client, const uint8_t *data, size_t length)
{
    while (length > 0) {
        ssize_t n = send(client->fd, data, length, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EAGAIN ? 0 : -1;
        }
        data += n;
        length -= (size_t)n;
    }
    return 0;
}

/* Hands TLS output to the socket; 1 when some stays queued, 0 when all left, -1 when gone. */
static int flush_tls(struct client *client)
{
    size_t length;
    const uint8_t *data = tls_conn_output(client->tls, &length);
    while (length > 0) {
        ssize_t n = send(client->fd, data, length, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EAGAIN ? 1 : -1;
        }
        tls_conn_consume_output(client->tls, (size_t)n);
        data = tls_conn_output(client->tls, &length);
    }
    return 0;
}

static long encode_get(uint8_t *out, size_t capacity, const uint8_t token[8])
{
    static const char segment_a[] = "x.plgd.dev", segment_b[] = "time";
    struct coap_option options[4] = {
        {COAP_OPTION_URI_PATH, sizeof(segment_a) - 1, (const uint8_t *)segment_a},
        {COAP_OPTION_URI_PATH, sizeof(segment_b) - 1, (const uint8_t *)segment_b},
    };
    uint8_t storage[2][4];
    coap_option_make_uint(&options[2], COAP_OPTION_ACCEPT, COAP_FORMAT_OCF_CBOR, storage[0]);
    coap_option_make_uint(&options[3], COAP_OPTION_OCF_ACCEPT_VERSION, 2048, storage[1]);
    return coap_tcp_encode(out, capacity, COAP_GET, token, 8, options, 4, NULL, 0);
}

/* The pipeline's i-th token: recognisable, so the order of answers can be checked. */
static void pipeline_token(unsigned i, uint8_t token[8])
{
    memcpy(token, "pipe", 4);
    token[4] = (uint8_t)(i >> 24);
    token[5] = (uint8_t)(i >> 16);
    token[6] = (uint8_t)(i >> 8);
    token[7] = (uint8_t)i;
}

/* Queues a batch of GET requests for the flood; -1 when TLS refuses. */
static int flood_more(struct client *client)
{
    uint8_t batch[4096];
    size_t length = 0;
    for (;;) {
        uint8_t token[8];
        RAND_bytes(token, sizeof(token));
        long n = encode_get(batch + length, sizeof(batch) - length, token);
        if (n < 0) {
            break;
        }
        length += (size_t)n;
        run.stats.requests_sent++;
    }
    return tls_conn_write(client->tls, batch, length) == 0 ? 0 : -1;
}

/* What each TLS mode does once the handshake is done. 0, or -1 when the server is gone. */
static int client_misbehave(struct client *client)
{
    uint8_t frame[512];
    long length = 0;
    switch (run.mode) {
    case MODE_TLS_GARBAGE:
        RAND_bytes(frame, 200);
        length = 200;
        break;
    case MODE_TRUNCATED: {
        uint8_t token[8];
        RAND_bytes(token, sizeof(token));
        length = encode_get(frame, sizeof(frame), token) - 3;
        run.stats.requests_sent++;
        break;
    }
    case MODE_HUGE_FRAME: {
        /* Len 15: a 4-byte extended length of 0xFFFF0000 + 65805 bytes, code GET, no token. */
        static const uint8_t header[] = {0xf0, 0xff, 0xff, 0x00, 0x00, COAP_GET};
        memcpy(frame, header, sizeof(header));
        length = sizeof(header);
        break;
    }
    case MODE_PIPELINE:
        for (unsigned i = 0; i < run.requests; i++) {
            uint8_t token[8];
            pipeline_token(i, token);
            long n = encode_get(frame + length, sizeof(frame) - (size_t)length, token);
            if (n < 0) {
                return -1;
            }
            length += n;
            run.stats.requests_sent++;
        }
        break;
    case MODE_REQUEST_FLOOD:
        return flood_more(client) == 0 && flush_tls(client) >= 0 ? 0 : -1;
    default:
        return 0;
    }
    if (tls_conn_write(client->tls, frame, (size_t)length) != 0) {
        return -1;
    }
    return flush_tls(client) >= 0 ? 0 : -1;
}

/* Reads the server's frames after the handshake: counts answers, 4.13s and their order. */
static void client_read_frames(struct client *client)
{
    if (client->input == NULL) {
        client->input = malloc(INPUT_CAPACITY);
        if (client->input == NULL) {
            return;
        }
    }
    for (;;) {
        int n = tls_conn_read(client->tls, client->input + client->input_length,
                              INPUT_CAPACITY - client->input_length);
        if (n > 0) {
            client->input_length += (size_t)n;
        }
        size_t frame_length;
        while (client->input_length > 0 &&
               coap_tcp_frame_length(client->input, client->input_length, INPUT_CAPACITY,
                                     &frame_length) == COAP_OK &&
               frame_length <= client->input_length) {
            struct coap_message message;
            if (coap_tcp_decode(client->input, frame_length, &message) == COAP_OK &&
                message.code < COAP_SIGNAL_CSM) {
                run.stats.responses++;
                if (message.code == COAP_REQUEST_ENTITY_TOO_LARGE) {
                    run.stats.too_large++;
                }
                if (run.mode == MODE_PIPELINE) {
                    uint8_t expected[8];
                    pipeline_token(client->answered, expected);
                    if (message.token_length != 8 || memcmp(message.token, expected, 8) != 0) {
                        run.stats.out_of_order = true;
                    }
                    client->answered++;
                }
            }
            memmove(client->input, client->input + frame_length,
                    client->input_length - frame_length);
            client->input_length -= frame_length;
        }
        if (n <= 0 || client->input_length == INPUT_CAPACITY) {
            if (client->input_length == INPUT_CAPACITY) {
                client->input_length = 0; /* a frame we do not care for: drop it */
            }
            if (n <= 0) {
                return;
            }
        }
    }
}

static void client_handshake(struct client *client)
{
    int status = tls_conn_handshake(client->tls);
    if (flush_tls(client) < 0) {
        client_closed_by_server(client);
        return;
    }
    if (status == TLS_FAILED) {
        run.stats.handshake_failed++;
        client_release(client);
        return;
    }
    if (status == TLS_DONE) {
        run.stats.handshakes++;
        client->state = CLIENT_ACTIVE;
        if (client_misbehave(client) != 0) {
            client_closed_by_server(client);
            return;
        }
        client_read_frames(client);
    }
}

/* The TCP connect finished: start the mode's behaviour. */
static void client_connected(struct client *client)
{
    int error = 0;
    socklen_t length = sizeof(error);
    getsockopt(client->fd, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) {
        run.stats.connect_failed++;
        client_release(client);
        return;
    }
    run.stats.opened++;
    clock_gettime(CLOCK_MONOTONIC, &client->opened);
    client->state = CLIENT_ACTIVE;
    int rc = 0;
    switch (run.mode) {
    case MODE_GARBAGE_HELLO: {
        uint8_t garbage[256];
        RAND_bytes(garbage, sizeof(garbage));
        /* Never a valid record type or version, so the server judges at once. */
        garbage[0] = 0x47;
        garbage[1] = 0x47;
        rc = send_all(client, garbage, sizeof(garbage));
        break;
    }
    case MODE_STALL_HANDSHAKE:
        rc = send_all(client, run.hello, run.hello_length / 2);
        break;
    case MODE_CONNECT_RATE:
        rc = send_all(client, run.hello, run.hello_length);
        break;
    case MODE_HALF_OPEN:
        break;
    default:
        client->tls = tls_conn_new(run.ctx, false, NULL);
        if (client->tls == NULL) {
            run.stats.handshake_failed++;
            client_release(client);
            return;
        }
        client->state = CLIENT_HANDSHAKE;
        client_handshake(client);
        return;
    }
    if (rc != 0) {
        client_closed_by_server(client);
    }
}

static int client_start(struct client *client)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    if (run.mode == MODE_CONNECT_RATE) {
        /* Close with a reset: thousands of connections per second leave no TIME_WAIT here. */
        struct linger linger = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger));
    }
    if (run.has_source) {
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (const struct sockaddr *)&run.source, sizeof(run.source)) != 0) {
            close(fd);
            return -1;
        }
    }
    *client = (struct client){.fd = fd, .state = CLIENT_CONNECTING};
    clock_gettime(CLOCK_MONOTONIC, &client->opened);
    if (connect(fd, (const struct sockaddr *)&run.target, sizeof(run.target)) != 0 &&
        errno != EINPROGRESS) {
        run.stats.connect_failed++;
        client_release(client);
    }
    return 0;
}

/* Input (or a hang-up) on an established connection. */
static void client_readable(struct client *client)
{
    uint8_t buffer[16384];
    bool gone = false;
    for (;;) {
        ssize_t n = recv(client->fd, buffer, sizeof(buffer), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            gone = true;
            break;
        }
        if (n < 0) {
            break;
        }
        client->received += (unsigned long long)n;
        if (run.mode == MODE_CONNECT_RATE) {
            run.stats.admitted++;
            client_release(client);
            return;
        }
        if (client->tls != NULL && tls_conn_feed(client->tls, buffer, (size_t)n) != 0) {
            client_release(client);
            return;
        }
    }
    /* What came with the hang-up (a 4.13, an alert) counts before the close. */
    if (client->state == CLIENT_ACTIVE && client->tls != NULL) {
        client_read_frames(client);
    }
    if (gone) {
        client_closed_by_server(client);
    } else if (client->state == CLIENT_HANDSHAKE) {
        client_handshake(client);
    } else if (client->tls != NULL && flush_tls(client) < 0) {
        client_closed_by_server(client);
    }
}

static short client_events(const struct client *client, bool flooding)
{
    if (client->state == CLIENT_CONNECTING) {
        return POLLOUT;
    }
    if (run.mode == MODE_REQUEST_FLOOD && client->state == CLIENT_ACTIVE) {
        /* Never read: only notice the server hanging up. */
        return (short)(POLLRDHUP | (flooding ? POLLOUT : 0));
    }
    short events = POLLIN;
    if (client->tls != NULL) {
        size_t pending;
        tls_conn_output(client->tls, &pending);
        if (pending > 0) {
            events |= POLLOUT;
        }
    }
    return events;
}

static void client_event(struct client *client, short revents, bool flooding)
{
    if (client->state == CLIENT_CONNECTING) {
        client_connected(client);
        return;
    }
    if (run.mode == MODE_REQUEST_FLOOD && client->state == CLIENT_ACTIVE) {
        if (revents & (POLLRDHUP | POLLHUP | POLLERR)) {
            client_closed_by_server(client);
            return;
        }
        if (flooding && (revents & POLLOUT)) {
            int rc = flush_tls(client);
            if (rc == 0) {
                rc = flood_more(client) == 0 ? flush_tls(client) : -1;
            }
            if (rc < 0) {
                client_closed_by_server(client);
            }
        }
        return;
    }
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        client_readable(client);
    } else if ((revents & POLLOUT) && client->tls != NULL && flush_tls(client) < 0) {
        client_closed_by_server(client);
    }
}

static int run_clients(void)
{
    size_t slots = run.mode == MODE_CONNECT_RATE ? run.concurrency : run.count;
    struct client *clients = calloc(slots, sizeof(*clients));
    struct pollfd *fds = calloc(slots, sizeof(*fds));
    size_t *index = calloc(slots, sizeof(*index));
    if (clients == NULL || fds == NULL || index == NULL) {
        return -1;
    }
    for (size_t i = 0; i < slots; i++) {
        clients[i] = (struct client){.fd = -1, .state = CLIENT_FREE};
    }
    double start = now_s();
    double setup_end = start + run.setup_timeout;
    double hold_end = 0;
    if (run.mode == MODE_CONNECT_RATE) {
        printf("ready\n");
        fflush(stdout);
        hold_end = start + run.hold;
    }
    unsigned long started = 0;
    for (;;) {
        double now = now_s();
        size_t setting_up = 0, active = 0;
        for (size_t i = 0; i < slots; i++) {
            if (clients[i].state == CLIENT_CONNECTING || clients[i].state == CLIENT_HANDSHAKE) {
                setting_up++;
            } else if (clients[i].state == CLIENT_ACTIVE) {
                active++;
            }
        }
        if (hold_end == 0 && ((started == run.count && setting_up == 0) || now >= setup_end)) {
            printf("ready opened=%lu handshakes=%lu active=%zu\n", run.stats.opened,
                   run.stats.handshakes, active);
            fflush(stdout);
            hold_end = now + run.hold;
        }
        if (hold_end != 0 && now >= hold_end) {
            break;
        }
        /* Start more connections, --concurrency setting up at a time. */
        for (size_t i = 0; i < slots && setting_up < run.concurrency; i++) {
            bool wanted = run.mode == MODE_CONNECT_RATE ? true : started < run.count;
            if (!wanted) {
                break;
            }
            if (clients[i].state != CLIENT_FREE ||
                (run.mode != MODE_CONNECT_RATE && i != started)) {
                continue;
            }
            if (client_start(&clients[i]) != 0) {
                run.stats.connect_failed++;
            }
            started++;
            setting_up++;
        }
        bool flooding = hold_end != 0 || run.mode == MODE_REQUEST_FLOOD;
        size_t count = 0;
        for (size_t i = 0; i < slots; i++) {
            if (clients[i].state != CLIENT_FREE) {
                fds[count] = (struct pollfd){.fd = clients[i].fd,
                                             .events = client_events(&clients[i], flooding)};
                index[count++] = i;
            }
        }
        double until = hold_end != 0 ? hold_end : setup_end;
        int timeout = (int)((until - now) * 1000) + 1;
        if (timeout > 100) {
            timeout = 100;
        }
        int n = poll(fds, count, timeout);
        if (n < 0 && errno != EINTR) {
            return -1;
        }
        for (size_t k = 0; n > 0 && k < count; k++) {
            if (fds[k].revents != 0) {
                client_event(&clients[index[k]], fds[k].revents, flooding);
            }
        }
    }
    for (size_t i = 0; i < slots; i++) {
        if (clients[i].state == CLIENT_ACTIVE || clients[i].state == CLIENT_HANDSHAKE) {
            run.stats.still_open++;
        }
        if (clients[i].state != CLIENT_FREE) {
            client_release(&clients[i]);
        }
    }
    free(clients);
    free(fds);
    free(index);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: dps-hostile MODE --endpoint HOST:PORT [--source ADDR] [--count N]\n"
                    "       [--concurrency N] [--hold S] [--setup-timeout S] [--refuse-window S]\n"
                    "       [--requests N] [--cert F --key F [--ca F]]\n"
                    "modes:");
    for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++) {
        fprintf(stderr, " %s", mode_names[i]);
    }
    fprintf(stderr, "\n");
}

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"source", required_argument, NULL, 's'},
        {"count", required_argument, NULL, 'n'},
        {"concurrency", required_argument, NULL, 'C'},
        DEVICE_LONG_OPTIONS,
        {"hold", required_argument, NULL, 'h'},
        {"setup-timeout", required_argument, NULL, 'T'},
        {"refuse-window", required_argument, NULL, 'w'},
        {"requests", required_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    struct device_options device = {0};
    int c;
    while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        if (device_option(&device, c))
            continue;
        switch (c) {
        case 's':
            run.source = (struct sockaddr_in){.sin_family = AF_INET};
            if (inet_pton(AF_INET, optarg, &run.source.sin_addr) != 1) {
                usage();
                return 2;
            }
            run.has_source = true;
            break;
        case 'n':
            run.count = strtoul(optarg, NULL, 10);
            break;
        case 'C':
            run.concurrency = strtoul(optarg, NULL, 10);
            break;
        case 'h':
            run.hold = strtod(optarg, NULL);
            break;
        case 'T':
            run.setup_timeout = strtod(optarg, NULL);
            break;
        case 'w':
            run.refuse_window = strtod(optarg, NULL);
            break;
        case 'r':
            run.requests = (unsigned)strtoul(optarg, NULL, 10);
            break;
        default:
            usage();
            return 2;
        }
    }
    size_t mode_count = sizeof(mode_names) / sizeof(mode_names[0]), m = mode_count;
    for (size_t i = 0; optind == argc - 1 && i < mode_count; i++) {
        if (strcmp(argv[optind], mode_names[i]) == 0) {
            m = i;
        }
    }
    if (m == mode_count || device.endpoint == NULL || run.count == 0 || run.concurrency == 0 ||
        run.requests == 0 || run.requests > MAX_PIPELINE || parse_endpoint(device.endpoint) != 0) {
        usage();
        return 2;
    }
    run.mode = (enum mode)m;
    raise_fd_limit();
    if (mode_uses_tls(run.mode)) {
        if (device.cert == NULL || device.key == NULL) {
            fprintf(stderr, "dps-hostile: %s needs --cert and --key\n", mode_names[m]);
            return 2;
        }
        char err[256];
        run.ctx = tls_client_context(NULL, device.cert, device.key, device.ca, err, sizeof(err));
        if (run.ctx == NULL) {
            fprintf(stderr, "dps-hostile: %s\n", err);
            return 1;
        }
    } else if (make_client_hello() != 0) {
        fprintf(stderr, "dps-hostile: cannot build a ClientHello\n");
        return 1;
    }
    if (run_clients() != 0) {
        fprintf(stderr, "dps-hostile: %s\n", strerror(errno));
        return 1;
    }
    const struct stats *s = &run.stats;
    printf("mode=%s opened=%lu connect_failed=%lu refused=%lu closed_by_server=%lu "
           "close_min=%.2f close_max=%.2f still_open=%lu handshakes=%lu handshake_failed=%lu "
           "responses=%lu too_large=%lu in_order=%d requests_sent=%lu admitted=%lu\n",
           mode_names[m], s->opened, s->connect_failed, s->refused, s->closed_by_server,
           s->close_min < 0 ? 0 : s->close_min, s->close_max, s->still_open, s->handshakes,
           s->handshake_failed, s->responses, s->too_large,
           run.mode == MODE_PIPELINE ? (!s->out_of_order && s->responses == s->requests_sent) : 0,
           s->requests_sent, s->admitted);
    SSL_CTX_free(run.ctx);
    return 0;
}
