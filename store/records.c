/*
 * records: the per-owner layout of what devices leave in the store, and its
 * readers. A record's parts are merged while the store is scanned in key
 * order: every record's parts arrive together (they share the prefix
 * "<owner key>/<record id>/"), so one record is held in memory at a time.
 */
#include "store/records.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/steps.h"
#include "crypto/uuid.h"
#include "store/store.h"

#define ID_LENGTH 36
/* "<owner key>/<record id>" */
#define RECORD_PREFIX_LENGTH (RECORDS_OWNER_KEY_LENGTH + 1 + ID_LENGTH)
#define DEVICE_SEGMENT "/device/"
#define IDENTITY_SEGMENT "/record/"

void records_owner_key(const char *owner, char out[RECORDS_OWNER_KEY_LENGTH + 1])
{
    struct dps_uuid uuid;
    uuid_v5(&UUID_NAMESPACE_URL, owner, strlen(owner), &uuid);
    uuid_format(&uuid, out);
}

/* Joins three pieces into out (RECORDS_KEY_MAX bytes); the length, or 0 when too long. */
static size_t join_key(const char *first, const char *second, const char *third, char *out)
{
    int length = snprintf(out, RECORDS_KEY_MAX, "%s%s%s", first, second, third);
    if (length < 0 || length >= RECORDS_KEY_MAX) {
        out[0] = '\0';
        return 0;
    }
    return (size_t)length;
}

size_t records_part_key(const char *owner_key, const char *record_id, const char *part, char *out)
{
    int length = snprintf(out, RECORDS_KEY_MAX, "%s/%s/%s", owner_key, record_id, part);
    if (length < 0 || length >= RECORDS_KEY_MAX) {
        out[0] = '\0';
        return 0;
    }
    return (size_t)length;
}

size_t records_issuance_key(const char *owner_key, const char *serial, char *out)
{
    return join_key(owner_key, "/", serial, out);
}

size_t records_device_binding_key(const char *owner_key, const char *device_id, char *out)
{
    return join_key(owner_key, DEVICE_SEGMENT, device_id, out);
}

size_t records_identity_binding_key(const char *owner_key, const char *record_id, char *out)
{
    return join_key(owner_key, IDENTITY_SEGMENT, record_id, out);
}

