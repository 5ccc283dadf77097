/*
 * loop_uring: the primary loop backend, the canonical io_uring server shape.
 *
 * One ring per loop, created SINGLE_ISSUER + DEFER_TASKRUN (plain flags when
 * the kernel refuses). The ring starts disabled and is enabled by the first
 * loop_run(), so a loop may be created on one thread and run on another;
 * operations queued before that are submitted by the first loop_run().
 *
 * Each listener has a multishot accept; each connection a multishot recv
 * that picks buffers from one provided-buffer ring (256 x 16 KiB). A buffer
 * goes back to the ring as soon as received() returns. Output goes out with
 * one send in flight per connection, from the head of its output chunks
 * (appends never move bytes the kernel may be reading). Multishot operations
 * are re-armed when a completion lacks IORING_CQE_F_MORE, including after
 * ENOBUFS when the buffer ring ran dry.
 *
 * Closing cancels the connection's operations by user_data and closes the fd
 * through the ring; every operation in flight holds a reference on the
 * connection, so it is freed only after its last completion has been seen.
 *
 * A foreign fd (loop_watch_fd) has at most one one-shot IORING_OP_POLL_ADD in
 * flight, re-armed after each completion: one-shot polls are level-triggered
 * (the mask is checked when armed), which owners such as hiredis need, since
 * they read once per wake-up and may leave bytes in the socket; a multishot
 * poll only reports new wake-ups. A change of interest while the poll is in
 * flight is a poll update (IORING_POLL_UPDATE_EVENTS), or a poll removal when
 * nothing is wanted any more. While a poll is in flight the watch is busy and
 * loop.c keeps its memory, so a completion after unwatch finds it dead but
 * allocated. An update or removal that arrives after the poll completed fails
 * with ENOENT, harmlessly: the completion re-arms with the current interest.
 *
 * Timers bound each wait (io_uring_submit_and_wait_timeout with
 * IORING_FEAT_EXT_ARG, so no timeout SQE is needed); a kernel without that
 * feature gets the epoll backend.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/loop_backend.h"

#define URING_ENTRIES 1024
#define URING_BUFFER_COUNT 256
#define URING_BUFFER_SIZE (16 * 1024)
#define URING_BUFFER_GROUP 0

struct uring_state {
    struct io_uring ring;
    bool enabled;
    struct io_uring_buf_ring *buffer_ring;
    size_t buffer_ring_size;
    uint8_t *buffers;
    struct __kernel_timespec tick_interval;
    unsigned tick_ms;
    bool tick_armed;
};

static struct uring_state *uring_state_of(struct loop *loop)
{
    return loop->backend_state;
}

static int uring_setup_ring(struct uring_state *state)
{
    struct io_uring_params params = {0};
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                   IORING_SETUP_R_DISABLED | IORING_SETUP_SUBMIT_ALL;
    if (io_uring_queue_init_params(URING_ENTRIES, &state->ring, &params) == 0)
        return 0;
    memset(&params, 0, sizeof(params));
    state->enabled = true;
    return io_uring_queue_init_params(URING_ENTRIES, &state->ring, &params);
}

static int uring_setup_buffers(struct uring_state *state)
{
    state->buffer_ring_size = URING_BUFFER_COUNT * sizeof(struct io_uring_buf);
    void *ring_memory = mmap(NULL, state->buffer_ring_size, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ring_memory == MAP_FAILED)
        return -errno;
    state->buffer_ring = ring_memory;
    state->buffers = malloc((size_t)URING_BUFFER_COUNT * URING_BUFFER_SIZE);
    if (state->buffers == NULL)
        return -ENOMEM;
    struct io_uring_buf_reg registration = {
        .ring_addr = (uint64_t)(uintptr_t)ring_memory,
        .ring_entries = URING_BUFFER_COUNT,
        .bgid = URING_BUFFER_GROUP,
    };
    int r = io_uring_register_buf_ring(&state->ring, &registration, 0);
    if (r < 0)
        return r;
    io_uring_buf_ring_init(state->buffer_ring);
    int mask = io_uring_buf_ring_mask(URING_BUFFER_COUNT);
    for (unsigned short id = 0; id < URING_BUFFER_COUNT; id++)
        io_uring_buf_ring_add(state->buffer_ring, state->buffers + (size_t)id * URING_BUFFER_SIZE,
                              URING_BUFFER_SIZE, id, mask, id);
    io_uring_buf_ring_advance(state->buffer_ring, URING_BUFFER_COUNT);
    return 0;
}

static void uring_free_state(struct uring_state *state, bool ring_ready)
{
    if (ring_ready)
        io_uring_queue_exit(&state->ring);
    if (state->buffer_ring != NULL)
        munmap(state->buffer_ring, state->buffer_ring_size);
    free(state->buffers);
    free(state);
}

static int uring_create(struct loop *loop, char *err, size_t err_length)
{
    struct uring_state *state = calloc(1, sizeof(*state));
    if (state == NULL) {
        snprintf(err, err_length, "io_uring: out of memory");
        return -ENOMEM;
    }
    int r = uring_setup_ring(state);
    if (r < 0) {
        snprintf(err, err_length, "io_uring_setup: %s", strerror(-r));
        uring_free_state(state, false);
        return r;
    }
    if (!(state->ring.features & IORING_FEAT_EXT_ARG)) {
        snprintf(err, err_length, "io_uring: the kernel lacks IORING_FEAT_EXT_ARG");
        uring_free_state(state, true);
        return -EOPNOTSUPP;
    }
    r = uring_setup_buffers(state);
    if (r < 0) {
        snprintf(err, err_length, "io_uring provided buffers: %s", strerror(-r));
        uring_free_state(state, true);
        return r;
    }
    loop->backend_state = state;
    return 0;
}

static void uring_destroy(struct loop *loop)
{
    struct uring_state *state = uring_state_of(loop);
    io_uring_unregister_buf_ring(&state->ring, URING_BUFFER_GROUP);
    uring_free_state(state, true);
}

/* An SQE, submitting queued ones first when the ring is full; NULL if that fails. */
static struct io_uring_sqe *uring_sqe(struct uring_state *state)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&state->ring);
    if (sqe == NULL && state->enabled && io_uring_submit(&state->ring) >= 0)
        sqe = io_uring_get_sqe(&state->ring);
    return sqe;
}

