/*
 * api_reply: answers of the management API (JSON, errors with the
 * reference's gRPC codes, ndjson lists built in memory) and the checks of
 * query parameters. See control/api.c for the conventions.
 */
#include "control/api_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include "control/auth.h"
#include "control/cluster_view.h"
#include "control/fanout.h"
#include "common/log.h"
#include "control/model.h"
#include "control/peer_client.h"
#include "control/plane.h"
#include "crypto/uuid.h"
#include "store/records.h"
#include "store/redis_admin.h"
#include "store/store.h"

/* Queues text with the given headers (pairs of name and value, NULL-terminated). */
static enum MHD_Result queue_text_headers(struct MHD_Connection *connection, unsigned status,
                                          const char *content_type, const char *text, size_t length,
                                          const char *const *headers)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(length, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (response == NULL)
        return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i += 2)
        MHD_add_response_header(response, headers[i], headers[i + 1]);
    enum MHD_Result result = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return result;
}

enum MHD_Result api_queue_text(struct MHD_Connection *connection, unsigned status,
                               const char *content_type, const char *text, size_t length)
{
    return queue_text_headers(connection, status, content_type, text, length, NULL);
}

/* Sends json (consumed) followed by a newline. */
enum MHD_Result api_queue_json(struct MHD_Connection *connection, unsigned status, json_t *json)
{
    return api_queue_json_headers(connection, status, json, NULL);
}

enum MHD_Result api_queue_json_headers(struct MHD_Connection *connection, unsigned status,
                                       json_t *json, const char *const *headers)
{
    char *text = json != NULL ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);
    if (text == NULL)
        return api_queue_text(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, "application/json",
                              OUT_OF_MEMORY_BODY, strlen(OUT_OF_MEMORY_BODY));
    size_t length = strlen(text);
    char *line = realloc(text, length + 2);
    if (line == NULL) {
        free(text);
        return MHD_NO;
    }
    line[length] = '\n';
    line[length + 1] = '\0';
    enum MHD_Result result =
        queue_text_headers(connection, status, "application/json", line, length + 1, headers);
    free(line);
    return result;
}

__attribute__((format(printf, 4, 5))) enum MHD_Result
api_queue_error(struct MHD_Connection *connection, unsigned status, enum rpc_code code,
                const char *fmt, ...)
{
    char message[768];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    return api_queue_json(connection, status,
                          json_pack("{s:i, s:s}", "code", (int)code, "message", message));
}

enum MHD_Result api_queue_plane_error(struct MHD_Connection *connection, int status,
                                      const char *err)
{
    switch (status) {
    case PLANE_INVALID:
        return api_queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT, "%s", err);
    case PLANE_NOT_FOUND:
        return api_queue_error(connection, MHD_HTTP_NOT_FOUND, RPC_NOT_FOUND, "%s", err);
    case PLANE_CONFLICT:
        return api_queue_error(connection, MHD_HTTP_CONFLICT, RPC_ALREADY_EXISTS, "%s", err);
    case PLANE_EXHAUSTED:
        return api_queue_error(connection, MHD_HTTP_TOO_MANY_REQUESTS, RPC_RESOURCE_EXHAUSTED, "%s",
                               err);
    default:
        return api_queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL, "%s", err);
    }
}

/*
 * The parameters' names as the reference's gateway takes them: its JSON
 * name (idFilter) or protobuf name (id_filter), and its router matches the
 * names case-insensitively. Any spelling of a name here is filed under the
 * name given; other names are kept as sent (and refused where unknown).
 */
static const char *const QUERY_NAMES[] = {
    "idFilter",    "deviceIdFilter", "enrollmentGroupIdFilter",
    "hubIdFilter", "serialFilter",   "attestationMechanismX509CertificateNames",
    "since",       "until",          NULL};

/* True when key spells name, ignoring case and underscores. */
static bool query_name_spells(const char *key, const char *name)
{
    for (;; key++) {
        if (*key == '_')
            continue;
        if (*key == '\0' || *name == '\0')
            return *key == '\0' && *name == '\0';
        if (tolower((unsigned char)*key) != tolower((unsigned char)*name))
            return false;
        name++;
    }
}

static const char *query_name(const char *key)
{
    for (size_t i = 0; QUERY_NAMES[i] != NULL; i++) {
        if (query_name_spells(key, QUERY_NAMES[i]))
            return QUERY_NAMES[i];
    }
    return key;
}

static enum MHD_Result collect_argument(void *user, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    query_t *query = user;
    key = query_name(key);
    json_t *values = json_object_get(query, key);
    if (values == NULL) {
        values = json_array();
        if (values == NULL || json_object_set_new(query, key, values) < 0)
            return MHD_NO;
    }
    json_array_append_new(values, json_string(value != NULL ? value : ""));
    return MHD_YES;
}

query_t *api_query_collect(struct MHD_Connection *connection)
{
    query_t *query = json_object();
    if (query != NULL)
        MHD_get_connection_values(connection, MHD_GET_ARGUMENT_KIND, collect_argument, query);
    return query;
}

/* True when a value is given for name and one of them equals text (case-insensitive). */
bool api_query_lists(const query_t *query, const char *name, const char *text)
{
    return json_array_size(json_object_get(query, name)) > 0 &&
           api_query_matches(query, name, text);
}

