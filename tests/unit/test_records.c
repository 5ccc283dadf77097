/*
 * Tests for records: what devices leave in the store is kept per owner. Two
 * owners' records of one manufacturer certificate stay two records, lists
 * read only the owner asked for (or every owner's, for tools), bindings come
 * in pairs and are released in pairs. And a store written by the previous
 * dpsd (key layout 1, built here with RocksDB directly) is moved to the
 * per-owner layout when it is opened, its records readable by their owner,
 * also when an earlier move was cut short; read-only opens refuse it until
 * then.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <rocksdb/c.h>

#include "common/base64.h"
#include "tests/unit/temp_dir.h"
#include "store/records.h"
#include "store/store.h"

#define OWNER1_KEY "b80c8fef-a677-5340-85fb-2c162d75df03" /* owner "1" */
#define RECORD_A "11111111-1111-5111-8111-111111111111"
#define RECORD_B "22222222-2222-5222-8222-222222222222"
#define RECORD_C "33333333-3333-5333-8333-333333333333"
#define DEVICE_1 "d1d1d1d1-0000-4000-8000-000000000001"
#define DEVICE_2 "d2d2d2d2-0000-4000-8000-000000000002"
#define DEVICE_3 "d3d3d3d3-0000-4000-8000-000000000003"

static int setup(void **state)
{
    return temp_dir_setup(state, "/tmp/test-records-XXXXXX");
}

static int teardown(void **state)
{
    return temp_dir_teardown(state);
}

static struct store *open_store(const char *dir)
{
    char err[256] = "";
    struct store *store = store_open(dir, 0, 0, err, sizeof(err));
    if (store == NULL)
        fail_msg("store_open: %s", err);
    return store;
}

static void put(struct store *store, enum store_family family, const char *key, const char *value)
{
    struct store_put one = {family, key, strlen(key), value, strlen(value)};
    assert_int_equal(store_put_sync(store, &one, 1), STORE_OK);
}

static void put_part(struct store *store, const char *owner, const char *record_id,
                     const char *part, const char *value)
{
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1], key[RECORDS_KEY_MAX];
    records_owner_key(owner, owner_key);
    assert_true(records_part_key(owner_key, record_id, part, key) > 0);
    put(store, STORE_RECORDS, key, value);
}

/* What a scan handed out: copies of the documents, in order. */
struct seen {
    json_t *items;
};

static int keep(void *user, json_t *item)
{
    struct seen *seen = user;
    json_array_append(seen->items, item);
    return 0;
}

static json_t *scan_records(struct store *store, const char *owner, const char *record_id,
                            size_t *unreadable)
{
    struct seen seen = {json_array()};
    assert_int_equal(records_scan(store, owner, record_id, keep, &seen, unreadable), STORE_OK);
    return seen.items;
}

static json_t *scan_issuance(struct store *store, const char *owner)
{
    struct seen seen = {json_array()};
    assert_int_equal(records_issuance_scan(store, owner, keep, &seen, NULL), STORE_OK);
    return seen.items;
}

static json_t *scan_bindings(struct store *store, const char *owner)
{
    struct seen seen = {json_array()};
    assert_int_equal(records_bindings_scan(store, owner, keep, &seen, NULL), STORE_OK);
    return seen.items;
}

static const char *text(json_t *array, size_t index, const char *key)
{
    return json_string_value(json_object_get(json_array_get(array, index), key));
}

static void test_owner_key(void **state)
{
    char key[RECORDS_OWNER_KEY_LENGTH + 1], again[RECORDS_OWNER_KEY_LENGTH + 1];
    (void)state;
    records_owner_key("1", key);
    assert_string_equal(key, OWNER1_KEY);
    /* An owner that is itself a UUID gets a derived key, never its own text. */
    records_owner_key(OWNER1_KEY, again);
    assert_string_not_equal(again, OWNER1_KEY);
    assert_string_not_equal(again, key);
}

/* One manufacturer certificate (one record id) under two owners: two records, never merged. */
/* Owner 1's identity binding of RECORD_A as stored: store_get's status, the value in *value. */
static int owner1_identity_binding(struct store *store, char **value)
{
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1], key[RECORDS_KEY_MAX];
    size_t value_length = 0;

    records_owner_key("1", owner_key);
    size_t length = records_identity_binding_key(owner_key, RECORD_A, key);
    return store_get(store, STORE_BINDINGS, key, length, value, &value_length);
}

