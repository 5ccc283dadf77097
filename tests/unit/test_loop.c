/*
 * test_loop: the event loop's contract, checked against both backends. Each
 * case runs once with io_uring and once with epoll: a loop serves on its own
 * thread while the test thread drives real sockets on 127.0.0.1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dataplane/loop.h"
#include "dataplane/loop_backend.h" /* a connection's fd, for its socket options */
#include "loop_wait.h"

#define MAX_SERVER_CONNS 256
#define CLOSE_PAYLOAD (200 * 1024)

enum server_mode {
    MODE_ECHO,
    MODE_REFUSE,
    MODE_SEND_THEN_CLOSE,
    MODE_SEND_THEN_DISCARD,
};

struct server;

struct server_conn {
    struct server *server;
    struct loop_conn *conn;
    int closed_calls;
    int error;
};

struct server {
    enum server_mode mode;
    struct loop *loop;
    int listen_fd;
    uint16_t port;
    pthread_t thread;
    bool thread_started;
    struct server_conn *conns[MAX_SERVER_CONNS];
    int conn_count;
    atomic_int accepted;
    atomic_int closed;
    atomic_int closed_with_error;
    atomic_int double_closed;
    atomic_int last_error;
    atomic_int send_after_close_result;
    atomic_int bad_peer;
    atomic_int without_nodelay;
    atomic_int ticks;
    atomic_int watch_total;
    atomic_int running;
    int run_result;
    int watch_fd;
};

static uint8_t pattern_byte(unsigned stream, size_t offset)
{
    return (uint8_t)(offset * 131 + (offset >> 9) * 7 + stream * 29 + 3);
}

static void fill_pattern(uint8_t *data, size_t length, unsigned stream, size_t offset)
{
    for (size_t i = 0; i < length; i++)
        data[i] = pattern_byte(stream, offset + i);
}

static bool matches_pattern(const uint8_t *data, size_t length, unsigned stream, size_t offset)
{
    for (size_t i = 0; i < length; i++)
        if (data[i] != pattern_byte(stream, offset + i))
            return false;
    return true;
}

static void sleep_ms(int ms)
{
    struct timespec duration = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&duration, &duration) < 0 && errno == EINTR)
        continue;
}

/*
 * Blocking calls of the test thread retry on EINTR: a thread that created an
 * io_uring ring is interrupted (task work) when the kernel tears the ring down
 * after loop_destroy(), and calls with a timeout then fail with EINTR.
 */
static ssize_t recv_retrying(int fd, void *buffer, size_t length)
{
    ssize_t r;
    do
        r = recv(fd, buffer, length, 0);
    while (r < 0 && errno == EINTR);
    return r;
}

static bool wait_for_at_least(atomic_int *value, int target, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited++) {
        if (atomic_load(value) >= target)
            return true;
        sleep_ms(1);
    }
    return atomic_load(value) >= target;
}

static struct server_conn *server_track(struct server *server, struct loop_conn *conn)
{
    struct server_conn *server_conn = calloc(1, sizeof(*server_conn));
    if (server_conn == NULL || server->conn_count == MAX_SERVER_CONNS)
        abort();
    server_conn->server = server;
    server_conn->conn = conn;
    server->conns[server->conn_count++] = server_conn;
    return server_conn;
}

static void *server_accepted(void *loop_user, struct loop_conn *conn, const struct sockaddr *peer,
                             socklen_t peer_length)
{
    struct server *server = loop_user;
    atomic_fetch_add(&server->accepted, 1);
    const struct sockaddr_in *peer_in = (const struct sockaddr_in *)peer;
    if (peer == NULL || peer_length < sizeof(*peer_in) || peer_in->sin_family != AF_INET ||
        peer_in->sin_addr.s_addr != htonl(INADDR_LOOPBACK) || peer_in->sin_port == 0)
        atomic_fetch_add(&server->bad_peer, 1);
    int nodelay = 0;
    socklen_t nodelay_length = sizeof(nodelay);
    if (getsockopt(conn->fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &nodelay_length) != 0 ||
        nodelay == 0)
        atomic_fetch_add(&server->without_nodelay, 1);
    if (server->mode == MODE_REFUSE)
        return NULL;
    struct server_conn *server_conn = server_track(server, conn);
    if (server->mode == MODE_SEND_THEN_CLOSE || server->mode == MODE_SEND_THEN_DISCARD) {
        /* Uneven pieces, so the output spans and splits chunks. */
        uint8_t piece[7001];
        for (size_t offset = 0; offset < CLOSE_PAYLOAD; offset += sizeof(piece)) {
            size_t length = CLOSE_PAYLOAD - offset;
            if (length > sizeof(piece))
                length = sizeof(piece);
            fill_pattern(piece, length, 0, offset);
            if (loop_send(conn, piece, length) != 0)
                abort();
        }
        loop_close(conn, server->mode == MODE_SEND_THEN_DISCARD);
        atomic_store(&server->send_after_close_result, loop_send(conn, piece, 1));
    }
    return server_conn;
}

static void server_received(void *conn_user, const uint8_t *data, size_t length)
{
    struct server_conn *server_conn = conn_user;
    if (loop_send(server_conn->conn, data, length) != 0)
        loop_close(server_conn->conn, true);
}

