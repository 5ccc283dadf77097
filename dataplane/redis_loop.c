/*
 * redis_loop: the adapter between store/redis.c's event interface and
 * dataplane/loop.h. The two contracts were written to match (level-triggered
 * fd watches that may be dropped from inside their own callback, one-shot
 * timers that run after the current batch when started with 0 ms), so each
 * function is a direct call; only the bit values are checked to agree.
 */
#include "dataplane/redis_loop.h"

_Static_assert(REDIS_EVENT_READABLE == LOOP_FD_READABLE, "readable bits agree");
_Static_assert(REDIS_EVENT_WRITABLE == LOOP_FD_WRITABLE, "writable bits agree");

static void *redis_loop_watch(void *loop, int fd, void (*ready)(void *arg, unsigned events),
                              void *arg)
{
    return loop_watch_fd(loop, fd, ready, arg);
}

static void redis_loop_want(void *watch, bool readable, bool writable)
{
    loop_fd_want(watch, readable, writable);
}

static void redis_loop_unwatch(void *watch)
{
    loop_fd_unwatch(watch);
}

static void *redis_loop_timer_create(void *loop, void (*fire)(void *arg), void *arg)
{
    return loop_timer_create(loop, fire, arg);
}

static void redis_loop_timer_start(void *timer, unsigned delay_ms)
{
    loop_timer_start(timer, delay_ms, 0);
}

static void redis_loop_timer_stop(void *timer)
{
    loop_timer_stop(timer);
}

static void redis_loop_timer_destroy(void *timer)
{
    loop_timer_destroy(timer);
}

void redis_loop_events(struct loop *loop, struct redis_events *events)
{
    *events = (struct redis_events){
        .loop = loop,
        .watch = redis_loop_watch,
        .want = redis_loop_want,
        .unwatch = redis_loop_unwatch,
        .timer_create = redis_loop_timer_create,
        .timer_start = redis_loop_timer_start,
        .timer_stop = redis_loop_timer_stop,
        .timer_destroy = redis_loop_timer_destroy,
    };
}