static void test_records_are_per_owner(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir);
    put_part(store, "1", RECORD_A, "record", "{\"owner\":\"1\",\"deviceId\":\"" DEVICE_1 "\"}");
    put_part(store, "1", RECORD_A, "credential", "{\"status\":{\"coapCode\":68}}");
    put_part(store, "1", RECORD_A, "acl", "{\"status\":{\"coapCode\":69}}");
    put_part(store, "2", RECORD_A, "record", "{\"owner\":\"2\"}");
    put_part(store, "2", RECORD_A, "plgdTime", "{\"status\":{\"coapCode\":69}}");

    json_t *mine = scan_records(store, "1", NULL, NULL);
    assert_int_equal(json_array_size(mine), 1);
    assert_string_equal(text(mine, 0, "id"), RECORD_A);
    assert_string_equal(text(mine, 0, "owner"), "1");
    assert_non_null(json_object_get(json_array_get(mine, 0), "credential"));
    assert_null(json_object_get(json_array_get(mine, 0), "plgdTime"));

    json_t *theirs = scan_records(store, "2", RECORD_A, NULL);
    assert_int_equal(json_array_size(theirs), 1);
    assert_string_equal(text(theirs, 0, "owner"), "2");
    assert_non_null(json_object_get(json_array_get(theirs, 0), "plgdTime"));
    assert_null(json_object_get(json_array_get(theirs, 0), "credential"));
    assert_null(json_object_get(json_array_get(theirs, 0), "acl"));

    json_t *nobody = scan_records(store, "3", NULL, NULL);
    assert_int_equal(json_array_size(nobody), 0);
    size_t unreadable = 9;
    json_t *all = scan_records(store, NULL, RECORD_A, &unreadable);
    assert_int_equal(json_array_size(all), 2);
    assert_int_equal(unreadable, 0);

    json_decref(mine);
    json_decref(theirs);
    json_decref(nobody);
    json_decref(all);
    store_close(store);
}

static void test_issuance_is_per_owner(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir);
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1], key[RECORDS_KEY_MAX];
    records_owner_key("1", owner_key);
    records_issuance_key(owner_key, "0a", key);
    put(store, STORE_ISSUANCE, key, "{\"owner\":\"1\",\"deviceId\":\"" DEVICE_1 "\"}");
    records_owner_key("2", owner_key);
    records_issuance_key(owner_key, "0b", key);
    put(store, STORE_ISSUANCE, key, "{\"owner\":\"2\",\"deviceId\":\"" DEVICE_1 "\"}");
    /* A value naming another owner than its key's is not that owner's. */
    records_issuance_key(owner_key, "0c", key);
    put(store, STORE_ISSUANCE, key, "{\"owner\":\"1\",\"deviceId\":\"" DEVICE_2 "\"}");

    json_t *mine = scan_issuance(store, "1");
    assert_int_equal(json_array_size(mine), 1);
    assert_string_equal(text(mine, 0, "serial"), "0a");
    json_t *theirs = scan_issuance(store, "2");
    assert_int_equal(json_array_size(theirs), 1);
    assert_string_equal(text(theirs, 0, "serial"), "0b");
    json_t *all = scan_issuance(store, NULL);
    assert_int_equal(json_array_size(all), 3);
    json_decref(mine);
    json_decref(theirs);
    json_decref(all);
    store_close(store);
}

static void put_pair(struct store *store, const char *owner, const char *device_id,
                     const char *record_id)
{
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1], key[RECORDS_KEY_MAX];
    records_owner_key(owner, owner_key);
    char *value = records_device_binding_value(owner, record_id);
    records_device_binding_key(owner_key, device_id, key);
    put(store, STORE_BINDINGS, key, value);
    free(value);
    value = records_identity_binding_value(owner, device_id);
    records_identity_binding_key(owner_key, record_id, key);
    put(store, STORE_BINDINGS, key, value);
    free(value);
}

static void test_bindings_are_per_owner_and_released_in_pairs(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir);
    char *value = records_device_binding_value("1", RECORD_A);
    assert_string_equal(value, "{\"recordId\":\"" RECORD_A "\",\"owner\":\"1\"}");
    free(value);
    put_pair(store, "1", DEVICE_1, RECORD_A);
    put_pair(store, "2", DEVICE_1, RECORD_B);

    json_t *mine = scan_bindings(store, "1");
    assert_int_equal(json_array_size(mine), 1);
    assert_string_equal(text(mine, 0, "deviceId"), DEVICE_1);
    assert_string_equal(text(mine, 0, "recordId"), RECORD_A);
    assert_string_equal(text(mine, 0, "owner"), "1");
    json_t *all = scan_bindings(store, NULL);
    assert_int_equal(json_array_size(all), 2);

    char record[37];
    assert_int_equal(records_binding_get(store, "2", DEVICE_1, record), STORE_OK);
    assert_string_equal(record, RECORD_B);
    assert_int_equal(records_binding_get(store, "3", DEVICE_1, record), STORE_NOT_FOUND);

    assert_int_equal(records_binding_release(store, "3", DEVICE_1), STORE_NOT_FOUND);
    assert_int_equal(records_binding_release(store, "1", DEVICE_1), STORE_OK);
    assert_int_equal(records_binding_get(store, "1", DEVICE_1, record), STORE_NOT_FOUND);
    char *stored = NULL;
    assert_int_equal(owner1_identity_binding(store, &stored), STORE_NOT_FOUND);
    /* Owner 2's binding of the same id is untouched. */
    assert_int_equal(records_binding_get(store, "2", DEVICE_1, record), STORE_OK);
    json_decref(mine);
    json_decref(all);
    store_close(store);
}

/* ---- a store of the previous layout ---- */

/* Writes keys the way the previous dpsd did, straight into RocksDB (no layout marker). */
struct layout1 {
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_writeoptions_t *write_options;
    rocksdb_column_family_handle_t *handles[STORE_FAMILY_COUNT + 1];
};

