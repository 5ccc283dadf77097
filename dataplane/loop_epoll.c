/*
 * loop_epoll: the fallback loop backend, for hosts where io_uring cannot be
 * set up (seccomp profiles, kernel.io_uring_disabled, old kernels).
 *
 * Level-triggered epoll: a readable connection gets one read into the loop's
 * 16 KiB buffer per wake-up, so a fast sender cannot starve the others.
 * Output is written directly when the loop flushes its pending work; only
 * when the socket buffer fills is EPOLLOUT armed, and disarmed once the
 * output is gone. The tick is a timerfd; timers bound epoll_wait's timeout.
 *
 * A foreign fd (loop_watch_fd) is registered at once, edge-triggered with no
 * events, so that errors (EBADF, EEXIST, EPERM) surface in loop_watch_fd()
 * and a hung-up fd nobody listens to cannot spin the loop; its interest then
 * becomes a level-triggered EPOLL_CTL_MOD when the loop syncs, and unwatch
 * removes it before the owner closes the fd.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "dataplane/loop_backend.h"

#define EPOLL_READ_SIZE (16 * 1024)
#define EPOLL_MAX_EVENTS 256
#define EPOLL_ACCEPT_BATCH 64
#define EPOLL_WRITE_IOVECS 16

struct epoll_state {
    int epoll_fd;
    int timer_fd;
    uint8_t buffer[EPOLL_READ_SIZE];
};

static struct epoll_state *epoll_state_of(struct loop *loop)
{
    return loop->backend_state;
}

static int epoll_create_backend(struct loop *loop, char *err, size_t err_length)
{
    struct epoll_state *state = calloc(1, sizeof(*state));
    if (state == NULL) {
        snprintf(err, err_length, "epoll: out of memory");
        return -ENOMEM;
    }
    state->timer_fd = -1;
    state->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (state->epoll_fd < 0) {
        int error = errno;
        snprintf(err, err_length, "epoll_create1: %s", strerror(error));
        free(state);
        return -error;
    }
    loop->backend_state = state;
    return 0;
}

static void epoll_destroy_backend(struct loop *loop)
{
    struct epoll_state *state = epoll_state_of(loop);
    if (state->timer_fd >= 0)
        close(state->timer_fd);
    close(state->epoll_fd);
    free(state);
}

static int epoll_control(struct loop *loop, int operation, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event event = {.events = events, .data.u64 = data};
    if (epoll_ctl(epoll_state_of(loop)->epoll_fd, operation, fd, &event) < 0)
        return -errno;
    return 0;
}

static int epoll_listen(struct loop_listener *listener)
{
    return epoll_control(listener->loop, EPOLL_CTL_ADD, listener->fd, EPOLLIN,
                         loop_tag_pack(listener, LOOP_TAG_ACCEPT));
}

static void epoll_unlisten(struct loop_listener *listener)
{
    epoll_control(listener->loop, EPOLL_CTL_DEL, listener->fd, 0, 0);
}

static uint32_t epoll_conn_events(const struct loop_conn *conn)
{
    return (conn->receiving ? EPOLLIN : 0) | (conn->sending ? EPOLLOUT : 0);
}

static int epoll_start(struct loop_conn *conn)
{
    conn->receiving = true;
    return epoll_control(conn->loop, EPOLL_CTL_ADD, conn->fd, epoll_conn_events(conn),
                         loop_tag_pack(conn, LOOP_TAG_CONN));
}

static void epoll_update(struct loop_conn *conn, bool receiving, bool sending)
{
    if (conn->receiving == receiving && conn->sending == sending)
        return;
    conn->receiving = receiving;
    conn->sending = sending;
    int r = epoll_control(conn->loop, EPOLL_CTL_MOD, conn->fd, epoll_conn_events(conn),
                          loop_tag_pack(conn, LOOP_TAG_CONN));
    if (r < 0)
        loop_conn_finish(conn, -r);
}

/* Writes as much output as the socket takes; arms EPOLLOUT for the rest. */
static void epoll_write(struct loop_conn *conn)
{
    while (loop_conn_output_length(conn) > 0) {
        struct iovec iov[EPOLL_WRITE_IOVECS];
        struct msghdr message = {.msg_iov = iov};
        message.msg_iovlen = (size_t)loop_conn_output_iov(conn, iov, EPOLL_WRITE_IOVECS);
        ssize_t written = sendmsg(conn->fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                epoll_update(conn, conn->receiving, true);
                return;
            }
            loop_conn_finish(conn, errno);
            return;
        }
        loop_conn_output_consume(conn, (size_t)written);
    }
    epoll_update(conn, conn->receiving, false);
    loop_conn_output_drained(conn);
}

static void epoll_flush(struct loop_conn *conn)
{
    if (!conn->sending)
        epoll_write(conn);
}

static void epoll_close(struct loop_conn *conn)
{
    epoll_control(conn->loop, EPOLL_CTL_DEL, conn->fd, 0, 0);
    close(conn->fd);
}

static void epoll_read(struct loop_conn *conn)
{
    struct epoll_state *state = epoll_state_of(conn->loop);
    ssize_t length = recv(conn->fd, state->buffer, sizeof(state->buffer), MSG_DONTWAIT);
    if (length > 0) {
        loop_conn_received(conn, state->buffer, (size_t)length);
    } else if (length == 0) {
        loop_conn_eof(conn);
        if (!conn->closed)
            epoll_update(conn, false, conn->sending);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        loop_conn_finish(conn, errno);
    }
}