static void server_closed(void *conn_user, int error)
{
    struct server_conn *server_conn = conn_user;
    struct server *server = server_conn->server;
    if (server_conn->closed_calls++ > 0)
        atomic_fetch_add(&server->double_closed, 1);
    server_conn->error = error;
    if (error != 0) {
        atomic_fetch_add(&server->closed_with_error, 1);
        atomic_store(&server->last_error, error);
    }
    atomic_fetch_add(&server->closed, 1);
}

static const struct loop_handler server_handler = {
    .accepted = server_accepted,
    .received = server_received,
    .closed = server_closed,
};

/* A bound, listening, non-blocking SO_REUSEPORT socket on 127.0.0.1:port (0: any). */
static int make_listener(uint16_t port, uint16_t *bound_port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int one = 1;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
    struct sockaddr_in address = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&address, sizeof(address)), 0);
    assert_int_equal(listen(fd, 512), 0);
    socklen_t length = sizeof(address);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&address, &length), 0);
    *bound_port = ntohs(address.sin_port);
    return fd;
}

static struct server *server_create(enum loop_backend backend, enum server_mode mode)
{
    struct server *server = calloc(1, sizeof(*server));
    assert_non_null(server);
    server->mode = mode;
    server->watch_fd = -1;
    char err[256] = "";
    server->loop = loop_create(backend, &server_handler, server, err, sizeof(err));
    assert_non_null(server->loop);
    assert_int_equal(loop_backend_of(server->loop), backend);
    server->listen_fd = make_listener(0, &server->port);
    assert_int_equal(loop_listen(server->loop, server->listen_fd), 0);
    return server;
}

static void *server_thread(void *argument)
{
    struct server *server = argument;
    atomic_store(&server->running, 1);
    server->run_result = loop_run(server->loop);
    atomic_store(&server->running, 0);
    return NULL;
}

static void server_start(struct server *server)
{
    assert_int_equal(pthread_create(&server->thread, NULL, server_thread, server), 0);
    server->thread_started = true;
}

static void server_join(struct server *server)
{
    loop_stop(server->loop);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    assert_int_equal(pthread_timedjoin_np(server->thread, NULL, &deadline), 0);
    server->thread_started = false;
    assert_int_equal(server->run_result, 0);
}

static void server_free(struct server *server)
{
    if (server->thread_started)
        server_join(server);
    loop_destroy(server->loop);
    close(server->listen_fd);
    if (server->watch_fd >= 0)
        close(server->watch_fd);
    for (int i = 0; i < server->conn_count; i++)
        free(server->conns[i]);
    free(server);
}

static int connect_client(uint16_t port, int receive_buffer)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (receive_buffer > 0)
        assert_int_equal(
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer)), 0);
    struct timeval timeout = {.tv_sec = 10};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)), 0);
    struct sockaddr_in address = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&address, sizeof(address)) < 0) {
        /* Interrupted, the connection still completes in the background. */
        assert_int_equal(errno, EINTR);
        struct pollfd pollfd = {.fd = fd, .events = POLLOUT};
        while (poll(&pollfd, 1, 10000) < 0)
            assert_int_equal(errno, EINTR);
        int error = -1;
        socklen_t length = sizeof(error);
        assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length), 0);
        assert_int_equal(error, 0);
    }
    return fd;
}