static void layout1_open(struct layout1 *old, const char *dir)
{
    const char *names[STORE_FAMILY_COUNT + 1];
    const rocksdb_options_t *family_options[STORE_FAMILY_COUNT + 1];
    old->options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(old->options, 1);
    rocksdb_options_set_create_missing_column_families(old->options, 1);
    names[0] = "default";
    for (int i = 0; i < STORE_FAMILY_COUNT; i++)
        names[i + 1] = store_family_name(i);
    for (int i = 0; i <= STORE_FAMILY_COUNT; i++)
        family_options[i] = old->options;
    char *error = NULL;
    old->db = rocksdb_open_column_families(old->options, dir, STORE_FAMILY_COUNT + 1, names,
                                           family_options, old->handles, &error);
    if (error != NULL)
        fail_msg("rocksdb open: %s", error);
    old->write_options = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(old->write_options, 0);
}

static void layout1_put(struct layout1 *old, enum store_family family, const char *key,
                        const char *value)
{
    char *error = NULL;
    rocksdb_put_cf(old->db, old->write_options, old->handles[family + 1], key, strlen(key), value,
                   strlen(value), &error);
    if (error != NULL)
        fail_msg("rocksdb put: %s", error);
}

static void layout1_close(struct layout1 *old)
{
    for (int i = 0; i <= STORE_FAMILY_COUNT; i++)
        rocksdb_column_family_handle_destroy(old->handles[i]);
    rocksdb_close(old->db);
    rocksdb_writeoptions_destroy(old->write_options);
    rocksdb_options_destroy(old->options);
}

static void layout1_store(const char *dir)
{
    struct layout1 old;
    layout1_open(&old, dir);
    layout1_put(&old, STORE_GROUPS, "5e1f0b7c-2d3a-4c5b-8e9f-0a1b2c3d4e5f", "{}");
    /* Owner 1's record A (which bound two ids, DEVICE_1 last), owner 2's record B. */
    layout1_put(&old, STORE_RECORDS, RECORD_A "/record",
                "{\"id\":\"" RECORD_A "\",\"owner\":\"1\",\"deviceId\":\"" DEVICE_1 "\"}");
    layout1_put(&old, STORE_RECORDS, RECORD_A "/credential", "{\"status\":{\"coapCode\":68}}");
    layout1_put(&old, STORE_RECORDS, RECORD_A "/acl", "{\"status\":{\"coapCode\":69}}");
    layout1_put(&old, STORE_RECORDS, RECORD_B "/record",
                "{\"id\":\"" RECORD_B "\",\"owner\":\"2\",\"deviceId\":\"" DEVICE_3 "\"}");
    layout1_put(&old, STORE_RECORDS, RECORD_B "/plgdTime", "{\"status\":{\"coapCode\":69}}");
    /* Record C has no top-level part: its owner is unknown. */
    layout1_put(&old, STORE_RECORDS, RECORD_C "/cloud", "{\"status\":{\"coapCode\":68}}");
    layout1_put(&old, STORE_ISSUANCE, "0a",
                "{\"serial\":\"0a\",\"deviceId\":\"" DEVICE_1 "\",\"recordId\":\"" RECORD_A "\"}");
    layout1_put(&old, STORE_ISSUANCE, "0b",
                "{\"serial\":\"0b\",\"deviceId\":\"" DEVICE_3 "\",\"recordId\":\"" RECORD_B "\"}");
    layout1_put(&old, STORE_BINDINGS, DEVICE_1, RECORD_A);
    layout1_put(&old, STORE_BINDINGS, DEVICE_2, "\"" RECORD_A "\"");
    layout1_put(&old, STORE_BINDINGS, DEVICE_3, RECORD_B);
    /* Many more records, so the move takes several batches. */
    for (int i = 0; i < 700; i++) {
        char id[37], key[64], value[128];
        snprintf(id, sizeof(id), "44444444-4444-5444-8444-%012d", i);
        snprintf(value, sizeof(value), "{\"id\":\"%s\",\"owner\":\"%d\"}", id, 1 + i % 2);
        snprintf(key, sizeof(key), "%s/record", id);
        layout1_put(&old, STORE_RECORDS, key, value);
        snprintf(key, sizeof(key), "%s/acl", id);
        layout1_put(&old, STORE_RECORDS, key, "{}");
        snprintf(key, sizeof(key), "%s/cloud", id);
        layout1_put(&old, STORE_RECORDS, key, "{}");
    }
    layout1_close(&old);
}

