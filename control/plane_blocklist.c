/*
 * plane_blocklist: the devices an owner blocked. A block request is checked
 * into an entry (one identity: a device id, a public key's SHA-256, or a
 * serial with its issuer), stored as a JSON document in the store's
 * blocklist family, and in force on every shard as the set of keys the
 * handshake and every later step look up (dataplane/blocklist.h).
 *
 * A change is published like any other (control/plane.c): a snapshot with
 * the lists in force and the new entries, the entry persisted between the
 * phases, under plane->lock; plane->blocklist is replaced only once that
 * succeeded. Quotas per owner (api.quotas.blocklistEntries) are counted
 * here, under the lock.
 */
#include "control/plane_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "common/log.h"
#include "crypto/uuid.h"
#include "dataplane/blocklist.h"
#include "store/records.h"
#include "store/store.h"

#define BLOCK_SPKI_LENGTH 64
#define BLOCK_SERIAL_MAX 40
#define BLOCK_ISSUER_MAX 256
#define BLOCK_REASON_MAX 256
#define SPKI_SHAPE "must be 64 hex digits"
#define SERIAL_SHAPE "must be 1 to 40 hex digits"
#define ISSUER_SHAPE "must be RFC 2253 text of at most 256 bytes"
#define REASON_SHAPE "must be text of at most 256 bytes"

/* ---- the entries as stored and as the shards' set ---- */

/* The set keys an entry blocks (see dataplane/blocklist.h); returns how many (0-2). */
static size_t entry_keys(const json_t *entry, char keys[2][320])
{
    const char *device = json_string_value(json_object_get(entry, "deviceId"));
    const char *record = json_string_value(json_object_get(entry, "recordId"));
    const char *spki = json_string_value(json_object_get(entry, "publicKeySha256"));
    const char *serial = json_string_value(json_object_get(entry, "serial"));
    const char *issuer = json_string_value(json_object_get(entry, "issuer"));
    size_t count = 0;
    if (device != NULL) {
        snprintf(keys[count++], 320, "device:%s", device);
        if (record != NULL) {
            snprintf(keys[count++], 320, "record:%s", record);
        }
    } else if (spki != NULL) {
        snprintf(keys[count++], 320, "spki:%s", spki);
    } else if (serial != NULL && issuer != NULL) {
        snprintf(keys[count++], 320, "serial:%s/%s", serial, issuer);
    }
    return count;
}

struct blocklist *plane_blocklist_build(const json_t *entries)
{
    struct blocklist *blocklist = blocklist_new(2 * json_array_size(entries));
    size_t index;
    json_t *entry;
    json_array_foreach(entries, index, entry)
    {
        char keys[2][320];
        size_t count = entry_keys(entry, keys);
        const char *owner = json_string_value(json_object_get(entry, "owner"));
        for (size_t k = 0; blocklist != NULL && owner != NULL && k < count; k++) {
            if (blocklist_add(blocklist, owner, keys[k]) != 0) {
                blocklist_free(blocklist);
                blocklist = NULL;
            }
        }
    }
    return blocklist;
}

static int load_block(void *user, const char *key, size_t key_length, const char *value,
                      size_t value_length)
{
    json_t *entry = json_loadb(value, value_length, 0, NULL);
    if (json_is_object(entry)) {
        json_array_append(user, entry);
    } else {
        log_msg(LOG_ERROR, "unreadable blocklist entry skipped", "id=%.*s", (int)key_length, key);
    }
    json_decref(entry);
    return 0;
}

json_t *plane_blocklist_load(struct plane *plane, char *err, size_t err_length)
{
    json_t *entries = json_array();
    if (entries == NULL ||
        store_scan(plane->store, STORE_BLOCKLIST, NULL, 0, load_block, entries) != STORE_OK) {
        snprintf(err, err_length, "cannot read the blocklist from the store");
        json_decref(entries);
        return NULL;
    }
    return entries;
}

/* ---- requests ---- */

/* True when text is length hex digits (either case). */
static bool hex_of_length(const char *text, size_t length)
{
    if (strlen(text) != length) {
        return false;
    }
    for (const char *p = text; *p != '\0'; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F'))) {
            return false;
        }
    }
    return true;
}

static void lower_hex(char *text)
{
    for (char *p = text; *p != '\0'; p++) {
        *p = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
    }
}

