/*
 * source_rate: the node-wide table of source_rate.h. STRIPES x SLOTS
 * sources are tracked at once (16,384); a source is hashed (FNV-1a) to a
 * stripe and probes PROBES slots of it from its home slot.
 */
#include "dataplane/source_rate.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"

#define STRIPES 64
#define SLOTS 256 /* per stripe, a power of two */
#define PROBES 16

struct source_slot {
    char key[SOURCE_RATE_KEY_MAX]; /* "": never used */
    int64_t arrival_ns;
};

struct source_stripe {
    pthread_mutex_t lock;
    struct source_slot slots[SLOTS];
};

struct source_rate {
    struct source_stripe stripes[STRIPES];
};

struct source_rate *source_rate_create(void)
{
    struct source_rate *table = calloc(1, sizeof(*table));
    if (table == NULL)
        return NULL;
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_init(&table->stripes[i].lock, NULL);
    return table;
}

void source_rate_free(struct source_rate *table)
{
    if (table == NULL)
        return;
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&table->stripes[i].lock);
    free(table);
}

/* The source's slot in stripe, taking a free one (no debt left) when it has none; or NULL. */
static struct source_slot *slot_find(struct source_stripe *stripe, uint64_t hash, const char *key,
                                     int64_t now_ns)
{
    struct source_slot *free_slot = NULL;
    for (size_t probe = 0; probe < PROBES; probe++) {
        struct source_slot *slot = &stripe->slots[(hash + probe) & (SLOTS - 1)];
        if (strcmp(slot->key, key) == 0)
            return slot;
        if (free_slot == NULL && (slot->key[0] == '\0' || slot->arrival_ns <= now_ns))
            free_slot = slot;
    }
    if (free_slot != NULL) {
        memcpy(free_slot->key, key, strlen(key) + 1);
        free_slot->arrival_ns = 0;
    }
    return free_slot;
}

int source_rate_take(struct source_rate *table, const char *source, int64_t interval_ns,
                     unsigned burst, int64_t now_ns, int64_t *retry_after_ns)
{
    if (interval_ns <= 0 || source[0] == '\0' || strlen(source) >= SOURCE_RATE_KEY_MAX)
        return 0;
    uint64_t hash = hash_text(source);
    struct source_stripe *stripe = &table->stripes[(hash >> 56) % STRIPES];
    int64_t tolerance_ns = (int64_t)(burst > 0 ? burst - 1 : 0) * interval_ns;
    int result = 0;
    pthread_mutex_lock(&stripe->lock);
    struct source_slot *slot = slot_find(stripe, hash, source, now_ns);
    if (slot != NULL) {
        int64_t start = slot->arrival_ns > now_ns ? slot->arrival_ns : now_ns;
        if (start - now_ns > tolerance_ns) {
            *retry_after_ns = start - tolerance_ns - now_ns;
            result = -1;
        } else {
            slot->arrival_ns = start + interval_ns;
        }
    }
    pthread_mutex_unlock(&stripe->lock);
    return result;
}

void source_rate_key(const char *peer, char out[SOURCE_RATE_KEY_MAX])
{
    out[0] = '\0';
    if (peer == NULL)
        return;
    const char *start = peer, *end;
    if (*peer == '[') {
        start = peer + 1;
        end = strchr(start, ']');
    } else {
        end = strrchr(peer, ':');
    }
    if (end == NULL || end == start || (size_t)(end - start) >= SOURCE_RATE_KEY_MAX)
        return;
    memcpy(out, start, (size_t)(end - start));
    out[end - start] = '\0';
}