static char *binding_value(const char *field, const char *id, const char *owner)
{
    json_t *value = json_pack("{s:s, s:s}", field, id, "owner", owner);
    char *text = value != NULL ? json_dumps(value, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(value);
    return text;
}

char *records_device_binding_value(const char *owner, const char *record_id)
{
    return binding_value("recordId", record_id, owner);
}

char *records_identity_binding_value(const char *owner, const char *device_id)
{
    return binding_value("deviceId", device_id, owner);
}

/* The scan prefix of owner's keys, "<owner key>" then segment ("/", "/device/"); "" for all. */
static size_t owner_prefix(const char *owner, const char *segment, char *out)
{
    if (owner == NULL) {
        out[0] = '\0';
        return 0;
    }
    char key[RECORDS_OWNER_KEY_LENGTH + 1];
    records_owner_key(owner, key);
    return join_key(key, segment, "", out);
}

/* True when a stored value's "owner" is the one asked for (any, when NULL). */
static bool owned_by(json_t *value, const char *owner)
{
    const char *stored = json_string_value(json_object_get(value, "owner"));
    return stored != NULL && (owner == NULL || strcmp(stored, owner) == 0);
}

/* ---- records ---- */

struct merge {
    int (*fn)(void *user, json_t *record);
    void *user;
    const char *owner;                     /* NULL: every owner */
    const char *record_id;                 /* NULL: every record */
    char prefix[RECORD_PREFIX_LENGTH + 1]; /* "<owner key>/<record id>" being collected */
    json_t *parts;                         /* part name -> value, for prefix */
    size_t unreadable;
    bool stopped;
};

/* ---- the reference's shape ---- */

/* Stored "status" {date, coapCode, errorMessage} as the reference's flat ProvisionStatus. */
static void view_time(json_t *record, const char *part)
{
    json_t *stored = json_object_get(record, part);
    json_t *status = json_object_get(stored, "status");
    if (!json_is_object(status))
        return; /* already flat */
    json_t *flat = json_copy(status);
    json_t *handed = json_object_get(stored, "time");
    if (flat == NULL)
        return;
    if (handed != NULL)
        json_object_set(flat, "time", handed);
    json_object_set_new(record, part, flat);
}

/* The stored selected gateway {uri, id} as its index in gateways (omitted when not there). */
static void view_cloud(json_t *cloud)
{
    json_t *selected = json_object_get(cloud, "selectedGateway");
    if (!json_is_object(selected))
        return;
    json_t *gateways = json_object_get(cloud, "gateways");
    size_t index;
    json_t *gateway;
    json_array_foreach(gateways, index, gateway)
    {
        if (json_equal(json_object_get(gateway, "uri"), json_object_get(selected, "uri")) &&
            json_equal(json_object_get(gateway, "id"), json_object_get(selected, "id"))) {
            json_object_set_new(cloud, "selectedGateway", json_integer((json_int_t)index));
            return;
        }
    }
    json_object_del(cloud, "selectedGateway");
}

/* {data: base64 of text, encoding} (protobuf JSON carries bytes in base64). */
static json_t *credential_data(const char *text, const char *encoding)
{
    char *data = base64_encode_string(BASE64_STANDARD, (const uint8_t *)text, strlen(text));
    json_t *object =
        data != NULL ? json_pack("{s:s, s:s}", "data", data, "encoding", encoding) : NULL;
    free(data);
    return object;
}

static void add_credential(json_t *list, const char *type, const char *subject, const char *usage,
                           const char *data_field, json_t *data)
{
    if (subject == NULL || data == NULL) {
        json_decref(data);
        return;
    }
    json_array_append_new(list, json_pack("{s:[s], s:s, s:s, s:o}", "type", type, "subject",
                                          subject, "usage", usage, data_field, data));
}

/*
 * credentials[] as the device got them: the pre-shared key (when its group
 * has one), the identity certificate, and the trust anchor of the hub
 * ("trustCaPem" as stored, served only inside its credential). A record
 * stored before these were kept has the identity certificate alone.
 */
static void view_credential(json_t *credential, const char *device_id)
{
    if (!json_is_object(credential) || json_object_get(credential, "credentials") != NULL)
        return;
    json_t *list = json_array();
    json_t *psk = json_object_get(credential, "preSharedKey");
    const char *key = json_string_value(json_object_get(psk, "key"));
    if (key != NULL)
        add_credential(list, "SYMMETRIC_PAIR_WISE",
                       json_string_value(json_object_get(psk, "subjectId")), "NONE", "privateData",
                       credential_data(key, "RAW"));
    const char *identity = json_string_value(json_object_get(credential, "identityCertificatePem"));
    if (identity != NULL && identity[0] != '\0')
        add_credential(list, "ASYMMETRIC_SIGNING_WITH_CERTIFICATE", device_id, "CERT", "publicData",
                       credential_data(identity, "PEM"));
    const char *trust = json_string_value(json_object_get(credential, "trustCaPem"));
    if (trust != NULL)
        add_credential(list, "ASYMMETRIC_SIGNING_WITH_CERTIFICATE",
                       json_string_value(json_object_get(credential, "trustCaSubject")), "TRUST_CA",
                       "publicData", credential_data(trust, "PEM"));
    json_object_del(credential, "trustCaPem");
    json_object_del(credential, "trustCaSubject");
    json_object_set_new(credential, "credentials", list);
}

/* OCF "permission" bits (CREATE 1, RETRIEVE 2, UPDATE 4, DELETE 8, NOTIFY 16) as names. */
static json_t *acl_permissions(json_int_t bits)
{
    static const char *const names[] = {"CREATE", "READ", "WRITE", "DELETE", "NOTIFY"};
    json_t *list = json_array();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (bits & ((json_int_t)1 << i))
            json_array_append_new(list, json_string(names[i]));
    }
    return list;
}