/* Sends a message and expects it back unchanged. */
static void ping(int fd, const char *message)
{
    size_t length = strlen(message);
    ssize_t sent;
    do
        sent = send(fd, message, length, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    assert_int_equal(sent, (ssize_t)length);
    char reply[64];
    size_t got = 0;
    while (got < length) {
        ssize_t r = recv_retrying(fd, reply + got, length - got);
        if (r <= 0)
            fail_msg("ping %s: recv returned %zd (%s)", message, r, r < 0 ? strerror(errno) : "");
        got += (size_t)r;
    }
    assert_memory_equal(reply, message, length);
}

/* Reads until EOF (or reset); returns the byte count, checking the pattern. */
static size_t read_pattern_until_end(int fd, bool *pattern_ok)
{
    uint8_t buffer[8192];
    size_t total = 0;
    *pattern_ok = true;
    for (;;) {
        ssize_t r = recv_retrying(fd, buffer, sizeof(buffer));
        if (r <= 0) {
            assert_true(r == 0 || errno == ECONNRESET);
            return total;
        }
        if (!matches_pattern(buffer, (size_t)r, 0, total))
            *pattern_ok = false;
        total += (size_t)r;
    }
}

#define ECHO_CLIENTS 50
#define ECHO_BYTES (1024 * 1024)
#define ECHO_WINDOW (128 * 1024)

struct echo_client {
    int fd;
    size_t sent;
    size_t received;
};

/*
 * 50 clients each push 1 MiB through the echo server concurrently, keeping up
 * to 128 KiB in flight; half of them have a tiny receive buffer, so the
 * server's output queues while its sends come up short.
 */
static void echo_many_clients(enum loop_backend backend)
{
    struct server *server = server_create(backend, MODE_ECHO);
    /* Accepted sockets inherit a small send buffer: the server's sends come up short. */
    int send_buffer = 8192;
    assert_int_equal(
        setsockopt(server->listen_fd, SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof(send_buffer)), 0);
    server_start(server);
    static struct echo_client clients[ECHO_CLIENTS];
    for (int i = 0; i < ECHO_CLIENTS; i++) {
        clients[i] = (struct echo_client){.fd = connect_client(server->port, i % 2 ? 4096 : 0)};
        assert_int_equal(fcntl(clients[i].fd, F_SETFL, O_NONBLOCK), 0);
    }
    static uint8_t buffer[16384];
    int done = 0;
    while (done < ECHO_CLIENTS) {
        struct pollfd pollfds[ECHO_CLIENTS];
        int indexes[ECHO_CLIENTS];
        int count = 0;
        for (int i = 0; i < ECHO_CLIENTS; i++) {
            struct echo_client *client = &clients[i];
            if (client->received == ECHO_BYTES)
                continue;
            bool can_send =
                client->sent < ECHO_BYTES && client->sent - client->received < ECHO_WINDOW;
            pollfds[count] =
                (struct pollfd){.fd = client->fd, .events = POLLIN | (can_send ? POLLOUT : 0)};
            indexes[count++] = i;
        }
        int ready = poll(pollfds, (nfds_t)count, 10000);
        if (ready < 0 && errno == EINTR)
            continue;
        assert_true(ready > 0);
        for (int k = 0; k < count; k++) {
            struct echo_client *client = &clients[indexes[k]];
            unsigned stream = (unsigned)indexes[k];
            if (pollfds[k].revents & POLLOUT) {
                size_t length = ECHO_BYTES - client->sent;
                if (length > ECHO_WINDOW - (client->sent - client->received))
                    length = ECHO_WINDOW - (client->sent - client->received);
                if (length > sizeof(buffer))
                    length = sizeof(buffer);
                fill_pattern(buffer, length, stream, client->sent);
                ssize_t r = send(client->fd, buffer, length, MSG_NOSIGNAL);
                assert_true(r > 0 || errno == EAGAIN || errno == EINTR);
                if (r > 0)
                    client->sent += (size_t)r;
            }
            if (pollfds[k].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t r = recv(client->fd, buffer, sizeof(buffer), 0);
                assert_true(r > 0 || (r < 0 && (errno == EAGAIN || errno == EINTR)));
                if (r > 0) {
                    assert_true(client->received + (size_t)r <= client->sent);
                    assert_true(matches_pattern(buffer, (size_t)r, stream, client->received));
                    client->received += (size_t)r;
                    if (client->received == ECHO_BYTES)
                        done++;
                }
            }
        }
    }
    for (int i = 0; i < ECHO_CLIENTS; i++)
        close(clients[i].fd);
    assert_true(wait_for_at_least(&server->closed, ECHO_CLIENTS, 10000));
    assert_int_equal(atomic_load(&server->accepted), ECHO_CLIENTS);
    assert_int_equal(atomic_load(&server->closed_with_error), 0);
    assert_int_equal(atomic_load(&server->bad_peer), 0);
    /* No setsockopt per connection: each inherits TCP_NODELAY from the listener. */
    assert_int_equal(atomic_load(&server->without_nodelay), 0);
    server_free(server);
}
LOOP_BOTH_BACKENDS(echo_many_clients)

/* loop_close(conn, false) right after queueing 200 KiB: every byte arrives, then EOF. */
static void close_after_flush_delivers_everything(enum loop_backend backend)
{
    struct server *server = server_create(backend, MODE_SEND_THEN_CLOSE);
    server_start(server);
    int fd = connect_client(server->port, 4096);
    sleep_ms(50); /* let the server's output back up against the small window */
    bool pattern_ok;
    assert_int_equal(read_pattern_until_end(fd, &pattern_ok), CLOSE_PAYLOAD);
    assert_true(pattern_ok);
    assert_true(wait_for_at_least(&server->closed, 1, 5000));
    assert_int_equal(atomic_load(&server->closed_with_error), 0);
    assert_int_equal(atomic_load(&server->send_after_close_result), -EPIPE);
    close(fd);
    server_free(server);
}
LOOP_BOTH_BACKENDS(close_after_flush_delivers_everything)

/* loop_close(conn, true): queued output is dropped and the peer sees the end at once. */
static void close_discarding_output(enum loop_backend backend)
{
    struct server *server = server_create(backend, MODE_SEND_THEN_DISCARD);
    server_start(server);
    int fd = connect_client(server->port, 0);
    bool pattern_ok;
    assert_int_equal(read_pattern_until_end(fd, &pattern_ok), 0);
    assert_true(wait_for_at_least(&server->closed, 1, 5000));
    assert_int_equal(atomic_load(&server->closed_with_error), 0);
    close(fd);
    server_free(server);
}
LOOP_BOTH_BACKENDS(close_discarding_output)

static void peer_close_calls_closed_once(enum loop_backend backend)
{
    enum { CLIENTS = 20 };
    struct server *server = server_create(backend, MODE_ECHO);
    server_start(server);
    int fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = connect_client(server->port, 0);
        ping(fds[i], "ping");
    }
    for (int i = 0; i < CLIENTS; i++) {
        if (i % 2)
            shutdown(fds[i], SHUT_WR); /* half close first: still one closed() */
        close(fds[i]);
    }
    assert_true(wait_for_at_least(&server->closed, CLIENTS, 5000));
    sleep_ms(100);
    server_join(server);
    assert_int_equal(atomic_load(&server->closed), CLIENTS);
    assert_int_equal(atomic_load(&server->double_closed), 0);
    assert_int_equal(atomic_load(&server->closed_with_error), 0);
    for (int i = 0; i < server->conn_count; i++)
        assert_int_equal(server->conns[i]->closed_calls, 1);
    server_free(server);
}
LOOP_BOTH_BACKENDS(peer_close_calls_closed_once)