static void assert_migrated(struct store *store)
{
    size_t unreadable = 0;
    json_t *mine = scan_records(store, "1", RECORD_A, &unreadable);
    assert_int_equal(json_array_size(mine), 1);
    json_t *record = json_array_get(mine, 0);
    assert_string_equal(text(mine, 0, "owner"), "1");
    assert_int_equal(
        json_integer_value(json_object_get(
            json_object_get(json_object_get(record, "credential"), "status"), "coapCode")),
        68);
    assert_non_null(json_object_get(record, "acl"));
    json_t *theirs = scan_records(store, "2", NULL, NULL);
    assert_int_equal(json_array_size(theirs), 351); /* B and every other generated record */
    json_t *owner1 = scan_records(store, "1", NULL, NULL);
    assert_int_equal(json_array_size(owner1), 351);
    /* Record C stays where it was, unread. */
    json_t *all = scan_records(store, NULL, NULL, &unreadable);
    assert_int_equal(json_array_size(all), 702);
    assert_int_equal(unreadable, 1);

    json_t *issued = scan_issuance(store, "1");
    assert_int_equal(json_array_size(issued), 1);
    assert_string_equal(text(issued, 0, "serial"), "0a");
    assert_string_equal(text(issued, 0, "owner"), "1");
    json_t *issued2 = scan_issuance(store, "2");
    assert_int_equal(json_array_size(issued2), 1);
    assert_string_equal(text(issued2, 0, "owner"), "2");

    /* Both ids record A held stay bound to it; its own binding names the last, DEVICE_1. */
    json_t *bound = scan_bindings(store, "1");
    assert_int_equal(json_array_size(bound), 2);
    assert_string_equal(text(bound, 0, "recordId"), RECORD_A);
    assert_string_equal(text(bound, 1, "recordId"), RECORD_A);
    char id[37];
    assert_int_equal(records_binding_get(store, "2", DEVICE_3, id), STORE_OK);
    assert_string_equal(id, RECORD_B);
    char *value = NULL;
    size_t value_length = 0;
    assert_int_equal(owner1_identity_binding(store, &value), STORE_OK);
    assert_string_equal(value, "{\"deviceId\":\"" DEVICE_1 "\",\"owner\":\"1\"}");
    free(value);
    /* Documents that are not records, issuance or bindings are untouched. */
    assert_int_equal(store_get(store, STORE_GROUPS, "5e1f0b7c-2d3a-4c5b-8e9f-0a1b2c3d4e5f", 36,
                               &value, &value_length),
                     STORE_OK);
    free(value);

    json_decref(mine);
    json_decref(theirs);
    json_decref(owner1);
    json_decref(all);
    json_decref(issued);
    json_decref(issued2);
    json_decref(bound);
}

static void test_layout1_store_is_migrated_at_open(void **state)
{
    struct temp_dir *fixture = *state;
    char err[256] = "";
    layout1_store(fixture->dir);

    /* A tool cannot migrate: it says what to do. */
    assert_null(store_open_readonly(fixture->dir, err, sizeof(err)));
    assert_non_null(strstr(err, "earlier dpsd"));

    struct store *store = open_store(fixture->dir);
    assert_migrated(store);
    store_close(store);

    /* Reopening changes nothing, and tools read the new layout. */
    store = open_store(fixture->dir);
    assert_migrated(store);
    /* Releasing the record's other id leaves the record's own binding alone. */
    assert_int_equal(records_binding_release(store, "1", DEVICE_2), STORE_OK);
    char id[37];
    assert_int_equal(records_binding_get(store, "1", DEVICE_1, id), STORE_OK);
    assert_int_equal(records_binding_get(store, "1", DEVICE_2, id), STORE_NOT_FOUND);
    store_close(store);
    store = store_open_readonly(fixture->dir, err, sizeof(err));
    if (store == NULL)
        fail_msg("store_open_readonly: %s", err);
    json_t *records = scan_records(store, "1", RECORD_A, NULL);
    assert_int_equal(json_array_size(records), 1);
    json_decref(records);
    store_close(store);
}

/*
 * A move cut short (some keys already in the new layout, no marker yet):
 * the next open moves the rest and leaves the moved ones alone.
 */
static void test_interrupted_migration_continues(void **state)
{
    struct temp_dir *fixture = *state;
    layout1_store(fixture->dir);
    struct layout1 old;
    layout1_open(&old, fixture->dir);
    char key[RECORDS_KEY_MAX];
    snprintf(key, sizeof(key), "%s/%s/plgdTime", OWNER1_KEY, RECORD_A);
    layout1_put(&old, STORE_RECORDS, key, "{\"status\":{\"coapCode\":69}}");
    snprintf(key, sizeof(key), "%s/0c", OWNER1_KEY);
    layout1_put(&old, STORE_ISSUANCE, key, "{\"owner\":\"1\",\"deviceId\":\"" DEVICE_1 "\"}");
    layout1_close(&old);

    struct store *store = open_store(fixture->dir);
    json_t *mine = scan_records(store, "1", RECORD_A, NULL);
    assert_int_equal(json_array_size(mine), 1);
    json_t *record = json_array_get(mine, 0);
    assert_non_null(json_object_get(record, "plgdTime"));
    assert_non_null(json_object_get(record, "credential"));
    json_t *issued = scan_issuance(store, "1");
    assert_int_equal(json_array_size(issued), 2);
    json_decref(mine);
    json_decref(issued);
    store_close(store);
}

