/*
 * fuzz_import: `dpsctl import`'s reading of a plgd DPS's mongoexport lines
 * (control/dpsctl_import.c). Each line of the input is imported as a hub,
 * then as an enrollment group, then as a provisioning record, into a
 * stand-in store (one JSON object per family, keys hex-encoded), so that
 * lines build on one another as the collections do: hubs map the groups'
 * hubIds, groups give records their owner, bindings written are read back.
 *
 * Invariants: every value written is JSON; a hub or group written is a
 * stored document the node reads back (model_*_from_json) and writes again
 * the same; a document skipped is named in the report. Paths in
 * certificateChain or preSharedKey are read from this machine, as the
 * command does.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "control/dpsctl_import.h"
#include "control/model.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int condition)
{
    if (!condition)
        abort();
}

static char *hex_key(const char *key, size_t length)
{
    static const char digits[] = "0123456789abcdef";
    char *text = malloc(2 * length + 1);
    check(text != NULL);
    for (size_t i = 0; i < length; i++) {
        text[2 * i] = digits[(unsigned char)key[i] >> 4];
        text[2 * i + 1] = digits[(unsigned char)key[i] & 15];
    }
    text[2 * length] = '\0';
    return text;
}

/* A stored hub or group: read back as the node reads it, and written again the same. */
static void check_document(enum store_family family, const json_t *value)
{
    char err[512] = "";
    json_t *again = NULL;
    if (family == STORE_HUBS) {
        struct config_hub hub = {0};
        check(model_hub_from_json(value, &hub, err, sizeof(err)) == 0);
        again = model_hub_to_json(&hub);
        model_hub_clear(&hub);
    } else {
        struct config_group group = {0};
        check(model_group_from_json(value, &group, err, sizeof(err)) == 0);
        again = model_group_to_json(&group);
        model_group_clear(&group);
    }
    check(json_equal(value, again));
    json_decref(again);
}

static int stand_in_put(void *arg, const struct store_put *entries, size_t count)
{
    json_t **families = arg;
    for (size_t i = 0; i < count; i++) {
        check(entries[i].family < STORE_FAMILY_COUNT && entries[i].value != NULL);
        json_t *value = json_loadb(entries[i].value, entries[i].value_length, 0, NULL);
        check(value != NULL);
        if (entries[i].family == STORE_HUBS || entries[i].family == STORE_GROUPS)
            check_document(entries[i].family, value);
        json_decref(value);
        char *key = hex_key(entries[i].key, entries[i].key_length);
        check(json_object_set_new(families[entries[i].family], key,
                                  json_stringn(entries[i].value, entries[i].value_length)) == 0);
        free(key);
    }
    return 0;
}

static int stand_in_get(void *arg, enum store_family family, const char *key, size_t key_length,
                        char **value, size_t *length)
{
    json_t **families = arg;
    char *hex = hex_key(key, key_length);
    json_t *held = json_object_get(families[family], hex);
    free(hex);
    if (held == NULL)
        return -1;
    *length = json_string_length(held);
    *value = malloc(*length + 1);
    check(*value != NULL);
    memcpy(*value, json_string_value(held), *length + 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *report;
    if (report == NULL)
        report = fopen("/dev/null", "w");
    check(report != NULL);
    json_t *families[STORE_FAMILY_COUNT];
    for (size_t i = 0; i < STORE_FAMILY_COUNT; i++)
        families[i] = json_object();
    struct import_target target = {stand_in_put, stand_in_get, families, report};
    struct import *import =
        import_new(&target, "hub-ca", "hub-token", "https://dps.example/fuzz-issuer");
    check(import != NULL);
    const char *text = (const char *)data;
    for (size_t start = 0; start < size;) {
        const char *end = memchr(text + start, '\n', size - start);
        size_t length = end != NULL ? (size_t)(end - (text + start)) : size - start;
        for (int c = IMPORT_HUBS; c <= IMPORT_RECORDS; c++) {
            size_t notes = import_notes(import);
            if (import_document(import, (enum import_collection)c, text + start, length, "fuzz") <
                0)
                check(import_notes(import) > notes);
        }
        start += length + 1;
    }
    import_free(import);
    for (size_t i = 0; i < STORE_FAMILY_COUNT; i++)
        json_decref(families[i]);
    return 0;
}