/* The entry's id: 32 hex digits of SHA-256 over owner and its first key. */
static void entry_id(const char *owner, const char *key, char out[33])
{
    unsigned char digest[32];
    unsigned int length = 0;
    char *text = NULL;
    if (asprintf(&text, "%s\n%s", owner, key) < 0 ||
        EVP_Digest(text, strlen(text), digest, &length, EVP_sha256(), NULL) != 1) {
        memset(digest, 0, sizeof(digest));
    }
    free(text);
    for (size_t i = 0; i < 16; i++) {
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    }
}

/*
 * A text field of a block request: absent or null gives NULL; anything but a
 * string without NUL characters of at most max bytes is refused whole (the
 * message says what the field must be: shape), never cut to fit. 0, or -1
 * with err naming the field.
 */
static int request_text(const json_t *request, const char *key, size_t max, const char *shape,
                        const char **out, char *err, size_t err_length)
{
    json_t *value = json_object_get(request, key);
    *out = NULL;
    if (value == NULL || json_is_null(value)) {
        return 0;
    }
    if (!json_is_string(value)) {
        snprintf(err, err_length, "%s: must be a string", key);
        return -1;
    }
    if (strlen(json_string_value(value)) != json_string_length(value)) {
        snprintf(err, err_length, "%s: must not contain NUL characters", key);
        return -1;
    }
    if (json_string_length(value) > max) {
        snprintf(err, err_length, "%s: %s (%zu bytes given)", key, shape,
                 json_string_length(value));
        return -1;
    }
    *out = json_string_value(value);
    return 0;
}

/* Builds the stored entry from a request. PLANE_OK or PLANE_INVALID with err naming the field. */
static int make_entry(struct plane *plane, const char *owner, const json_t *request, json_t **entry,
                      char *err, size_t err_length)
{
    if (!json_is_object(request)) {
        snprintf(err, err_length, "body: must be a JSON object");
        return PLANE_INVALID;
    }
    const char *allowed[] = {"deviceId", "publicKeySha256", "serial", "issuer", "reason", NULL};
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)request, key, value)
    {
        bool known = false;
        for (size_t i = 0; allowed[i] != NULL; i++) {
            known = known || strcmp(allowed[i], key) == 0;
        }
        if (!known) {
            snprintf(err, err_length, "%s: unknown field", key);
            return PLANE_INVALID;
        }
    }
    const char *device, *spki, *serial_text, *issuer, *reason;
    const struct {
        const char *key;
        size_t max;
        const char *shape;
        const char **out;
    } fields[] = {
        {"deviceId", UUID_STRING_LENGTH, "not a UUID", &device},
        {"publicKeySha256", BLOCK_SPKI_LENGTH, SPKI_SHAPE, &spki},
        {"serial", BLOCK_SERIAL_MAX, SERIAL_SHAPE, &serial_text},
        {"issuer", BLOCK_ISSUER_MAX, ISSUER_SHAPE, &issuer},
        {"reason", BLOCK_REASON_MAX, REASON_SHAPE, &reason},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(*fields); i++) {
        if (request_text(request, fields[i].key, fields[i].max, fields[i].shape, fields[i].out, err,
                         err_length) < 0) {
            return PLANE_INVALID;
        }
    }
    int kinds = (device != NULL) + (spki != NULL) + (serial_text != NULL);
    if (kinds != 1) {
        snprintf(err, err_length,
                 "body: name exactly one of deviceId, publicKeySha256, or serial with issuer");
        return PLANE_INVALID;
    }
    if (issuer != NULL && serial_text == NULL) {
        snprintf(err, err_length, "issuer: only with serial");
        return PLANE_INVALID;
    }
    json_t *made = json_object();
    char stored_key[320];
    _Static_assert(sizeof(stored_key) >= sizeof("serial:/") + BLOCK_SERIAL_MAX + BLOCK_ISSUER_MAX,
                   "the longest key an entry can have fits");
    if (device != NULL) {
        struct dps_uuid uuid;
        char text[UUID_STRING_LENGTH + 1];
        if (uuid_text_parse(device, strlen(device), &uuid) != 0) {
            snprintf(err, err_length, "deviceId: not a UUID");
            json_decref(made);
            return PLANE_INVALID;
        }
        uuid_format(&uuid, text);
        json_object_set_new(made, "deviceId", json_string(text));
        snprintf(stored_key, sizeof(stored_key), "device:%s", text);
        /* A device already provisioned is refused at the handshake too, by its record. */
        char record[UUID_STRING_LENGTH + 1];
        if (records_binding_get(plane->store, owner, text, record) == STORE_OK) {
            json_object_set_new(made, "recordId", json_string(record));
        }
    } else if (spki != NULL) {
        char lower[BLOCK_SPKI_LENGTH + 1];
        if (!hex_of_length(spki, BLOCK_SPKI_LENGTH)) {
            snprintf(err, err_length, "publicKeySha256: " SPKI_SHAPE);
            json_decref(made);
            return PLANE_INVALID;
        }
        memcpy(lower, spki, sizeof(lower));
        lower_hex(lower);
        json_object_set_new(made, "publicKeySha256", json_string(lower));
        snprintf(stored_key, sizeof(stored_key), "spki:%s", lower);
    } else {
        char serial[BLOCK_SERIAL_MAX + 1];
        if (serial_text[0] == '\0' || !hex_of_length(serial_text, strlen(serial_text))) {
            snprintf(err, err_length, "serial: " SERIAL_SHAPE);
            json_decref(made);
            return PLANE_INVALID;
        }
        memcpy(serial, serial_text, strlen(serial_text) + 1);
        lower_hex(serial);
        if (issuer == NULL || issuer[0] == '\0') {
            snprintf(err, err_length, "issuer: required with serial (" ISSUER_SHAPE ")");
            json_decref(made);
            return PLANE_INVALID;
        }
        /* Serials compare without leading zeros, as OpenSSL prints them. */
        const char *significant = serial;
        while (significant[0] == '0' && significant[1] != '\0') {
            significant++;
        }
        json_object_set_new(made, "serial", json_string(significant));
        json_object_set_new(made, "issuer", json_string(issuer));
        snprintf(stored_key, sizeof(stored_key), "serial:%s/%s", significant, issuer);
    }
    char id[33], created[32];
    entry_id(owner, stored_key, id);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_set_new(made, "id", json_string(id));
    json_object_set_new(made, "owner", json_string(owner));
    json_object_set_new(made, "reason", json_string(reason != NULL ? reason : ""));
    json_object_set_new(made, "createdAt", json_string(created));
    *entry = made;
    return PLANE_OK;
}