/*
 * A record in the reference's shape, as its web UI reads it. Its fields are
 * those of the UI's record type, http-gateway/web/src/containers/
 * DeviceProvisioning/ProvisioningRecords/ProvisioningRecordsListPage.types.ts
 * in plgd-dev/hub (generated from a sample response), with the values of
 * device-provisioning-service/pb/provisioningRecords.proto in protobuf JSON
 * (int64 dates as text, enums by name, bytes in base64) and in the order the
 * reference's service writes them (service/credentials.go: pre-shared key,
 * identity certificate, trust CA; service/acls.go: owner, anonymous, hubs).
 * The UI reads: utils.ts getProvisioningRecordStatus (each step's
 * status.coapCode, plgdTime.coapCode) and parseCerts (credentials[].usage,
 * publicData.data through atob); ListPage (id, deviceId, enrollmentGroupId,
 * creationDate, attestation.date, attestation.x509.commonName); Tab1
 * (cloud.gateways[].uri/id with selectedGateway an index, providerName,
 * ownership.owner, plgdTime.date); Tab2 (credential.status, preSharedKey
 * {subjectId, key}, credentials[].subject); Tab3 (acl.accessControlList:
 * deviceSubject.deviceId / connectionSubject / roleSubject, permissions,
 * resources[].href/wildcard/interfaces).
 */
#define PEM_MFG "-----BEGIN CERTIFICATE-----\nTUZH\n-----END CERTIFICATE-----\n"
#define PEM_IDENTITY "-----BEGIN CERTIFICATE-----\nSUQ=\n-----END CERTIFICATE-----\n"
#define PEM_ROOT "-----BEGIN CERTIFICATE-----\nUk9PVA==\n-----END CERTIFICATE-----\n"
#define HUB_ID "a0a0a0a0-0000-4000-8000-0000000000a0"
#define GROUP_ID "9b9b9b9b-0000-4000-8000-00000000009b"

static const char REFERENCE_SAMPLE[] =
    "{\"id\":\"" RECORD_A "\",\"deviceId\":\"" DEVICE_1 "\",\"enrollmentGroupId\":\"" GROUP_ID "\","
    "\"creationDate\":\"1700000000000000000\",\"owner\":\"1\","
    "\"attestation\":{\"date\":\"1700000100000000000\",\"x509\":{\"certificatePem\":\"x\","
    "\"commonName\":\"device A\"}},"
    "\"plgdTime\":{\"date\":\"1700000100000000001\",\"coapCode\":69},"
    "\"ownership\":{\"status\":{\"date\":\"1700000100000000002\",\"coapCode\":69},\"owner\":\"1\"},"
    "\"cloud\":{\"status\":{\"date\":\"1700000100000000003\",\"coapCode\":68},"
    "\"providerName\":\"plgd\",\"gateways\":[{\"uri\":\"coaps+tcp://a:5684\",\"id\":\"" HUB_ID
    "\"},"
    "{\"uri\":\"coaps+tcp://b:5684\",\"id\":\"" HUB_ID "\"}],\"selectedGateway\":1},"
    "\"credential\":{\"status\":{\"date\":\"1700000100000000004\",\"coapCode\":68},"
    "\"identityCertificatePem\":\"x\",\"preSharedKey\":{\"subjectId\":\"" OWNER1_KEY "\","
    "\"key\":\"0123456789abcdef\"},\"credentials\":["
    "{\"type\":[\"SYMMETRIC_PAIR_WISE\"],\"subject\":\"" OWNER1_KEY "\",\"usage\":\"NONE\","
    "\"privateData\":{\"data\":\"MDEyMzQ1Njc4OWFiY2RlZg==\",\"encoding\":\"RAW\"}},"
    "{\"type\":[\"ASYMMETRIC_SIGNING_WITH_CERTIFICATE\"],\"subject\":\"" DEVICE_1 "\","
    "\"usage\":\"CERT\",\"publicData\":{\"data\":\"eA==\",\"encoding\":\"PEM\"}},"
    "{\"type\":[\"ASYMMETRIC_SIGNING_WITH_CERTIFICATE\"],\"subject\":\"" OWNER1_KEY "\","
    "\"usage\":\"TRUST_CA\",\"publicData\":{\"data\":\"eA==\",\"encoding\":\"PEM\"}}]},"
    "\"acl\":{\"status\":{\"date\":\"1700000100000000005\",\"coapCode\":69},"
    "\"accessControlList\":["
    "{\"deviceSubject\":{\"deviceId\":\"" OWNER1_KEY "\"},\"permissions\":[\"CREATE\",\"READ\","
    "\"WRITE\",\"DELETE\",\"NOTIFY\"],\"resources\":[{\"href\":\"/oic/sec/sp\","
    "\"interfaces\":[\"*\"],\"wildcard\":\"NONE\"},{\"interfaces\":[\"*\"],"
    "\"wildcard\":\"NONCFG_ALL\"}]},"
    "{\"connectionSubject\":{\"type\":\"ANON_CLEAR\"},\"permissions\":[\"READ\"],"
    "\"resources\":[{\"href\":\"/oic/d\",\"interfaces\":[\"*\"],\"wildcard\":\"NONE\"}]},"
    "{\"roleSubject\":{\"authority\":\"owner\",\"role\":\"admin\"},\"permissions\":[\"READ\","
    "\"WRITE\"],\"resources\":[{\"href\":\"/a\",\"resourceTypes\":[\"x.t\"],"
    "\"interfaces\":[\"oic.if.baseline\"],\"wildcard\":\"NONE\"}]}]}}";

