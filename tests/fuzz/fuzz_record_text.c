/*
 * fuzz_record_text: dataplane/record_text.c against jansson, which it must
 * match exactly. The input is JSON text (a stored record, or anything).
 * Invariants: when dps_record_scan reads the text, json_loadb reads it too
 * and finds the same top-level creationDate and deviceId strings ("" when
 * absent or not a string); when jansson reads the text, dps_json_compact of
 * the value is byte for byte json_dumps(value, JSON_COMPACT).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dataplane/record_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int condition)
{
    if (!condition)
        abort();
}

static const char *member(const json_t *record, const char *name)
{
    const char *value = json_string_value(json_object_get(record, name));
    return value != NULL ? value : "";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char created[RECORD_SCAN_TEXT], device[RECORD_SCAN_TEXT];
    json_t *value = json_loadb(text, size, 0, NULL);
    if (dps_record_scan(text, size, created, device)) {
        check(value != NULL);
        check(strcmp(created, member(value, "creationDate")) == 0);
        check(strcmp(device, member(value, "deviceId")) == 0);
    }
    if (value != NULL) {
        char *fast = dps_json_compact(value);
        char *expected = json_dumps(value, JSON_COMPACT);
        check((fast == NULL) == (expected == NULL));
        check(fast == NULL || strcmp(fast, expected) == 0);
        free(fast);
        free(expected);
        json_decref(value);
    }
    return 0;
}