/* ---- changes ---- */

/*
 * Publishes a snapshot with the blocklist candidate (taken over) and makes
 * change durable between the phases; keeps the old list on failure.
 */
static int publish_blocklist(struct plane *plane, json_t *candidate,
                             struct plane_document_change *change, char *err, size_t err_length)
{
    const struct config *current = &plane->current->config;
    struct config_group *groups;
    struct config_hub *hubs;
    size_t group_count, hub_count;
    if (plane_copy_lists(current, NULL, NULL, &groups, &group_count, &hubs, &hub_count) != 0) {
        snprintf(err, err_length, "out of memory");
        json_decref(candidate);
        return PLANE_FAILED;
    }
    int status;
    struct plane_candidate lists = {groups,    group_count,     hubs,  hub_count,
                                    candidate, plane->settings, false, true};
    struct plane_snapshot *snapshot =
        plane_snapshot_build(plane, &lists, plane->current, &status, err, err_length);
    if (snapshot != NULL) {
        status = plane_publish(plane, snapshot, plane_persist_document, change, err, err_length);
    }
    if (status == PLANE_OK) {
        json_decref(plane->blocklist);
        plane->blocklist = candidate;
    } else {
        json_decref(candidate);
    }
    plane_shared_change_done(plane, change, status);
    return status;
}