static void uring_cancel(struct uring_state *state, uint64_t user_data)
{
    struct io_uring_sqe *sqe = uring_sqe(state);
    if (sqe == NULL)
        return; /* the operation then ends with its fd's last reference */
    io_uring_prep_cancel64(sqe, user_data, 0);
    io_uring_sqe_set_data64(sqe, loop_tag_pack(NULL, LOOP_TAG_NONE));
}

static int uring_arm_accept(struct loop_listener *listener)
{
    struct io_uring_sqe *sqe = uring_sqe(uring_state_of(listener->loop));
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_multishot_accept(sqe, listener->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, loop_tag_pack(listener, LOOP_TAG_ACCEPT));
    listener->armed = true;
    return 0;
}

static int uring_listen(struct loop_listener *listener)
{
    return uring_arm_accept(listener);
}

/* Submitted at once, so that no connection is accepted once loop_stop_accepting() returns. */
static void uring_unlisten(struct loop_listener *listener)
{
    struct uring_state *state = uring_state_of(listener->loop);
    if (!listener->armed)
        return;
    uring_cancel(state, loop_tag_pack(listener, LOOP_TAG_ACCEPT));
    if (state->enabled)
        io_uring_submit(&state->ring);
}

static void uring_on_accept(struct loop_listener *listener, struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        listener->armed = false;
    if (cqe->res >= 0) {
        struct sockaddr_storage peer;
        socklen_t peer_length = sizeof(peer);
        if (getpeername(cqe->res, (struct sockaddr *)&peer, &peer_length) < 0)
            peer_length = 0;
        loop_conn_accepted(listener, cqe->res, peer_length > 0 ? (struct sockaddr *)&peer : NULL,
                           peer_length);
    }
    if (!listener->armed && listener->accepting)
        uring_arm_accept(listener);
}