/* A new array of convert(item) for each item of array. */
static json_t *mapped(json_t *array, json_t *(*convert)(json_t *item))
{
    json_t *list = json_array();
    size_t index;
    json_t *item;
    json_array_foreach(array, index, item)
    {
        json_array_append_new(list, convert(item));
    }
    return list;
}

/* An OCF resource {href, rt, if, wc}: no "if" is every interface, "*". */
static json_t *acl_resource(json_t *ocf)
{
    const char *wildcard = json_string_value(json_object_get(ocf, "wc"));
    json_t *interfaces = json_object_get(ocf, "if");
    const char *name = wildcard == NULL             ? "NONE"
                       : strcmp(wildcard, "*") == 0 ? "NONCFG_ALL"
                       : strcmp(wildcard, "+") == 0 ? "NONCFG_SEC_ENDPOINT"
                       : strcmp(wildcard, "-") == 0 ? "NONCFG_NONSEC_ENDPOINT"
                                                    : "NONE";
    json_t *resource =
        json_pack("{s:o, s:s}", "interfaces",
                  json_is_array(interfaces) ? json_incref(interfaces) : json_pack("[s]", "*"),
                  "wildcard", name);
    if (resource != NULL && json_object_get(ocf, "href") != NULL)
        json_object_set(resource, "href", json_object_get(ocf, "href"));
    if (resource != NULL && json_object_get(ocf, "rt") != NULL)
        json_object_set(resource, "resourceTypes", json_object_get(ocf, "rt"));
    return resource;
}

/* An OCF access-control entry as the reference's AccessControl. */
static json_t *acl_entry(json_t *ocf)
{
    json_t *subject = json_object_get(ocf, "subject");
    json_t *entry = json_object();
    const char *conntype = json_string_value(json_object_get(subject, "conntype"));
    if (json_object_get(subject, "uuid") != NULL)
        json_object_set_new(entry, "deviceSubject",
                            json_pack("{s:O}", "deviceId", json_object_get(subject, "uuid")));
    else if (json_object_get(subject, "role") != NULL)
        json_object_set_new(
            entry, "roleSubject",
            json_pack("{s:O, s:s}", "role", json_object_get(subject, "role"), "authority",
                      json_string_value(json_object_get(subject, "authority")) ?: ""));
    else if (conntype != NULL)
        json_object_set_new(
            entry, "connectionSubject",
            json_pack("{s:s}", "type",
                      strcmp(conntype, "auth-crypt") == 0 ? "AUTH_CRYPT" : "ANON_CLEAR"));
    json_object_set_new(entry, "permissions",
                        acl_permissions(json_integer_value(json_object_get(ocf, "permission"))));
    json_object_set_new(entry, "resources",
                        mapped(json_object_get(ocf, "resources"), acl_resource));
    return entry;
}

/* The stored OCF list (as devices get it) in the reference's form; the OCF one kept aside. */
static void view_acl(json_t *acl)
{
    json_t *ocf = json_object_get(acl, "accessControlList");
    /* A list stored in the reference's form already (entries with "permissions") is served so. */
    if (!json_is_array(ocf) || json_object_get(acl, "ocfAccessControlList") != NULL ||
        json_object_get(json_array_get(ocf, 0), "permissions") != NULL)
        return;
    json_object_set(acl, "ocfAccessControlList", ocf);
    json_object_set_new(acl, "accessControlList", mapped(ocf, acl_entry));
}

/* Nanosecond texts compare as numbers: the longer is later, else the greater. */
static bool later(const char *a, const char *b)
{
    size_t a_length = strlen(a), b_length = strlen(b);
    return a_length != b_length ? a_length > b_length : strcmp(a, b) > 0;
}

