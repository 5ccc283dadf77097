/*
 * dpsctl_commands: what each dpsctl command does, once the command line
 * has been checked (dpsctl.c). Commands of the API get an open client; the
 * list commands open their own or, with --data, read the store
 * (dpsctl_offline.c); pki and token work on files alone. Group and hub
 * commands share their handlers, told apart by their collection.
 */
#include "control/dpsctl_commands.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/steps.h"
#include "control/dpsctl_client.h"
#include "control/dpsctl_offline.h"
#include "control/dpsctl_table.h"
#include "crypto/pki.h"
#include "crypto/uuid.h"

#define DEFAULT_DEVICE_COUNT 10
#define MAX_DEVICE_COUNT 1000000
#define ENTRY_ID_DIGITS 32
#define API_TIME_LENGTH 20 /* YYYY-MM-DDTHH:MM:SSZ */

/* ---- status ---- */

int command_status(struct client *client, struct options *options, const void *subject)
{
    int code;
    json_t *status = client_document(client, "GET", "/api/v1/status", NULL, &code);
    const char *key;
    json_t *value;
    size_t width = strlen("api");

    if (status == NULL)
        return code;
    if (options->given[OPT_JSON]) {
        char *text = json_dumps(status, JSON_COMPACT);
        if (text != NULL)
            printf("%s\n", text);
        free(text);
        json_decref(status);
        return EXIT_OK;
    }
    json_object_foreach(status, key, value) width = strlen(key) > width ? strlen(key) : width;
    printf("%-*s  %s\n", (int)width, "api", client->url);
    json_object_foreach(status, key, value)
    {
        if (strcmp(key, "nodes") == 0)
            continue;
        char *text = json_is_string(value) || json_is_integer(value) || json_is_boolean(value)
                         ? field_text(status, key)
                         : json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        printf("%-*s  %s\n", (int)width, key, text != NULL ? text : "-");
        free(text);
    }
    /* A cluster's live nodes (administrators only), one row each. */
    json_t *nodes = json_object_get(status, "nodes");
    if (json_is_array(nodes)) {
        struct sink sink = {.table = {.view = &NODE_VIEW}};
        size_t index;
        json_t *node;
        printf("\n");
        json_array_foreach(nodes, index, node) sink_put(&sink, node);
        sink_end(&sink);
    }
    json_decref(status);
    return EXIT_OK;
}

/* ---- enrollment groups and hubs ---- */

/* A request whose path would not fit: refused rather than sent with a filter cut off. */
static int request_too_long(const struct options *options)
{
    fprintf(stderr, "dpsctl %s: the filters make the request longer than dpsctl sends\n",
            options->name);
    return EXIT_USAGE;
}

