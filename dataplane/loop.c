/*
 * loop: the backend-independent half of the event loop (see loop.h and
 * loop_backend.h). Connections, their output buffers and their lifetime live
 * here; loop_uring.c and loop_epoll.c only move bytes and report events.
 *
 * Anything an owner asks for from inside a callback (loop_send, loop_close) is
 * only recorded and put on the pending list; the loop acts on it once the
 * current batch of events is dispatched. So callbacks never re-enter each
 * other, output produced by several callbacks leaves in one send, and
 * closed() is never called from inside loop_send() or loop_close().
 *
 * A connection is freed when its last reference goes: the open reference is
 * dropped once closed() has returned, and io_uring holds one per operation
 * still in flight, so a late completion never touches freed memory.
 *
 * Timers live here too, in a binary min-heap ordered by deadline: the loop
 * waits no longer than the earliest deadline and runs expired timers first
 * thing in each iteration. Foreign fd watches (loop_watch_fd) keep their
 * interest here and tell the backend only once per iteration; an unwatched
 * handle goes to a graveyard and is freed when no batch and no kernel request
 * can still name it.
 */
#include "dataplane/loop.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/loop_backend.h"

#define LOOP_CHUNK_SIZE (16 * 1024)

static void loop_stop_drain(void *user)
{
    struct loop *loop = user;
    uint64_t value;
    ssize_t r = read(loop->stop_fd, &value, sizeof(value));
    (void)r;
}

static int loop_add_watch(struct loop *loop, int fd, void (*fn)(void *user), void *user)
{
    struct loop_watch *watch = calloc(1, sizeof(*watch));
    if (watch == NULL)
        return -ENOMEM;
    watch->loop = loop;
    watch->fd = fd;
    watch->fn = fn;
    watch->user = user;
    int r = loop->ops->watch(watch);
    if (r < 0) {
        free(watch);
        return r;
    }
    watch->next = loop->watches;
    loop->watches = watch;
    return 0;
}

static struct loop *loop_create_with(const struct loop_backend_ops *ops, enum loop_backend backend,
                                     const struct loop_handler *handler, void *loop_user, char *err,
                                     size_t err_length)
{
    struct loop *loop = calloc(1, sizeof(*loop));
    if (loop == NULL) {
        snprintf(err, err_length, "out of memory");
        return NULL;
    }
    loop->ops = ops;
    loop->backend = backend;
    loop->handler = *handler;
    loop->user = loop_user;
    atomic_init(&loop->stop_requested, 0);
    loop->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->stop_fd < 0) {
        snprintf(err, err_length, "eventfd: %s", strerror(errno));
        free(loop);
        return NULL;
    }
    if (ops->create(loop, err, err_length) < 0) {
        close(loop->stop_fd);
        free(loop);
        return NULL;
    }
    int r = loop_add_watch(loop, loop->stop_fd, loop_stop_drain, loop);
    if (r < 0) {
        snprintf(err, err_length, "%s: watching the stop eventfd: %s", loop_backend_name(backend),
                 strerror(-r));
        ops->destroy(loop);
        close(loop->stop_fd);
        free(loop);
        return NULL;
    }
    return loop;
}

struct loop *loop_create(enum loop_backend wanted, const struct loop_handler *handler,
                         void *loop_user, char *err, size_t err_length)
{
    if (wanted == LOOP_BACKEND_URING) {
        struct loop *loop = loop_create_with(&loop_uring_ops, LOOP_BACKEND_URING, handler,
                                             loop_user, err, err_length);
        if (loop != NULL)
            return loop;
    }
    return loop_create_with(&loop_epoll_ops, LOOP_BACKEND_EPOLL, handler, loop_user, err,
                            err_length);
}

enum loop_backend loop_backend_of(const struct loop *loop)
{
    return loop->backend;
}

const char *loop_backend_name(enum loop_backend backend)
{
    switch (backend) {
    case LOOP_BACKEND_URING:
        return "io_uring";
    case LOOP_BACKEND_EPOLL:
        return "epoll";
    }
    return "unknown";
}

static void loop_conn_free(struct loop_conn *conn)
{
    struct loop *loop = conn->loop;
    if (conn->prev != NULL)
        conn->prev->next = conn->next;
    else
        loop->conns = conn->next;
    if (conn->next != NULL)
        conn->next->prev = conn->prev;
    struct loop_chunk *chunk = conn->output_head;
    while (chunk != NULL) {
        struct loop_chunk *next = chunk->next;
        free(chunk);
        chunk = next;
    }
    free(conn);
}