/* The same record's parts as the data path stores them (dataplane/dps_handlers.c). */
static void put_reference_parts(struct store *store, const char *attested)
{
    char record[512];
    snprintf(record, sizeof(record),
             "{\"id\":\"" RECORD_A "\",\"enrollmentGroupId\":\"" GROUP_ID
             "\",\"deviceId\":\"" DEVICE_1 "\",\"owner\":\"1\","
             "\"creationDate\":\"1700000000000000000\",\"attestation\":{\"date\":\"%s\","
             "\"x509\":{\"certificatePem\":\"%s\",\"commonName\":\"device A\"}},"
             "\"remoteAddress\":\"127.0.0.1:4000\"}",
             attested, "-----BEGIN CERTIFICATE-----\\nTUZH\\n-----END CERTIFICATE-----\\n");
    put_part(store, "1", RECORD_A, "record", record);
    put_part(store, "1", RECORD_A, "plgdTime",
             "{\"time\":\"2023-11-14T22:15:00.000000Z\",\"status\":{\"date\":"
             "\"1700000100000000001\",\"coapCode\":69,\"errorMessage\":\"\"}}");
    put_part(store, "1", RECORD_A, "ownership",
             "{\"owner\":\"1\",\"status\":{\"date\":\"1700000100000000002\",\"coapCode\":69,"
             "\"errorMessage\":\"\"}}");
    put_part(
        store, "1", RECORD_A, "cloud",
        "{\"gateways\":[{\"uri\":\"coaps+tcp://a:5684\",\"id\":\"" HUB_ID "\"},"
        "{\"uri\":\"coaps+tcp://b:5684\",\"id\":\"" HUB_ID "\"}],\"providerName\":\"plgd\","
        "\"selectedGateway\":{\"uri\":\"coaps+tcp://b:5684\",\"id\":\"" HUB_ID "\"},"
        "\"status\":{\"date\":\"1700000100000000003\",\"coapCode\":68,\"errorMessage\":\"\"}}");
    put_part(
        store, "1", RECORD_A, "credential",
        "{\"identityCertificatePem\":\"-----BEGIN CERTIFICATE-----\\nSUQ=\\n-----END "
        "CERTIFICATE-----\\n\",\"serial\":\"0a0b\",\"trustCaPem\":\"-----BEGIN "
        "CERTIFICATE-----\\nUk9PVA==\\n-----END CERTIFICATE-----\\n\",\"trustCaSubject\":\"*\","
        "\"preSharedKey\":{\"subjectId\":\"" OWNER1_KEY "\",\"key\":\"0123456789abcdef\"},"
        "\"status\":{\"date\":\"1700000100000000004\",\"coapCode\":68,\"errorMessage\":\"\"}}");
    put_part(store, "1", RECORD_A, "acl",
             "{\"accessControlList\":[{\"aceid\":1,\"subject\":{\"uuid\":\"" OWNER1_KEY "\"},"
             "\"resources\":[{\"href\":\"/oic/sec/sp\"},{\"wc\":\"*\"}],\"permission\":31,"
             "\"tag\":\"dps\"},{\"aceid\":2,\"subject\":{\"conntype\":\"anon-clear\"},"
             "\"resources\":[{\"href\":\"/oic/d\"}],\"permission\":2,\"tag\":\"dps\"},"
             "{\"aceid\":3,\"subject\":{\"role\":\"admin\",\"authority\":\"owner\"},"
             "\"resources\":[{\"href\":\"/a\",\"rt\":[\"x.t\"],\"if\":[\"oic.if.baseline\"]}],"
             "\"permission\":6}],\"status\":{\"date\":\"1700000100000000005\",\"coapCode\":69,"
             "\"errorMessage\":\"\"}}");
    put_part(
        store, "1", RECORD_A, "resources",
        "{\"status\":{\"date\":\"1700000100000000006\",\"coapCode\":69,\"errorMessage\":\"\"}}");
}

/*
 * Every field of the sample is in ours with the same JSON type, array items
 * in the same order; the fields the UI never gets from the service are
 * skipped: localEndpoints (no local endpoints are reported to us),
 * enrollmentGroupData (the UI joins it from the groups).
 */
static void assert_same_shape(json_t *sample, json_t *ours, const char *path)
{
    char child[256];
    if (json_is_object(sample)) {
        const char *key;
        json_t *value;
        assert_true(json_is_object(ours));
        json_object_foreach(sample, key, value)
        {
            snprintf(child, sizeof(child), "%s.%s", path, key);
            if (json_object_get(ours, key) == NULL)
                fail_msg("%s: missing in our record", child);
            assert_same_shape(value, json_object_get(ours, key), child);
        }
    } else if (json_is_array(sample)) {
        if (!json_is_array(ours) || json_array_size(ours) < json_array_size(sample))
            fail_msg("%s: not an array of at least %zu", path, json_array_size(sample));
        for (size_t i = 0; i < json_array_size(sample); i++) {
            snprintf(child, sizeof(child), "%s[%zu]", path, i);
            assert_same_shape(json_array_get(sample, i), json_array_get(ours, i), child);
        }
    } else if (json_typeof(sample) != json_typeof(ours)) {
        fail_msg("%s: another JSON type than the reference's", path);
    }
}

