/*
 * migrate: layout 1 to layout 2 (store.h). Layout 1 kept what devices
 * leave behind without its owner in the key: records under "<record
 * id>/<part>", issuance entries under their serial, bindings under the
 * device id (value: the record id). Layout 2 puts every such key under the
 * owner key of the owner it was written for (store/records.h).
 *
 * The owner comes from the one place layout 1 wrote it: the record's
 * top-level part. So issuance entries and bindings, which name their record,
 * move first, while every record is still where layout 1 put it, and records
 * move last. Each family is walked with store_scan_after() and moved in
 * synced batches (new keys written and old keys deleted together); a
 * record's parts never straddle two batches. Old and new keys tell
 * themselves apart by their slashes, so after a crash the next open simply
 * walks again and moves what is left.
 *
 * A layout-1 record whose parts two owners wrote (the same manufacturer
 * certificate in groups of two owners, one after the other) cannot be split:
 * it moves whole to the owner its top-level part names, the last one. A
 * layout-1 record could also hold several device ids; each stays bound to
 * it, and the record's own binding names the device id its top-level part
 * names.
 */
#include "store/migrate.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"
#include "store/records.h"
#include "store/store.h"

#define ID_LENGTH 36
#define MOVES_PER_BATCH 256
#define CHANGES_PER_MOVE 3 /* a binding: two new keys and the old one deleted */

struct change {
    char *key;
    size_t key_length;
    char *value; /* NULL: delete */
    size_t value_length;
};

struct walk {
    struct store *store;
    enum store_family family;
    struct change changes[MOVES_PER_BATCH * CHANGES_PER_MOVE];
    size_t change_count;
    size_t moves;
    char *cursor; /* the last key the walk consumed */
    size_t cursor_length;
    bool full; /* the walk stopped to apply a batch */
    bool failed;
    /* records: the record being moved and its owner */
    char record_id[ID_LENGTH + 1];
    char *record_owner;
    size_t moved;
    size_t left;
};

static size_t count_slashes(const char *key, size_t length)
{
    size_t count = 0;
    for (size_t i = 0; i < length; i++) {
        count += key[i] == '/';
    }
    return count;
}

static bool add_change(struct walk *walk, const char *key, size_t key_length, const char *value,
                       size_t value_length)
{
    struct change *change = &walk->changes[walk->change_count];
    change->key = malloc(key_length + 1);
    change->value = value != NULL ? malloc(value_length + 1) : NULL;
    if (change->key == NULL || (value != NULL && change->value == NULL)) {
        free(change->key);
        free(change->value);
        walk->failed = true;
        return false;
    }
    memcpy(change->key, key, key_length);
    change->key_length = key_length;
    if (value != NULL) {
        memcpy(change->value, value, value_length);
    }
    change->value_length = value_length;
    walk->change_count++;
    return true;
}

static void set_cursor(struct walk *walk, const char *key, size_t key_length)
{
    char *copy = realloc(walk->cursor, key_length + 1);
    if (copy == NULL) {
        walk->failed = true;
        return;
    }
    memcpy(copy, key, key_length);
    walk->cursor = copy;
    walk->cursor_length = key_length;
}

/* Applies the batch of changes as one synced write; false on a store error. */
static bool apply(struct walk *walk)
{
    struct store_put puts[MOVES_PER_BATCH * CHANGES_PER_MOVE];
    for (size_t i = 0; i < walk->change_count; i++) {
        puts[i] = (struct store_put){.family = walk->family,
                                     .key = walk->changes[i].key,
                                     .key_length = walk->changes[i].key_length,
                                     .value = walk->changes[i].value,
                                     .value_length = walk->changes[i].value_length};
    }
    bool ok = walk->change_count == 0 ||
              store_put_sync(walk->store, puts, walk->change_count) == STORE_OK;
    for (size_t i = 0; i < walk->change_count; i++) {
        free(walk->changes[i].key);
        free(walk->changes[i].value);
    }
    walk->change_count = 0;
    walk->moved += ok ? walk->moves : 0;
    walk->moves = 0;
    return ok;
}

/*
 * The top-level part of a layout-1 record (parsed), or NULL when it is
 * missing or unreadable.
 */
static json_t *layout1_record(struct store *store, const char *record_id, size_t length)
{
    char key[ID_LENGTH + 16];
    if (length != ID_LENGTH) {
        return NULL;
    }
    int key_length = snprintf(key, sizeof(key), "%.*s/record", (int)length, record_id);
    char *value = NULL;
    size_t value_length = 0;
    if (store_get(store, STORE_RECORDS, key, (size_t)key_length, &value, &value_length) !=
        STORE_OK) {
        return NULL;
    }
    json_t *record = json_loadb(value, value_length, 0, NULL);
    free(value);
    if (json_string_value(json_object_get(record, "owner")) == NULL) {
        json_decref(record);
        return NULL;
    }
    return record;
}

