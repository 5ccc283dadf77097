/*
 * loop_backend: the private contract between loop.c and its two backends,
 * loop_uring.c and loop_epoll.c (the way Redis's ae.c drives ae_epoll.c).
 *
 * loop.c owns everything that does not depend on how readiness or completion
 * is learned: connection bookkeeping and reference counts, output buffering,
 * the deferred "pending" work (flushes and closes decided inside callbacks),
 * listeners, eventfd watches, the tick callback, timers, the interest of
 * watched foreign fds and the stop flag. A backend implements the operations
 * table below and reports what the kernel told it through the loop_conn_* /
 * loop_*_fire services.
 *
 * Backends identify their objects in io_uring user_data or epoll_event.data
 * with a tagged pointer: the object's address with the kind in its low bits
 * (every object is allocated with malloc, so they are free).
 */
#ifndef DPS_LOOP_BACKEND_H
#define DPS_LOOP_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "dataplane/loop.h"

/* One piece of a connection's output; appends fill free space, never move bytes. */
struct loop_chunk {
    struct loop_chunk *next;
    size_t start;
    size_t end;
    size_t capacity;
    uint8_t data[];
};

struct loop_conn {
    struct loop *loop;
    struct loop_conn *prev; /* the loop's list of every allocated connection */
    struct loop_conn *next;
    struct loop_conn *pending_next; /* the loop's list of deferred work */
    int fd;
    void *user;
    /* One reference while open, one while on the pending list, one per in-flight operation. */
    unsigned refs;
    struct loop_chunk *output_head;
    struct loop_chunk *output_tail;
    size_t output_length;
    bool pending;
    bool closing;   /* loop_close() or peer EOF: close once the output is sent */
    bool discard;   /* loop_close(conn, true): the output will never be sent */
    bool eof;       /* the peer closed its side; nothing more to read */
    bool closed;    /* fd closed and closed() called (or the connection was refused) */
    bool receiving; /* uring: a recv is armed; epoll: EPOLLIN is wanted */
    bool sending;   /* uring: a send is in flight; epoll: EPOLLOUT is armed */
};

struct loop_listener {
    struct loop *loop;
    struct loop_listener *next;
    int fd;
    bool accepting;
    bool armed; /* uring: a multishot accept is in flight */
};

struct loop_watch {
    struct loop *loop;
    struct loop_watch *next;
    int fd;
    void (*fn)(void *user);
    void *user;
};

/*
 * A watched fd the loop does not own (loop_watch_fd). want is what the owner
 * asked for; armed is what the kernel was last told (epoll: the registered
 * events; io_uring: the mask of the poll in flight). Changes of want only put
 * the watch on the dirty list; fd_sync() reconciles once per iteration. After
 * unwatch the watch is dead and waits on the graveyard until it is neither
 * dirty nor busy (an io_uring poll still in flight), then loop.c frees it.
 */
struct loop_fd {
    struct loop *loop;
    struct loop_fd *dirty_next;
    struct loop_fd *grave_next;
    int fd;
    void (*fn)(void *user, unsigned events);
    void *user;
    unsigned want;  /* LOOP_FD_READABLE | LOOP_FD_WRITABLE */
    unsigned armed; /* the same bits, as the kernel knows them */
    bool dirty;
    bool dead;
    bool busy; /* uring: a poll request is in the kernel */
};

/* A timer; heap_index is its place in the loop's min-heap, or LOOP_TIMER_IDLE. */
#define LOOP_TIMER_IDLE ((size_t)-1)

struct loop_timer {
    struct loop *loop;
    void (*fn)(void *user);
    void *user;
    uint64_t deadline_ns;
    uint64_t interval_ns;
    uint64_t armed_pass; /* the firing pass that armed it: it waits for the next */
    size_t heap_index;
};