static void peer_reset_reports_error(enum loop_backend backend)
{
    struct server *server = server_create(backend, MODE_ECHO);
    server_start(server);
    int fd = connect_client(server->port, 0);
    ping(fd, "ping");
    struct linger linger = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger)), 0);
    close(fd);
    assert_true(wait_for_at_least(&server->closed, 1, 5000));
    assert_int_equal(atomic_load(&server->closed_with_error), 1);
    assert_int_equal(atomic_load(&server->last_error), ECONNRESET);
    server_free(server);
}
LOOP_BOTH_BACKENDS(peer_reset_reports_error)

static void refused_connection_is_closed(enum loop_backend backend)
{
    struct server *server = server_create(backend, MODE_REFUSE);
    server_start(server);
    int fd = connect_client(server->port, 0);
    char byte;
    ssize_t r = recv_retrying(fd, &byte, 1);
    assert_true(r == 0 || (r < 0 && errno == ECONNRESET));
    assert_int_equal(atomic_load(&server->accepted), 1);
    sleep_ms(20);
    assert_int_equal(atomic_load(&server->closed), 0);
    close(fd);
    server_free(server);
}
LOOP_BOTH_BACKENDS(refused_connection_is_closed)

static int make_socketpair(int fds[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    return fcntl(fds[0], F_SETFL, O_NONBLOCK);
}

static void attach_socketpair_end(enum loop_backend backend)
{
    struct server *server = server_create(backend, MODE_ECHO);
    int fds[2];
    assert_int_equal(make_socketpair(fds), 0);
    struct server_conn *server_conn = server_track(server, NULL);
    server_conn->conn = loop_attach(server->loop, fds[0], server_conn);
    assert_non_null(server_conn->conn);
    server_start(server);
    ping(fds[1], "hello over a socketpair");
    close(fds[1]);
    assert_true(wait_for_at_least(&server->closed, 1, 5000));
    assert_int_equal(server_conn->error, 0);
    assert_int_equal(atomic_load(&server->accepted), 0);
    server_free(server);
}
LOOP_BOTH_BACKENDS(attach_socketpair_end)

/* Output is bounded: LOOP_MAX_PENDING_OUTPUT is accepted, one byte more is not. */
static void send_beyond_limit_is_refused(enum loop_backend backend)
{
    struct server *server = server_create(backend, MODE_ECHO);
    int fds[2];
    assert_int_equal(make_socketpair(fds), 0);
    int send_buffer = 4096;
    assert_int_equal(setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof(send_buffer)),
                     0);
    struct server_conn *server_conn = server_track(server, NULL);
    server_conn->conn = loop_attach(server->loop, fds[0], server_conn);
    assert_non_null(server_conn->conn);
    uint8_t *data = malloc(LOOP_MAX_PENDING_OUTPUT);
    assert_non_null(data);
    fill_pattern(data, LOOP_MAX_PENDING_OUTPUT, 0, 0);
    assert_int_equal(loop_send(server_conn->conn, data, LOOP_MAX_PENDING_OUTPUT - 1000), 0);
    assert_int_equal(loop_send(server_conn->conn, data + LOOP_MAX_PENDING_OUTPUT - 1000, 1000), 0);
    assert_int_equal(loop_send(server_conn->conn, data, 1), -ENOBUFS);
    loop_close(server_conn->conn, false);
    server_start(server);
    bool pattern_ok;
    assert_int_equal(read_pattern_until_end(fds[1], &pattern_ok), LOOP_MAX_PENDING_OUTPUT);
    assert_true(pattern_ok);
    close(fds[1]);
    free(data);
    server_free(server);
}
LOOP_BOTH_BACKENDS(send_beyond_limit_is_refused)

/* Counts five ticks, then turns the tick off from inside its own callback. */
static void count_tick(void *user)
{
    struct server *server = user;
    if (atomic_fetch_add(&server->ticks, 1) + 1 == 5)
        loop_set_tick(server->loop, 0, NULL, NULL);
}

