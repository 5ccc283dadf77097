/*
 * loop_wait: for unit tests that drive a real event loop (dataplane/loop.h):
 * runs the loop until a condition holds or a time passes, checking the
 * condition every 2 ms from a loop timer; a handler for loops that accept no
 * connections; and a test case per backend. Include after cmocka.h.
 */
#ifndef DPS_TESTS_LOOP_WAIT_H
#define DPS_TESTS_LOOP_WAIT_H

#include <stdbool.h>
#include <time.h>

#include "dataplane/loop.h"
#include "two_cases.h"

struct loop_wait {
    struct loop *loop;
    bool (*condition)(void *arg);
    void *arg;
    struct timespec deadline;
    bool met;
};

static inline void loop_wait_check(void *user)
{
    struct loop_wait *wait = user;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    wait->met = wait->condition(wait->arg);
    if (wait->met || now.tv_sec > wait->deadline.tv_sec ||
        (now.tv_sec == wait->deadline.tv_sec && now.tv_nsec >= wait->deadline.tv_nsec))
        loop_stop(wait->loop);
}

/* Runs loop until condition(arg) holds or timeout_ms pass; whether it holds. */
static inline bool loop_wait_until(struct loop *loop, bool (*condition)(void *arg), void *arg,
                                   unsigned timeout_ms)
{
    struct loop_wait wait = {.loop = loop, .condition = condition, .arg = arg};
    clock_gettime(CLOCK_MONOTONIC, &wait.deadline);
    wait.deadline.tv_sec += timeout_ms / 1000;
    wait.deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (wait.deadline.tv_nsec >= 1000000000) {
        wait.deadline.tv_sec++;
        wait.deadline.tv_nsec -= 1000000000;
    }
    struct loop_timer *timer = loop_timer_create(loop, loop_wait_check, &wait);
    assert_non_null(timer);
    loop_timer_start(timer, 0, 2);
    assert_int_equal(loop_run(loop), 0);
    loop_timer_destroy(timer);
    return wait.met;
}

static inline void *loop_wait_accepted(void *loop_user, struct loop_conn *conn,
                                       const struct sockaddr *peer, socklen_t peer_length)
{
    (void)loop_user, (void)conn, (void)peer, (void)peer_length;
    return NULL;
}

static inline void loop_wait_received(void *conn_user, const uint8_t *data, size_t length)
{
    (void)conn_user, (void)data, (void)length;
}

static inline void loop_wait_closed(void *conn_user, int error)
{
    (void)conn_user, (void)error;
}

/* For a loop that listens nowhere: only timers and outgoing connections (Redis) run on it. */
static const struct loop_handler loop_no_connections = {
    .accepted = loop_wait_accepted,
    .received = loop_wait_received,
    .closed = loop_wait_closed,
};

/* LOOP_BOTH_BACKENDS(name): test cases name_uring and name_epoll running name(backend). */
#define LOOP_BOTH_BACKENDS(name)                                                                   \
    TWO_CASES(name, name, uring, LOOP_BACKEND_URING, epoll, LOOP_BACKEND_EPOLL)

#endif