/*
 * True when no value is given for name, or one of them equals text
 * (case-insensitive). An empty value matches nothing: the reference's web UI
 * sends "idFilter=" while a page still loads the id, and the reference then
 * lists nothing (a filter never widens a list or a delete).
 */
bool api_query_matches(const query_t *query, const char *name, const char *text)
{
    json_t *values = json_object_get(query, name);
    if (json_array_size(values) == 0)
        return true;
    size_t i;
    json_t *value;
    json_array_foreach(values, i, value)
    {
        const char *given = json_string_value(value);
        if (text != NULL && given[0] != '\0' && strcasecmp(given, text) == 0)
            return true;
    }
    return false;
}

/* Names a parameter that is not one of allowed (NULL-terminated), or NULL. */
static const char *query_unknown(const query_t *query, const char *const *allowed)
{
    const char *key;
    json_t *values;
    json_object_foreach((json_t *)query, key, values)
    {
        size_t i = 0;
        while (allowed[i] != NULL && strcmp(allowed[i], key) != 0)
            i++;
        if (allowed[i] == NULL)
            return key;
    }
    return NULL;
}

/* True when every value of name is a UUID or empty (which matches nothing). */
static bool query_uuids_valid(const query_t *query, const char *name)
{
    size_t i;
    json_t *value;
    json_array_foreach(json_object_get(query, name), i, value)
    {
        const char *text = json_string_value(value);
        if (text[0] != '\0' && !config_uuid_valid(text))
            return false;
    }
    return true;
}

static bool is_text(const char *text)
{
    json_t *json = json_string(text);
    json_decref(json);
    return json != NULL;
}

/* Stops at the first parameter whose name or value is not UTF-8 text, naming it in *user. */
static enum MHD_Result find_non_text(void *user, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    const char **found = user;
    bool key_is_text = is_text(key);
    if (key_is_text && (value == NULL || is_text(value)))
        return MHD_YES;
    *found = key_is_text ? key : "(a parameter name)";
    return MHD_NO;
}

/*
 * Checks the parameters of a request: all UTF-8 text (else a value would be
 * dropped from its list and a filter silently widened), only allowed names,
 * UUID filters valid.
 */
enum MHD_Result api_check_query(struct MHD_Connection *connection, const query_t *query,
                                const char *const *allowed, const char *const *uuid_filters,
                                bool *ok)
{
    *ok = false;
    if (query == NULL)
        return api_queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                               "out of memory");
    const char *non_text = NULL;
    MHD_get_connection_values(connection, MHD_GET_ARGUMENT_KIND, find_non_text, &non_text);
    if (non_text != NULL)
        return api_queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                               "%s: not UTF-8 text", non_text);
    const char *unknown = query_unknown(query, allowed);
    if (unknown != NULL)
        return api_queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                               "%s: unknown parameter", unknown);
    for (size_t i = 0; uuid_filters[i] != NULL; i++) {
        if (!query_uuids_valid(query, uuid_filters[i]))
            return api_queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                                   "%s: not a UUID", uuid_filters[i]);
    }
    *ok = true;
    return MHD_YES;
}

bool api_query_none(struct MHD_Connection *connection, enum MHD_Result *result)
{
    static const char *const none[] = {NULL};
    query_t *query = api_query_collect(connection);
    bool ok;
    *result = api_check_query(connection, query, none, none, &ok);
    json_decref(query);
    return ok;
}

/*
 * A UUID parameter (checked by check_query) in the lower-case form the
 * store's keys use. 0, or -1 with out "" when text is not a UUID after all.
 */
int api_uuid_text_normalise(const char *text, char out[UUID_STRING_LENGTH + 1])
{
    struct dps_uuid uuid;
    out[0] = '\0';
    if (text == NULL || uuid_text_parse(text, strlen(text), &uuid) != 0)
        return -1;
    uuid_format(&uuid, out);
    return 0;
}

bool api_same_owner(const char *owner, const char *caller)
{
    return owner != NULL && strcmp(owner, caller) == 0;
}

void api_ndjson_result(struct ndjson *out, json_t *value)
{
    json_t *line = value != NULL ? json_pack("{s:o}", "result", value) : NULL;
    char *text = line != NULL ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    size_t length = text != NULL ? strlen(text) : 0;
    if (text == NULL || out->failed) {
        out->failed = true;
        free(text);
        return;
    }
    if (out->length + length + 2 > out->capacity) {
        size_t capacity = (out->capacity + length + 2) * 2;
        char *grown = realloc(out->text, capacity);
        if (grown == NULL) {
            out->failed = true;
            free(text);
            return;
        }
        out->text = grown;
        out->capacity = capacity;
    }
    memcpy(out->text + out->length, text, length);
    out->text[out->length + length] = '\n';
    out->length += length + 1;
    free(text);
}

enum MHD_Result api_queue_ndjson(struct MHD_Connection *connection, struct ndjson *out)
{
    enum MHD_Result result;
    if (out->failed)
        result = api_queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                                 "out of memory");
    else
        result = api_queue_text(connection, MHD_HTTP_OK, "application/x-ndjson",
                                out->text != NULL ? out->text : "", out->length);
    free(out->text);
    return result;
}

enum MHD_Result api_method_not_allowed(struct MHD_Connection *connection, const char *method,
                                       const char *url)
{
    return api_queue_error(connection, MHD_HTTP_METHOD_NOT_ALLOWED, RPC_UNIMPLEMENTED,
                           "%s is not supported on %s", method, url);
}