static void tick_fires(enum loop_backend backend)
{
    struct server *server = server_create(backend, MODE_ECHO);
    assert_int_equal(loop_set_tick(server->loop, 10, count_tick, server), 0);
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    server_start(server);
    assert_true(wait_for_at_least(&server->ticks, 5, 3000));
    clock_gettime(CLOCK_MONOTONIC, &end);
    long elapsed_ms = (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1000000;
    assert_true(elapsed_ms >= 40);
    sleep_ms(60);
    assert_int_equal(atomic_load(&server->ticks), 5);
    server_free(server);
}
LOOP_BOTH_BACKENDS(tick_fires)

static void drain_watch(void *user)
{
    struct server *server = user;
    uint64_t value;
    if (read(server->watch_fd, &value, sizeof(value)) == sizeof(value))
        atomic_fetch_add(&server->watch_total, (int)value);
}

static void eventfd_watch_fires(enum loop_backend backend)
{
    struct server *server = server_create(backend, MODE_ECHO);
    server->watch_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(server->watch_fd >= 0);
    assert_int_equal(loop_watch_eventfd(server->loop, server->watch_fd, drain_watch, server), 0);
    server_start(server);
    uint64_t one = 1;
    uint64_t two = 2;
    assert_int_equal(write(server->watch_fd, &one, sizeof(one)), sizeof(one));
    assert_true(wait_for_at_least(&server->watch_total, 1, 3000));
    assert_int_equal(write(server->watch_fd, &two, sizeof(two)), sizeof(two));
    assert_true(wait_for_at_least(&server->watch_total, 3, 3000));
    sleep_ms(20);
    assert_int_equal(atomic_load(&server->watch_total), 3);
    server_free(server);
}
LOOP_BOTH_BACKENDS(eventfd_watch_fires)

/* The first run returns at once (a stop came before it); the second serves until stopped. */
static void *run_twice_thread(void *argument)
{
    struct server *server = argument;
    server->run_result = loop_run(server->loop);
    if (server->run_result == 0)
        atomic_store(&server->running, 1);
    server->run_result = loop_run(server->loop);
    atomic_store(&server->running, 0);
    return NULL;
}

static void stop_from_another_thread(enum loop_backend backend)
{
    struct server *server = server_create(backend, MODE_ECHO);
    loop_stop(server->loop);
    assert_int_equal(pthread_create(&server->thread, NULL, run_twice_thread, server), 0);
    server->thread_started = true;
    assert_true(wait_for_at_least(&server->running, 1, 3000));
    sleep_ms(100);
    assert_int_equal(atomic_load(&server->running), 1);
    int fd = connect_client(server->port, 0);
    ping(fd, "still serving");
    server_join(server);
    assert_int_equal(atomic_load(&server->running), 0);
    close(fd);
    server_free(server);
}
LOOP_BOTH_BACKENDS(stop_from_another_thread)

static void destroy_closes_open_connections(enum loop_backend backend)
{
    enum { CLIENTS = 10 };
    struct server *server = server_create(backend, MODE_ECHO);
    server_start(server);
    int fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = connect_client(server->port, 0);
        ping(fds[i], "open");
    }
    server_join(server);
    assert_int_equal(atomic_load(&server->closed), 0);
    loop_destroy(server->loop);
    server->loop = NULL;
    assert_int_equal(atomic_load(&server->closed), CLIENTS);
    assert_int_equal(atomic_load(&server->double_closed), 0);
    assert_int_equal(atomic_load(&server->last_error), ECANCELED);
    for (int i = 0; i < CLIENTS; i++) {
        char byte;
        ssize_t r = recv_retrying(fds[i], &byte, 1);
        assert_true(r == 0 || (r < 0 && errno == ECONNRESET));
        close(fds[i]);
    }
    server_free(server);
}
LOOP_BOTH_BACKENDS(destroy_closes_open_connections)

static void stop_accepting_on_watch(void *user)
{
    struct server *server = user;
    uint64_t value;
    if (read(server->watch_fd, &value, sizeof(value)) == sizeof(value))
        loop_stop_accepting(server->loop);
    atomic_fetch_add(&server->watch_total, 1);
}

static void stop_accepting_keeps_established(enum loop_backend backend)
{
    struct server *server = server_create(backend, MODE_ECHO);
    server->watch_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(server->watch_fd >= 0);
    assert_int_equal(
        loop_watch_eventfd(server->loop, server->watch_fd, stop_accepting_on_watch, server), 0);
    server_start(server);
    int established = connect_client(server->port, 0);
    ping(established, "before");
    uint64_t one = 1;
    assert_int_equal(write(server->watch_fd, &one, sizeof(one)), sizeof(one));
    assert_true(wait_for_at_least(&server->watch_total, 1, 3000));
    int late = connect_client(server->port, 0); /* completes in the kernel's backlog */
    sleep_ms(100);
    assert_int_equal(atomic_load(&server->accepted), 1);
    ping(established, "after");
    close(late);
    close(established);
    server_free(server);
}
LOOP_BOTH_BACKENDS(stop_accepting_keeps_established)

struct shard {
    enum loop_backend backend;
    uint16_t port;
    struct server *server;
    atomic_int ready;
};

/* A shard thread creates its own loop and listener, like the daemon does. */
static void *shard_thread(void *argument)
{
    struct shard *shard = argument;
    struct server *server = calloc(1, sizeof(*server));
    if (server == NULL)
        abort();
    server->mode = MODE_ECHO;
    server->watch_fd = -1;
    char err[256];
    server->loop = loop_create(shard->backend, &server_handler, server, err, sizeof(err));
    if (server->loop == NULL)
        abort();
    server->listen_fd = make_listener(shard->port, &server->port);
    if (loop_listen(server->loop, server->listen_fd) != 0)
        abort();
    shard->server = server;
    atomic_store(&shard->ready, 1);
    server->run_result = loop_run(server->loop);
    return NULL;
}