static const char *at(json_t *record, const char *path)
{
    json_t *value = json_object_get(record, path);
    return json_string_value(value);
}

/* A credential's data field, decoded as the UI does (atob). */
static char *decoded(json_t *credential, const char *field)
{
    const char *data =
        json_string_value(json_object_get(json_object_get(credential, field), "data"));
    assert_non_null(data);
    size_t length = 0;
    uint8_t *bytes = base64_decode_alloc(BASE64_STANDARD, data, strlen(data), &length);
    assert_non_null(bytes);
    char *text = calloc(1, length + 1);
    memcpy(text, bytes, length);
    free(bytes);
    return text;
}

static void test_records_have_the_reference_shape(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir);
    put_reference_parts(store, "1700000100000000000");
    json_t *sample = json_loads(REFERENCE_SAMPLE, 0, NULL);
    assert_non_null(sample);
    json_t *list = scan_records(store, "1", NULL, NULL);
    assert_int_equal(json_array_size(list), 1);
    json_t *ours = json_array_get(list, 0);
    assert_same_shape(sample, ours, "record");

    /* The same meaning. Every step succeeded: each status code is among the UI's successes. */
    static const char *const steps[] = {"ownership", "cloud", "credential", "acl"};
    for (size_t i = 0; i < 4; i++) {
        json_int_t code = json_integer_value(json_object_get(
            json_object_get(json_object_get(ours, steps[i]), "status"), "coapCode"));
        assert_true(code == 67 || code == 68 || code == 69 || code == 95);
    }
    json_t *time = json_object_get(ours, "plgdTime");
    assert_int_equal(json_integer_value(json_object_get(time, "coapCode")), 69);
    assert_string_equal(at(time, "date"), "1700000100000000001");
    assert_string_equal(at(json_object_get(ours, "attestation"), "date"), "1700000100000000000");
    /* selectedGateway: the index of the gateway the device was given. */
    json_t *cloud = json_object_get(ours, "cloud");
    json_t *selected =
        json_array_get(json_object_get(cloud, "gateways"),
                       (size_t)json_integer_value(json_object_get(cloud, "selectedGateway")));
    assert_string_equal(at(selected, "uri"), "coaps+tcp://b:5684");
    /* Credentials: what the device got, the certificates readable through atob. */
    json_t *credential = json_object_get(ours, "credential");
    json_t *credentials = json_object_get(credential, "credentials");
    assert_int_equal(json_array_size(credentials), 3);
    char *key = decoded(json_array_get(credentials, 0), "privateData");
    assert_string_equal(key, "0123456789abcdef");
    free(key);
    char *identity = decoded(json_array_get(credentials, 1), "publicData");
    assert_string_equal(identity, PEM_IDENTITY);
    free(identity);
    assert_string_equal(at(json_array_get(credentials, 1), "subject"), DEVICE_1);
    char *root = decoded(json_array_get(credentials, 2), "publicData");
    assert_string_equal(root, PEM_ROOT);
    free(root);
    assert_string_equal(at(json_object_get(credential, "preSharedKey"), "key"), "0123456789abcdef");
    assert_true(json_equal(json_object_get(json_object_get(ours, "acl"), "accessControlList"),
                           json_object_get(json_object_get(sample, "acl"), "accessControlList")));
    /* Our extras, under keys the reference does not have. */
    assert_string_equal(at(time, "time"), "2023-11-14T22:15:00.000000Z");
    assert_string_equal(at(credential, "serial"), "0a0b");
    assert_null(json_object_get(credential, "trustCaPem"));
    assert_int_equal(
        json_integer_value(json_object_get(
            json_array_get(json_object_get(json_object_get(ours, "acl"), "ocfAccessControlList"),
                           0),
            "permission")),
        31);
    assert_non_null(json_object_get(json_object_get(ours, "resources"), "status"));
    assert_string_equal(at(ours, "remoteAddress"), "127.0.0.1:4000");
    json_decref(list);
    json_decref(sample);
    store_close(store);
}

/*
 * A record stored before attestation.date moved (it equals creationDate):
 * served with its latest step's date, the last attested connection's; and
 * one stored before the credentials were kept has its identity certificate.
 */
static void test_old_records_are_served_in_the_reference_shape(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir);
    put_reference_parts(store, "1700000000000000000");
    put_part(store, "1", RECORD_A, "credential",
             "{\"identityCertificatePem\":\"-----BEGIN CERTIFICATE-----\\nSUQ=\\n-----END "
             "CERTIFICATE-----\\n\",\"serial\":\"0a0b\",\"status\":{\"date\":"
             "\"1700000100000000004\",\"coapCode\":68,\"errorMessage\":\"\"}}");
    json_t *list = scan_records(store, "1", NULL, NULL);
    json_t *ours = json_array_get(list, 0);
    assert_string_equal(at(json_object_get(ours, "attestation"), "date"), "1700000100000000006");
    json_t *credentials = json_object_get(json_object_get(ours, "credential"), "credentials");
    assert_int_equal(json_array_size(credentials), 1);
    assert_string_equal(at(json_array_get(credentials, 0), "usage"), "CERT");
    json_decref(list);
    store_close(store);
}

/* Parts stored in the reference's shape already (an import could write them so) are served as they
 * are. */