/*
 * A record stored before attestation.date moved has it equal to the
 * creation date for ever: its latest step's date stands for the last
 * attestation (a step is answered only on an attested connection).
 */
static void view_attestation(json_t *record)
{
    json_t *attestation = json_object_get(record, "attestation");
    const char *date = json_string_value(json_object_get(attestation, "date"));
    const char *created = json_string_value(json_object_get(record, "creationDate"));
    if (date == NULL || created == NULL || strcmp(date, created) != 0)
        return;
    const char *latest = date;
    for (size_t i = 0; i < STEP_COUNT; i++) {
        json_t *part = json_object_get(record, dps_step_routes[i].record_part);
        json_t *status = dps_step_routes[i].flat_status ? part : json_object_get(part, "status");
        const char *step_date = json_string_value(json_object_get(status, "date"));
        if (step_date != NULL && later(step_date, latest))
            latest = step_date;
    }
    json_object_set_new(attestation, "date", json_string(latest));
}

static void record_view(json_t *record)
{
    for (size_t i = 0; i < STEP_COUNT; i++) {
        if (dps_step_routes[i].flat_status)
            view_time(record, dps_step_routes[i].record_part);
    }
    view_cloud(json_object_get(record, "cloud"));
    view_credential(json_object_get(record, "credential"),
                    json_string_value(json_object_get(record, "deviceId")));
    view_acl(json_object_get(record, "acl"));
    view_attestation(record);
}

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
    json_object_set_new(record, "id", json_string(record_id));
    for (size_t i = 0; i < STEP_COUNT; i++) {
        json_t *value = json_object_get(parts, dps_step_routes[i].record_part);
        if (value != NULL) {
            json_object_set(record, dps_step_routes[i].record_part, value);
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
    record_view(record);
    return record;
}

/*
 * Hands the record being collected to fn, when it names the owner asked
 * for: a record without its top-level part (owner unknown) is unreadable.
 */
static void flush(struct merge *merge)
{
    if (merge->parts == NULL) {
        return;
    }
    json_t *record = merge_parts(merge->prefix + RECORDS_OWNER_KEY_LENGTH + 1, merge->parts);
    json_decref(merge->parts);
    merge->parts = NULL;
    if (record == NULL) {
        return;
    }
    if (!owned_by(record, NULL)) {
        merge->unreadable++;
    } else if (owned_by(record, merge->owner) && !merge->stopped &&
               merge->fn(merge->user, record) != 0) {
        merge->stopped = true;
    }
    json_decref(record);
}

/* True when key is "<36>/<36>/<part>" with a non-empty part and no other "/". */
static bool record_key_valid(const char *key, size_t key_length)
{
    if (key_length <= RECORD_PREFIX_LENGTH + 1 || key[RECORDS_OWNER_KEY_LENGTH] != '/' ||
        key[RECORD_PREFIX_LENGTH] != '/') {
        return false;
    }
    return memchr(key, '/', RECORDS_OWNER_KEY_LENGTH) == NULL &&
           memchr(key + RECORDS_OWNER_KEY_LENGTH + 1, '/', ID_LENGTH) == NULL &&
           memchr(key + RECORD_PREFIX_LENGTH + 1, '/', key_length - RECORD_PREFIX_LENGTH - 1) ==
               NULL;
}

static int take_part(void *user, const char *key, size_t key_length, const char *value,
                     size_t value_length)
{
    struct merge *merge = user;
    if (!record_key_valid(key, key_length)) {
        merge->unreadable++;
        return 0;
    }
    if (merge->record_id != NULL &&
        memcmp(key + RECORDS_OWNER_KEY_LENGTH + 1, merge->record_id, ID_LENGTH) != 0) {
        return 0;
    }
    if (merge->parts != NULL && memcmp(merge->prefix, key, RECORD_PREFIX_LENGTH) != 0) {
        flush(merge);
        if (merge->stopped) {
            return 1;
        }
    }
    if (merge->parts == NULL) {
        memcpy(merge->prefix, key, RECORD_PREFIX_LENGTH);
        merge->prefix[RECORD_PREFIX_LENGTH] = '\0';
        if ((merge->parts = json_object()) == NULL) {
            return 1;
        }
    }
    json_t *parsed = json_loadb(value, value_length, 0, NULL);
    if (parsed == NULL) {
        merge->unreadable++;
        return 0;
    }
    const char *part = key + RECORD_PREFIX_LENGTH + 1;
    if (json_object_setn_new(merge->parts, part, key_length - RECORD_PREFIX_LENGTH - 1, parsed) !=
        0) {
        merge->unreadable++; /* a part name that is not UTF-8 */
    }
    return 0;
}

int records_scan(struct store *store, const char *owner, const char *record_id,
                 int (*fn)(void *user, json_t *record), void *user, size_t *unreadable)
{
    struct merge merge = {.fn = fn, .user = user, .owner = owner};
    if (record_id != NULL && strlen(record_id) != ID_LENGTH) {
        return STORE_OK;
    }
    merge.record_id = record_id;
    char prefix[RECORDS_KEY_MAX];
    size_t prefix_length = 0;
    if (owner != NULL && record_id != NULL) {
        char key[RECORDS_OWNER_KEY_LENGTH + 1];
        records_owner_key(owner, key);
        prefix_length = records_part_key(key, record_id, "", prefix);
    } else {
        prefix_length = owner_prefix(owner, "/", prefix);
    }
    int status = store_scan(store, STORE_RECORDS, prefix, prefix_length, take_part, &merge);
    flush(&merge);
    json_decref(merge.parts);
    if (unreadable != NULL) {
        *unreadable = merge.unreadable;
    }
    return status;
}

/* The keys of one record's parts, collected for their deletion. */
struct part_keys {
    struct store_put *deletes;
    size_t count;
    size_t capacity;
    bool failed;
};

static int collect_part_key(void *user, const char *key, size_t key_length, const char *value,
                            size_t value_length)
{
    struct part_keys *keys = user;
    (void)value;
    (void)value_length;
    if (keys->count == keys->capacity) {
        size_t capacity = keys->capacity > 0 ? 2 * keys->capacity : 8;
        struct store_put *grown = realloc(keys->deletes, capacity * sizeof(*grown));
        if (grown == NULL) {
            keys->failed = true;
            return 1;
        }
        keys->deletes = grown;
        keys->capacity = capacity;
    }
    char *copy = malloc(key_length);
    if (copy == NULL) {
        keys->failed = true;
        return 1;
    }
    memcpy(copy, key, key_length);
    keys->deletes[keys->count++] = (struct store_put){
        .family = STORE_RECORDS, .key = copy, .key_length = key_length, .value = NULL};
    return 0;
}

int records_delete(struct store *store, const char *owner, const char *record_id)
{
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1], prefix[RECORDS_KEY_MAX];
    if (strlen(record_id) != ID_LENGTH) {
        return STORE_NOT_FOUND;
    }
    records_owner_key(owner, owner_key);
    size_t prefix_length = records_part_key(owner_key, record_id, "", prefix);
    struct part_keys keys = {0};
    int status = store_scan(store, STORE_RECORDS, prefix, prefix_length, collect_part_key, &keys);
    if (status == STORE_OK && keys.failed) {
        status = STORE_ERROR;
    }
    if (status == STORE_OK) {
        status = keys.count > 0 ? store_put_sync(store, keys.deletes, keys.count) : STORE_NOT_FOUND;
    }
    for (size_t i = 0; i < keys.count; i++) {
        free((char *)keys.deletes[i].key);
    }
    free(keys.deletes);
    return status;
}

