/*
 * loadgen_timers: a binary min-heap on the due time (see loadgen_timers.h).
 */
#include "perf/loadgen_timers.h"

#include <stdlib.h>

int timer_heap_add(struct timer_heap *heap, void *user, uint64_t when_ns)
{
    if (heap->count == heap->capacity) {
        size_t capacity = heap->capacity != 0 ? heap->capacity * 2 : 256;
        struct timer_entry *entries = realloc(heap->entries, capacity * sizeof(*entries));
        if (entries == NULL)
            return -1;
        heap->entries = entries;
        heap->capacity = capacity;
    }
    size_t i = heap->count++;
    while (i > 0 && heap->entries[(i - 1) / 2].when_ns > when_ns) {
        heap->entries[i] = heap->entries[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap->entries[i] = (struct timer_entry){when_ns, user};
    return 0;
}

void *timer_heap_pop_due(struct timer_heap *heap, uint64_t now_ns)
{
    if (heap->count == 0 || heap->entries[0].when_ns > now_ns)
        return NULL;
    void *user = heap->entries[0].user;
    struct timer_entry last = heap->entries[--heap->count];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= heap->count)
            break;
        if (child + 1 < heap->count &&
            heap->entries[child + 1].when_ns < heap->entries[child].when_ns)
            child++;
        if (heap->entries[child].when_ns >= last.when_ns)
            break;
        heap->entries[i] = heap->entries[child];
        i = child;
    }
    if (heap->count > 0)
        heap->entries[i] = last;
    return user;
}

void timer_heap_free(struct timer_heap *heap)
{
    free(heap->entries);
    heap->entries = NULL;
    heap->count = heap->capacity = 0;
}