/* ---- issuance: "<serial>" -> "<owner key>/<serial>", the entry gains "owner" ---- */

static bool move_issuance(struct walk *walk, const char *key, size_t key_length, const char *value,
                          size_t value_length)
{
    json_t *entry = json_loadb(value, value_length, 0, NULL);
    const char *record_id = json_string_value(json_object_get(entry, "recordId"));
    json_t *record =
        record_id != NULL ? layout1_record(walk->store, record_id, strlen(record_id)) : NULL;
    if (record == NULL) {
        json_decref(entry);
        return false;
    }
    const char *owner = json_string_value(json_object_get(record, "owner"));
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1], new_key[RECORDS_KEY_MAX], serial[64];
    records_owner_key(owner, owner_key);
    snprintf(serial, sizeof(serial), "%.*s", (int)key_length, key);
    size_t new_length =
        key_length < sizeof(serial) ? records_issuance_key(owner_key, serial, new_key) : 0;
    json_object_set_new(entry, "owner", json_string(owner));
    char *text = new_length > 0 ? json_dumps(entry, JSON_COMPACT) : NULL;
    bool moved = text != NULL && add_change(walk, new_key, new_length, text, strlen(text)) &&
                 add_change(walk, key, key_length, NULL, 0);
    free(text);
    json_decref(record);
    json_decref(entry);
    return moved;
}

/* ---- bindings: "<device id>" -> the pair of layout 2 ---- */

static bool move_binding(struct walk *walk, const char *key, size_t key_length, const char *value,
                         size_t value_length)
{
    char record_id[ID_LENGTH + 1], device_id[ID_LENGTH + 1];
    json_t *quoted = value_length > 0 && value[0] == '"'
                         ? json_loadb(value, value_length, JSON_DECODE_ANY, NULL)
                         : NULL;
    const char *text = json_is_string(quoted) ? json_string_value(quoted) : NULL;
    size_t text_length = text != NULL ? strlen(text) : value_length;
    if (text == NULL) {
        text = value;
    }
    bool valid = text_length == ID_LENGTH && key_length == ID_LENGTH;
    if (valid) {
        memcpy(record_id, text, ID_LENGTH);
        record_id[ID_LENGTH] = '\0';
        memcpy(device_id, key, ID_LENGTH);
        device_id[ID_LENGTH] = '\0';
    }
    json_decref(quoted);
    json_t *record = valid ? layout1_record(walk->store, record_id, ID_LENGTH) : NULL;
    if (record == NULL) {
        return false;
    }
    const char *owner = json_string_value(json_object_get(record, "owner"));
    const char *current = json_string_value(json_object_get(record, "deviceId"));
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1], device_key[RECORDS_KEY_MAX],
        identity_key[RECORDS_KEY_MAX];
    records_owner_key(owner, owner_key);
    size_t device_length = records_device_binding_key(owner_key, device_id, device_key);
    size_t identity_length = records_identity_binding_key(owner_key, record_id, identity_key);
    char *device_value = records_device_binding_value(owner, record_id);
    char *identity_value = records_identity_binding_value(owner, device_id);
    bool moved = device_value != NULL && identity_value != NULL &&
                 add_change(walk, device_key, device_length, device_value, strlen(device_value));
    if (moved && current != NULL && strcmp(current, device_id) == 0) {
        moved =
            add_change(walk, identity_key, identity_length, identity_value, strlen(identity_value));
    }
    moved = moved && add_change(walk, key, key_length, NULL, 0);
    free(device_value);
    free(identity_value);
    json_decref(record);
    return moved;
}

/* ---- records: "<record id>/<part>" -> "<owner key>/<record id>/<part>" ---- */