static int uring_arm_recv(struct loop_conn *conn)
{
    struct io_uring_sqe *sqe = uring_sqe(uring_state_of(conn->loop));
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_recv_multishot(sqe, conn->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = URING_BUFFER_GROUP;
    io_uring_sqe_set_data64(sqe, loop_tag_pack(conn, LOOP_TAG_RECV));
    conn->receiving = true;
    loop_conn_hold(conn);
    return 0;
}

static int uring_start(struct loop_conn *conn)
{
    return uring_arm_recv(conn);
}

static void uring_recycle(struct uring_state *state, unsigned short id)
{
    io_uring_buf_ring_add(state->buffer_ring, state->buffers + (size_t)id * URING_BUFFER_SIZE,
                          URING_BUFFER_SIZE, id, io_uring_buf_ring_mask(URING_BUFFER_COUNT), 0);
    io_uring_buf_ring_advance(state->buffer_ring, 1);
}

static void uring_on_recv(struct loop_conn *conn, struct io_uring_cqe *cqe)
{
    struct uring_state *state = uring_state_of(conn->loop);
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (!more)
        conn->receiving = false;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned short id = (unsigned short)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        if (cqe->res > 0)
            loop_conn_received(conn, state->buffers + (size_t)id * URING_BUFFER_SIZE,
                               (size_t)cqe->res);
        uring_recycle(state, id);
    }
    if (cqe->res == 0) {
        loop_conn_eof(conn);
    } else if (cqe->res < 0 && cqe->res != -ENOBUFS && cqe->res != -ECANCELED) {
        loop_conn_finish(conn, -cqe->res);
    } else if (!more && !conn->closed) {
        int r = uring_arm_recv(conn);
        if (r < 0)
            loop_conn_finish(conn, -r);
    }
    if (!more)
        loop_conn_put(conn);
}

static void uring_send(struct loop_conn *conn)
{
    struct iovec head;
    if (loop_conn_output_iov(conn, &head, 1) == 0)
        return;
    struct io_uring_sqe *sqe = uring_sqe(uring_state_of(conn->loop));
    if (sqe == NULL) {
        loop_conn_finish(conn, EBUSY);
        return;
    }
    io_uring_prep_send(sqe, conn->fd, head.iov_base, head.iov_len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, loop_tag_pack(conn, LOOP_TAG_SEND));
    conn->sending = true;
    loop_conn_hold(conn);
}

static void uring_flush(struct loop_conn *conn)
{
    if (!conn->sending)
        uring_send(conn);
}

static void uring_on_send(struct loop_conn *conn, struct io_uring_cqe *cqe)
{
    conn->sending = false;
    if (!conn->closed) {
        if (cqe->res > 0)
            loop_conn_output_consume(conn, (size_t)cqe->res);
        if (cqe->res < 0)
            loop_conn_finish(conn, -cqe->res);
        else if (loop_conn_output_length(conn) > 0)
            uring_send(conn);
        else
            loop_conn_output_drained(conn);
    }
    loop_conn_put(conn);
}

/*
 * The fd is closed by the ring, after the cancellations: a recv queued but not
 * yet submitted must never find the fd number reused by another socket.
 */
static void uring_close(struct loop_conn *conn)
{
    struct uring_state *state = uring_state_of(conn->loop);
    if (conn->loop->destroying || !state->enabled) {
        close(conn->fd);
        return;
    }
    if (conn->receiving)
        uring_cancel(state, loop_tag_pack(conn, LOOP_TAG_RECV));
    if (conn->sending)
        uring_cancel(state, loop_tag_pack(conn, LOOP_TAG_SEND));
    struct io_uring_sqe *sqe = uring_sqe(state);
    if (sqe == NULL) {
        close(conn->fd);
        return;
    }
    io_uring_prep_close(sqe, conn->fd);
    io_uring_sqe_set_data64(sqe, loop_tag_pack(NULL, LOOP_TAG_NONE));
}