static void epoll_conn_event(struct loop_conn *conn, uint32_t events)
{
    loop_conn_hold(conn);
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && conn->receiving)
        epoll_read(conn);
    if (!conn->closed && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && conn->sending)
        epoll_write(conn);
    if (!conn->closed && (events & (EPOLLERR | EPOLLHUP)) && !conn->receiving && !conn->sending) {
        /* Hang-up reported after EOF with nothing left to write or read: report why. */
        int error = 0;
        socklen_t length = sizeof(error);
        getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &error, &length);
        loop_conn_finish(conn, error);
    }
    loop_conn_put(conn);
}

static void epoll_accept(struct loop_listener *listener)
{
    for (int i = 0; i < EPOLL_ACCEPT_BATCH && listener->accepting; i++) {
        struct sockaddr_storage peer;
        socklen_t peer_length = sizeof(peer);
        int fd = accept4(listener->fd, (struct sockaddr *)&peer, &peer_length,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or an error level-triggered epoll reports again */
        loop_conn_accepted(listener, fd, (struct sockaddr *)&peer, peer_length);
    }
}

static int epoll_watch(struct loop_watch *watch)
{
    return epoll_control(watch->loop, EPOLL_CTL_ADD, watch->fd, EPOLLIN,
                         loop_tag_pack(watch, LOOP_TAG_WATCH));
}

static uint32_t epoll_fd_events(unsigned want)
{
    if (want == 0)
        return EPOLLET;
    return ((want & LOOP_FD_READABLE) ? EPOLLIN : 0) | ((want & LOOP_FD_WRITABLE) ? EPOLLOUT : 0);
}

static int epoll_fd_watch(struct loop_fd *watch)
{
    return epoll_control(watch->loop, EPOLL_CTL_ADD, watch->fd, epoll_fd_events(0),
                         loop_tag_pack(watch, LOOP_TAG_FD));
}

static void epoll_fd_sync(struct loop_fd *watch)
{
    if (watch->want == watch->armed)
        return;
    int r = epoll_control(watch->loop, EPOLL_CTL_MOD, watch->fd, epoll_fd_events(watch->want),
                          loop_tag_pack(watch, LOOP_TAG_FD));
    if (r < 0) {
        /* The owner meets the error in its own read or write. */
        loop_fd_fire(watch, watch->want);
        return;
    }
    watch->armed = watch->want;
}

static void epoll_fd_unwatch(struct loop_fd *watch)
{
    epoll_control(watch->loop, EPOLL_CTL_DEL, watch->fd, 0, 0);
}

static void epoll_fd_event(struct loop_fd *watch, uint32_t events)
{
    unsigned ready = 0;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        ready |= LOOP_FD_READABLE;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        ready |= LOOP_FD_WRITABLE;
    loop_fd_fire(watch, ready);
}

static int epoll_set_tick(struct loop *loop, unsigned interval_ms)
{
    struct epoll_state *state = epoll_state_of(loop);
    if (state->timer_fd < 0) {
        if (interval_ms == 0)
            return 0;
        state->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (state->timer_fd < 0)
            return -errno;
        int r = epoll_control(loop, EPOLL_CTL_ADD, state->timer_fd, EPOLLIN,
                              loop_tag_pack(loop, LOOP_TAG_TICK));
        if (r < 0) {
            close(state->timer_fd);
            state->timer_fd = -1;
            return r;
        }
    }
    struct timespec interval = {.tv_sec = interval_ms / 1000,
                                .tv_nsec = (long)(interval_ms % 1000) * 1000000};
    struct itimerspec spec = {.it_interval = interval, .it_value = interval};
    if (timerfd_settime(state->timer_fd, 0, &spec, NULL) < 0)
        return -errno;
    return 0;
}

static void epoll_tick(struct loop *loop)
{
    uint64_t expirations;
    if (read(epoll_state_of(loop)->timer_fd, &expirations, sizeof(expirations)) > 0)
        loop_tick_fire(loop);
}

static int epoll_poll(struct loop *loop, int64_t timeout_ns)
{
    struct epoll_event events[EPOLL_MAX_EVENTS];
    int timeout_ms = -1;
    if (timeout_ns >= 0) {
        int64_t ms = (timeout_ns + 999999) / 1000000; /* never wake before the deadline */
        timeout_ms = ms > INT32_MAX ? INT32_MAX : (int)ms;
    }
    int count = epoll_wait(epoll_state_of(loop)->epoll_fd, events, EPOLL_MAX_EVENTS, timeout_ms);
    if (count < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < count; i++) {
        uint64_t data = events[i].data.u64;
        switch (loop_tag_of(data)) {
        case LOOP_TAG_CONN:
            epoll_conn_event(loop_tag_object(data), events[i].events);
            break;
        case LOOP_TAG_ACCEPT:
            epoll_accept(loop_tag_object(data));
            break;
        case LOOP_TAG_WATCH:
            loop_watch_fire(loop_tag_object(data));
            break;
        case LOOP_TAG_FD:
            epoll_fd_event(loop_tag_object(data), events[i].events);
            break;
        case LOOP_TAG_TICK:
            epoll_tick(loop);
            break;
        default:
            break;
        }
    }
    return 0;
}

const struct loop_backend_ops loop_epoll_ops = {
    .create = epoll_create_backend,
    .destroy = epoll_destroy_backend,
    .listen = epoll_listen,
    .unlisten = epoll_unlisten,
    .start = epoll_start,
    .flush = epoll_flush,
    .close = epoll_close,
    .watch = epoll_watch,
    .fd_watch = epoll_fd_watch,
    .fd_sync = epoll_fd_sync,
    .fd_unwatch = epoll_fd_unwatch,
    .set_tick = epoll_set_tick,
    .poll = epoll_poll,
};