struct doomed {
    bool (*match)(void *user, json_t *record);
    void *user;
    json_t *ids;
    size_t batch;
};

static int collect_doomed(void *user, json_t *record)
{
    struct doomed *doomed = user;
    if (doomed->match(doomed->user, record))
        json_array_append(doomed->ids, json_object_get(record, "id"));
    return json_array_size(doomed->ids) >= doomed->batch;
}

long records_delete_matching(struct store *store, const char *owner, const char *record_id,
                             bool (*match)(void *user, json_t *record), void *user, size_t batch)
{
    long count = 0;
    size_t collected = batch;
    while (count >= 0 && collected >= batch) {
        struct doomed doomed = {match, user, json_array(), batch > 0 ? batch : 1};
        if (doomed.ids == NULL ||
            records_scan(store, owner, record_id, collect_doomed, &doomed, NULL) != STORE_OK) {
            count = -1;
        }
        collected = json_array_size(doomed.ids);
        size_t index;
        json_t *id;
        json_array_foreach(doomed.ids, index, id)
        {
            int status =
                count < 0 ? STORE_ERROR : records_delete(store, owner, json_string_value(id));
            if (status == STORE_OK) {
                count++;
            } else if (status != STORE_NOT_FOUND) {
                count = -1;
            }
        }
        json_decref(doomed.ids);
    }
    return count;
}