struct loop_backend_ops {
    /* Sets up loop->backend_state; 0 or -errno with a message in err. */
    int (*create)(struct loop *loop, char *err, size_t err_length);
    /* Tears the backend down; connections are already closed, in-flight work is abandoned. */
    void (*destroy)(struct loop *loop);
    int (*listen)(struct loop_listener *listener);
    void (*unlisten)(struct loop_listener *listener);
    /* Begins receiving on a new connection. 0 or -errno. */
    int (*start)(struct loop_conn *conn);
    /* The connection has output waiting (not called while conn->closed). */
    void (*flush)(struct loop_conn *conn);
    /* Stops all I/O of the connection and closes its fd. */
    void (*close)(struct loop_conn *conn);
    int (*watch)(struct loop_watch *watch);
    /* A new foreign fd watch (wanting nothing yet). 0 or -errno. */
    int (*fd_watch)(struct loop_fd *watch);
    /* Tells the kernel about a changed want (called for dirty, live watches). */
    void (*fd_sync)(struct loop_fd *watch);
    /* The owner let go: the kernel must stop reporting, before the owner closes the fd. */
    void (*fd_unwatch)(struct loop_fd *watch);
    /* interval_ms 0 turns the tick off. 0 or -errno. */
    int (*set_tick)(struct loop *loop, unsigned interval_ms);
    /*
     * Waits for events, at most timeout_ns nanoseconds (-1: no limit), and
     * dispatches one batch. 0 or -errno on a fatal error.
     */
    int (*poll)(struct loop *loop, int64_t timeout_ns);
};

struct loop {
    const struct loop_backend_ops *ops;
    enum loop_backend backend;
    void *backend_state;
    struct loop_handler handler;
    void *user;
    struct loop_conn *conns;
    struct loop_conn *pending;
    struct loop_listener *listeners;
    struct loop_watch *watches;
    struct loop_fd *fd_dirty;
    struct loop_fd *fd_graveyard;
    struct loop_timer **timer_heap;
    size_t timer_count;
    size_t timer_capacity;
    size_t timer_handles; /* created and not yet destroyed: the heap never needs more */
    uint64_t timer_pass;
    void (*tick_fn)(void *user);
    void *tick_user;
    int stop_fd;
    atomic_int stop_requested;
    bool destroying;
};

extern const struct loop_backend_ops loop_uring_ops;
extern const struct loop_backend_ops loop_epoll_ops;

enum loop_tag {
    LOOP_TAG_NONE,
    LOOP_TAG_ACCEPT,
    LOOP_TAG_RECV,
    LOOP_TAG_SEND,
    LOOP_TAG_WATCH,
    LOOP_TAG_TICK,
    LOOP_TAG_CONN,
    LOOP_TAG_FD,
};

#define LOOP_TAG_MASK ((uint64_t)7)
_Static_assert(LOOP_TAG_FD <= LOOP_TAG_MASK, "every tag fits in the low bits of a pointer");

static inline uint64_t loop_tag_pack(const void *object, enum loop_tag tag)
{
    return (uint64_t)(uintptr_t)object | (uint64_t)tag;
}

static inline enum loop_tag loop_tag_of(uint64_t value)
{
    return (enum loop_tag)(value & LOOP_TAG_MASK);
}

static inline void *loop_tag_object(uint64_t value)
{
    return (void *)(uintptr_t)(value & ~LOOP_TAG_MASK);
}

/* Services loop.c offers its backends. */

/* A listener produced fd (non-blocking, close-on-exec); peer may be NULL. */
void loop_conn_accepted(struct loop_listener *listener, int fd, const struct sockaddr *peer,
                        socklen_t peer_length);
/* Bytes arrived; dropped when the owner already asked to close. */
void loop_conn_received(struct loop_conn *conn, const uint8_t *data, size_t length);
/* The peer closed its side: flush what is queued, then close. */
void loop_conn_eof(struct loop_conn *conn);
/* Closes at once: fd closed, closed(error) called, the open reference dropped. */
void loop_conn_finish(struct loop_conn *conn, int error);
void loop_conn_hold(struct loop_conn *conn);
void loop_conn_put(struct loop_conn *conn);
/* Bytes still to send (0 once the output was discarded). */
size_t loop_conn_output_length(const struct loop_conn *conn);
/* Fills up to max iovecs with queued output; returns how many. */
int loop_conn_output_iov(const struct loop_conn *conn, struct iovec *iov, int max);
/* count bytes of output reached the kernel. */
void loop_conn_output_consume(struct loop_conn *conn, size_t count);
/* After output drained: closes the connection if a close was waiting for it. */
void loop_conn_output_drained(struct loop_conn *conn);
void loop_tick_fire(struct loop *loop);
void loop_watch_fire(struct loop_watch *watch);
/* The kernel reported events on a foreign fd: calls its owner for the wanted ones, unless dead. */
void loop_fd_fire(struct loop_fd *watch, unsigned events);
/* The backend must be asked to sync this watch again before the next wait. */
void loop_fd_mark_dirty(struct loop_fd *watch);

#endif