static int check_uuid_option(const struct options *options, enum option_id id, const char *flag,
                             char out[UUID_STRING_LENGTH + 1])
{
    if (options->value[id] == NULL) {
        out[0] = '\0';
        return EXIT_OK;
    }
    if (!parse_uuid_argument(options->value[id], out)) {
        fprintf(stderr, "dpsctl %s: %s \"%s\" is not a UUID\n", options->name, flag,
                options->value[id]);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

int command_collection_list(struct client *client, struct options *options, const void *subject)
{
    const struct collection *collection = subject;
    char id[UUID_STRING_LENGTH + 1];
    char path[512];
    struct sink sink = {.table = {.view = collection->view},
                        .json = options->given[OPT_JSON],
                        .quiet_when_empty = options->value[OPT_ID] != NULL};
    int code = check_uuid_option(options, OPT_ID, "--id", id);

    if (code != EXIT_OK)
        return code;
    snprintf(path, sizeof(path), "%s", collection->path);
    if (id[0] != '\0' && !query_add(client->curl, path, sizeof(path), "idFilter", id))
        return request_too_long(options);
    code = client_list(client, path, &sink);
    if (code == EXIT_OK && id[0] != '\0' && sink.count == 0) {
        fprintf(stderr, "dpsctl %s: no %s %s (among the token owner's)\n", options->name,
                collection->kind, id);
        return EXIT_NOT_FOUND;
    }
    return code;
}

/* Sets doc[path...] = value (consumed), creating the objects on the way. */
static void set_path(json_t *doc, const char *const *path, size_t depth, json_t *value)
{
    for (size_t i = 0; i + 1 < depth; i++) {
        json_t *next = json_object_get(doc, path[i]);
        if (!json_is_object(next)) {
            next = json_object();
            json_object_set_new(doc, path[i], next);
        }
        doc = next;
    }
    json_object_set_new(doc, path[depth - 1], value);
}

/*
 * Options that go into a JSON document must be UTF-8 text: JSON has no other
 * strings, and a value that does not convert must stop the command rather
 * than leave the field out. The JSON string, or NULL after saying so.
 */
static json_t *option_text(const struct options *options, const char *flag, const char *value)
{
    json_t *text = json_string(value);

    if (text == NULL)
        fprintf(stderr, "dpsctl %s: %s must be UTF-8 text\n", options->name, flag);
    return text;
}

/* Sets doc[path...] to the option's text; false (said) when it is not text. */
static bool set_option(const struct options *options, enum option_id id, json_t *doc,
                       const char *const *path, size_t depth)
{
    char flag[40];
    json_t *text;

    if (options->value[id] == NULL)
        return true;
    snprintf(flag, sizeof(flag), "--%s", LONG_OPTIONS[id].name);
    if ((text = option_text(options, flag, options->value[id])) == NULL)
        return false;
    set_path(doc, path, depth, text);
    return true;
}

/* A repeated option's values as a JSON array, or NULL (said) when one is not text. */
static json_t *option_array(const struct options *options, const char *flag, const char **values,
                            size_t count)
{
    json_t *array = json_array();

    for (size_t i = 0; array != NULL && i < count; i++) {
        json_t *text = option_text(options, flag, values[i]);
        if (text == NULL || json_array_append_new(array, text) != 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

/* Fills the group fields given on the command line into doc. EXIT_OK or EXIT_USAGE. */
static int apply_group_options(const struct options *options, json_t *doc)
{
    static const char *const name_path[] = {"name"};
    static const char *const chain_path[] = {"attestationMechanism", "x509", "certificateChain"};
    static const char *const lead_path[] = {"attestationMechanism", "x509", "leadCertificateName"};
    static const char *const expired_path[] = {"attestationMechanism", "x509",
                                               "expiredCertificateEnabled"};
    static const char *const psk_path[] = {"preSharedKey"};
    char err[PATH_MAX + 64];

    if (!set_option(options, OPT_NAME, doc, name_path, 1))
        return EXIT_USAGE;
    if (options->value[OPT_CHAIN] != NULL) {
        char *chain = read_text_file(options->value[OPT_CHAIN], err, sizeof(err));
        if (chain == NULL) {
            fprintf(stderr, "dpsctl %s: --chain: %s\n", options->name, err);
            return EXIT_USAGE;
        }
        json_t *text = json_string(chain);
        free(chain);
        if (text == NULL) {
            fprintf(stderr, "dpsctl %s: --chain: %s is not UTF-8 text (a PEM file is)\n",
                    options->name, options->value[OPT_CHAIN]);
            return EXIT_USAGE;
        }
        set_path(doc, chain_path, 3, text);
    }
    if (!set_option(options, OPT_LEAD_NAME, doc, lead_path, 3))
        return EXIT_USAGE;
    if (options->given[OPT_EXPIRED_OK]) {
        const char *value = options->value[OPT_EXPIRED_OK];
        bool enabled = value == NULL || strcmp(value, "yes") == 0;
        if (value != NULL && strcmp(value, "yes") != 0 && strcmp(value, "no") != 0) {
            fprintf(stderr, "dpsctl %s: --expired-ok takes =yes or =no, not \"%s\"\n",
                    options->name, value);
            return EXIT_USAGE;
        }
        set_path(doc, expired_path, 3, json_boolean(enabled));
    }
    if (options->hub_count > 0) {
        json_t *hubs = option_array(options, "--hub", options->hubs, options->hub_count);
        if (hubs == NULL)
            return EXIT_USAGE;
        json_object_set_new(doc, "hubIds", hubs);
    }
    if (options->value[OPT_PSK] != NULL && options->value[OPT_PSK][0] == '\0')
        json_object_del(doc, "preSharedKey");
    else if (!set_option(options, OPT_PSK, doc, psk_path, 1))
        return EXIT_USAGE;
    return EXIT_OK;
}

static int apply_hub_options(const struct options *options, json_t *doc)
{
    static const char *const name_path[] = {"name"};
    static const char *const provider_path[] = {"authorization", "provider", "name"};
    static const char *const owner_claim_path[] = {"authorization", "ownerClaim"};
    static const char *const device_claim_path[] = {"authorization", "deviceIdClaim"};
    static const char *const identity_key_path[] = {"identityCertificate", "keyName"};
    static const char *const token_key_path[] = {"token", "keyName"};
    static const char *const token_issuer_path[] = {"token", "issuer"};

    if (options->value[OPT_HUB_ID] != NULL) {
        char id[UUID_STRING_LENGTH + 1];
        if (check_uuid_option(options, OPT_HUB_ID, "--hub-id", id) != EXIT_OK)
            return EXIT_USAGE;
        json_object_set_new(doc, "id", json_string(id));
        json_object_set_new(doc, "hubId", json_string(id));
    }
    if (options->gateway_count > 0) {
        json_t *gateways =
            option_array(options, "--gateway", options->gateways, options->gateway_count);
        if (gateways == NULL)
            return EXIT_USAGE;
        json_object_set_new(doc, "gateways", gateways);
    }
    if (!set_option(options, OPT_NAME, doc, name_path, 1) ||
        !set_option(options, OPT_PROVIDER, doc, provider_path, 3) ||
        !set_option(options, OPT_OWNER_CLAIM, doc, owner_claim_path, 2) ||
        !set_option(options, OPT_DEVICE_ID_CLAIM, doc, device_claim_path, 2) ||
        !set_option(options, OPT_IDENTITY_KEY, doc, identity_key_path, 2) ||
        !set_option(options, OPT_TOKEN_KEY, doc, token_key_path, 2) ||
        !set_option(options, OPT_TOKEN_ISSUER, doc, token_issuer_path, 2))
        return EXIT_USAGE;
    return EXIT_OK;
}

/* The options create requires, as "--a, --b" text of those missing; "" when none is. */
static void missing_options(const struct options *options, const enum option_id *required,
                            size_t count, char *out, size_t length)
{
    out[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        bool given = required[i] == OPT_HUB       ? options->hub_count > 0
                     : required[i] == OPT_GATEWAY ? options->gateway_count > 0
                                                  : options->value[required[i]] != NULL;
        if (!given)
            snprintf(out + strlen(out), length - strlen(out), "%s--%s", out[0] != '\0' ? ", " : "",
                     LONG_OPTIONS[required[i]].name);
    }
}

/* Keeps the first result of a list (a new reference in *(json_t **)user). */
static bool keep_first(void *user, json_t *result)
{
    json_t **first = user;

    if (*first == NULL)
        *first = json_incref(result);
    return true;
}

/* Creates (argument NULL) or changes a group or hub; prints what the node now holds. */
static int put_document(struct client *client, struct options *options,
                        const struct collection *collection,
                        int (*apply)(const struct options *, json_t *),
                        const enum option_id *required, size_t required_count)
{
    char id[UUID_STRING_LENGTH + 1] = "";
    char path[512];
    char missing[256];
    json_t *doc = NULL;
    json_t *stored;
    int code = EXIT_OK;
    bool create = options->argument == NULL;

    if (create) {
        missing_options(options, required, required_count, missing, sizeof(missing));
        if (missing[0] != '\0') {
            fprintf(stderr, "dpsctl %s: missing %s (see dpsctl %s --help)\n", options->name,
                    missing, options->name);
            return EXIT_USAGE;
        }
        if ((code = check_uuid_option(options, OPT_ID, "--id", id)) != EXIT_OK)
            return code;
        doc = json_object();
        if (id[0] != '\0')
            json_object_set_new(doc, "id", json_string(id));
        snprintf(path, sizeof(path), "%s", collection->path);
    } else {
        if (!parse_uuid_argument(options->argument, id)) {
            fprintf(stderr, "dpsctl %s: \"%s\" is not a %s id (a UUID)\n", options->name,
                    options->argument, collection->kind);
            return EXIT_USAGE;
        }
        snprintf(path, sizeof(path), "%s", collection->path);
        if (!query_add(client->curl, path, sizeof(path), "idFilter", id))
            return request_too_long(options);
        code = client_stream(client, path, keep_first, &doc);
        if (code == EXIT_OK && doc == NULL) {
            fprintf(stderr, "dpsctl %s: no %s %s (among the token owner's)\n", options->name,
                    collection->kind, id);
            code = EXIT_NOT_FOUND;
        }
        if (code != EXIT_OK) {
            json_decref(doc);
            return code;
        }
        snprintf(path, sizeof(path), "%s/%s", collection->path, id);
    }
    if (doc == NULL || (code = apply(options, doc)) != EXIT_OK) {
        json_decref(doc);
        return code != EXIT_OK ? code : EXIT_REFUSED;
    }
    stored = client_document(client, create ? "POST" : "PUT", path, doc, &code);
    json_decref(doc);
    if (stored == NULL)
        return code;
    if (options->given[OPT_JSON]) {
        char *text = json_dumps(stored, JSON_COMPACT);
        if (text != NULL)
            printf("%s\n", text);
        free(text);
    } else {
        struct sink sink = {.table = {.view = collection->view}};
        printf("%s %s %s\n", create ? "created" : "updated", collection->kind,
               json_string_value(json_object_get(stored, "id")) ?: "");
        sink_put(&sink, stored);
        sink_end(&sink);
    }
    json_decref(stored);
    return EXIT_OK;
}

int command_collection_put(struct client *client, struct options *options, const void *subject)
{
    const struct collection *collection = subject;
    return put_document(client, options, collection, collection->apply, collection->required,
                        collection->required_count);
}

static const enum option_id GROUP_REQUIRED[] = {OPT_CHAIN, OPT_HUB};
static const enum option_id HUB_REQUIRED[] = {OPT_HUB_ID,       OPT_GATEWAY,   OPT_PROVIDER,
                                              OPT_IDENTITY_KEY, OPT_TOKEN_KEY, OPT_TOKEN_ISSUER};
const struct collection GROUPS = {"/api/v1/enrollment-groups", "enrollment group", &GROUP_VIEW,
                                  apply_group_options,         GROUP_REQUIRED,     2};
const struct collection HUBS = {"/api/v1/hubs", "hub",
                                &HUB_VIEW,      apply_hub_options,
                                HUB_REQUIRED,   sizeof(HUB_REQUIRED) / sizeof(*HUB_REQUIRED)};

/* DELETE path?filter=id; a count of 0 is "not found". */
static int delete_by_filter(struct client *client, struct options *options, const char *path,
                            const char *filter, const char *id, const char *kind)
{
    char url[512];
    int code;
    json_t *answer;
    json_int_t count;

    snprintf(url, sizeof(url), "%s", path);
    if (!query_add(client->curl, url, sizeof(url), filter, id))
        return request_too_long(options);
    answer = client_document(client, "DELETE", url, NULL, &code);
    if (answer == NULL)
        return code;
    count = json_integer_value(json_object_get(answer, "count"));
    if (options->given[OPT_JSON]) {
        char *text = json_dumps(answer, JSON_COMPACT);
        if (text != NULL)
            printf("%s\n", text);
        free(text);
    }
    json_decref(answer);
    if (count == 0) {
        fprintf(stderr, "dpsctl %s: no %s %s (among the token owner's)\n", options->name, kind, id);
        return EXIT_NOT_FOUND;
    }
    if (!options->given[OPT_JSON])
        printf("%s %s\n",
               strcmp(kind, "binding of device") == 0 ? "released"
               : strcmp(kind, "blocklist entry") == 0 ? "removed"
                                                      : "deleted",
               id);
    return EXIT_OK;
}

int command_collection_delete(struct client *client, struct options *options, const void *subject)
{
    const struct collection *collection = subject;
    char id[UUID_STRING_LENGTH + 1];

    if (!parse_uuid_argument(options->argument, id)) {
        fprintf(stderr, "dpsctl %s: \"%s\" is not a %s id (a UUID)\n", options->name,
                options->argument, collection->kind);
        return EXIT_USAGE;
    }
    return delete_by_filter(client, options, collection->path, "idFilter", id, collection->kind);
}

/* ---- records, issuance, bindings, blocklist ---- */

/* An RFC 3339 UTC time to the second, the only form the API compares. */
static bool is_api_time(const char *text)
{
    struct tm tm;
    const char *end = strptime(text, "%Y-%m-%dT%H:%M:%SZ", &tm);

    return strlen(text) == API_TIME_LENGTH && end != NULL && *end == '\0';
}

static int read_filters(const struct options *options, struct filters *filters)
{
    static const enum option_id times[] = {OPT_SINCE, OPT_UNTIL};

    memset(filters, 0, sizeof(*filters));
    if (check_uuid_option(options, OPT_DEVICE, "--device", filters->device_id) != EXIT_OK ||
        check_uuid_option(options, OPT_GROUP, "--group", filters->group_id) != EXIT_OK ||
        check_uuid_option(options, OPT_ID, "--id", filters->record_id) != EXIT_OK)
        return EXIT_USAGE;
    filters->serial = options->value[OPT_SERIAL];
    filters->since = options->value[OPT_SINCE];
    filters->until = options->value[OPT_UNTIL];
    if (filters->serial != NULL && !is_serial(filters->serial)) {
        fprintf(stderr, "dpsctl %s: --serial must be 1 to %d hex digits, not \"%s\"\n",
                options->name, SERIAL_MAX_DIGITS, filters->serial);
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof(times) / sizeof(*times); i++) {
        const char *text = options->value[times[i]];
        if (text != NULL && !is_api_time(text)) {
            fprintf(stderr, "dpsctl %s: --%s must be YYYY-MM-DDTHH:MM:SSZ, not \"%s\"\n",
                    options->name, LONG_OPTIONS[times[i]].name, text);
            return EXIT_USAGE;
        }
    }
    return EXIT_OK;
}

/* The API path of a list with the filters as query parameters; false when it does not fit. */
static bool filtered_path(CURL *curl, const char *base, const struct filters *filters, char *path,
                          size_t length)
{
    snprintf(path, length, "%s", base);
    return (filters->record_id[0] == '\0' ||
            query_add(curl, path, length, "idFilter", filters->record_id)) &&
           (filters->device_id[0] == '\0' ||
            query_add(curl, path, length, "deviceIdFilter", filters->device_id)) &&
           (filters->group_id[0] == '\0' ||
            query_add(curl, path, length, "enrollmentGroupIdFilter", filters->group_id)) &&
           query_add(curl, path, length, "serialFilter", filters->serial) &&
           query_add(curl, path, length, "since", filters->since) &&
           query_add(curl, path, length, "until", filters->until);
}

/* A list from the API, or from the store with --data: a local command, it opens its own client. */
int command_list(struct client *none, struct options *options, const void *subject)
{
    const struct list_source *source = subject;
    struct filters filters;
    struct sink sink = {.table = {.view = source->view},
                        .json = options->given[OPT_JSON],
                        .quiet_when_empty = options->value[OPT_ID] != NULL};
    struct client client;
    char path[2048];
    int code;

    if (read_filters(options, &filters) != EXIT_OK)
        return EXIT_USAGE;
    if (options->value[OPT_DATA] == NULL && options->given[OPT_OWNER])
        return usage_error(NULL, options->name,
                           "--owner goes with --data (the API shows the token owner's)", NULL);
    if (options->value[OPT_DATA] != NULL) {
        if ((options->given[OPT_API] || options->given[OPT_TOKEN_FILE] ||
             options->given[OPT_CACERT]))
            return usage_error(NULL, options->name, "--data reads the store; it takes no --api",
                               NULL);
        code = offline_list(options, source->family, &filters, &sink);
    } else if ((code = client_open(&client, options)) == EXIT_OK) {
        if (filtered_path(client.curl, source->api_path, &filters, path, sizeof(path)))
            code = client_list(&client, path, &sink);
        else
            code = request_too_long(options);
        client_close(&client);
    } else {
        client_close(&client);
    }
    if (code == EXIT_OK && filters.record_id[0] != '\0' && sink.count == 0) {
        fprintf(stderr, "dpsctl %s: no provisioning record %s\n", options->name, filters.record_id);
        return EXIT_NOT_FOUND;
    }
    return code;
}

const struct list_source RECORDS_LIST = {"/api/v1/provisioning-records", STORE_RECORDS,
                                         &RECORD_VIEW};
const struct list_source ISSUANCE_LIST = {"/api/v1/issuance", STORE_ISSUANCE, &ISSUANCE_VIEW};
const struct list_source BINDINGS_LIST = {"/api/v1/bindings", STORE_BINDINGS, &BINDING_VIEW};
const struct list_source BLOCKLIST_LIST = {"/api/v1/blocklist", STORE_BLOCKLIST, &BLOCK_VIEW};

/*
 * records tail: a line for each step a device is answered, as it happens.
 * Each poll compares every step part of every record (plgdTime ... resources)
 * with what the last poll saw; a step that appears or changes (a device ran
 * it, or ran it again) prints a line naming the record, the device id once
 * the device has named itself ("-" before: it does so at cloud
 * configuration, stored in the same batch as that step's part), the group,
 * the step and its CoAP code. Other changes to a record print nothing. The
 * records there are when tail starts are its baseline, not printed (`records
 * list` shows them); the header is printed once the baseline is read, so
 * every step answered after the header appears. --count N stops after N
 * lines.
 */
struct tail {
    json_t *seen; /* record id -> {step -> its part as compact JSON} */
    bool baseline;
    bool json;
    unsigned long lines;
    unsigned long limit; /* 0: no limit */
};

static const struct view STEP_VIEW = {
    5, {"RECORD ID", "DEVICE ID", "GROUP", "STEP", "CODE"}, {36, 36, 36, 10, 4}, NULL};

static void print_step_view_row(char *const *cells)
{
    size_t widths[MAX_COLUMNS];

    for (size_t i = 0; i < STEP_VIEW.columns; i++)
        widths[i] = (size_t)STEP_VIEW.min_widths[i];
    print_row(&STEP_VIEW, cells, widths);
}

static void print_step_line(json_t *record, size_t step, bool json)
{
    if (json) {
        json_t *line =
            json_pack("{s:s, s:O}", "step", dps_step_routes[step].record_part, "result", record);
        char *text = line != NULL ? json_dumps(line, JSON_COMPACT) : NULL;
        if (text != NULL)
            printf("%s\n", text);
        free(text);
        json_decref(line);
        return;
    }
    char *cells[] = {field_text(record, "id"), field_text(record, "deviceId"),
                     field_text(record, "enrollmentGroupId"),
                     strdup(dps_step_routes[step].record_part), coap_code_text(record, step)};
    print_step_view_row(cells);
    for (size_t i = 0; i < STEP_VIEW.columns; i++)
        free(cells[i]);
}

static bool tail_result(void *user, json_t *record)
{
    struct tail *tail = user;
    const char *id = json_string_value(json_object_get(record, "id"));
    json_t *seen = id != NULL ? json_object_get(tail->seen, id) : NULL;

    if (id == NULL)
        return true;
    if (seen == NULL) {
        seen = json_object();
        if (seen == NULL || json_object_set_new(tail->seen, id, seen) != 0)
            return true;
    }
    for (size_t i = 0; i < STEP_COUNT; i++) {
        json_t *part = json_object_get(record, dps_step_routes[i].record_part);
        char *text = part != NULL ? json_dumps(part, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        const char *before =
            json_string_value(json_object_get(seen, dps_step_routes[i].record_part));
        bool changed = text != NULL && (before == NULL || strcmp(before, text) != 0);
        if (changed)
            json_object_set_new(seen, dps_step_routes[i].record_part, json_string(text));
        free(text);
        if (!changed || tail->baseline)
            continue;
        print_step_line(record, i, tail->json);
        tail->lines++;
        if (tail->limit > 0 && tail->lines >= tail->limit)
            return false;
    }
    return true;
}

int command_records_tail(struct client *client, struct options *options, const void *subject)
{
    struct filters filters;
    struct tail tail = {.seen = json_object(), .baseline = true, .json = options->given[OPT_JSON]};
    double interval = 2;
    char path[2048];
    char *end;
    int code = EXIT_OK;

    if (read_filters(options, &filters) != EXIT_OK)
        return EXIT_USAGE;
    if (options->value[OPT_INTERVAL] != NULL) {
        errno = 0;
        interval = strtod(options->value[OPT_INTERVAL], &end);
        if (errno != 0 || end == options->value[OPT_INTERVAL] || *end != '\0' || interval < 0.1 ||
            interval > 3600) {
            json_decref(tail.seen);
            fprintf(stderr, "dpsctl %s: --interval must be seconds from 0.1 to 3600, not \"%s\"\n",
                    options->name, options->value[OPT_INTERVAL]);
            return EXIT_USAGE;
        }
    }
    if (options->value[OPT_COUNT] != NULL &&
        (!parse_unsigned(options->value[OPT_COUNT], ULONG_MAX, &tail.limit) || tail.limit == 0)) {
        json_decref(tail.seen);
        fprintf(stderr, "dpsctl %s: --count must be a positive number, not \"%s\"\n", options->name,
                options->value[OPT_COUNT]);
        return EXIT_USAGE;
    }
    if (!filtered_path(client->curl, "/api/v1/provisioning-records", &filters, path,
                       sizeof(path))) {
        json_decref(tail.seen);
        return request_too_long(options);
    }
    for (;;) {
        code = client_stream(client, path, tail_result, &tail);
        if (code == EXIT_OK && tail.baseline && !tail.json)
            print_step_view_row((char *const *)STEP_VIEW.headers);
        fflush(stdout);
        tail.baseline = false;
        if (code != EXIT_OK || (tail.limit > 0 && tail.lines >= tail.limit))
            break;
        struct timespec pause = {(time_t)interval,
                                 (long)((interval - (double)(time_t)interval) * 1e9)};
        while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
            ;
    }
    json_decref(tail.seen);
    return code;
}

/* SHA-256 of a certificate file's DER SubjectPublicKeyInfo, as 64 hex digits. */
static bool public_key_sha256(const char *path, char out[65], char *err, size_t err_length)
{
    FILE *file = fopen(path, "rb");
    X509 *cert = file != NULL ? PEM_read_X509(file, NULL, NULL, NULL) : NULL;
    unsigned char *der = NULL;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned digest_length = 0;
    int length = cert != NULL ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der) : -1;
    bool ok = length > 0 &&
              EVP_Digest(der, (size_t)length, digest, &digest_length, EVP_sha256(), NULL) == 1;

    if (file == NULL)
        snprintf(err, err_length, "cannot read %s: %s", path, strerror(errno));
    else if (!ok)
        snprintf(err, err_length, "%s: not a PEM certificate", path);
    for (unsigned i = 0; ok && i < digest_length; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    OPENSSL_free(der);
    X509_free(cert);
    if (file != NULL)
        fclose(file);
    return ok;
}

int command_block(struct client *client, struct options *options, const void *subject)
{
    const char *serial = options->value[OPT_SERIAL];
    const char *issuer = options->value[OPT_ISSUER];
    const char *key = options->value[OPT_PUBLIC_KEY];
    const char *cert = options->value[OPT_CERT];
    int forms = (options->value[OPT_DEVICE] != NULL) + (serial != NULL || issuer != NULL) +
                (key != NULL) + (cert != NULL);
    char device[UUID_STRING_LENGTH + 1];
    char digest[65];
    char err[PATH_MAX + 64];
    json_t *request = json_object();
    json_t *entry;
    int code;

    if (forms != 1 || (serial != NULL) != (issuer != NULL)) {
        json_decref(request);
        fprintf(stderr,
                "dpsctl %s: name one device: --device ID, or --serial HEX with --issuer DN, or "
                "--public-key-sha256 HEX, or --cert FILE\n",
                options->name);
        return EXIT_USAGE;
    }
    if (options->value[OPT_DEVICE] != NULL) {
        if (check_uuid_option(options, OPT_DEVICE, "--device", device) != EXIT_OK) {
            json_decref(request);
            return EXIT_USAGE;
        }
        json_object_set_new(request, "deviceId", json_string(device));
    } else if (serial != NULL) {
        if (!is_serial(serial) || issuer[0] == '\0') {
            json_decref(request);
            fprintf(stderr,
                    "dpsctl %s: --serial must be 1 to 40 hex digits (as `openssl x509 -serial` "
                    "prints them) and --issuer the issuer DN, not empty\n",
                    options->name);
            return EXIT_USAGE;
        }
        json_t *issuer_text = option_text(options, "--issuer", issuer);
        if (issuer_text == NULL) {
            json_decref(request);
            return EXIT_USAGE;
        }
        json_object_set_new(request, "serial", json_string(serial));
        json_object_set_new(request, "issuer", issuer_text);
    } else if (key != NULL) {
        if (!is_hex(key, 64)) {
            json_decref(request);
            fprintf(stderr, "dpsctl %s: --public-key-sha256 must be 64 hex digits, not \"%s\"\n",
                    options->name, key);
            return EXIT_USAGE;
        }
        json_object_set_new(request, "publicKeySha256", json_string(key));
    } else {
        if (!public_key_sha256(cert, digest, err, sizeof(err))) {
            json_decref(request);
            fprintf(stderr, "dpsctl %s: --cert: %s\n", options->name, err);
            return EXIT_USAGE;
        }
        json_object_set_new(request, "publicKeySha256", json_string(digest));
    }
    if (options->value[OPT_REASON] != NULL) {
        json_t *reason = option_text(options, "--reason", options->value[OPT_REASON]);
        if (reason == NULL) {
            json_decref(request);
            return EXIT_USAGE;
        }
        json_object_set_new(request, "reason", reason);
    }
    entry = client_document(client, "POST", "/api/v1/blocklist", request, &code);
    json_decref(request);
    if (entry == NULL)
        return code;
    if (options->given[OPT_JSON]) {
        char *text = json_dumps(entry, JSON_COMPACT);
        if (text != NULL)
            printf("%s\n", text);
        free(text);
    } else {
        struct sink sink = {.table = {.view = &BLOCK_VIEW}};
        printf("blocked; lift it with: dpsctl unblock %s\n",
               json_string_value(json_object_get(entry, "id")) ?: "?");
        sink_put(&sink, entry);
        sink_end(&sink);
    }
    json_decref(entry);
    return EXIT_OK;
}

int command_unblock(struct client *client, struct options *options, const void *subject)
{
    char id[ENTRY_ID_DIGITS + 1];

    if (!is_hex(options->argument, ENTRY_ID_DIGITS)) {
        fprintf(stderr,
                "dpsctl %s: \"%s\" is not a blocklist entry id (the %d hex digits `dpsctl "
                "blocklist list` shows)\n",
                options->name, options->argument, ENTRY_ID_DIGITS);
        return EXIT_USAGE;
    }
    for (size_t i = 0; i <= ENTRY_ID_DIGITS; i++)
        id[i] = (char)tolower((unsigned char)options->argument[i]);
    return delete_by_filter(client, options, "/api/v1/blocklist", "idFilter", id,
                            "blocklist entry");
}

/* DELETE path?filter=<the argument, a UUID naming a what>, told as kind. */
static int delete_uuid_argument(struct client *client, struct options *options, const char *path,
                                const char *filter, const char *what, const char *kind)
{
    char id[UUID_STRING_LENGTH + 1];

    if (!parse_uuid_argument(options->argument, id)) {
        fprintf(stderr, "dpsctl %s: \"%s\" is not a %s (a UUID)\n", options->name,
                options->argument, what);
        return EXIT_USAGE;
    }
    return delete_by_filter(client, options, path, filter, id, kind);
}

int command_bindings_release(struct client *client, struct options *options, const void *subject)
{
    return delete_uuid_argument(client, options, "/api/v1/bindings", "deviceIdFilter", "device id",
                                "binding of device");
}

int command_records_delete(struct client *client, struct options *options, const void *subject)
{
    return delete_uuid_argument(client, options, "/api/v1/provisioning-records", "idFilter",
                                "record id", "record");
}

/* ---- pki and token ---- */

/* The pki command: which files existed before, to say what was created and what kept. */
static const char *const PKI_FILES[] = {
    "mfg-root.pem",
    "mfg-root.key",
    "mfg-intermediate.pem",
    "mfg-intermediate.key",
    "mfg-chain.pem",
    "dps-root.pem",
    "dps-root.key",
    "dps-server.pem",
    "dps-server.key",
    "hub-root.pem",
    "hub-root.key",
    "hub-ca.pem",
    "hub-ca.key",
    "token.key",
    "token.pub.pem",
    "operator.key",
    "operator.pub.pem",
    "operator.jwks.json",
    "operator.token",
    "rogue-root.pem",
    "rogue-root.key",
    "rogue-device.pem",
    "rogue-device.key",
    "noclientauth-device.pem",
    "noclientauth-device.key",
};
#define PKI_FILE_COUNT (sizeof(PKI_FILES) / sizeof(*PKI_FILES))

static bool path_exists(const char *dir, const char *name)
{
    char path[PATH_MAX];

    return snprintf(path, sizeof(path), "%s/%s", dir, name) < (int)sizeof(path) &&
           access(path, F_OK) == 0;
}

static bool device_exists(const char *dir, unsigned index)
{
    char path[PATH_MAX];

    return pki_device_path(dir, index, ".pem", path, sizeof(path)) == 0 &&
           access(path, F_OK) == 0 &&
           pki_device_path(dir, index, ".key", path, sizeof(path)) == 0 && access(path, F_OK) == 0;
}

int command_pki(struct client *client, struct options *options, const void *subject)
{
    bool existed[PKI_FILE_COUNT];
    bool *device_existed;
    unsigned long count = DEFAULT_DEVICE_COUNT;
    unsigned created = 0;
    unsigned kept = 0;
    unsigned devices_created = 0;
    char err[512];
    const char *dir = options->argument;

    if (options->value[OPT_DEVICES] != NULL &&
        !parse_unsigned(options->value[OPT_DEVICES], MAX_DEVICE_COUNT, &count))
        return usage_error(options->command, "pki", "--devices must be a number from 0 to 1000000",
                           options->value[OPT_DEVICES]);
    /* Other files' paths are checked by pki_generate, which says which does not fit. */
    char longest[PATH_MAX];
    if (pki_device_path(dir, count > 0 ? (unsigned)count : 1, ".pem", longest, sizeof(longest)) !=
        0)
        return usage_error(options->command, "pki", "DIR is too long for the paths of its files",
                           NULL);
    device_existed = calloc(count + 1, sizeof(*device_existed));
    if (device_existed == NULL) {
        fprintf(stderr, "dpsctl pki: out of memory\n");
        return EXIT_REFUSED;
    }
    for (size_t i = 0; i < PKI_FILE_COUNT; i++)
        existed[i] = path_exists(dir, PKI_FILES[i]);
    for (unsigned index = 1; index <= count; index++)
        device_existed[index] = device_exists(dir, index);

    if (pki_generate(dir, (unsigned)count, err, sizeof(err)) != 0) {
        fprintf(stderr, "dpsctl pki: %s\n", err);
        free(device_existed);
        return EXIT_REFUSED;
    }

    for (size_t i = 0; i < PKI_FILE_COUNT; i++) {
        printf("%-8s %s\n", existed[i] ? "kept" : "created", PKI_FILES[i]);
        if (existed[i])
            kept++;
        else
            created++;
    }
    for (unsigned index = 1; index <= count; index++)
        devices_created += device_existed[index] ? 0 : 1;
    free(device_existed);
    if (count > 0)
        printf("%-8s devices/device-%04u .. device-%04lu (.pem/.key): %u created, %lu kept\n",
               "devices", 1u, count, devices_created, count - devices_created);
    printf("PKI in %s: %u files created, %u kept; %u devices created, %lu kept\n", dir, created,
           kept, devices_created, count - devices_created);
    return EXIT_OK;
}

/* The token command: an operator token for the management API. */
int command_token(struct client *client, struct options *options, const void *subject)
{
    const char *key_file = options->value[OPT_KEY];
    const char *owner = options->value[OPT_OWNER];
    const char *lifetime = options->value[OPT_EXPIRES_IN];
    long lifetime_s = 365L * 24 * 3600;
    char *end;
    char err[512] = "";
    char *token;

    if (lifetime != NULL) {
        errno = 0;
        lifetime_s = strtol(lifetime, &end, 10);
        if (errno != 0 || end == lifetime || *end != '\0' || lifetime_s > 100L * 365 * 86400 ||
            lifetime_s < -100L * 365 * 86400)
            return usage_error(options->command, "token",
                               "--expires-in must be a number of seconds", lifetime);
    }
    if (key_file == NULL || owner == NULL || owner[0] == '\0')
        return usage_error(options->command, "token", "--key and --owner are required", NULL);
    json_t *owner_text = json_string(owner);
    json_decref(owner_text);
    if (owner_text == NULL)
        return usage_error(options->command, "token", "--owner must be UTF-8 text", NULL);
    token = pki_operator_token(key_file, owner, lifetime_s, err, sizeof(err));
    if (token == NULL) {
        fprintf(stderr, "dpsctl token: %s\n", err);
        return EXIT_REFUSED;
    }
    printf("%s\n", token);
    free(token);
    return EXIT_OK;
}