static int uring_arm_watch(struct loop_watch *watch)
{
    struct io_uring_sqe *sqe = uring_sqe(uring_state_of(watch->loop));
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_poll_multishot(sqe, watch->fd, POLLIN);
    io_uring_sqe_set_data64(sqe, loop_tag_pack(watch, LOOP_TAG_WATCH));
    return 0;
}

static void uring_on_watch(struct loop_watch *watch, struct io_uring_cqe *cqe)
{
    if (cqe->res > 0)
        loop_watch_fire(watch);
    if (!(cqe->flags & IORING_CQE_F_MORE))
        uring_arm_watch(watch);
}

static int uring_fd_watch(struct loop_fd *watch)
{
    if (fcntl(watch->fd, F_GETFD) < 0)
        return -errno;
    return 0;
}

static unsigned uring_poll_mask(unsigned want)
{
    return ((want & LOOP_FD_READABLE) ? POLLIN : 0) | ((want & LOOP_FD_WRITABLE) ? POLLOUT : 0);
}

static void uring_fd_sync(struct loop_fd *watch)
{
    if (watch->busy && watch->want == watch->armed)
        return;
    if (!watch->busy && watch->want == 0)
        return;
    struct io_uring_sqe *sqe = uring_sqe(uring_state_of(watch->loop));
    if (sqe == NULL) {
        loop_fd_mark_dirty(watch); /* the ring is full: try again next iteration */
        return;
    }
    uint64_t user_data = loop_tag_pack(watch, LOOP_TAG_FD);
    if (!watch->busy) {
        io_uring_prep_poll_add(sqe, watch->fd, uring_poll_mask(watch->want));
        io_uring_sqe_set_data64(sqe, user_data);
        watch->busy = true;
    } else if (watch->want == 0) {
        io_uring_prep_poll_remove(sqe, user_data);
        io_uring_sqe_set_data64(sqe, loop_tag_pack(NULL, LOOP_TAG_NONE));
    } else {
        /* new_user_data must be 0 unless IORING_POLL_UPDATE_USER_DATA: EINVAL otherwise. */
        io_uring_prep_poll_update(sqe, user_data, 0, uring_poll_mask(watch->want),
                                  IORING_POLL_UPDATE_EVENTS);
        io_uring_sqe_set_data64(sqe, loop_tag_pack(NULL, LOOP_TAG_NONE));
    }
    watch->armed = watch->want;
}

static void uring_fd_unwatch(struct loop_fd *watch)
{
    if (!watch->busy || watch->armed == 0)
        return; /* no poll, or its removal is already queued */
    struct io_uring_sqe *sqe = uring_sqe(uring_state_of(watch->loop));
    if (sqe == NULL)
        return; /* the poll completes when it fires; the watch is dead by then */
    io_uring_prep_poll_remove(sqe, loop_tag_pack(watch, LOOP_TAG_FD));
    io_uring_sqe_set_data64(sqe, loop_tag_pack(NULL, LOOP_TAG_NONE));
    watch->armed = 0;
}

static void uring_on_fd(struct loop_fd *watch, struct io_uring_cqe *cqe)
{
    watch->busy = false;
    watch->armed = 0;
    if (watch->dead)
        return;
    unsigned events = 0;
    if (cqe->res >= 0) {
        unsigned revents = (unsigned)cqe->res;
        if (revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR))
            events |= LOOP_FD_READABLE;
        if (revents & (POLLOUT | POLLHUP | POLLERR))
            events |= LOOP_FD_WRITABLE;
    } else if (cqe->res != -ECANCELED) {
        events = LOOP_FD_READABLE | LOOP_FD_WRITABLE; /* the owner meets the error in its I/O */
    }
    loop_fd_fire(watch, events);
    if (!watch->dead && watch->want != 0)
        loop_fd_mark_dirty(watch);
}

