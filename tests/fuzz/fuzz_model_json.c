/*
 * fuzz_model_json: the management API's document parsers, model_group_from_json()
 * and model_hub_from_json() (control/model.h), on arbitrary JSON. Invariants:
 * a refusal always names a field; an accepted document converts back to JSON
 * that is accepted again and converts to the very same JSON (the stored form
 * is stable across a restart).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "control/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int condition)
{
    if (!condition)
        abort();
}

static void round_trip_group(const json_t *doc)
{
    struct config_group group = {0}, again = {0};
    char err[512] = "";
    if (model_group_from_json(doc, &group, err, sizeof(err)) != 0) {
        check(err[0] != '\0');
        model_group_clear(&group);
        return;
    }
    json_t *emitted = model_group_to_json(&group);
    check(emitted != NULL);
    check(model_group_from_json(emitted, &again, err, sizeof(err)) == 0);
    json_t *emitted_again = model_group_to_json(&again);
    check(json_equal(emitted, emitted_again));
    json_decref(emitted);
    json_decref(emitted_again);
    model_group_clear(&group);
    model_group_clear(&again);
}

static void round_trip_hub(const json_t *doc)
{
    struct config_hub hub = {0}, again = {0};
    char err[512] = "";
    if (model_hub_from_json(doc, &hub, err, sizeof(err)) != 0) {
        check(err[0] != '\0');
        model_hub_clear(&hub);
        return;
    }
    json_t *emitted = model_hub_to_json(&hub);
    check(emitted != NULL);
    check(model_hub_from_json(emitted, &again, err, sizeof(err)) == 0);
    json_t *emitted_again = model_hub_to_json(&again);
    check(json_equal(emitted, emitted_again));
    json_decref(emitted);
    json_decref(emitted_again);
    model_hub_clear(&hub);
    model_hub_clear(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t error;
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &error);
    if (doc == NULL)
        return 0;
    round_trip_group(doc);
    round_trip_hub(doc);
    json_decref(doc);
    return 0;
}
