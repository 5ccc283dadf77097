/*
 * records: merges the parts of each provisioning record while the store is
 * scanned in key order, so every record's parts arrive together and one
 * record is held in memory at a time.
 */
#include "store/records.h"

#include <stdbool.h>
#include <string.h>

#include "store/store.h"

#define RECORD_ID_MAX 64

static const char *const step_order[] = {"plgdTime",   "ownership", "cloud",
                                         "credential", "acl",       "resources"};

struct merge {
    int (*fn)(void *user, json_t *record);
    void *user;
    char record_id[RECORD_ID_MAX];
    json_t *parts; /* part name -> value, for record_id */
    size_t unreadable;
    bool stopped;
};

static json_t *merge_parts(const char *record_id, json_t *parts)
{
    json_t *record = json_object();
    if (record == NULL) {
        return NULL;
    }
    json_object_set_new(record, "id", json_string(record_id));
    json_t *top = json_object_get(parts, "record");
    if (json_is_object(top)) {
        json_object_update(record, top);
    }
    for (size_t i = 0; i < sizeof(step_order) / sizeof(step_order[0]); i++) {
        json_t *value = json_object_get(parts, step_order[i]);
        if (value != NULL) {
            json_object_set(record, step_order[i], value);
        }
    }
    const char *key;
    json_t *value;
    json_object_foreach(parts, key, value)
    {
        if (strcmp(key, "record") != 0 && json_object_get(record, key) == NULL) {
            json_object_set(record, key, value);
        }
    }
    return record;
}

/* Hands the record being collected to fn. */
static void flush(struct merge *merge)
{
    if (merge->parts == NULL) {
        return;
    }
    json_t *record = merge_parts(merge->record_id, merge->parts);
    json_decref(merge->parts);
    merge->parts = NULL;
    if (record != NULL && !merge->stopped && merge->fn(merge->user, record) != 0) {
        merge->stopped = true;
    }
    json_decref(record);
}

static int take_part(void *user, const char *key, size_t key_length, const char *value,
                     size_t value_length)
{
    struct merge *merge = user;
    const char *slash = memchr(key, '/', key_length);
    size_t id_length = slash != NULL ? (size_t)(slash - key) : key_length;
    if (slash == NULL || id_length >= sizeof(merge->record_id)) {
        merge->unreadable++;
        return 0;
    }
    if (merge->parts != NULL &&
        (strlen(merge->record_id) != id_length || memcmp(merge->record_id, key, id_length) != 0)) {
        flush(merge);
        if (merge->stopped) {
            return 1;
        }
    }
    if (merge->parts == NULL) {
        memcpy(merge->record_id, key, id_length);
        merge->record_id[id_length] = '\0';
        if ((merge->parts = json_object()) == NULL) {
            return 1;
        }
    }
    json_t *parsed = json_loadb(value, value_length, 0, NULL);
    if (parsed == NULL) {
        merge->unreadable++;
        return 0;
    }
    if (json_object_setn_new(merge->parts, slash + 1, key_length - id_length - 1, parsed) != 0) {
        merge->unreadable++; /* a part name that is not UTF-8 */
    }
    return 0;
}

int records_scan(struct store *store, const char *record_id, int (*fn)(void *user, json_t *record),
                 void *user, size_t *unreadable)
{
    struct merge merge = {.fn = fn, .user = user};
    char prefix[RECORD_ID_MAX + 1] = "";
    if (record_id != NULL) {
        size_t length = strlen(record_id);
        if (length >= RECORD_ID_MAX) {
            return STORE_OK;
        }
        memcpy(prefix, record_id, length);
        prefix[length] = '/';
        prefix[length + 1] = '\0';
    }
    int status = store_scan(store, STORE_RECORDS, prefix, strlen(prefix), take_part, &merge);
    flush(&merge);
    json_decref(merge.parts);
    if (unreadable != NULL) {
        *unreadable = merge.unreadable;
    }
    return status;
}