static void two_loops_share_a_port(enum loop_backend backend)
{
    enum { CLIENTS = 64 };
    uint16_t port;
    int probe = make_listener(0, &port); /* reserves a free port for both shards */
    struct shard shards[2] = {{.backend = backend, .port = port},
                              {.backend = backend, .port = port}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, shard_thread, &shards[i]), 0);
        assert_true(wait_for_at_least(&shards[i].ready, 1, 5000));
    }
    close(probe);
    int fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = connect_client(port, 0);
        ping(fds[i], "shard");
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(loop_backend_of(shards[i].server->loop), backend);
        assert_true(atomic_load(&shards[i].server->accepted) > 0);
    }
    assert_int_equal(atomic_load(&shards[0].server->accepted) +
                         atomic_load(&shards[1].server->accepted),
                     CLIENTS);
    for (int i = 0; i < CLIENTS; i++)
        close(fds[i]);
    for (int i = 0; i < 2; i++) {
        loop_stop(shards[i].server->loop);
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(shards[i].server->run_result, 0);
        server_free(shards[i].server);
    }
}
LOOP_BOTH_BACKENDS(two_loops_share_a_port)

/*
 * Foreign fd watches and timers. These cases run the loop on the test thread,
 * for a bounded time set by a timer that calls loop_stop().
 */
static const struct loop_handler idle_handler = {
    .accepted = server_accepted,
    .received = server_received,
    .closed = server_closed,
};

static struct loop *idle_loop(enum loop_backend backend)
{
    char err[256] = "";
    struct loop *loop = loop_create(backend, &idle_handler, NULL, err, sizeof(err));
    assert_non_null(loop);
    assert_int_equal(loop_backend_of(loop), backend);
    return loop;
}

static void stop_loop(void *user)
{
    loop_stop(user);
}

static void run_for(struct loop *loop, unsigned ms)
{
    struct loop_timer *stopper = loop_timer_create(loop, stop_loop, loop);
    assert_non_null(stopper);
    loop_timer_start(stopper, ms, 0);
    assert_int_equal(loop_run(loop), 0);
    loop_timer_destroy(stopper);
}

static long elapsed_ms_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

struct fd_probe {
    struct loop_fd *watch;
    int fd;
    int readable;
    int writable;
    int calls;
    int stop_writable_after; /* drop write interest after this many writable calls */
    bool unwatch_in_callback;
    struct fd_probe *other; /* unwatched (and closed) by this probe's first call */
};

static void unwatch_probe(struct fd_probe *probe)
{
    loop_fd_unwatch(probe->watch);
    probe->watch = NULL;
    close(probe->fd);
    probe->fd = -1;
}

/* Reads one byte per readable call: the rest must be reported again (level-triggered). */
static void probe_ready(void *user, unsigned events)
{
    struct fd_probe *probe = user;
    probe->calls++;
    if (probe->other != NULL) {
        if (probe->other->watch != NULL)
            unwatch_probe(probe->other);
        loop_fd_want(probe->watch, false, false);
        return;
    }
    if (events & LOOP_FD_READABLE) {
        probe->readable++;
        char byte;
        ssize_t r = read(probe->fd, &byte, 1);
        (void)r;
    }
    if (events & LOOP_FD_WRITABLE) {
        probe->writable++;
        if (probe->writable == probe->stop_writable_after)
            loop_fd_want(probe->watch, true, false);
    }
    if (probe->unwatch_in_callback)
        unwatch_probe(probe);
}

static void probe_pair(struct fd_probe *probe, int *peer)
{
    int fds[2];
    assert_int_equal(make_socketpair(fds), 0);
    probe->fd = fds[0];
    *peer = fds[1];
}

static void probe_watch(struct loop *loop, struct fd_probe *probe)
{
    probe->watch = loop_watch_fd(loop, probe->fd, probe_ready, probe);
    assert_non_null(probe->watch);
}

static void send_bytes(int fd, const char *bytes)
{
    assert_int_equal(send(fd, bytes, strlen(bytes), MSG_NOSIGNAL), (ssize_t)strlen(bytes));
}

/* Readiness is level-triggered, only for what is wanted, and toggles take effect at once. */
static void fd_watch_is_level_triggered(enum loop_backend backend)
{
    struct loop *loop = idle_loop(backend);
    struct fd_probe probe = {.stop_writable_after = 3};
    int peer;
    probe_pair(&probe, &peer);
    probe_watch(loop, &probe);
    send_bytes(peer, "12345");
    run_for(loop, 30);
    assert_int_equal(probe.calls, 0); /* nothing wanted yet */

    loop_fd_want(probe.watch, true, false);
    run_for(loop, 50);
    assert_int_equal(probe.readable, 5); /* one byte per call, nothing after the last */
    assert_int_equal(probe.writable, 0);

    loop_fd_want(probe.watch, true, true);
    run_for(loop, 50);
    assert_int_equal(probe.writable, 3); /* the callback dropped write interest at 3 */

    /* Toggled on and off before the loop runs: the kernel never hears of it. */
    loop_fd_want(probe.watch, true, true);
    loop_fd_want(probe.watch, true, false);
    run_for(loop, 30);
    assert_int_equal(probe.writable, 3);

    loop_fd_want(probe.watch, false, false);
    send_bytes(peer, "67");
    run_for(loop, 30);
    assert_int_equal(probe.readable, 5);
    loop_fd_want(probe.watch, true, false); /* bytes that came while unwatched are reported */
    run_for(loop, 30);
    assert_int_equal(probe.readable, 7);

    /* A hang-up is reported as readable to an owner that wants to read. */
    close(peer);
    int before = probe.readable;
    probe.unwatch_in_callback = true;
    run_for(loop, 30);
    assert_int_equal(probe.readable, before + 1);
    assert_null(probe.watch);
    loop_destroy(loop);
}
LOOP_BOTH_BACKENDS(fd_watch_is_level_triggered)