static void loop_fd_reap(struct loop *loop, bool all);

void loop_destroy(struct loop *loop)
{
    if (loop == NULL)
        return;
    loop->destroying = true;
    for (struct loop_conn *conn = loop->conns; conn != NULL; conn = conn->next) {
        if (!conn->closed) {
            conn->refs++; /* keep it listed while closed() runs */
            loop_conn_finish(conn, ECANCELED);
            conn->refs--;
        }
    }
    loop->ops->destroy(loop);
    /* The backend is gone: references held by abandoned operations mean nothing now. */
    while (loop->conns != NULL)
        loop_conn_free(loop->conns);
    while (loop->listeners != NULL) {
        struct loop_listener *next = loop->listeners->next;
        free(loop->listeners);
        loop->listeners = next;
    }
    while (loop->watches != NULL) {
        struct loop_watch *next = loop->watches->next;
        free(loop->watches);
        loop->watches = next;
    }
    loop_fd_reap(loop, true);
    free(loop->timer_heap);
    close(loop->stop_fd);
    free(loop);
}

static void loop_set_nodelay(int fd)
{
    int one = 1;
    /* Fails harmlessly on sockets that are not TCP (socketpairs in tests). */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/*
 * Every connection the loop serves has TCP_NODELAY (a TLS flight must not wait
 * for an ACK). Set on the listener, it costs no system call per connection:
 * Linux copies the listening socket into each connection it accepts, options
 * included (tests/unit/test_loop.c checks it on both backends). A connection
 * that completed before this call keeps what the listener had then, so a
 * caller that listens earlier sets it before listen() too (shard.c does).
 */
int loop_listen(struct loop *loop, int listen_fd)
{
    struct loop_listener *listener = calloc(1, sizeof(*listener));
    if (listener == NULL)
        return -ENOMEM;
    loop_set_nodelay(listen_fd);
    listener->loop = loop;
    listener->fd = listen_fd;
    listener->accepting = true;
    int r = loop->ops->listen(listener);
    if (r < 0) {
        free(listener);
        return r;
    }
    listener->next = loop->listeners;
    loop->listeners = listener;
    return 0;
}

void loop_stop_accepting(struct loop *loop)
{
    for (struct loop_listener *listener = loop->listeners; listener != NULL;
         listener = listener->next) {
        if (listener->accepting) {
            listener->accepting = false;
            loop->ops->unlisten(listener);
        }
    }
}

static struct loop_conn *loop_conn_new(struct loop *loop, int fd, void *user)
{
    struct loop_conn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL)
        return NULL;
    conn->loop = loop;
    conn->fd = fd;
    conn->user = user;
    conn->refs = 1;
    conn->next = loop->conns;
    if (loop->conns != NULL)
        loop->conns->prev = conn;
    loop->conns = conn;
    return conn;
}

void loop_conn_accepted(struct loop_listener *listener, int fd, const struct sockaddr *peer,
                        socklen_t peer_length)
{
    struct loop *loop = listener->loop;
    struct loop_conn *conn = loop_conn_new(loop, fd, NULL); /* TCP_NODELAY from the listener */
    if (conn == NULL) {
        close(fd);
        return;
    }
    void *user = loop->handler.accepted(loop->user, conn, peer, peer_length);
    if (user == NULL) {
        /* Refused: no closed() call; anything queued from accepted() is dropped. */
        conn->closed = true;
        close(fd);
        loop_conn_put(conn);
        return;
    }
    conn->user = user;
    int r = loop->ops->start(conn);
    if (r < 0)
        loop_conn_finish(conn, -r);
}