static void test_reference_shaped_parts_are_served_as_they_are(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir);
    json_t *sample = json_loads(REFERENCE_SAMPLE, 0, NULL);
    static const char *const parts[] = {"plgdTime", "ownership", "cloud", "credential", "acl"};
    put_part(store, "1", RECORD_A, "record", "{\"owner\":\"1\"}");
    for (size_t i = 0; i < 5; i++) {
        char *text = json_dumps(json_object_get(sample, parts[i]), JSON_COMPACT);
        put_part(store, "1", RECORD_A, parts[i], text);
        free(text);
    }
    json_t *list = scan_records(store, "1", NULL, NULL);
    for (size_t i = 0; i < 5; i++)
        assert_true(json_equal(json_object_get(json_array_get(list, 0), parts[i]),
                               json_object_get(sample, parts[i])));
    json_decref(list);
    json_decref(sample);
    store_close(store);
}

static bool not_device_3(void *user, json_t *record)
{
    (void)user;
    const char *device = json_string_value(json_object_get(record, "deviceId"));
    return device == NULL || strcmp(device, DEVICE_3) != 0;
}

/* Deleting what matches, two ids at a time: every round finds what the last one left. */
static void test_delete_matching_goes_in_batches(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir);
    static const char *const ids[] = {RECORD_A, RECORD_B, RECORD_C,
                                      "44444444-4444-5444-8444-444444444444",
                                      "55555555-5555-5555-8555-555555555555"};
    for (size_t i = 0; i < 5; i++) {
        put_part(store, "1", ids[i], "record",
                 i == 2 ? "{\"owner\":\"1\",\"deviceId\":\"" DEVICE_3 "\"}" : "{\"owner\":\"1\"}");
        put_part(store, "1", ids[i], "acl", "{\"status\":{\"coapCode\":69}}");
    }
    put_part(store, "2", RECORD_A, "record", "{\"owner\":\"2\"}");
    assert_int_equal(records_delete_matching(store, "1", NULL, not_device_3, NULL, 2), 4);
    json_t *mine = scan_records(store, "1", NULL, NULL);
    assert_int_equal(json_array_size(mine), 1);
    assert_string_equal(text(mine, 0, "id"), RECORD_C);
    json_t *theirs = scan_records(store, "2", NULL, NULL);
    assert_int_equal(json_array_size(theirs), 1);
    assert_int_equal(records_delete_matching(store, "1", RECORD_C, not_device_3, NULL, 2), 0);
    json_decref(mine);
    json_decref(theirs);
    store_close(store);
}

/* A record's deletion: every part, the owner's only; its binding and issuance entries stay. */
static void test_delete_is_per_owner_and_keeps_bindings(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir);
    put_reference_parts(store, "1700000100000000000");
    put_part(store, "2", RECORD_A, "record", "{\"owner\":\"2\"}");
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1], key[RECORDS_KEY_MAX];
    records_owner_key("1", owner_key);
    records_device_binding_key(owner_key, DEVICE_1, key);
    char *binding = records_device_binding_value("1", RECORD_A);
    put(store, STORE_BINDINGS, key, binding);
    free(binding);
    records_issuance_key(owner_key, "0a0b", key);
    put(store, STORE_ISSUANCE, key, "{\"owner\":\"1\",\"deviceId\":\"" DEVICE_1 "\"}");

    assert_int_equal(records_delete(store, "3", RECORD_A), STORE_NOT_FOUND);
    assert_int_equal(records_delete(store, "1", RECORD_B), STORE_NOT_FOUND);
    assert_int_equal(records_delete(store, "1", RECORD_A), STORE_OK);
    assert_int_equal(records_delete(store, "1", RECORD_A), STORE_NOT_FOUND);
    size_t unreadable = 9;
    json_t *mine = scan_records(store, "1", NULL, &unreadable);
    assert_int_equal(json_array_size(mine), 0);
    assert_int_equal(unreadable, 0);
    json_t *theirs = scan_records(store, "2", NULL, NULL);
    assert_int_equal(json_array_size(theirs), 1);
    char record_id[37];
    assert_int_equal(records_binding_get(store, "1", DEVICE_1, record_id), STORE_OK);
    assert_string_equal(record_id, RECORD_A);
    json_t *issued = scan_issuance(store, "1");
    assert_int_equal(json_array_size(issued), 1);
    json_decref(mine);
    json_decref(theirs);
    json_decref(issued);
    store_close(store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_owner_key),
        FIXTURE_TEST(test_records_are_per_owner),
        FIXTURE_TEST(test_issuance_is_per_owner),
        FIXTURE_TEST(test_bindings_are_per_owner_and_released_in_pairs),
        FIXTURE_TEST(test_layout1_store_is_migrated_at_open),
        FIXTURE_TEST(test_interrupted_migration_continues),
        FIXTURE_TEST(test_records_have_the_reference_shape),
        FIXTURE_TEST(test_old_records_are_served_in_the_reference_shape),
        FIXTURE_TEST(test_reference_shaped_parts_are_served_as_they_are),
        FIXTURE_TEST(test_delete_is_per_owner_and_keeps_bindings),
        FIXTURE_TEST(test_delete_matching_goes_in_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