/* ---- issuance and bindings ---- */

struct entries {
    int (*fn)(void *user, json_t *entry);
    void *user;
    const char *owner;
    size_t unreadable;
};

/* The part of key after "<owner key>/" (and segment, when given); NULL when not in the layout. */
static const char *key_tail(const char *key, size_t key_length, const char *segment,
                            size_t *tail_length)
{
    size_t head = RECORDS_OWNER_KEY_LENGTH + (segment != NULL ? strlen(segment) : 1);
    if (key_length <= head || memchr(key, '/', RECORDS_OWNER_KEY_LENGTH) != NULL ||
        (segment != NULL ? memcmp(key + RECORDS_OWNER_KEY_LENGTH, segment, strlen(segment)) != 0
                         : key[RECORDS_OWNER_KEY_LENGTH] != '/') ||
        memchr(key + head, '/', key_length - head) != NULL) {
        return NULL;
    }
    *tail_length = key_length - head;
    return key + head;
}

static int issuance_entry(void *user, const char *key, size_t key_length, const char *value,
                          size_t value_length)
{
    struct entries *entries = user;
    size_t serial_length;
    const char *serial = key_tail(key, key_length, NULL, &serial_length);
    json_t *entry = serial != NULL ? json_loadb(value, value_length, 0, NULL) : NULL;
    if (!json_is_object(entry) || !owned_by(entry, NULL)) {
        json_decref(entry);
        entries->unreadable++;
        return 0;
    }
    if (json_object_get(entry, "serial") == NULL) {
        json_object_set_new(entry, "serial", json_stringn(serial, serial_length));
    }
    int stop = owned_by(entry, entries->owner) ? entries->fn(entries->user, entry) : 0;
    json_decref(entry);
    return stop;
}

int records_issuance_scan(struct store *store, const char *owner,
                          int (*fn)(void *user, json_t *entry), void *user, size_t *unreadable)
{
    struct entries entries = {.fn = fn, .user = user, .owner = owner};
    char prefix[RECORDS_KEY_MAX];
    size_t prefix_length = owner_prefix(owner, "/", prefix);
    int status = store_scan(store, STORE_ISSUANCE, prefix, prefix_length, issuance_entry, &entries);
    if (unreadable != NULL) {
        *unreadable = entries.unreadable;
    }
    return status;
}