static int uring_arm_tick(struct loop *loop)
{
    struct uring_state *state = uring_state_of(loop);
    struct io_uring_sqe *sqe = uring_sqe(state);
    if (sqe == NULL)
        return -EBUSY;
    state->tick_interval.tv_sec = state->tick_ms / 1000;
    state->tick_interval.tv_nsec = (long long)(state->tick_ms % 1000) * 1000000;
    io_uring_prep_timeout(sqe, &state->tick_interval, 0, 0);
    io_uring_sqe_set_data64(sqe, loop_tag_pack(loop, LOOP_TAG_TICK));
    state->tick_armed = true;
    return 0;
}

/* A new interval takes effect when the armed timeout next expires. */
static int uring_set_tick(struct loop *loop, unsigned interval_ms)
{
    struct uring_state *state = uring_state_of(loop);
    state->tick_ms = interval_ms;
    if (interval_ms == 0 || state->tick_armed)
        return 0;
    return uring_arm_tick(loop);
}

static void uring_on_tick(struct loop *loop)
{
    struct uring_state *state = uring_state_of(loop);
    state->tick_armed = false;
    if (state->tick_ms == 0)
        return;
    loop_tick_fire(loop);
    if (state->tick_ms != 0 && !state->tick_armed)
        uring_arm_tick(loop);
}

static void uring_dispatch(struct loop *loop, struct io_uring_cqe *cqe)
{
    void *object = loop_tag_object(cqe->user_data);
    switch (loop_tag_of(cqe->user_data)) {
    case LOOP_TAG_ACCEPT:
        uring_on_accept(object, cqe);
        break;
    case LOOP_TAG_RECV:
        uring_on_recv(object, cqe);
        break;
    case LOOP_TAG_SEND:
        uring_on_send(object, cqe);
        break;
    case LOOP_TAG_WATCH:
        uring_on_watch(object, cqe);
        break;
    case LOOP_TAG_FD:
        uring_on_fd(object, cqe);
        break;
    case LOOP_TAG_TICK:
        uring_on_tick(loop);
        break;
    default:
        break;
    }
}

static int uring_poll(struct loop *loop, int64_t timeout_ns)
{
    struct uring_state *state = uring_state_of(loop);
    if (!state->enabled) {
        /* liburing 2.3 declares io_uring_enable_rings() but does not export it. */
        int r =
            io_uring_register((unsigned)state->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
        if (r < 0)
            return r;
        state->enabled = true;
    }
    int r;
    if (timeout_ns < 0) {
        r = io_uring_submit_and_wait(&state->ring, 1);
    } else {
        struct __kernel_timespec timeout = {.tv_sec = timeout_ns / 1000000000,
                                            .tv_nsec = timeout_ns % 1000000000};
        struct io_uring_cqe *first;
        r = io_uring_submit_and_wait_timeout(&state->ring, &first, 1, &timeout, NULL);
    }
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME)
        return r;
    struct io_uring_cqe *cqe;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&state->ring, head, cqe)
    {
        uring_dispatch(loop, cqe);
        seen++;
    }
    io_uring_cq_advance(&state->ring, seen);
    /* loop_run() returns now: queued closes must not wait for a run that may never come. */
    if (atomic_load(&loop->stop_requested) != 0 && io_uring_sq_ready(&state->ring) > 0)
        io_uring_submit(&state->ring);
    return 0;
}

const struct loop_backend_ops loop_uring_ops = {
    .create = uring_create,
    .destroy = uring_destroy,
    .listen = uring_listen,
    .unlisten = uring_unlisten,
    .start = uring_start,
    .flush = uring_flush,
    .close = uring_close,
    .watch = uring_arm_watch,
    .fd_watch = uring_fd_watch,
    .fd_sync = uring_fd_sync,
    .fd_unwatch = uring_fd_unwatch,
    .set_tick = uring_set_tick,
    .poll = uring_poll,
};