int plane_block(struct plane *plane, const char *owner, const json_t *request, json_t **entry,
                char *err, size_t err_length)
{
    json_t *made;
    int status = make_entry(plane, owner, request, &made, err, err_length);
    if (status != PLANE_OK) {
        return status;
    }
    const char *id = json_string_value(json_object_get(made, "id"));
    pthread_mutex_lock(&plane->lock);
    json_t *candidate = json_array();
    size_t index, owned = 0;
    bool replaces = false;
    json_t *existing;
    json_array_foreach(plane->blocklist, index, existing)
    {
        if (strcmp(json_string_value(json_object_get(existing, "id")), id) != 0) {
            json_array_append(candidate, existing);
            owned += strcmp(json_string_value(json_object_get(existing, "owner")), owner) == 0;
        } else {
            replaces = true;
        }
    }
    json_array_append(candidate, made);
    unsigned quota = plane->settings->api.quota_blocks;
    if (!replaces && quota > 0 && owned >= quota) {
        snprintf(err, err_length,
                 "blocklistEntries: the quota of %u per owner is reached "
                 "(api.quotas.blocklistEntries)",
                 quota);
        json_decref(candidate);
        status = PLANE_EXHAUSTED;
    } else {
        struct plane_document_change change = {STORE_BLOCKLIST, id, made, owner, true, NULL, 0};
        status = publish_blocklist(plane, candidate, &change, err, err_length);
    }
    pthread_mutex_unlock(&plane->lock);
    if (status == PLANE_OK) {
        *entry = made;
        log_msg(LOG_INFO, "blocked", "id=%s owner=%s", id, owner);
    } else {
        json_decref(made);
    }
    return status;
}

int plane_unblock(struct plane *plane, const char *owner, const char *id, char *err,
                  size_t err_length)
{
    pthread_mutex_lock(&plane->lock);
    json_t *candidate = json_array();
    bool found = false;
    size_t index;
    json_t *existing;
    json_array_foreach(plane->blocklist, index, existing)
    {
        bool match = strcmp(json_string_value(json_object_get(existing, "id")), id) == 0 &&
                     strcmp(json_string_value(json_object_get(existing, "owner")), owner) == 0;
        found = found || match;
        if (!match) {
            json_array_append(candidate, existing);
        }
    }
    int status;
    if (!found) {
        snprintf(err, err_length, "no blocklist entry %s", id);
        status = PLANE_NOT_FOUND;
        json_decref(candidate);
    } else {
        struct plane_document_change change = {STORE_BLOCKLIST, id, NULL, owner, true, NULL, 0};
        status = publish_blocklist(plane, candidate, &change, err, err_length);
    }
    pthread_mutex_unlock(&plane->lock);
    if (status == PLANE_OK) {
        log_msg(LOG_INFO, "unblocked", "id=%s owner=%s", id, owner);
    }
    return status;
}

json_t *plane_blocklist(struct plane *plane, const char *owner)
{
    json_t *mine = json_array();
    pthread_mutex_lock(&plane->lock);
    size_t index;
    json_t *entry;
    json_array_foreach(plane->blocklist, index, entry)
    {
        if (strcmp(json_string_value(json_object_get(entry, "owner")), owner) == 0) {
            json_array_append(mine, entry);
        }
    }
    pthread_mutex_unlock(&plane->lock);
    return mine;
}

/* A blocklist entry another node made or lifted. Lock held. */
int plane_blocklist_apply(struct plane *plane, const struct plane_change *change,
                          const struct store_put *extra, size_t extra_count, char *err,
                          size_t err_length)
{
    const char *id = json_string_value(json_object_get(change->doc, "id"));
    const char *owner = json_string_value(json_object_get(change->doc, "owner"));
    if (change->doc != NULL && (id == NULL || owner == NULL || strcmp(id, change->id) != 0)) {
        snprintf(err, err_length, "blocklist entry %s: no id or owner", change->id);
        return PLANE_INVALID;
    }
    json_t *candidate = json_array();
    bool found = false;
    size_t index;
    json_t *existing;
    json_array_foreach(plane->blocklist, index, existing)
    {
        if (strcmp(json_string_value(json_object_get(existing, "id")), change->id) != 0) {
            json_array_append(candidate, existing);
        } else {
            found = true;
        }
    }
    if (change->doc == NULL && !found) {
        json_decref(candidate);
        return extra_count == 0 || store_put_sync(plane->store, extra, extra_count) == STORE_OK
                   ? PLANE_OK
                   : PLANE_FAILED;
    }
    json_t *entry = change->doc != NULL ? json_deep_copy(change->doc) : NULL;
    if (entry != NULL) {
        json_array_append_new(candidate, entry);
    }
    struct plane_document_change stored = {STORE_BLOCKLIST, change->id, entry,      change->owner,
                                           false,           extra,      extra_count};
    return publish_blocklist(plane, candidate, &stored, err, err_length);
}