static int binding_entry(void *user, const char *key, size_t key_length, const char *value,
                         size_t value_length)
{
    struct entries *entries = user;
    size_t device_length;
    const char *device = key_tail(key, key_length, DEVICE_SEGMENT, &device_length);
    if (device == NULL) {
        size_t record_length;
        if (key_tail(key, key_length, IDENTITY_SEGMENT, &record_length) == NULL) {
            entries->unreadable++;
        }
        return 0; /* the identity half of a pair: listed through its device half */
    }
    json_t *stored = json_loadb(value, value_length, 0, NULL);
    const char *record_id = json_string_value(json_object_get(stored, "recordId"));
    if (record_id == NULL || !owned_by(stored, NULL)) {
        json_decref(stored);
        entries->unreadable++;
        return 0;
    }
    int stop = 0;
    if (owned_by(stored, entries->owner)) {
        json_t *binding =
            json_pack("{s:s%, s:s, s:O}", "deviceId", device, device_length, "recordId", record_id,
                      "owner", json_object_get(stored, "owner"));
        stop = binding == NULL || entries->fn(entries->user, binding) != 0;
        json_decref(binding);
    }
    json_decref(stored);
    return stop;
}

int records_bindings_scan(struct store *store, const char *owner,
                          int (*fn)(void *user, json_t *binding), void *user, size_t *unreadable)
{
    struct entries entries = {.fn = fn, .user = user, .owner = owner};
    char prefix[RECORDS_KEY_MAX];
    size_t prefix_length = owner_prefix(owner, DEVICE_SEGMENT, prefix);
    int status = store_scan(store, STORE_BINDINGS, prefix, prefix_length, binding_entry, &entries);
    if (unreadable != NULL) {
        *unreadable = entries.unreadable;
    }
    return status;
}

/* Reads a binding value's id field (field) into out (37 bytes) when it names owner. */
static int read_binding(struct store *store, const char *key, size_t key_length, const char *owner,
                        const char *field, char *out)
{
    char *value = NULL;
    size_t length = 0;
    int status = store_get(store, STORE_BINDINGS, key, key_length, &value, &length);
    if (status != STORE_OK) {
        return status;
    }
    json_t *stored = json_loadb(value, length, 0, NULL);
    free(value);
    const char *id = json_string_value(json_object_get(stored, field));
    status = id != NULL && strlen(id) == ID_LENGTH && owned_by(stored, owner) ? STORE_OK
                                                                              : STORE_NOT_FOUND;
    if (status == STORE_OK) {
        memcpy(out, id, ID_LENGTH + 1);
    }
    json_decref(stored);
    return status;
}

int records_binding_get(struct store *store, const char *owner, const char *device_id,
                        char *record_id)
{
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1], key[RECORDS_KEY_MAX];
    records_owner_key(owner, owner_key);
    size_t length = records_device_binding_key(owner_key, device_id, key);
    if (length == 0) {
        return STORE_NOT_FOUND;
    }
    return read_binding(store, key, length, owner, "recordId", record_id);
}

int records_binding_release(struct store *store, const char *owner, const char *device_id)
{
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1], device_key[RECORDS_KEY_MAX],
        identity_key[RECORDS_KEY_MAX];
    char record_id[ID_LENGTH + 1], bound_device[ID_LENGTH + 1];
    records_owner_key(owner, owner_key);
    size_t device_length = records_device_binding_key(owner_key, device_id, device_key);
    if (device_length == 0) {
        return STORE_NOT_FOUND;
    }
    int status = read_binding(store, device_key, device_length, owner, "recordId", record_id);
    if (status != STORE_OK) {
        return status;
    }
    struct store_put deletes[2] = {
        {.family = STORE_BINDINGS, .key = device_key, .key_length = device_length},
    };
    size_t count = 1;
    size_t identity_length = records_identity_binding_key(owner_key, record_id, identity_key);
    status = read_binding(store, identity_key, identity_length, owner, "deviceId", bound_device);
    if (status == STORE_ERROR) {
        return status;
    }
    /* The identity half goes only when it names this device id (migrated stores may differ). */
    if (status == STORE_OK && strcmp(bound_device, device_id) == 0) {
        deletes[count++] = (struct store_put){
            .family = STORE_BINDINGS, .key = identity_key, .key_length = identity_length};
    }
    return store_put_sync(store, deletes, count);
}
