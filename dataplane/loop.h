/*
 * loop: one event loop per shard thread, with two interchangeable backends
 * behind this interface: io_uring (loop_uring.c: multishot accept, multishot
 * recv into a provided-buffer ring, SINGLE_ISSUER + DEFER_TASKRUN) and epoll
 * (loop_epoll.c), the fallback where io_uring cannot be set up.
 *
 * The loop owns sockets and their I/O and nothing else. It hands received
 * bytes to the owner through callbacks and takes bytes to send; it knows
 * nothing of TLS or CoAP. It also watches descriptors it does not own and
 * runs timers, for clients that bring their own I/O (store/redis.c through
 * dataplane/redis_loop.c). All functions must be called from the loop's own
 * thread, except loop_stop().
 */
#ifndef DPS_LOOP_H
#define DPS_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum loop_backend {
    LOOP_BACKEND_URING,
    LOOP_BACKEND_EPOLL,
};

struct loop;
struct loop_conn;

struct loop_handler {
    /*
     * A listener accepted fd (already non-blocking, close-on-exec, TCP_NODELAY).
     * Return the per-connection user pointer, or NULL to refuse: the loop then
     * closes the socket without calling closed().
     */
    void *(*accepted)(void *loop_user, struct loop_conn *conn, const struct sockaddr *peer,
                      socklen_t peer_length);
    /* Bytes arrived; data is valid only during the call. */
    void (*received)(void *conn_user, const uint8_t *data, size_t length);
    /*
     * The connection is over (peer closed, I/O error, or after loop_close()).
     * Called exactly once per accepted or attached connection; the loop_conn is
     * freed when it returns. error is 0 or a positive errno value.
     */
    void (*closed)(void *conn_user, int error);
};

/*
 * Creates a loop with the wanted backend; when io_uring cannot be set up the
 * epoll backend is used instead (loop_backend_of() tells which one runs).
 * Returns NULL with a message in err on failure.
 */
struct loop *loop_create(enum loop_backend wanted, const struct loop_handler *handler,
                         void *loop_user, char *err, size_t err_length);
enum loop_backend loop_backend_of(const struct loop *loop);
const char *loop_backend_name(enum loop_backend backend);
void loop_destroy(struct loop *loop); /* closes every remaining connection, calling closed() */

/* Starts accepting on a bound, listening, non-blocking socket. 0 or -errno. */
int loop_listen(struct loop *loop, int listen_fd);

/* Stops accepting on every listener (drain); established connections continue. */
void loop_stop_accepting(struct loop *loop);

/* Adopts an already connected non-blocking socket (client side). NULL on failure. */
struct loop_conn *loop_attach(struct loop *loop, int fd, void *conn_user);

/*
 * Queues bytes to send; the loop copies them. 0, or -ENOBUFS when more than
 * LOOP_MAX_PENDING_OUTPUT bytes would be waiting (the caller should close).
 */
#define LOOP_MAX_PENDING_OUTPUT (256 * 1024)
int loop_send(struct loop_conn *conn, const uint8_t *data, size_t length);

/* Closes after queued output is sent (or at once when discard is true). */
void loop_close(struct loop_conn *conn, bool discard_output);

/* Calls fn(user) whenever fd (an eventfd) becomes readable; fn must read it. 0 or -errno. */
int loop_watch_eventfd(struct loop *loop, int fd, void (*fn)(void *user), void *user);

/* Calls fn(user) about every interval_ms milliseconds (timeouts, housekeeping). */
int loop_set_tick(struct loop *loop, unsigned interval_ms, void (*fn)(void *user), void *user);

/*
 * Watching a file descriptor the loop does not own (the socket of a library
 * that does its own I/O, such as hiredis). fn(user, events) is called with
 * LOOP_FD_READABLE and/or LOOP_FD_WRITABLE, level-triggered like poll(2):
 * again on every loop iteration while the fd stays ready and the interest is
 * set, and only for the interests set. An error or hang-up is reported as
 * whichever of the two is wanted, so the owner meets it in its next read or
 * write. A new watch wants nothing until loop_fd_want().
 *
 * loop_fd_want() is cheap: it only records the interest, and the loop tells
 * the kernel once per iteration (one epoll_ctl, or one io_uring SQE), so
 * toggling write interest on and off inside one batch costs nothing.
 *
 * Lifetime: the handle is the owner's from loop_watch_fd() until
 * loop_fd_unwatch(), which may be called from any callback on the loop's
 * thread, including fn itself. Once unwatch returns, fn is never called again
 * (not even for an event already fetched in the same batch) and the handle
 * must not be touched: the loop frees it when the kernel has let go of it (an
 * io_uring poll still in flight completes later). The fd is never closed by
 * the loop; close it after loop_fd_unwatch(), never before. One watch per fd
 * per loop. Unwatch every fd before loop_destroy().
 */
#define LOOP_FD_READABLE 1u
#define LOOP_FD_WRITABLE 2u

struct loop_fd;

/* NULL with errno set on failure (EBADF, EEXIST, ENOMEM, ...). */
struct loop_fd *loop_watch_fd(struct loop *loop, int fd, void (*fn)(void *user, unsigned events),
                              void *user);
void loop_fd_want(struct loop_fd *watch, bool readable, bool writable);
void loop_fd_unwatch(struct loop_fd *watch);

/*
 * Timers: one-shot (interval_ms 0) or periodic, with millisecond resolution
 * on the monotonic clock. Expired timers run at the start of each loop
 * iteration, before pending output is flushed and before the loop waits
 * again, so a timer started with delay 0 is a deferred call: it runs once the
 * current batch of events is dispatched, without another trip to the kernel.
 * A timer started from its own callback with delay 0 waits for the next
 * iteration, so it cannot starve I/O.
 *
 * Lifetime: the handle is the owner's from loop_timer_create() until
 * loop_timer_destroy(), which may be called from any callback, including the
 * timer's own. Starting an armed timer re-arms it; stopping an idle one does
 * nothing. Neither allocates, so neither can fail. Destroy every timer before
 * loop_destroy().
 */
struct loop_timer;

struct loop_timer *loop_timer_create(struct loop *loop, void (*fn)(void *user), void *user);
void loop_timer_start(struct loop_timer *timer, unsigned delay_ms, unsigned interval_ms);
void loop_timer_stop(struct loop_timer *timer);
bool loop_timer_armed(const struct loop_timer *timer);
void loop_timer_destroy(struct loop_timer *timer);

/* Runs until loop_stop(). 0, or -errno on a fatal backend error. */
int loop_run(struct loop *loop);

/* Makes loop_run() return soon. Safe from any thread and from signal handlers. */
void loop_stop(struct loop *loop);

#endif