struct loop_conn *loop_attach(struct loop *loop, int fd, void *conn_user)
{
    struct loop_conn *conn = loop_conn_new(loop, fd, conn_user);
    if (conn == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    loop_set_nodelay(fd);
    int r = loop->ops->start(conn);
    if (r < 0) {
        /* The caller keeps the fd: forget the connection without closing it. */
        conn->closed = true;
        loop_conn_put(conn);
        errno = -r;
        return NULL;
    }
    return conn;
}

void loop_conn_hold(struct loop_conn *conn)
{
    conn->refs++;
}

void loop_conn_put(struct loop_conn *conn)
{
    if (--conn->refs == 0)
        loop_conn_free(conn);
}

static void loop_conn_mark_pending(struct loop_conn *conn)
{
    if (conn->pending)
        return;
    conn->pending = true;
    conn->refs++;
    conn->pending_next = conn->loop->pending;
    conn->loop->pending = conn;
}

void loop_conn_received(struct loop_conn *conn, const uint8_t *data, size_t length)
{
    if (conn->closed || conn->closing)
        return;
    conn->loop->handler.received(conn->user, data, length);
}

void loop_conn_eof(struct loop_conn *conn)
{
    if (conn->closed)
        return;
    conn->eof = true;
    if (loop_conn_output_length(conn) == 0) {
        loop_conn_finish(conn, 0);
        return;
    }
    conn->closing = true;
    loop_conn_mark_pending(conn);
}

void loop_conn_finish(struct loop_conn *conn, int error)
{
    if (conn->closed)
        return;
    conn->closed = true;
    conn->loop->ops->close(conn);
    conn->fd = -1;
    conn->loop->handler.closed(conn->user, error);
    loop_conn_put(conn);
}

size_t loop_conn_output_length(const struct loop_conn *conn)
{
    return conn->discard ? 0 : conn->output_length;
}

int loop_conn_output_iov(const struct loop_conn *conn, struct iovec *iov, int max)
{
    int count = 0;
    if (conn->discard)
        return 0;
    for (struct loop_chunk *chunk = conn->output_head; chunk != NULL && count < max;
         chunk = chunk->next) {
        if (chunk->end == chunk->start)
            continue;
        iov[count].iov_base = chunk->data + chunk->start;
        iov[count].iov_len = chunk->end - chunk->start;
        count++;
    }
    return count;
}

void loop_conn_output_consume(struct loop_conn *conn, size_t count)
{
    conn->output_length -= count;
    while (count > 0) {
        struct loop_chunk *chunk = conn->output_head;
        size_t take = chunk->end - chunk->start;
        if (take > count)
            take = count;
        chunk->start += take;
        count -= take;
        if (chunk->start == chunk->end) {
            /* Idle connections keep no output memory. */
            conn->output_head = chunk->next;
            if (conn->output_head == NULL)
                conn->output_tail = NULL;
            free(chunk);
        }
    }
}

void loop_conn_output_drained(struct loop_conn *conn)
{
    if (!conn->closed && conn->closing && loop_conn_output_length(conn) == 0)
        loop_conn_finish(conn, 0);
}

int loop_send(struct loop_conn *conn, const uint8_t *data, size_t length)
{
    if (conn->closed || conn->closing)
        return -EPIPE;
    if (length == 0)
        return 0;
    if (length > LOOP_MAX_PENDING_OUTPUT - conn->output_length)
        return -ENOBUFS;
    struct loop_chunk *tail = conn->output_tail;
    size_t room = tail != NULL ? tail->capacity - tail->end : 0;
    size_t first = room < length ? room : length;
    if (first < length) {
        size_t capacity = length - first > LOOP_CHUNK_SIZE ? length - first : LOOP_CHUNK_SIZE;
        struct loop_chunk *chunk = malloc(sizeof(*chunk) + capacity);
        if (chunk == NULL)
            return -ENOMEM;
        chunk->next = NULL;
        chunk->start = 0;
        chunk->end = length - first;
        chunk->capacity = capacity;
        memcpy(chunk->data, data + first, length - first);
        if (tail != NULL)
            tail->next = chunk;
        else
            conn->output_head = chunk;
        conn->output_tail = chunk;
    }
    if (first > 0) {
        memcpy(tail->data + tail->end, data, first);
        tail->end += first;
    }
    conn->output_length += length;
    loop_conn_mark_pending(conn);
    return 0;
}

void loop_close(struct loop_conn *conn, bool discard_output)
{
    if (conn->closed)
        return;
    conn->closing = true;
    if (discard_output)
        conn->discard = true;
    loop_conn_mark_pending(conn);
}

int loop_watch_eventfd(struct loop *loop, int fd, void (*fn)(void *user), void *user)
{
    return loop_add_watch(loop, fd, fn, user);
}

void loop_watch_fire(struct loop_watch *watch)
{
    watch->fn(watch->user);
}

int loop_set_tick(struct loop *loop, unsigned interval_ms, void (*fn)(void *user), void *user)
{
    if (fn == NULL) {
        loop->tick_fn = NULL;
        return loop->ops->set_tick(loop, 0);
    }
    if (interval_ms == 0)
        return -EINVAL;
    loop->tick_fn = fn;
    loop->tick_user = user;
    return loop->ops->set_tick(loop, interval_ms);
}

void loop_tick_fire(struct loop *loop)
{
    if (loop->tick_fn != NULL)
        loop->tick_fn(loop->tick_user);
}

struct loop_fd *loop_watch_fd(struct loop *loop, int fd, void (*fn)(void *user, unsigned events),
                              void *user)
{
    struct loop_fd *watch = calloc(1, sizeof(*watch));
    if (watch == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    watch->loop = loop;
    watch->fd = fd;
    watch->fn = fn;
    watch->user = user;
    int r = loop->ops->fd_watch(watch);
    if (r < 0) {
        free(watch);
        errno = -r;
        return NULL;
    }
    return watch;
}

void loop_fd_mark_dirty(struct loop_fd *watch)
{
    if (watch->dirty || watch->dead)
        return;
    watch->dirty = true;
    watch->dirty_next = watch->loop->fd_dirty;
    watch->loop->fd_dirty = watch;
}

void loop_fd_want(struct loop_fd *watch, bool readable, bool writable)
{
    unsigned want = (readable ? LOOP_FD_READABLE : 0) | (writable ? LOOP_FD_WRITABLE : 0);
    if (watch->dead || watch->want == want)
        return;
    watch->want = want;
    loop_fd_mark_dirty(watch);
}

void loop_fd_unwatch(struct loop_fd *watch)
{
    if (watch->dead)
        return;
    watch->dead = true;
    watch->want = 0;
    watch->loop->ops->fd_unwatch(watch);
    watch->grave_next = watch->loop->fd_graveyard;
    watch->loop->fd_graveyard = watch;
}

void loop_fd_fire(struct loop_fd *watch, unsigned events)
{
    events &= watch->want;
    if (!watch->dead && events != 0)
        watch->fn(watch->user, events);
}

/*
 * Before each wait: the kernel learns every interest changed since the last
 * one. A watch marked dirty again meanwhile (a full ring, or an owner called
 * back with an error) waits for the next iteration, which then does not block.
 */
static void loop_fd_sync(struct loop *loop)
{
    struct loop_fd *list = loop->fd_dirty;
    loop->fd_dirty = NULL;
    while (list != NULL) {
        struct loop_fd *watch = list;
        list = watch->dirty_next;
        watch->dirty = false;
        if (!watch->dead)
            loop->ops->fd_sync(watch);
    }
}

/* Frees dead watches nothing can name any more (all of them once the backend is gone). */
static void loop_fd_reap(struct loop *loop, bool all)
{
    struct loop_fd **link = &loop->fd_graveyard;
    while (*link != NULL) {
        struct loop_fd *watch = *link;
        if (all || (!watch->dirty && !watch->busy)) {
            *link = watch->grave_next;
            free(watch);
        } else {
            link = &watch->grave_next;
        }
    }
}

static uint64_t loop_now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static void loop_heap_place(struct loop *loop, struct loop_timer *timer, size_t index)
{
    loop->timer_heap[index] = timer;
    timer->heap_index = index;
}

static bool loop_timer_before(const struct loop_timer *a, const struct loop_timer *b)
{
    return a->deadline_ns < b->deadline_ns;
}

/* Restores the heap order around index, moving its timer up or down. */
static void loop_heap_fix(struct loop *loop, size_t index)
{
    struct loop_timer **heap = loop->timer_heap;
    struct loop_timer *timer = heap[index];
    while (index > 0 && loop_timer_before(timer, heap[(index - 1) / 2])) {
        loop_heap_place(loop, heap[(index - 1) / 2], index);
        index = (index - 1) / 2;
    }
    for (;;) {
        size_t child = 2 * index + 1;
        if (child >= loop->timer_count)
            break;
        if (child + 1 < loop->timer_count && loop_timer_before(heap[child + 1], heap[child]))
            child++;
        if (!loop_timer_before(heap[child], timer))
            break;
        loop_heap_place(loop, heap[child], index);
        index = child;
    }
    loop_heap_place(loop, timer, index);
}

static void loop_heap_remove(struct loop *loop, struct loop_timer *timer)
{
    size_t index = timer->heap_index;
    timer->heap_index = LOOP_TIMER_IDLE;
    struct loop_timer *last = loop->timer_heap[--loop->timer_count];
    if (last != timer) {
        loop_heap_place(loop, last, index);
        loop_heap_fix(loop, index);
    }
}

static void loop_heap_insert(struct loop *loop, struct loop_timer *timer)
{
    loop_heap_place(loop, timer, loop->timer_count++);
    loop_heap_fix(loop, timer->heap_index);
}

/* The heap has room for every timer that exists, so starting one never allocates. */
struct loop_timer *loop_timer_create(struct loop *loop, void (*fn)(void *user), void *user)
{
    if (loop->timer_handles == loop->timer_capacity) {
        size_t capacity = loop->timer_capacity == 0 ? 16 : loop->timer_capacity * 2;
        struct loop_timer **heap = realloc(loop->timer_heap, capacity * sizeof(*heap));
        if (heap == NULL)
            return NULL;
        loop->timer_heap = heap;
        loop->timer_capacity = capacity;
    }
    struct loop_timer *timer = calloc(1, sizeof(*timer));
    if (timer == NULL)
        return NULL;
    timer->loop = loop;
    timer->fn = fn;
    timer->user = user;
    timer->heap_index = LOOP_TIMER_IDLE;
    loop->timer_handles++;
    return timer;
}

void loop_timer_start(struct loop_timer *timer, unsigned delay_ms, unsigned interval_ms)
{
    struct loop *loop = timer->loop;
    timer->deadline_ns = loop_now_ns() + (uint64_t)delay_ms * 1000000u;
    timer->interval_ns = (uint64_t)interval_ms * 1000000u;
    timer->armed_pass = loop->timer_pass;
    if (timer->heap_index == LOOP_TIMER_IDLE)
        loop_heap_insert(loop, timer);
    else
        loop_heap_fix(loop, timer->heap_index);
}

void loop_timer_stop(struct loop_timer *timer)
{
    if (timer->heap_index != LOOP_TIMER_IDLE)
        loop_heap_remove(timer->loop, timer);
}

bool loop_timer_armed(const struct loop_timer *timer)
{
    return timer->heap_index != LOOP_TIMER_IDLE;
}

void loop_timer_destroy(struct loop_timer *timer)
{
    if (timer == NULL)
        return;
    loop_timer_stop(timer);
    timer->loop->timer_handles--;
    free(timer);
}

/*
 * Runs the timers due now. A timer armed during this pass (by a callback) waits
 * for the next one, even with delay 0; the timer is not touched once its
 * callback has run, since the callback may destroy it.
 */
static void loop_timers_fire(struct loop *loop)
{
    if (loop->timer_count == 0)
        return;
    uint64_t now = loop_now_ns();
    uint64_t pass = ++loop->timer_pass;
    while (loop->timer_count > 0) {
        struct loop_timer *timer = loop->timer_heap[0];
        if (timer->deadline_ns > now || timer->armed_pass == pass)
            break;
        loop_heap_remove(loop, timer);
        if (timer->interval_ns != 0) {
            timer->deadline_ns += timer->interval_ns;
            if (timer->deadline_ns <= now)
                timer->deadline_ns = now + timer->interval_ns; /* late: skip, do not burst */
            timer->armed_pass = pass;
            loop_heap_insert(loop, timer);
        }
        timer->fn(timer->user);
    }
}

/* How long the backend may wait: until the earliest timer, or without limit. */
static int64_t loop_wait_ns(struct loop *loop)
{
    if (loop->pending != NULL || loop->fd_dirty != NULL)
        return 0;
    if (loop->timer_count == 0)
        return -1;
    uint64_t deadline = loop->timer_heap[0]->deadline_ns;
    uint64_t now = loop_now_ns();
    if (deadline <= now)
        return 0;
    uint64_t wait = deadline - now;
    return wait > INT64_MAX ? INT64_MAX : (int64_t)wait;
}

/* Acts on what callbacks asked for: start sending, or close once output is gone. */
static void loop_process_pending(struct loop *loop)
{
    while (loop->pending != NULL) {
        struct loop_conn *conn = loop->pending;
        loop->pending = conn->pending_next;
        conn->pending = false;
        if (!conn->closed) {
            if (loop_conn_output_length(conn) > 0)
                loop->ops->flush(conn);
            else
                loop_conn_output_drained(conn);
        }
        loop_conn_put(conn);
    }
}

int loop_run(struct loop *loop)
{
    int r = 0;
    while (atomic_load(&loop->stop_requested) == 0) {
        loop_timers_fire(loop);
        loop_process_pending(loop);
        loop_fd_sync(loop);
        loop_fd_reap(loop, false);
        r = loop->ops->poll(loop, loop_wait_ns(loop));
        if (r < 0)
            break;
    }
    atomic_store(&loop->stop_requested, 0);
    return r;
}

void loop_stop(struct loop *loop)
{
    uint64_t one = 1;
    atomic_store(&loop->stop_requested, 1);
    ssize_t r = write(loop->stop_fd, &one, sizeof(one));
    (void)r;
}
