/*
 * loadgen_timers: the fleet workers' timers (loadgen_timers.c), a binary
 * min-heap of (when, user) on the monotonic clock in nanoseconds: a device
 * waiting out Max-Age or a back-off is pushed, and the worker's tick pops
 * whatever is due. The heap owns its array only, never the users.
 */
#ifndef DPS_LOADGEN_TIMERS_H
#define DPS_LOADGEN_TIMERS_H

#include <stddef.h>
#include <stdint.h>

struct timer_entry {
    uint64_t when_ns;
    void *user;
};

struct timer_heap {
    struct timer_entry *entries;
    size_t count, capacity;
};

/* 0, or -1 when out of memory (nothing added). A zeroed heap is empty and ready. */
int timer_heap_add(struct timer_heap *heap, void *user, uint64_t when_ns);
/* The user of the earliest timer due at now (removed), or NULL when none is. */
void *timer_heap_pop_due(struct timer_heap *heap, uint64_t now_ns);
void timer_heap_free(struct timer_heap *heap);

#endif
