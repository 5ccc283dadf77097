/*
 * fuzz_model_json: the document parsers (control/model.h), the stored form's
 * model_*_from_json() and the management API's model_*_from_api(), on
 * arbitrary JSON. Invariants: a refusal always names a field; an accepted
 * document converts back to JSON that is accepted again and converts to the
 * very same JSON (the stored form is stable across a restart); a document
 * the API accepts names no file, and is accepted as stored.
 */
#include <stdbool.h>
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

static void round_trip_group(const json_t *doc, bool from_api)
{
    struct config_group group = {0}, again = {0};
    char err[512] = "";
    int rc = from_api ? model_group_from_api(doc, &group, err, sizeof(err))
                      : model_group_from_json(doc, &group, err, sizeof(err));
    if (rc == 0 && from_api) {
        check(group.ca_chain_file == NULL);
        for (size_t i = 0; i < group.crl_count; i++)
            check(strstr(group.crls[i], "-----BEGIN") != NULL);
    }
    if (rc != 0) {
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

static void round_trip_hub(const json_t *doc, bool from_api)
{
    struct config_hub hub = {0}, again = {0};
    char err[512] = "";
    int rc = from_api ? model_hub_from_api(doc, &hub, err, sizeof(err))
                      : model_hub_from_json(doc, &hub, err, sizeof(err));
    if (rc == 0 && from_api)
        check(hub.ca_cert_file == NULL && hub.ca_key_file == NULL && hub.token_key_file == NULL &&
              hub.ca_key_name != NULL && hub.token_key_name != NULL);
    if (rc != 0) {
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
    round_trip_group(doc, false);
    round_trip_hub(doc, false);
    round_trip_group(doc, true);
    round_trip_hub(doc, true);
    json_decref(doc);
    return 0;
}
