/*
 * blocklist: a fixed-capacity open-addressing hash set of "owner\nkey"
 * strings with linear probing. Built once, read by many threads without
 * locks (it never changes after publication).
 */
#include "dataplane/blocklist.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct blocklist {
    size_t slots; /* a power of two, at least twice the entries */
    size_t count;
    size_t capacity;
    bool has_serials;
    char **entries;
};

static uint64_t hash_text(const char *owner, const char *key)
{
    /* FNV-1a over owner, a separator and key. */
    uint64_t hash = 1469598103934665603ULL;
    for (const char *p = owner; *p != '\0'; p++) {
        hash = (hash ^ (uint8_t)*p) * 1099511628211ULL;
    }
    hash = (hash ^ '\n') * 1099511628211ULL;
    for (const char *p = key; *p != '\0'; p++) {
        hash = (hash ^ (uint8_t)*p) * 1099511628211ULL;
    }
    return hash;
}

static bool entry_equals(const char *entry, const char *owner, const char *key)
{
    size_t owner_length = strlen(owner);
    return strncmp(entry, owner, owner_length) == 0 && entry[owner_length] == '\n' &&
           strcmp(entry + owner_length + 1, key) == 0;
}

struct blocklist *blocklist_new(size_t count)
{
    struct blocklist *blocklist = calloc(1, sizeof(*blocklist));
    if (blocklist == NULL) {
        return NULL;
    }
    blocklist->slots = 16;
    while (blocklist->slots < 2 * count) {
        blocklist->slots *= 2;
    }
    blocklist->capacity = count;
    blocklist->entries = calloc(blocklist->slots, sizeof(*blocklist->entries));
    if (blocklist->entries == NULL) {
        free(blocklist);
        return NULL;
    }
    return blocklist;
}

void blocklist_free(struct blocklist *blocklist)
{
    if (blocklist == NULL) {
        return;
    }
    for (size_t i = 0; i < blocklist->slots; i++) {
        free(blocklist->entries[i]);
    }
    free(blocklist->entries);
    free(blocklist);
}

int blocklist_add(struct blocklist *blocklist, const char *owner, const char *key)
{
    if (blocklist_contains(blocklist, owner, key)) {
        return 0;
    }
    if (blocklist->count >= blocklist->capacity) {
        return -1;
    }
    size_t owner_length = strlen(owner), key_length = strlen(key);
    char *entry = malloc(owner_length + key_length + 2);
    if (entry == NULL) {
        return -1;
    }
    memcpy(entry, owner, owner_length);
    entry[owner_length] = '\n';
    memcpy(entry + owner_length + 1, key, key_length + 1);
    size_t mask = blocklist->slots - 1;
    size_t slot = (size_t)hash_text(owner, key) & mask;
    while (blocklist->entries[slot] != NULL) {
        slot = (slot + 1) & mask;
    }
    blocklist->entries[slot] = entry;
    blocklist->count++;
    if (strncmp(key, "serial:", 7) == 0) {
        blocklist->has_serials = true;
    }
    return 0;
}

bool blocklist_contains(const struct blocklist *blocklist, const char *owner, const char *key)
{
    if (blocklist == NULL || blocklist->count == 0) {
        return false;
    }
    size_t mask = blocklist->slots - 1;
    for (size_t slot = (size_t)hash_text(owner, key) & mask; blocklist->entries[slot] != NULL;
         slot = (slot + 1) & mask) {
        if (entry_equals(blocklist->entries[slot], owner, key)) {
            return true;
        }
    }
    return false;
}

bool blocklist_has_serials(const struct blocklist *blocklist)
{
    return blocklist != NULL && blocklist->has_serials;
}