/*
 * Unwatch while the kernel still holds a poll for the fd, close the fd, and
 * reuse its number at once: the old owner is never called again and nothing
 * touches freed memory (AddressSanitizer watches).
 */
static void fd_unwatch_with_poll_in_flight(enum loop_backend backend)
{
    struct loop *loop = idle_loop(backend);
    struct fd_probe old_probe = {0};
    int old_peer;
    probe_pair(&old_probe, &old_peer);
    probe_watch(loop, &old_probe);
    loop_fd_want(old_probe.watch, true, false);
    run_for(loop, 20); /* the poll is in the kernel now */

    int old_fd = old_probe.fd;
    unwatch_probe(&old_probe);
    struct fd_probe new_probe = {0};
    int new_peer;
    probe_pair(&new_probe, &new_peer);
    assert_int_equal(new_probe.fd, old_fd); /* the number is reused at once */
    probe_watch(loop, &new_probe);
    loop_fd_want(new_probe.watch, true, false);
    /* The old socket is closed (or only held by the kernel's poll): nobody may hear this. */
    ssize_t ignored = send(old_peer, "x", 1, MSG_NOSIGNAL);
    (void)ignored;
    send_bytes(new_peer, "y");
    run_for(loop, 30);
    assert_int_equal(old_probe.calls, 0);
    assert_int_equal(new_probe.readable, 1);

    /* Unwatched from its own callback, with both directions ready in the same batch. */
    send_bytes(new_peer, "z");
    loop_fd_want(new_probe.watch, true, true);
    new_probe.unwatch_in_callback = true;
    run_for(loop, 30);
    assert_int_equal(new_probe.calls, 2);
    assert_null(new_probe.watch);

    /* Two fds ready in one batch; whichever is called first unwatches the other. */
    struct fd_probe first = {0}, second = {0};
    int first_peer, second_peer;
    probe_pair(&first, &first_peer);
    probe_pair(&second, &second_peer);
    probe_watch(loop, &first);
    probe_watch(loop, &second);
    first.other = &second;
    second.other = &first;
    loop_fd_want(first.watch, true, true);
    loop_fd_want(second.watch, true, true);
    run_for(loop, 30);
    assert_int_equal(first.calls + second.calls, 1);
    struct fd_probe *survivor = first.watch != NULL ? &first : &second;
    assert_non_null(survivor->watch);
    unwatch_probe(survivor);
    run_for(loop, 10);
    close(old_peer);
    close(new_peer);
    close(first_peer);
    close(second_peer);
    loop_destroy(loop);
}
LOOP_BOTH_BACKENDS(fd_unwatch_with_poll_in_flight)

struct timer_probe {
    struct loop_timer *timer;
    int fired;
    int stop_after;
    bool destroy_in_callback;
    bool rearm_zero; /* re-arm with delay 0 from the callback, stop_after times */
    int order;
    int *sequence;
    int *sequence_length;
    struct timespec fired_at;
};

static void timer_probe_fire(void *user)
{
    struct timer_probe *probe = user;
    probe->fired++;
    clock_gettime(CLOCK_MONOTONIC, &probe->fired_at);
    if (probe->sequence != NULL)
        probe->sequence[(*probe->sequence_length)++] = probe->order;
    if (probe->rearm_zero && probe->fired < probe->stop_after) {
        loop_timer_start(probe->timer, 0, 0);
        return;
    }
    if (probe->fired == probe->stop_after) {
        if (probe->destroy_in_callback) {
            loop_timer_destroy(probe->timer);
            probe->timer = NULL;
        } else {
            loop_timer_stop(probe->timer);
        }
    }
}

static struct loop_timer *probe_timer(struct loop *loop, struct timer_probe *probe)
{
    probe->timer = loop_timer_create(loop, timer_probe_fire, probe);
    assert_non_null(probe->timer);
    return probe->timer;
}