static bool move_part(struct walk *walk, const char *key, size_t key_length, const char *value,
                      size_t value_length)
{
    if (key_length <= ID_LENGTH + 1 || key[ID_LENGTH] != '/') {
        return false;
    }
    if (memcmp(walk->record_id, key, ID_LENGTH) != 0) {
        memcpy(walk->record_id, key, ID_LENGTH);
        walk->record_id[ID_LENGTH] = '\0';
        free(walk->record_owner);
        walk->record_owner = NULL;
        json_t *record = layout1_record(walk->store, key, ID_LENGTH);
        const char *owner = json_string_value(json_object_get(record, "owner"));
        walk->record_owner = owner != NULL ? strdup(owner) : NULL;
        json_decref(record);
    }
    if (walk->record_owner == NULL) {
        return false;
    }
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1], part[RECORDS_KEY_MAX], new_key[RECORDS_KEY_MAX];
    records_owner_key(walk->record_owner, owner_key);
    snprintf(part, sizeof(part), "%.*s", (int)(key_length - ID_LENGTH - 1), key + ID_LENGTH + 1);
    size_t new_length = key_length - ID_LENGTH - 1 < sizeof(part)
                            ? records_part_key(owner_key, walk->record_id, part, new_key)
                            : 0;
    return new_length > 0 && add_change(walk, new_key, new_length, value, value_length) &&
           add_change(walk, key, key_length, NULL, 0);
}

static int visit(void *user, const char *key, size_t key_length, const char *value,
                 size_t value_length)
{
    struct walk *walk = user;
    bool is_record = walk->family == STORE_RECORDS;
    bool layout1 = count_slashes(key, key_length) == (is_record ? 1 : 0);
    /*
     * A record's parts move in one batch: a full batch stops only between
     * records (or when a record has more parts than a batch holds).
     */
    bool same_record = is_record && layout1 && key_length >= ID_LENGTH &&
                       memcmp(walk->record_id, key, ID_LENGTH) == 0;
    if ((walk->moves >= MOVES_PER_BATCH && !same_record) ||
        walk->change_count + CHANGES_PER_MOVE > sizeof(walk->changes) / sizeof(walk->changes[0])) {
        walk->full = true;
        return 1;
    }
    set_cursor(walk, key, key_length);
    if (walk->failed) {
        return 1;
    }
    if (!layout1) {
        return 0;
    }
    bool moved =
        walk->family == STORE_ISSUANCE   ? move_issuance(walk, key, key_length, value, value_length)
        : walk->family == STORE_BINDINGS ? move_binding(walk, key, key_length, value, value_length)
                                         : move_part(walk, key, key_length, value, value_length);
    if (walk->failed) {
        return 1;
    }
    if (moved) {
        walk->moves++;
    } else {
        walk->left++;
    }
    return 0;
}

/* Moves one family's layout-1 keys; false with err on a store error. */
static bool migrate_family(struct store *store, enum store_family family, size_t *moved,
                           size_t *left, char *err, size_t err_length)
{
    struct walk *walk = calloc(1, sizeof(*walk));
    if (walk == NULL) {
        snprintf(err, err_length, "out of memory");
        return false;
    }
    walk->store = store;
    walk->family = family;
    bool ok = true;
    char *resume = NULL; /* where this pass starts: the walk moves its cursor as it goes */
    do {
        walk->full = false;
        free(resume);
        resume = walk->cursor_length > 0 ? malloc(walk->cursor_length) : NULL;
        size_t resume_length = resume != NULL ? walk->cursor_length : 0;
        if (resume != NULL) {
            memcpy(resume, walk->cursor, resume_length);
        }
        int status = walk->cursor_length > 0 && resume == NULL
                         ? STORE_ERROR
                         : store_scan_after(store, family, resume, resume_length, visit, walk);
        if (status != STORE_OK || walk->failed || !apply(walk)) {
            snprintf(err, err_length, "cannot move the %s of an earlier dpsd to the current layout",
                     store_family_name(family));
            ok = false;
            break;
        }
    } while (walk->full);
    for (size_t i = 0; i < walk->change_count; i++) {
        free(walk->changes[i].key);
        free(walk->changes[i].value);
    }
    *moved = walk->moved;
    *left = walk->left;
    free(resume);
    free(walk->record_owner);
    free(walk->cursor);
    free(walk);
    return ok;
}

int migrate_from_layout_1(struct store *store, char *err, size_t err_length)
{
    static const enum store_family order[] = {STORE_ISSUANCE, STORE_BINDINGS, STORE_RECORDS};
    size_t moved[3], left[3];
    for (size_t i = 0; i < 3; i++) {
        if (!migrate_family(store, order[i], &moved[i], &left[i], err, err_length)) {
            return -1;
        }
    }
    if (moved[0] + moved[1] + moved[2] + left[0] + left[1] + left[2] > 0) {
        log_msg(left[0] + left[1] + left[2] > 0 ? LOG_WARN : LOG_INFO,
                "store moved to the per-owner layout",
                "issuance=%zu bindings=%zu record_parts=%zu issuance_left=%zu bindings_left=%zu "
                "record_parts_left=%zu",
                moved[0], moved[1], moved[2], left[0], left[1], left[2]);
    }
    return 0;
}