static void timers_fire_in_order(enum loop_backend backend)
{
    struct loop *loop = idle_loop(backend);
    int sequence[8];
    int length = 0;
    struct timer_probe once[3] = {0};
    unsigned delays[3] = {40, 10, 25};
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int i = 0; i < 3; i++) {
        once[i] =
            (struct timer_probe){.order = i, .sequence = sequence, .sequence_length = &length};
        loop_timer_start(probe_timer(loop, &once[i]), delays[i], 0);
    }
    struct timer_probe stopped = {0};
    loop_timer_start(probe_timer(loop, &stopped), 5, 0);
    loop_timer_stop(stopped.timer);
    assert_false(loop_timer_armed(stopped.timer));
    struct timer_probe periodic = {.stop_after = 5};
    loop_timer_start(probe_timer(loop, &periodic), 10, 10);
    struct timer_probe self_destroying = {.stop_after = 3, .destroy_in_callback = true};
    loop_timer_start(probe_timer(loop, &self_destroying), 5, 5);
    run_for(loop, 120);

    assert_int_equal(length, 3);
    assert_int_equal(sequence[0], 1);
    assert_int_equal(sequence[1], 2);
    assert_int_equal(sequence[2], 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(once[i].fired, 1);
        long at = (once[i].fired_at.tv_sec - start.tv_sec) * 1000 +
                  (once[i].fired_at.tv_nsec - start.tv_nsec) / 1000000;
        assert_true(at >= (long)delays[i]);
        assert_false(loop_timer_armed(once[i].timer));
    }
    assert_int_equal(stopped.fired, 0);
    assert_int_equal(periodic.fired, 5);
    assert_false(loop_timer_armed(periodic.timer));
    assert_int_equal(self_destroying.fired, 3);
    assert_null(self_destroying.timer);

    /* Restarting an armed timer moves its deadline. */
    struct timespec restart;
    clock_gettime(CLOCK_MONOTONIC, &restart);
    loop_timer_start(once[0].timer, 10, 0);
    loop_timer_start(once[0].timer, 40, 0);
    run_for(loop, 80);
    assert_int_equal(once[0].fired, 2);
    long at = (once[0].fired_at.tv_sec - restart.tv_sec) * 1000 +
              (once[0].fired_at.tv_nsec - restart.tv_nsec) / 1000000;
    assert_true(at >= 40);
    for (int i = 0; i < 3; i++)
        loop_timer_destroy(once[i].timer);
    loop_timer_destroy(stopped.timer);
    loop_timer_destroy(periodic.timer);
    loop_destroy(loop);
}
LOOP_BOTH_BACKENDS(timers_fire_in_order)

/* A timer re-armed with delay 0 from its own callback runs once per iteration: I/O goes on. */
static void zero_delay_timer_does_not_starve_io(enum loop_backend backend)
{
    struct loop *loop = idle_loop(backend);
    struct timer_probe spinner = {.rearm_zero = true, .stop_after = 1000000};
    loop_timer_start(probe_timer(loop, &spinner), 0, 0);
    struct fd_probe probe = {0};
    int peer;
    probe_pair(&probe, &peer);
    probe_watch(loop, &probe);
    loop_fd_want(probe.watch, true, false);
    send_bytes(peer, "abc");
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    run_for(loop, 30);
    assert_true(elapsed_ms_since(&start) < 1000);
    assert_int_equal(probe.readable, 3);
    assert_true(spinner.fired > 3);
    unwatch_probe(&probe);
    close(peer);
    loop_timer_destroy(spinner.timer);
    loop_destroy(loop);
}
LOOP_BOTH_BACKENDS(zero_delay_timer_does_not_starve_io)

static void uring_is_used_where_available(void **state)
{
    (void)state;
    char err[256];
    struct loop *loop = loop_create(LOOP_BACKEND_URING, &server_handler, NULL, err, sizeof(err));
    assert_non_null(loop);
    assert_int_equal(loop_backend_of(loop), LOOP_BACKEND_URING);
    assert_string_equal(loop_backend_name(loop_backend_of(loop)), "io_uring");
    loop_destroy(loop);
    loop = loop_create(LOOP_BACKEND_EPOLL, &server_handler, NULL, err, sizeof(err));
    assert_non_null(loop);
    assert_int_equal(loop_backend_of(loop), LOOP_BACKEND_EPOLL);
    assert_string_equal(loop_backend_name(loop_backend_of(loop)), "epoll");
    loop_destroy(loop);
}

/* In a child where seccomp makes io_uring_setup fail, asking for io_uring gives epoll. */
static void falls_back_to_epoll_without_io_uring(void **state)
{
    (void)state;
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        struct sock_filter filter[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog program = {.len = sizeof(filter) / sizeof(filter[0]), .filter = filter};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
            prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0)
            _exit(2);
        char err[256];
        struct loop *loop =
            loop_create(LOOP_BACKEND_URING, &server_handler, NULL, err, sizeof(err));
        if (loop == NULL)
            _exit(3);
        int code = loop_backend_of(loop) == LOOP_BACKEND_EPOLL ? 0 : 4;
        loop_destroy(loop);
        _exit(code);
    }
    int status;
    pid_t waited;
    do
        waited = waitpid(child, &status, 0);
    while (waited < 0 && errno == EINTR);
    assert_int_equal(waited, child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

#define BOTH(name) cmocka_unit_test(name##_uring), cmocka_unit_test(name##_epoll)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(echo_many_clients),
        BOTH(close_after_flush_delivers_everything),
        BOTH(close_discarding_output),
        BOTH(peer_close_calls_closed_once),
        BOTH(peer_reset_reports_error),
        BOTH(refused_connection_is_closed),
        BOTH(attach_socketpair_end),
        BOTH(send_beyond_limit_is_refused),
        BOTH(tick_fires),
        BOTH(eventfd_watch_fires),
        BOTH(stop_from_another_thread),
        BOTH(destroy_closes_open_connections),
        BOTH(stop_accepting_keeps_established),
        BOTH(two_loops_share_a_port),
        BOTH(fd_watch_is_level_triggered),
        BOTH(fd_unwatch_with_poll_in_flight),
        BOTH(timers_fire_in_order),
        BOTH(zero_delay_timer_does_not_starve_io),
        cmocka_unit_test(uring_is_used_where_available),
        cmocka_unit_test(falls_back_to_epoll_without_io_uring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
