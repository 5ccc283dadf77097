/*
 * api: the management API server (control/api.h) on libmicrohttpd, one
 * thread per connection.
 *
 * Every /api/v1 request carries an operator bearer token (control/auth.h);
 * its owner scopes everything the request sees or changes: documents of
 * other owners do not exist for it (404 on change, skipped in lists).
 * Changes go to the plane (control/plane.h), which validates, stores and
 * publishes them; this file checks ownership, fills the id and the owner,
 * and maps results to HTTP.
 *
 * Lists are newline-delimited JSON (Content-Type application/x-ndjson), one
 * {"result": {...}} per line like the reference's grpc-gateway streams. The
 * store-backed lists (provisioning records, issuance, bindings) can be as
 * large as the fleet, so a producer thread scans the store into a pipe and
 * the connection thread streams the pipe out: memory stays bounded and a
 * client that goes away stops the scan (the write fails). A failure after
 * the first line is reported as a last line {"error": {"code", "message"}}.
 *
 * Errors are {"code": N, "message": "..."} with the gRPC code the reference
 * uses: 3 invalid argument (400), 5 not found (404), 6 already exists (409),
 * 7 permission denied (403), 8 resource exhausted (429: a quota; 413 for
 * bodies over 1 MiB), 12 unimplemented (405), 13 internal (500),
 * 16 unauthenticated (401).
 *
 * Nobody without a token can spend the API: the token (and the owner's
 * request rate) is checked in the first call of a request, when its headers
 * are in, so a refused caller's body is never read. Connections are limited
 * in all and per source (api.maxConnections, maxConnectionsPerSource), and a
 * reaper thread closes a connection whose request is not in within
 * api.requestTimeout of its connect or its previous request's end. The
 * probes and metrics are also served by a second, single-threaded listener
 * with a budget of its own (api.healthListen), so a flood of this one never
 * starves a load balancer.
 */
#include "control/api.h"

#include <arpa/inet.h>
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

#define API_BODY_LIMIT (1024 * 1024)
#define API_CONNECTION_TIMEOUT_S 60 /* idle, also while a list streams out */
#define API_HEALTH_CONNECTIONS 64
#define API_HEALTH_CONNECTIONS_PER_SOURCE 8
#define API_HEALTH_TIMEOUT_S 5
#define API_RATE_TABLE_LIMIT 4096 /* owners remembered before idle ones are forgotten */
#define API_PEM_LIMIT (1024 * 1024)
#define API_STREAM_BLOCK 16384
#define API_FANOUT_CONNECT_MS 1000 /* a peer's API */
#define API_FANOUT_STALL_MS 5000   /* a peer's silence within its answer */
#define OUT_OF_MEMORY_BODY "{\"code\":13,\"message\":\"out of memory\"}\n"

enum rpc_code {
    RPC_INVALID_ARGUMENT = 3,
    RPC_NOT_FOUND = 5,
    RPC_ALREADY_EXISTS = 6,
    RPC_PERMISSION_DENIED = 7,
    RPC_RESOURCE_EXHAUSTED = 8,
    RPC_UNIMPLEMENTED = 12,
    RPC_INTERNAL = 13,
    RPC_UNAVAILABLE = 14,
    RPC_UNAUTHENTICATED = 16,
};

/*
 * One TCP connection of either listener, tracked for its request deadline.
 * socket is our duplicate of the connection's descriptor: shutting it down
 * ends the connection whatever libmicrohttpd is waiting for, and the socket
 * itself lives until we close our copy, so the reaper never touches a
 * descriptor number that was closed and given to something else.
 */
struct api_conn {
    struct api_conn *prev;
    struct api_conn *next;
    int socket;
    unsigned timeout_s;    /* the listener's deadline for a whole request */
    struct timespec since; /* the connection's start, or its previous request's end */
    bool answering;        /* a response is queued: the deadline does not run */
    bool reaped;
};

/* A listener: the API's own, or the health listener's (probes and metrics only). */
struct api_listener {
    struct api *api;
    unsigned timeout_s;
};

struct api {
    struct MHD_Daemon *daemon;
    struct MHD_Daemon *health_daemon; /* api.healthListen, or NULL */
    struct api_listener listener;
    struct api_listener health_listener;
    struct plane *plane;
    const struct config_api *settings;
    struct auth *auth;
    char *cert_pem;
    char *client_ca_pem; /* api.clientCA: client certificates required when set */
    char *key_pem;

    /* Producer threads still scanning: api_stop waits for them. */
    pthread_mutex_t lock;
    pthread_cond_t idle;
    unsigned producers;

    /* Connections and the reaper thread that enforces request deadlines. */
    pthread_mutex_t conns_lock;
    pthread_cond_t reaper_wake;
    struct api_conn *conns;
    bool stopping;
    bool reaper_started;
    pthread_t reaper;

    /* Requests per owner: a GCRA arrival time (microseconds) per owner, under rates_lock. */
    pthread_mutex_t rates_lock;
    json_t *rates;
};

/* One request: its owner, checked before any body byte is read, and its body as it arrives. */
struct request {
    char *owner;  /* /api/v1 routes: the token's owner */
    bool refused; /* answered in the first call: the body is discarded */
    char *body;
    size_t length;
    bool too_large;
};

/* Query parameters: name -> list of values. */
typedef json_t query_t;

static enum MHD_Result queue_text(struct MHD_Connection *connection, unsigned status,
                                  const char *content_type, const char *text, size_t length)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(length, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (response == NULL)
        return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result result = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return result;
}

/* Sends json (consumed) followed by a newline. */
static enum MHD_Result queue_json(struct MHD_Connection *connection, unsigned status, json_t *json)
{
    char *text = json != NULL ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);
    if (text == NULL)
        return queue_text(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, "application/json",
                          OUT_OF_MEMORY_BODY, strlen(OUT_OF_MEMORY_BODY));
    size_t length = strlen(text);
    char *line = realloc(text, length + 2);
    if (line == NULL) {
        free(text);
        return MHD_NO;
    }
    line[length] = '\n';
    line[length + 1] = '\0';
    enum MHD_Result result = queue_text(connection, status, "application/json", line, length + 1);
    free(line);
    return result;
}

__attribute__((format(printf, 4, 5))) static enum MHD_Result
queue_error(struct MHD_Connection *connection, unsigned status, enum rpc_code code, const char *fmt,
            ...)
{
    char message[768];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    return queue_json(connection, status,
                      json_pack("{s:i, s:s}", "code", (int)code, "message", message));
}

static enum MHD_Result queue_plane_error(struct MHD_Connection *connection, int status,
                                         const char *err)
{
    switch (status) {
    case PLANE_INVALID:
        return queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT, "%s", err);
    case PLANE_NOT_FOUND:
        return queue_error(connection, MHD_HTTP_NOT_FOUND, RPC_NOT_FOUND, "%s", err);
    case PLANE_CONFLICT:
        return queue_error(connection, MHD_HTTP_CONFLICT, RPC_ALREADY_EXISTS, "%s", err);
    case PLANE_EXHAUSTED:
        return queue_error(connection, MHD_HTTP_TOO_MANY_REQUESTS, RPC_RESOURCE_EXHAUSTED, "%s",
                           err);
    default:
        return queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL, "%s", err);
    }
}

static enum MHD_Result collect_argument(void *user, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    query_t *query = user;
    json_t *values = json_object_get(query, key);
    if (values == NULL) {
        values = json_array();
        if (values == NULL || json_object_set_new(query, key, values) < 0)
            return MHD_NO;
    }
    json_array_append_new(values, json_string(value != NULL ? value : ""));
    return MHD_YES;
}

static query_t *query_collect(struct MHD_Connection *connection)
{
    query_t *query = json_object();
    if (query != NULL)
        MHD_get_connection_values(connection, MHD_GET_ARGUMENT_KIND, collect_argument, query);
    return query;
}

/* True when no value is given for name, or one of them equals text (case-insensitive). */
static bool query_matches(const query_t *query, const char *name, const char *text)
{
    json_t *values = json_object_get(query, name);
    if (json_array_size(values) == 0)
        return true;
    size_t i;
    json_t *value;
    json_array_foreach(values, i, value)
    {
        if (text != NULL && strcasecmp(json_string_value(value), text) == 0)
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

/* True when every value of name is a UUID. */
static bool query_uuids_valid(const query_t *query, const char *name)
{
    size_t i;
    json_t *value;
    json_array_foreach(json_object_get(query, name), i, value)
    {
        if (!config_uuid_valid(json_string_value(value)))
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
static enum MHD_Result check_query(struct MHD_Connection *connection, const query_t *query,
                                   const char *const *allowed, const char *const *uuid_filters,
                                   bool *ok)
{
    *ok = false;
    if (query == NULL)
        return queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                           "out of memory");
    const char *non_text = NULL;
    MHD_get_connection_values(connection, MHD_GET_ARGUMENT_KIND, find_non_text, &non_text);
    if (non_text != NULL)
        return queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                           "%s: not UTF-8 text", non_text);
    const char *unknown = query_unknown(query, allowed);
    if (unknown != NULL)
        return queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                           "%s: unknown parameter", unknown);
    for (size_t i = 0; uuid_filters[i] != NULL; i++) {
        if (!query_uuids_valid(query, uuid_filters[i]))
            return queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                               "%s: not a UUID", uuid_filters[i]);
    }
    *ok = true;
    return MHD_YES;
}

/*
 * A UUID parameter (checked by check_query) in the lower-case form the
 * store's keys use. 0, or -1 with out "" when text is not a UUID after all.
 */
static int uuid_text_normalise(const char *text, char out[UUID_STRING_LENGTH + 1])
{
    struct dps_uuid uuid;
    out[0] = '\0';
    if (text == NULL || uuid_text_parse(text, strlen(text), &uuid) != 0)
        return -1;
    uuid_format(&uuid, out);
    return 0;
}

static bool same_owner(const char *owner, const char *caller)
{
    return owner != NULL && strcmp(owner, caller) == 0;
}

/* "result" lines of json values, for the lists built in memory. */
struct ndjson {
    char *text;
    size_t length;
    size_t capacity;
    bool failed;
};

static void ndjson_result(struct ndjson *out, json_t *value)
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

static enum MHD_Result queue_ndjson(struct MHD_Connection *connection, struct ndjson *out)
{
    enum MHD_Result result;
    if (out->failed)
        result =
            queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL, "out of memory");
    else
        result = queue_text(connection, MHD_HTTP_OK, "application/x-ndjson",
                            out->text != NULL ? out->text : "", out->length);
    free(out->text);
    return result;
}

/* Groups and hubs: the kinds of document the plane keeps. */
enum kind {
    KIND_GROUP,
    KIND_HUB,
};

static size_t kind_count(const struct config *config, enum kind kind)
{
    return kind == KIND_GROUP ? config->group_count : config->hub_count;
}

static const char *kind_id(const struct config *config, enum kind kind, size_t i)
{
    return kind == KIND_GROUP ? config->groups[i].id : config->hubs[i].id;
}

static const char *kind_owner(const struct config *config, enum kind kind, size_t i)
{
    return kind == KIND_GROUP ? config->groups[i].owner : config->hubs[i].owner;
}

static const char *kind_name(enum kind kind)
{
    return kind == KIND_GROUP ? "enrollment group" : "hub";
}

/* The index of the document with id owned by owner, or -1. */
static long find_owned(const struct config *config, enum kind kind, const char *id,
                       const char *owner)
{
    for (size_t i = 0; i < kind_count(config, kind); i++) {
        if (strcasecmp(kind_id(config, kind, i), id) == 0)
            return same_owner(kind_owner(config, kind, i), owner) ? (long)i : -1;
    }
    return -1;
}

static enum MHD_Result list_documents(struct api *api, struct MHD_Connection *connection,
                                      enum kind kind, const char *owner)
{
    static const char *const allowed[] = {"idFilter", NULL};
    query_t *query = query_collect(connection);
    bool ok;
    enum MHD_Result result = check_query(connection, query, allowed, allowed, &ok);
    if (!ok) {
        json_decref(query);
        return result;
    }
    struct ndjson out = {0};
    const struct config *config = plane_config_acquire(api->plane);
    for (size_t i = 0; i < kind_count(config, kind); i++) {
        if (!same_owner(kind_owner(config, kind, i), owner) ||
            !query_matches(query, "idFilter", kind_id(config, kind, i)))
            continue;
        ndjson_result(&out, kind == KIND_GROUP ? model_group_to_api(&config->groups[i])
                                               : model_hub_to_api(&config->hubs[i]));
    }
    plane_config_release(api->plane, config);
    json_decref(query);
    return queue_ndjson(connection, &out);
}

/* A string member of doc, NULL when absent, null or ""; *wrong when it is another type. */
static const char *doc_string(const json_t *doc, const char *key, bool *wrong)
{
    json_t *value = json_object_get(doc, key);
    if (value != NULL && !json_is_null(value) && !json_is_string(value))
        *wrong = true;
    const char *text = json_string_value(value);
    return text != NULL && text[0] != '\0' ? text : NULL;
}

/* The id a document names: "id", or for hubs also "hubId". */
static const char *doc_id(const json_t *doc, enum kind kind, bool *wrong)
{
    const char *id = doc_string(doc, "id", wrong);
    if (id == NULL && kind == KIND_HUB)
        id = doc_string(doc, "hubId", wrong);
    return id;
}

/*
 * Parses the body, fills in id (path_id, or a new UUID for a create) and
 * owner. NULL after queueing the error response in *result.
 */
static json_t *prepare_document(struct MHD_Connection *connection, const struct request *request,
                                enum kind kind, const char *path_id, const char *owner,
                                enum MHD_Result *result)
{
    json_error_t error;
    json_t *doc = json_loadb(request->body != NULL ? request->body : "", request->length,
                             JSON_REJECT_DUPLICATES, &error);
    if (doc == NULL) {
        *result = queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                              "body: not JSON: %s (line %d, column %d)", error.text, error.line,
                              error.column);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        *result = queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                              "body: must be a JSON object");
        return NULL;
    }
    bool wrong = false;
    const char *named_owner = doc_string(doc, "owner", &wrong);
    const char *id = doc_id(doc, kind, &wrong);
    if (named_owner != NULL && strcmp(named_owner, owner) != 0) {
        json_decref(doc);
        *result = queue_error(connection, MHD_HTTP_FORBIDDEN, RPC_PERMISSION_DENIED,
                              "owner: the token's owner may not write documents of another owner");
        return NULL;
    }
    if (path_id != NULL && id != NULL && strcasecmp(id, path_id) != 0) {
        json_decref(doc);
        *result = queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                              "id: \"%s\" differs from the id in the path", id);
        return NULL;
    }
    /* A generated id is random (version 4): never one that existed, whoever owned it. */
    char generated[UUID_STRING_LENGTH + 1];
    if (path_id == NULL && id == NULL && !wrong) {
        struct dps_uuid uuid;
        if (uuid_random(&uuid) != 0) {
            json_decref(doc);
            *result = queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                                  "cannot generate an id");
            return NULL;
        }
        uuid_format(&uuid, generated);
        id = generated;
    }
    if (path_id != NULL)
        id = path_id;
    int set = json_object_set_new(doc, "owner", json_string(owner));
    if (id != NULL && !wrong) {
        char *copy = strdup(id);
        set |= copy == NULL ? -1 : json_object_set_new(doc, "id", json_string(copy));
        if (kind == KIND_HUB && copy != NULL)
            set |= json_object_set_new(doc, "hubId", json_string(copy));
        free(copy);
    }
    if (set != 0) {
        json_decref(doc);
        *result =
            queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL, "out of memory");
        return NULL;
    }
    return doc;
}

/* The document as the node now holds it, to answer a create or replace. */
static json_t *stored_document(struct api *api, enum kind kind, const char *id)
{
    const struct config *config = plane_config_acquire(api->plane);
    json_t *doc = NULL;
    for (size_t i = 0; doc == NULL && i < kind_count(config, kind); i++) {
        if (strcasecmp(kind_id(config, kind, i), id) == 0)
            doc = kind == KIND_GROUP ? model_group_to_api(&config->groups[i])
                                     : model_hub_to_api(&config->hubs[i]);
    }
    plane_config_release(api->plane, config);
    return doc;
}

/* The index in doc's hubIds of a hub that exists but belongs to another owner, or -1. */
static long foreign_hub_index(const struct config *config, const json_t *doc, const char *owner)
{
    size_t i;
    json_t *value;
    json_array_foreach(json_object_get(doc, "hubIds"), i, value)
    {
        const char *hub_id = json_string_value(value);
        const struct config_hub *hub = hub_id != NULL ? config_find_hub(config, hub_id) : NULL;
        if (hub != NULL && !same_owner(hub->owner, owner))
            return (long)i;
    }
    return -1;
}

static enum MHD_Result put_document(struct api *api, struct MHD_Connection *connection,
                                    const struct request *request, enum kind kind,
                                    const char *path_id, const char *owner)
{
    enum MHD_Result result;
    bool create = path_id == NULL;
    if (!create && !config_uuid_valid(path_id))
        return queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                           "id: \"%s\" is not a UUID", path_id);
    json_t *doc = prepare_document(connection, request, kind, path_id, owner, &result);
    if (doc == NULL)
        return result;

    /*
     * Replacing needs the caller to own the current document, and a group may
     * only name the caller's hubs: others' documents do not exist for it.
     */
    const char *id = json_string_value(json_object_get(doc, "id"));
    const struct config *config = plane_config_acquire(api->plane);
    bool found = create || find_owned(config, kind, path_id, owner) >= 0;
    long foreign_hub = kind == KIND_GROUP ? foreign_hub_index(config, doc, owner) : -1;
    plane_config_release(api->plane, config);
    if (!found) {
        json_decref(doc);
        return queue_error(connection, MHD_HTTP_NOT_FOUND, RPC_NOT_FOUND, "no %s %s",
                           kind_name(kind), path_id);
    }
    if (foreign_hub >= 0) {
        const char *hub_id =
            json_string_value(json_array_get(json_object_get(doc, "hubIds"), (size_t)foreign_hub));
        result = queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                             "hubIds[%ld]: unknown hub \"%s\"", foreign_hub, hub_id);
        json_decref(doc);
        return result;
    }
    char err[1024] = "";
    int status = kind == KIND_GROUP ? plane_put_group(api->plane, doc, create, err, sizeof(err))
                                    : plane_put_hub(api->plane, doc, create, err, sizeof(err));
    if (status != PLANE_OK) {
        json_decref(doc);
        return queue_plane_error(connection, status, err);
    }
    /* Stored, so id is the document's valid UUID; doc holds it until here. */
    log_msg(LOG_INFO, create ? "api created" : "api replaced", "kind=\"%s\" id=%s owner=\"%s\"",
            kind_name(kind), id, owner);
    json_t *stored = stored_document(api, kind, id);
    json_decref(doc);
    if (stored == NULL)
        return queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                           "the %s was stored but is not in force", kind_name(kind));
    return queue_json(connection, MHD_HTTP_OK, stored);
}

/*
 * A bulk delete names its targets in one required query parameter. Returns
 * the query (the caller frees it) with *values the parameter's list, or NULL
 * when the answer (an error) is already queued in *result.
 */
static query_t *required_filter(struct MHD_Connection *connection, const char *name, bool uuids,
                                const char *purpose, json_t **values, enum MHD_Result *result)
{
    const char *const allowed[] = {name, NULL};
    const char *const no_uuids[] = {NULL};
    query_t *query = query_collect(connection);
    bool ok;
    *result = check_query(connection, query, allowed, uuids ? allowed : no_uuids, &ok);
    if (!ok) {
        json_decref(query);
        return NULL;
    }
    *values = json_object_get(query, name);
    if (json_array_size(*values) == 0) {
        json_decref(query);
        *result = queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                              "%s: required (%s)", name, purpose);
        return NULL;
    }
    return query;
}

static enum MHD_Result delete_documents(struct api *api, struct MHD_Connection *connection,
                                        enum kind kind, const char *owner)
{
    json_t *ids;
    enum MHD_Result result;
    query_t *query =
        required_filter(connection, "idFilter", true, "name the ids to delete", &ids, &result);
    if (query == NULL)
        return result;
    json_int_t count = 0;
    size_t i;
    json_t *value;
    json_array_foreach(ids, i, value)
    {
        const char *id = json_string_value(value);
        const struct config *config = plane_config_acquire(api->plane);
        long index = find_owned(config, kind, id, owner);
        plane_config_release(api->plane, config);
        if (index < 0)
            continue;
        char err[1024] = "";
        int status = kind == KIND_GROUP ? plane_delete_group(api->plane, id, err, sizeof(err))
                                        : plane_delete_hub(api->plane, id, err, sizeof(err));
        if (status == PLANE_NOT_FOUND)
            continue;
        if (status != PLANE_OK) {
            result = queue_plane_error(connection, status, err);
            json_decref(query);
            return result;
        }
        log_msg(LOG_INFO, "api deleted", "kind=\"%s\" id=%s owner=\"%s\"", kind_name(kind), id,
                owner);
        count++;
    }
    json_decref(query);
    return queue_json(connection, MHD_HTTP_OK, json_pack("{s:I}", "count", count));
}

/*
 * Streams from the store: a producer thread runs a scan and writes result
 * lines into a pipe that the response reads.
 */
enum stream_kind {
    STREAM_RECORDS,
    STREAM_ISSUANCE,
    STREAM_BINDINGS,
};

struct stream {
    struct api *api;
    enum stream_kind kind;
    char *owner;
    query_t *query;
    struct store *store;
    int fd; /* the pipe's write end */
    bool broken;
    /* In a cluster, asked directly (not forwarded): the whole cluster's list (fanout.h). */
    char *token;    /* the caller's, forwarded to the peers */
    char *path;     /* the request's path and query, forwarded as is */
    bool forwarded; /* asked by another node: its own part, conflicts left to the node asked */
    /* Bindings in a cluster: the owner's device ids a re-seed found bound twice (Redis). */
    char (*conflicts)[37];
    size_t conflict_count;
    bool *conflict_listed;
};

/* Writes all of text; false once the reader has gone. */
static bool stream_write(struct stream *stream, const char *text, size_t length)
{
    while (!stream->broken && length > 0) {
        ssize_t written = write(stream->fd, text, length);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0) {
            stream->broken = true;
            break;
        }
        text += written;
        length -= (size_t)written;
    }
    return !stream->broken;
}

/* Writes {key: value} (value consumed) as one line. */
static bool stream_line(struct stream *stream, const char *key, json_t *value)
{
    json_t *line = value != NULL ? json_pack("{s:o}", key, value) : NULL;
    char *text = line != NULL ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    bool ok =
        text != NULL && stream_write(stream, text, strlen(text)) && stream_write(stream, "\n", 1);
    free(text);
    return ok;
}

/*
 * Store-backed lists read only the caller's keys (store/records.h): a record,
 * issuance entry or binding is the owner's it was written for, never that of
 * whoever holds its group id now.
 */
static int record_result(void *user, json_t *record)
{
    struct stream *stream = user;
    bool visible = query_matches(stream->query, "idFilter",
                                 json_string_value(json_object_get(record, "id"))) &&
                   query_matches(stream->query, "deviceIdFilter",
                                 json_string_value(json_object_get(record, "deviceId"))) &&
                   query_matches(stream->query, "enrollmentGroupIdFilter",
                                 json_string_value(json_object_get(record, "enrollmentGroupId")));
    if (!visible)
        return 0;
    return stream_line(stream, "result", json_incref(record)) ? 0 : 1;
}

/* RFC 3339 UTC text compares in time order when both have the same form (seconds, "Z"). */
static bool within_window(const query_t *query, const char *issued_at)
{
    const char *since = json_string_value(json_array_get(json_object_get(query, "since"), 0));
    const char *until = json_string_value(json_array_get(json_object_get(query, "until"), 0));
    if (issued_at == NULL)
        return since == NULL && until == NULL;
    return (since == NULL || strcmp(issued_at, since) >= 0) &&
           (until == NULL || strcmp(issued_at, until) < 0);
}

static int issuance_result(void *user, json_t *entry)
{
    struct stream *stream = user;
    bool visible =
        query_matches(stream->query, "deviceIdFilter",
                      json_string_value(json_object_get(entry, "deviceId"))) &&
        query_matches(stream->query, "serialFilter",
                      json_string_value(json_object_get(entry, "serial"))) &&
        within_window(stream->query, json_string_value(json_object_get(entry, "issuedAt")));
    if (!visible)
        return 0;
    return stream_line(stream, "result", json_incref(entry)) ? 0 : 1;
}

/* The index of device_id among the stream's conflicts, or -1. */
static long conflict_index(const struct stream *stream, const char *device_id)
{
    for (size_t i = 0; device_id != NULL && i < stream->conflict_count; i++) {
        if (strcmp(stream->conflicts[i], device_id) == 0)
            return (long)i;
    }
    return -1;
}

static int binding_result(void *user, json_t *binding)
{
    struct stream *stream = user;
    const char *device_id = json_string_value(json_object_get(binding, "deviceId"));
    if (!query_matches(stream->query, "deviceIdFilter", device_id))
        return 0;
    long conflict = conflict_index(stream, device_id);
    if (conflict < 0)
        return stream_line(stream, "result", json_incref(binding)) ? 0 : 1;
    stream->conflict_listed[conflict] = true;
    json_t *marked = json_copy(binding);
    json_object_set_new(marked, "conflict", json_true());
    return stream_line(stream, "result", marked) ? 0 : 1;
}

/*
 * GET /api/v1/bindings in a cluster: the owner's conflicts, from Redis
 * before the scan; those this node holds no binding of are listed after it,
 * without a record id. Redis unreachable: the node's bindings alone.
 */
static void bindings_conflicts_load(struct stream *stream)
{
    const struct config_cluster *cluster = &plane_settings(stream->api->plane)->cluster;
    if (cluster->redis == NULL && cluster->sentinel_count == 0)
        return;
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1], err[256];
    records_owner_key(stream->owner, owner_key);
    if (redis_admin_conflicts(cluster, owner_key, &stream->conflicts, &stream->conflict_count, err,
                              sizeof(err)) != 0) {
        log_msg(LOG_WARN, "binding conflicts unknown", "owner=\"%s\" error=\"%s\"", stream->owner,
                err);
        return;
    }
    if (stream->conflict_count > 0 &&
        (stream->conflict_listed = calloc(stream->conflict_count, sizeof(bool))) == NULL) {
        free(stream->conflicts);
        stream->conflicts = NULL;
        stream->conflict_count = 0;
    }
}

static void bindings_conflicts_rest(struct stream *stream)
{
    for (size_t i = 0; i < stream->conflict_count && !stream->broken; i++) {
        if (stream->conflict_listed[i] ||
            !query_matches(stream->query, "deviceIdFilter", stream->conflicts[i]))
            continue;
        stream_line(stream, "result",
                    json_pack("{s:s, s:s, s:b}", "deviceId", stream->conflicts[i], "owner",
                              stream->owner, "conflict", true));
    }
}

static void stream_free(struct stream *stream)
{
    if (stream->token != NULL)
        explicit_bzero(stream->token, strlen(stream->token));
    free(stream->token);
    free(stream->path);
    free(stream->conflicts);
    free(stream->conflict_listed);
    json_decref(stream->query);
    free(stream->owner);
    free(stream);
}

/* This node's own part, written to stream->fd: STORE_OK or STORE_ERROR. */
static int stream_scan(struct stream *stream)
{
    switch (stream->kind) {
    case STREAM_RECORDS: {
        /* One idFilter narrows the scan to that record's keys. */
        json_t *ids = json_object_get(stream->query, "idFilter");
        char id[UUID_STRING_LENGTH + 1] = "";
        if (json_array_size(ids) == 1)
            uuid_text_normalise(json_string_value(json_array_get(ids, 0)), id);
        return records_scan(stream->store, stream->owner, id[0] != '\0' ? id : NULL, record_result,
                            stream, NULL);
    }
    case STREAM_ISSUANCE:
        return records_issuance_scan(stream->store, stream->owner, issuance_result, stream, NULL);
    default:
        return records_bindings_scan(stream->store, stream->owner, binding_result, stream, NULL);
    }
}

/* fanout's local source: the scan of a copy of the stream that writes to fd, conflicts aside. */
static int stream_scan_into(void *user, int fd)
{
    struct stream local = *(const struct stream *)user;
    local.fd = fd;
    local.broken = false;
    local.conflicts = NULL;
    local.conflict_count = 0;
    local.conflict_listed = NULL;
    int status = stream_scan(&local);
    return status == STORE_OK || local.broken ? 0 : -1;
}

static bool stream_emit(void *user, json_t *result)
{
    struct stream *stream = user;
    if (stream->kind == STREAM_BINDINGS)
        return binding_result(stream, result) == 0;
    return stream_line(stream, "result", json_incref(result));
}

/* "partial: b did not answer (cannot connect: ...); c ..." */
static json_t *unanswered_message(const json_t *unanswered)
{
    char *text = NULL;
    size_t length = 0;
    FILE *out = open_memstream(&text, &length);
    if (out == NULL)
        return json_string("partial: some nodes did not answer");
    fputs("partial:", out);
    size_t index;
    json_t *node;
    json_array_foreach(unanswered, index, node)
    {
        fprintf(out, "%s %s did not answer (%s)", index > 0 ? ";" : "",
                json_string_value(json_object_get(node, "name")),
                json_string_value(json_object_get(node, "error")));
    }
    json_t *message = fclose(out) == 0 ? json_string(text) : NULL;
    free(text);
    return message != NULL ? message : json_string("partial: some nodes did not answer");
}

/*
 * The whole cluster's list: this node's scan merged with every live peer's
 * (fanout.h). Nodes that did not answer are named in a last line
 * {"error": {"code": 14, "message", "unansweredNodes": [{"name", "error"}]}}
 * after every result the others sent: partial, and saying so.
 */
static void stream_fan_out(struct stream *stream)
{
    /* What each node's store orders by (store/records.h); a device id is bound once per node. */
    static const char *const record_key[] = {"id", NULL}, *const issuance_key[] = {"serial", NULL},
                             *const binding_key[] = {"deviceId", "recordId", NULL};
    static const char *const *const key_fields[] = {record_key, issuance_key, binding_key};
    const struct config *settings = plane_settings(stream->api->plane);
    char err[256];
    json_t *nodes = cluster_view_nodes(settings, err, sizeof(err));
    bool membership_known = nodes != NULL;
    if (nodes == NULL)
        nodes = json_array();
    struct fanout_request request = {
        .path = stream->path,
        .token = stream->token,
        .trust_file = settings->api.cert_file,
        .certificate_pem = stream->api->cert_pem,
        .key_pem = stream->api->key_pem,
        .key_fields = key_fields[stream->kind],
        .self = settings->cluster.node,
        .connect_ms = API_FANOUT_CONNECT_MS,
        .stall_ms = API_FANOUT_STALL_MS,
    };
    json_t *unanswered = NULL;
    int status =
        fanout_run(&request, nodes, stream_scan_into, stream, stream_emit, stream, &unanswered);
    json_decref(nodes);
    if (status == 0 && stream->kind == STREAM_BINDINGS)
        bindings_conflicts_rest(stream);
    if (!membership_known && unanswered != NULL) {
        cluster_view_count_fanout_error();
        json_array_append_new(unanswered,
                              json_pack("{s:s, s:s}", "name", "(the other nodes)", "error", err));
    }
    if (stream->broken) {
        json_decref(unanswered);
        return;
    }
    if (status != 0)
        stream_line(stream, "error",
                    json_pack("{s:i, s:s}", "code", RPC_INTERNAL, "message",
                              "cannot gather the cluster's list"));
    else if (json_array_size(unanswered) > 0)
        stream_line(stream, "error",
                    json_pack("{s:i, s:o, s:O}", "code", RPC_UNAVAILABLE, "message",
                              unanswered_message(unanswered), "unansweredNodes", unanswered));
    json_decref(unanswered);
}

static void *stream_produce(void *user)
{
    struct stream *stream = user;
    struct api *api = stream->api;
    sigset_t pipe_signal;
    sigemptyset(&pipe_signal);
    sigaddset(&pipe_signal, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_signal, NULL);

    if (stream->kind == STREAM_BINDINGS && !stream->forwarded)
        bindings_conflicts_load(stream);
    if (stream->path != NULL) {
        stream_fan_out(stream);
    } else {
        int status = stream_scan(stream);
        if (status == STORE_OK && stream->kind == STREAM_BINDINGS)
            bindings_conflicts_rest(stream);
        if (status != STORE_OK && !stream->broken)
            stream_line(stream, "error",
                        json_pack("{s:i, s:s}", "code", RPC_INTERNAL, "message",
                                  "reading the store failed"));
    }
    close(stream->fd);
    stream_free(stream);

    pthread_mutex_lock(&api->lock);
    api->producers--;
    pthread_cond_broadcast(&api->idle);
    pthread_mutex_unlock(&api->lock);
    return NULL;
}

static ssize_t stream_read(void *user, uint64_t position, char *buffer, size_t max)
{
    int fd = (int)(intptr_t)user;
    for (;;) {
        ssize_t n = read(fd, buffer, max);
        if (n > 0)
            return n;
        if (n == 0)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (errno != EINTR)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void stream_close(void *user)
{
    close((int)(intptr_t)user);
}

/* A list asked of this node in a cluster, not forwarded by another node: the whole cluster's. */
static bool stream_fans_out(struct api *api, struct MHD_Connection *connection)
{
    return cluster_view_enabled(plane_settings(api->plane)) &&
           MHD_lookup_connection_value(connection, MHD_HEADER_KIND, PEER_FORWARDED_HEADER) == NULL;
}

/* Appends text percent-encoded (all but RFC 3986 unreserved characters). */
static void url_encode(FILE *out, const char *text)
{
    for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            strchr("-._~", *c) != NULL)
            fputc(*c, out);
        else
            fprintf(out, "%%%02X", *c);
    }
}

/* What a peer needs to answer the same request: the caller's token, the path and query. */
static int stream_forwarding(struct stream *stream, struct MHD_Connection *connection,
                             const query_t *query)
{
    static const char *const paths[] = {"/api/v1/provisioning-records", "/api/v1/issuance",
                                        "/api/v1/bindings"};
    const char *authorization =
        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    /* auth_check took it: "Bearer" and a space, whatever the case. */
    if (authorization == NULL || strlen(authorization) < 7 ||
        (stream->token = strdup(authorization + 7)) == NULL)
        return -1;
    size_t length = 0;
    FILE *out = open_memstream(&stream->path, &length);
    if (out == NULL)
        return -1;
    fputs(paths[stream->kind], out);
    char separator = '?';
    const char *name;
    json_t *values;
    json_object_foreach((json_t *)query, name, values)
    {
        size_t i;
        json_t *value;
        json_array_foreach(values, i, value)
        {
            fputc(separator, out);
            separator = '&';
            url_encode(out, name);
            fputc('=', out);
            url_encode(out, json_string_value(value));
        }
    }
    return fclose(out) == 0 ? 0 : -1;
}

static enum MHD_Result start_stream(struct api *api, struct MHD_Connection *connection,
                                    enum stream_kind kind, const char *owner)
{
    static const char *const record_parameters[] = {"idFilter", "deviceIdFilter",
                                                    "enrollmentGroupIdFilter", NULL};
    static const char *const issuance_parameters[] = {"deviceIdFilter", "serialFilter", "since",
                                                      "until", NULL};
    static const char *const binding_parameters[] = {"deviceIdFilter", NULL};
    static const char *const issuance_uuids[] = {"deviceIdFilter", NULL};
    const char *const *allowed = kind == STREAM_RECORDS    ? record_parameters
                                 : kind == STREAM_ISSUANCE ? issuance_parameters
                                                           : binding_parameters;
    const char *const *uuids = kind == STREAM_RECORDS ? record_parameters : issuance_uuids;
    query_t *query = query_collect(connection);
    bool ok;
    enum MHD_Result result = check_query(connection, query, allowed, uuids, &ok);
    if (!ok) {
        json_decref(query);
        return result;
    }
    static const char *const times[] = {"since", "until"};
    for (size_t i = 0; kind == STREAM_ISSUANCE && i < 2; i++) {
        json_t *values = json_object_get(query, times[i]);
        struct tm tm;
        const char *text = json_string_value(json_array_get(values, 0));
        const char *end = text != NULL ? strptime(text, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
        if (json_array_size(values) > 1 || (text != NULL && (end == NULL || *end != '\0'))) {
            json_decref(query);
            return queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                               "%s: must be one RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)",
                               times[i]);
        }
    }

    struct stream *stream = calloc(1, sizeof(*stream));
    int fds[2] = {-1, -1};
    if (stream == NULL || (stream->owner = strdup(owner)) == NULL || pipe2(fds, O_CLOEXEC) != 0) {
        if (stream != NULL)
            free(stream->owner);
        free(stream);
        json_decref(query);
        return queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                           "cannot start the stream: %s", strerror(errno));
    }
    stream->api = api;
    stream->kind = kind;
    stream->query = query;
    stream->forwarded =
        cluster_view_enabled(plane_settings(api->plane)) && !stream_fans_out(api, connection);
    if (stream_fans_out(api, connection) && (stream_forwarding(stream, connection, query) != 0)) {
        close(fds[0]);
        close(fds[1]);
        stream_free(stream);
        return queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                           "cannot start the stream");
    }
    stream->fd = fds[1];
    stream->store = plane_store(api->plane);

    struct MHD_Response *response = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, API_STREAM_BLOCK, stream_read, (void *)(intptr_t)fds[0], stream_close);
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&api->lock);
    bool started =
        response != NULL && pthread_create(&thread, &attributes, stream_produce, stream) == 0;
    if (started)
        api->producers++;
    pthread_mutex_unlock(&api->lock);
    pthread_attr_destroy(&attributes);
    if (!started) {
        close(fds[1]);
        stream_free(stream);
        if (response != NULL)
            MHD_destroy_response(response);
        else
            close(fds[0]);
        return queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                           "cannot start the stream");
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson");
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    result = MHD_queue_response(connection, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    return result;
}

static enum MHD_Result method_not_allowed(struct MHD_Connection *connection, const char *method,
                                          const char *url)
{
    return queue_error(connection, MHD_HTTP_METHOD_NOT_ALLOWED, RPC_UNIMPLEMENTED,
                       "%s is not supported on %s", method, url);
}

/* ---- the blocklist and bindings (our extensions) ---- */

static enum MHD_Result route_blocklist(struct api *api, struct MHD_Connection *connection,
                                       const struct request *request, const char *method,
                                       const char *owner)
{
    if (strcmp(method, MHD_HTTP_METHOD_GET) == 0) {
        json_t *entries = plane_blocklist(api->plane, owner);
        struct ndjson out = {0};
        size_t i;
        json_t *entry;
        json_array_foreach(entries, i, entry)
        {
            ndjson_result(&out, json_incref(entry));
        }
        json_decref(entries);
        return queue_ndjson(connection, &out);
    }
    if (strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
        json_error_t error;
        json_t *body = json_loadb(request->body != NULL ? request->body : "", request->length,
                                  JSON_REJECT_DUPLICATES, &error);
        if (body == NULL)
            return queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                               "body: not JSON: %s (line %d, column %d)", error.text, error.line,
                               error.column);
        char err[1024] = "";
        json_t *entry = NULL;
        int status = plane_block(api->plane, owner, body, &entry, err, sizeof(err));
        json_decref(body);
        if (status != PLANE_OK)
            return queue_plane_error(connection, status, err);
        return queue_json(connection, MHD_HTTP_OK, entry);
    }
    if (strcmp(method, MHD_HTTP_METHOD_DELETE) == 0) {
        json_t *ids;
        enum MHD_Result result;
        query_t *query = required_filter(connection, "idFilter", false, "name the entries to lift",
                                         &ids, &result);
        if (query == NULL)
            return result;
        json_int_t count = 0;
        size_t i;
        json_t *value;
        json_array_foreach(ids, i, value)
        {
            char err[512] = "";
            int status =
                plane_unblock(api->plane, owner, json_string_value(value), err, sizeof(err));
            if (status == PLANE_OK) {
                count++;
            } else if (status != PLANE_NOT_FOUND) {
                json_decref(query);
                return queue_plane_error(connection, status, err);
            }
        }
        json_decref(query);
        return queue_json(connection, MHD_HTTP_OK, json_pack("{s:I}", "count", count));
    }
    return method_not_allowed(connection, method, "/api/v1/blocklist");
}

/*
 * Releases device-id bindings of the caller's devices: the id may be claimed
 * by another manufacturer identity (a replaced board, say), and the identity
 * that held it may claim one id again (a board that reset its id).
 */
static enum MHD_Result release_bindings(struct api *api, struct MHD_Connection *connection,
                                        const char *owner)
{
    json_t *ids;
    enum MHD_Result result;
    query_t *query = required_filter(connection, "deviceIdFilter", true,
                                     "name the device ids to release", &ids, &result);
    if (query == NULL)
        return result;
    struct store *store = plane_store(api->plane);
    const struct config_cluster *cluster = &plane_settings(api->plane)->cluster;
    bool clustered = cluster->redis != NULL || cluster->sentinel_count > 0;
    json_int_t count = 0;
    size_t i;
    json_t *value;
    json_array_foreach(ids, i, value)
    {
        char device[UUID_STRING_LENGTH + 1], record_id[UUID_STRING_LENGTH + 1] = "";
        if (uuid_text_normalise(json_string_value(value), device) < 0)
            continue;
        if (clustered && records_binding_get(store, owner, device, record_id) != STORE_OK)
            record_id[0] = '\0';
        int status = records_binding_release(store, owner, device);
        if (status != STORE_OK && status != STORE_NOT_FOUND) {
            json_decref(query);
            return queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                               "the store refused the delete");
        }
        bool released = status == STORE_OK;
        if (clustered) {
            /* The cluster's claim too (and every node's copy, through the release message). */
            char owner_key[RECORDS_OWNER_KEY_LENGTH + 1], err[256];
            bool removed;
            records_owner_key(owner, owner_key);
            if (redis_admin_release(cluster, owner_key, owner, device,
                                    record_id[0] != '\0' ? record_id : NULL, &removed, err,
                                    sizeof(err)) != 0) {
                log_msg(LOG_WARN, "binding release incomplete",
                        "device=%s owner=\"%s\" error=\"%s\"", device, owner, err);
                json_decref(query);
                return queue_error(connection, MHD_HTTP_SERVICE_UNAVAILABLE, RPC_UNAVAILABLE,
                                   "released on this node only: Redis did not answer, retry to "
                                   "release it across the cluster");
            }
            released = released || removed;
        }
        if (!released)
            continue;
        log_msg(LOG_INFO, "binding released", "device=%s owner=\"%s\"", device, owner);
        count++;
    }
    json_decref(query);
    return queue_json(connection, MHD_HTTP_OK, json_pack("{s:I}", "count", count));
}

/* api.admins: owners whose tokens see the node as a whole. */
static bool is_admin(const struct api *api, const char *owner)
{
    for (size_t i = 0; i < api->settings->admin_count; i++) {
        if (strcmp(api->settings->admins[i], owner) == 0)
            return true;
    }
    return false;
}

static enum MHD_Result queue_status(struct api *api, struct MHD_Connection *connection,
                                    const char *owner)
{
    bool admin = is_admin(api, owner);
    json_t *status = plane_status(api->plane, owner, admin);
    if (status == NULL)
        return queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                           "status unavailable");
    /* The live nodes carry node-wide figures only, and only administrators see those. */
    if (admin && cluster_view_enabled(plane_settings(api->plane))) {
        char err[256];
        json_t *nodes = cluster_view_nodes(plane_settings(api->plane), err, sizeof(err));
        json_object_set_new(status, "nodes", nodes != NULL ? nodes : json_array());
        if (nodes == NULL)
            json_object_set_new(status, "nodesError", json_string(err));
    }
    return queue_json(connection, MHD_HTTP_OK, status);
}

/* Routes of the document collections: /api/v1/enrollment-groups and /api/v1/hubs. */
static enum MHD_Result route_documents(struct api *api, struct MHD_Connection *connection,
                                       const struct request *request, enum kind kind,
                                       const char *rest, const char *method, const char *url,
                                       const char *owner)
{
    if (rest[0] == '\0') {
        if (strcmp(method, MHD_HTTP_METHOD_GET) == 0)
            return list_documents(api, connection, kind, owner);
        if (strcmp(method, MHD_HTTP_METHOD_POST) == 0)
            return put_document(api, connection, request, kind, NULL, owner);
        if (strcmp(method, MHD_HTTP_METHOD_DELETE) == 0)
            return delete_documents(api, connection, kind, owner);
        return method_not_allowed(connection, method, url);
    }
    if (rest[0] == '/' && rest[1] != '\0' && strchr(rest + 1, '/') == NULL) {
        if (strcmp(method, MHD_HTTP_METHOD_PUT) == 0)
            return put_document(api, connection, request, kind, rest + 1, owner);
        return method_not_allowed(connection, method, url);
    }
    return queue_error(connection, MHD_HTTP_NOT_FOUND, RPC_NOT_FOUND, "no route %s", url);
}

/* 401 with the reason (which never quotes the token). */
static enum MHD_Result queue_unauthenticated(struct MHD_Connection *connection, const char *reason)
{
    struct MHD_Response *response = NULL;
    char *text = NULL;
    json_t *body = json_pack("{s:i, s:s}", "code", RPC_UNAUTHENTICATED, "message", reason);
    if (body != NULL)
        text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text != NULL)
        response = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (response == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(response, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result result = MHD_queue_response(connection, MHD_HTTP_UNAUTHORIZED, response);
    MHD_destroy_response(response);
    return result;
}

static int64_t now_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

/*
 * api.quotas.requestsPerSecond and requestBurst, per owner (GCRA). True when
 * the request may go on; else *retry_s is when the next one may.
 */
static bool rate_allow(struct api *api, const char *owner, unsigned *retry_s)
{
    int64_t interval = 1000000 / (int64_t)api->settings->quota_requests_per_second;
    int64_t tolerance = interval * ((int64_t)api->settings->quota_request_burst - 1);
    int64_t now = now_us();
    bool allowed = true;
    pthread_mutex_lock(&api->rates_lock);
    if (json_object_size(api->rates) >= API_RATE_TABLE_LIMIT) {
        const char *key;
        json_t *value;
        void *next;
        json_object_foreach_safe(api->rates, next, key, value)
        {
            if (json_integer_value(value) < now)
                json_object_del(api->rates, key);
        }
    }
    json_t *entry = json_object_get(api->rates, owner);
    int64_t arrival = entry != NULL ? json_integer_value(entry) : now;
    if (arrival < now)
        arrival = now;
    if (arrival - now > tolerance) {
        allowed = false;
        *retry_s = (unsigned)((arrival - now - tolerance + 999999) / 1000000);
    } else {
        json_object_set_new(api->rates, owner, json_integer(arrival + interval));
    }
    pthread_mutex_unlock(&api->rates_lock);
    return allowed;
}

/*
 * The first call of an /api/v1 request, when its headers are in and no body
 * byte has been read: the token is checked here (a caller without a valid
 * one never gets its body read or buffered), then the owner's request rate.
 * Fills request->owner, or queues the refusal in *result and returns false.
 */
static bool admit_api_request(struct api *api, struct MHD_Connection *connection,
                              struct request *request, enum MHD_Result *result)
{
    char reason[256];
    const char *authorization =
        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth_check(api->auth, authorization, time(NULL), &request->owner, reason, sizeof(reason)) !=
        0) {
        *result = queue_unauthenticated(connection, reason);
        return false;
    }
    unsigned retry_s = 1;
    if (!rate_allow(api, request->owner, &retry_s)) {
        char message[160];
        snprintf(message, sizeof(message),
                 "{\"code\":%d,\"message\":\"requests: more than %u per second for this owner "
                 "(api.quotas.requestsPerSecond); retry in %u s\"}\n",
                 RPC_RESOURCE_EXHAUSTED, api->settings->quota_requests_per_second, retry_s);
        char retry[16];
        snprintf(retry, sizeof(retry), "%u", retry_s);
        struct MHD_Response *response =
            MHD_create_response_from_buffer(strlen(message), message, MHD_RESPMEM_MUST_COPY);
        if (response == NULL) {
            *result = MHD_NO;
            return false;
        }
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, retry);
        *result = MHD_queue_response(connection, MHD_HTTP_TOO_MANY_REQUESTS, response);
        MHD_destroy_response(response);
        return false;
    }
    return true;
}

static enum MHD_Result route_api(struct api *api, struct MHD_Connection *connection,
                                 const struct request *request, const char *url, const char *method)
{
    const char *owner = request->owner;
    static const char groups[] = "/api/v1/enrollment-groups";
    static const char hubs[] = "/api/v1/hubs";
    bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
    enum MHD_Result result;
    if (strncmp(url, groups, sizeof(groups) - 1) == 0)
        result = route_documents(api, connection, request, KIND_GROUP, url + sizeof(groups) - 1,
                                 method, url, owner);
    else if (strncmp(url, hubs, sizeof(hubs) - 1) == 0)
        result = route_documents(api, connection, request, KIND_HUB, url + sizeof(hubs) - 1, method,
                                 url, owner);
    else if (strcmp(url, "/api/v1/provisioning-records") == 0)
        result = get ? start_stream(api, connection, STREAM_RECORDS, owner)
                     : method_not_allowed(connection, method, url);
    else if (strcmp(url, "/api/v1/issuance") == 0)
        result = get ? start_stream(api, connection, STREAM_ISSUANCE, owner)
                     : method_not_allowed(connection, method, url);
    else if (strcmp(url, "/api/v1/bindings") == 0)
        result = get ? start_stream(api, connection, STREAM_BINDINGS, owner)
                 : strcmp(method, MHD_HTTP_METHOD_DELETE) == 0
                     ? release_bindings(api, connection, owner)
                     : method_not_allowed(connection, method, url);
    else if (strcmp(url, "/api/v1/blocklist") == 0)
        result = route_blocklist(api, connection, request, method, owner);
    else if (strcmp(url, "/api/v1/status") == 0)
        result = get ? queue_status(api, connection, owner)
                     : method_not_allowed(connection, method, url);
    else
        result = queue_error(connection, MHD_HTTP_NOT_FOUND, RPC_NOT_FOUND, "no route %s", url);
    return result;
}

static enum MHD_Result route(struct api *api, struct MHD_Connection *connection,
                             const struct request *request, const char *url, const char *method)
{
    bool get =
        strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    if (strcmp(url, "/healthz") == 0)
        return get ? queue_text(connection, MHD_HTTP_OK, "text/plain", "ok\n", 3)
                   : method_not_allowed(connection, method, url);
    if (strcmp(url, "/readyz") == 0) {
        if (!get)
            return method_not_allowed(connection, method, url);
        return plane_ready(api->plane)
                   ? queue_text(connection, MHD_HTTP_OK, "text/plain", "ready\n", 6)
                   : queue_text(connection, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain",
                                "not ready\n", 10);
    }
    if (strcmp(url, "/metrics") == 0) {
        if (!get)
            return method_not_allowed(connection, method, url);
        char *metrics = plane_metrics(api->plane);
        if (metrics == NULL)
            return queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                               "metrics unavailable");
        enum MHD_Result result =
            queue_text(connection, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", metrics,
                       strlen(metrics));
        free(metrics);
        return result;
    }
    if (request != NULL && request->owner != NULL && strncmp(url, "/api/v1/", 8) == 0)
        return route_api(api, connection, request, url, method);
    return queue_error(connection, MHD_HTTP_NOT_FOUND, RPC_NOT_FOUND, "no route %s", url);
}

/* /healthz, /readyz and /metrics, on either listener; false when url is none of them. */
static bool route_probe(struct api *api, struct MHD_Connection *connection, const char *url,
                        const char *method, enum MHD_Result *result)
{
    if (strcmp(url, "/healthz") != 0 && strcmp(url, "/readyz") != 0 && strcmp(url, "/metrics") != 0)
        return false;
    *result = route(api, connection, NULL, url, method);
    return true;
}

/* The peer presented a certificate chain that verifies against the configured client CA. */
static bool client_certificate_valid(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (info == NULL || info->tls_session == NULL)
        return false;
    gnutls_session_t session = (gnutls_session_t)info->tls_session;
    unsigned int count = 0;
    unsigned int status = 0;
    if (gnutls_certificate_get_peers(session, &count) == NULL || count == 0)
        return false;
    return gnutls_certificate_verify_peers2(session, &status) == GNUTLS_E_SUCCESS && status == 0;
}

/* Connection tracking: the deadline of a whole request (api.requestTimeout). */

static struct api_conn *conn_of(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info != NULL ? info->socket_context : NULL;
}

/* From here the request is answered (or its response streams): its deadline no longer runs. */
static void conn_answering(struct api *api, struct MHD_Connection *connection)
{
    struct api_conn *conn = conn_of(connection);
    if (conn == NULL)
        return;
    pthread_mutex_lock(&api->conns_lock);
    conn->answering = true;
    pthread_mutex_unlock(&api->conns_lock);
}

static void notify_connection(void *user, struct MHD_Connection *connection, void **socket_context,
                              enum MHD_ConnectionNotificationCode code)
{
    struct api_listener *listener = user;
    struct api *api = listener->api;
    struct api_conn *conn = *socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn = info != NULL ? calloc(1, sizeof(*conn)) : NULL;
        if (conn == NULL)
            return;
        conn->socket = fcntl(info->connect_fd, F_DUPFD_CLOEXEC, 0);
        if (conn->socket < 0) {
            free(conn);
            return;
        }
        conn->timeout_s = listener->timeout_s;
        clock_gettime(CLOCK_MONOTONIC, &conn->since);
        pthread_mutex_lock(&api->conns_lock);
        conn->next = api->conns;
        if (api->conns != NULL)
            api->conns->prev = conn;
        api->conns = conn;
        pthread_mutex_unlock(&api->conns_lock);
        *socket_context = conn;
        return;
    }
    if (conn == NULL)
        return;
    pthread_mutex_lock(&api->conns_lock);
    if (conn->prev != NULL)
        conn->prev->next = conn->next;
    else
        api->conns = conn->next;
    if (conn->next != NULL)
        conn->next->prev = conn->prev;
    pthread_mutex_unlock(&api->conns_lock);
    close(conn->socket);
    free(conn);
    *socket_context = NULL;
}

/*
 * Ends connections whose request is not in within its listener's deadline:
 * headers that never finish, a body that trickles, a keep-alive connection
 * left idle. A response that streams out is not cut.
 */
static void *reaper_run(void *user)
{
    struct api *api = user;
    pthread_mutex_lock(&api->conns_lock);
    while (!api->stopping) {
        struct timespec wake;
        clock_gettime(CLOCK_REALTIME, &wake);
        wake.tv_sec += 1;
        pthread_cond_timedwait(&api->reaper_wake, &api->conns_lock, &wake);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        unsigned reaped = 0;
        for (struct api_conn *conn = api->conns; conn != NULL; conn = conn->next) {
            if (conn->answering || conn->reaped ||
                now.tv_sec - conn->since.tv_sec < (time_t)conn->timeout_s)
                continue;
            shutdown(conn->socket, SHUT_RDWR);
            conn->reaped = true;
            reaped++;
        }
        if (reaped > 0)
            log_msg(LOG_WARN, "api connections past their request deadline closed", "count=%u",
                    reaped);
    }
    pthread_mutex_unlock(&api->conns_lock);
    return NULL;
}

static bool is_probe(const char *url)
{
    return strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0;
}

/*
 * The first call of a request (headers in, no body read): every refusal
 * that does not need the body is made here, so a caller without a client
 * certificate or a valid token never has its body read.
 */
static enum MHD_Result handle_headers(struct api *api, struct MHD_Connection *connection,
                                      const char *url, struct request *request)
{
    enum MHD_Result result = MHD_YES;
    request->refused = true;
    /* With api.clientCA every route but the load balancer's probes needs a client certificate. */
    if (api->client_ca_pem != NULL && !is_probe(url) && !client_certificate_valid(connection)) {
        conn_answering(api, connection);
        return queue_error(connection, MHD_HTTP_UNAUTHORIZED, RPC_UNAUTHENTICATED,
                           "a client certificate issued by api.clientCA is required");
    }
    if (strncmp(url, "/api/v1/", 8) == 0 && !admit_api_request(api, connection, request, &result)) {
        conn_answering(api, connection);
        return result;
    }
    const char *declared =
        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (declared != NULL && strtoull(declared, NULL, 10) > API_BODY_LIMIT) {
        conn_answering(api, connection);
        return queue_error(connection, MHD_HTTP_CONTENT_TOO_LARGE, RPC_RESOURCE_EXHAUSTED,
                           "body: larger than %d bytes", API_BODY_LIMIT);
    }
    request->refused = false;
    return MHD_YES;
}

static enum MHD_Result handle(void *user, struct MHD_Connection *connection, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **context)
{
    struct api *api = ((struct api_listener *)user)->api;
    struct request *request = *context;
    if (request == NULL) {
        if ((request = calloc(1, sizeof(*request))) == NULL)
            return MHD_NO;
        *context = request;
        return handle_headers(api, connection, url, request);
    }
    if (*upload_data_size > 0) {
        size_t length = *upload_data_size;
        *upload_data_size = 0;
        /* Only an authenticated /api/v1 request has a body worth keeping. */
        if (request->refused || request->owner == NULL)
            return MHD_YES;
        if (request->too_large || request->length + length > API_BODY_LIMIT) {
            request->too_large = true;
            return MHD_YES;
        }
        char *grown = realloc(request->body, request->length + length + 1);
        if (grown == NULL)
            return MHD_NO;
        memcpy(grown + request->length, upload_data, length);
        request->body = grown;
        request->length += length;
        request->body[request->length] = '\0';
        return MHD_YES;
    }
    if (request->refused)
        return MHD_YES;
    conn_answering(api, connection);
    if (request->too_large)
        return queue_error(connection, MHD_HTTP_CONTENT_TOO_LARGE, RPC_RESOURCE_EXHAUSTED,
                           "body: larger than %d bytes", API_BODY_LIMIT);
    return route(api, connection, request, url, method);
}

/* The health listener: the probes and metrics only, no token, no body. */
static enum MHD_Result handle_health(void *user, struct MHD_Connection *connection, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **context)
{
    struct api *api = ((struct api_listener *)user)->api;
    if (*context == NULL) {
        *context = connection; /* any non-NULL value: the headers are in */
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    conn_answering(api, connection);
    enum MHD_Result result;
    if (route_probe(api, connection, url, method, &result))
        return result;
    return queue_error(connection, MHD_HTTP_NOT_FOUND, RPC_NOT_FOUND,
                       "no route %s (this listener serves /healthz, /readyz and /metrics)", url);
}

static void request_completed(void *user, struct MHD_Connection *connection, void **context,
                              enum MHD_RequestTerminationCode code)
{
    struct api *api = ((struct api_listener *)user)->api;
    struct api_conn *conn = conn_of(connection);
    if (conn != NULL) {
        /* A keep-alive connection's next request gets a deadline of its own. */
        pthread_mutex_lock(&api->conns_lock);
        conn->answering = false;
        clock_gettime(CLOCK_MONOTONIC, &conn->since);
        pthread_mutex_unlock(&api->conns_lock);
    }
    struct request *request = *context;
    if (request == NULL || (void *)request == (void *)connection) {
        *context = NULL;
        return;
    }
    free(request->owner);
    free(request->body);
    free(request);
    *context = NULL;
}

static char *read_pem(const char *path, char *err, size_t err_length)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        snprintf(err, err_length, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = malloc(API_PEM_LIMIT + 1);
    size_t length = text != NULL ? fread(text, 1, API_PEM_LIMIT + 1, file) : 0;
    fclose(file);
    if (text == NULL || length == 0 || length > API_PEM_LIMIT) {
        snprintf(err, err_length, "%s: empty, unreadable or larger than 1 MiB", path);
        free(text);
        return NULL;
    }
    text[length] = '\0';
    return text;
}

/* Parses HOST:PORT (an IP address) into address; loopback tells whether it is 127/8 or ::1. */
static int parse_listen(const char *key, const char *listen, struct sockaddr_storage *address,
                        bool *loopback, char *err, size_t err_length)
{
    char host[64];
    const char *colon = strrchr(listen, ':');
    const char *start = listen;
    size_t host_length = colon != NULL ? (size_t)(colon - listen) : 0;
    if (listen[0] == '[' && host_length >= 2 && colon[-1] == ']') {
        start++;
        host_length -= 2;
    }
    char *end = NULL;
    long port = colon != NULL ? strtol(colon + 1, &end, 10) : 0;
    if (colon == NULL || host_length == 0 || host_length >= sizeof(host) || end == colon + 1 ||
        *end != '\0' || port < 1 || port > 65535) {
        snprintf(err, err_length, "%s: \"%s\" must be HOST:PORT", key, listen);
        return -1;
    }
    memcpy(host, start, host_length);
    host[host_length] = '\0';
    memset(address, 0, sizeof(*address));
    struct sockaddr_in *v4 = (struct sockaddr_in *)address;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)address;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
        return 0;
    }
    snprintf(err, err_length, "%s: \"%s\": the host must be an IP address", key, listen);
    return -1;
}

__attribute__((format(printf, 2, 0))) static void log_mhd(void *user, const char *fmt, va_list args)
{
    char message[512];
    vsnprintf(message, sizeof(message), fmt, args);
    message[strcspn(message, "\r\n")] = '\0';
    for (char *c = message; *c != '\0'; c++) {
        if (*c == '"')
            *c = '\'';
    }
    log_msg(LOG_WARN, "api", "error=\"%s\"", message);
}

static void api_free(struct api *api)
{
    auth_free(api->auth);
    free(api->cert_pem);
    free(api->client_ca_pem);
    if (api->key_pem != NULL) {
        explicit_bzero(api->key_pem, strlen(api->key_pem));
        free(api->key_pem);
    }
    json_decref(api->rates);
    pthread_mutex_destroy(&api->lock);
    pthread_cond_destroy(&api->idle);
    pthread_mutex_destroy(&api->conns_lock);
    pthread_cond_destroy(&api->reaper_wake);
    pthread_mutex_destroy(&api->rates_lock);
    free(api);
}

static uint16_t port_of(const struct sockaddr_storage *address)
{
    return address->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)address)->sin6_port)
                                          : ntohs(((const struct sockaddr_in *)address)->sin_port);
}

/*
 * The health listener (api.healthListen): its own small connection budget
 * and deadline, one polling thread, so a flood of the API's connections
 * never keeps a load balancer from its probes. Same TLS as the API, no
 * client certificate.
 */
static int start_health(struct api *api, char *err, size_t err_length)
{
    const struct config_api *settings = api->settings;
    struct sockaddr_storage address;
    bool loopback = false;
    if (parse_listen("api.healthListen", settings->health_listen, &address, &loopback, err,
                     err_length) < 0)
        return -1;
    bool tls = api->cert_pem != NULL;
    if (!tls && !loopback) {
        snprintf(err, err_length,
                 "api.healthListen: %s is not a loopback address: plain HTTP is refused there; "
                 "set api.certificate and api.key",
                 settings->health_listen);
        return -1;
    }
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG |
                     (address.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0) | (tls ? MHD_USE_TLS : 0);
    struct MHD_OptionItem tls_options[] = {
        {tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, api->cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, api->key_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    api->health_listener = (struct api_listener){api, API_HEALTH_TIMEOUT_S};
    api->health_daemon = MHD_start_daemon(
        flags, port_of(&address), NULL, NULL, handle_health, &api->health_listener,
        MHD_OPTION_EXTERNAL_LOGGER, log_mhd, api, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)API_HEALTH_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)API_HEALTH_CONNECTIONS_PER_SOURCE, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)API_HEALTH_TIMEOUT_S, MHD_OPTION_NOTIFY_CONNECTION, notify_connection,
        &api->health_listener, MHD_OPTION_NOTIFY_COMPLETED, request_completed,
        &api->health_listener, MHD_OPTION_ARRAY, tls_options, MHD_OPTION_END);
    if (api->health_daemon == NULL) {
        snprintf(err, err_length, "api.healthListen: cannot serve on %s (address in use?)",
                 settings->health_listen);
        return -1;
    }
    log_msg(LOG_INFO, "api health listening", "addr=%s tls=%s", settings->health_listen,
            tls ? "yes" : "no");
    return 0;
}

struct api *api_start(const struct config *config, struct plane *plane, char *err,
                      size_t err_length)
{
    const struct config_api *settings = &config->api;
    struct sockaddr_storage address;
    bool loopback = false;
    if (settings->listen == NULL) {
        snprintf(err, err_length, "api.listen: required");
        return NULL;
    }
    if (parse_listen("api.listen", settings->listen, &address, &loopback, err, err_length) < 0)
        return NULL;
    bool tls = settings->cert_file != NULL;
    if (!tls && !loopback) {
        snprintf(err, err_length,
                 "api.listen: %s is not a loopback address: plain HTTP is refused there; set "
                 "api.certificate and api.key",
                 settings->listen);
        return NULL;
    }
    if (settings->client_ca_file != NULL && !tls) {
        snprintf(err, err_length, "api.clientCA: needs api.certificate and api.key (HTTPS)");
        return NULL;
    }
    if ((settings->jwks_file == NULL && settings->jwks_url == NULL &&
         settings->authority == NULL) ||
        settings->issuer == NULL) {
        snprintf(err, err_length,
                 "api.issuer and one of api.jwks, api.jwksUrl, api.authority: "
                 "required");
        return NULL;
    }

    struct api *api = calloc(1, sizeof(*api));
    if (api == NULL) {
        snprintf(err, err_length, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&api->lock, NULL);
    pthread_cond_init(&api->idle, NULL);
    pthread_mutex_init(&api->conns_lock, NULL);
    pthread_cond_init(&api->reaper_wake, NULL);
    pthread_mutex_init(&api->rates_lock, NULL);
    api->plane = plane;
    api->settings = settings;
    api->rates = json_object();
    char problem[512];
    api->auth = auth_open(settings, problem, sizeof(problem));
    if (api->auth == NULL || api->rates == NULL) {
        snprintf(err, err_length, "api.%s: %s",
                 settings->jwks_file != NULL  ? "jwks"
                 : settings->jwks_url != NULL ? "jwksUrl"
                                              : "authority",
                 api->rates == NULL ? "out of memory" : problem);
        api_free(api);
        return NULL;
    }
    if (tls && ((api->cert_pem = read_pem(settings->cert_file, err, err_length)) == NULL ||
                (api->key_pem = read_pem(settings->key_file, err, err_length)) == NULL)) {
        api_free(api);
        return NULL;
    }
    if (settings->client_ca_file != NULL &&
        (api->client_ca_pem = read_pem(settings->client_ca_file, err, err_length)) == NULL) {
        api_free(api);
        return NULL;
    }
    if (pthread_create(&api->reaper, NULL, reaper_run, api) != 0) {
        snprintf(err, err_length, "cannot start the API's deadline thread");
        api_free(api);
        return NULL;
    }
    api->reaper_started = true;

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG | (address.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0) |
                     (tls ? MHD_USE_TLS : 0);
    struct MHD_OptionItem tls_options[] = {
        {tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, api->cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, api->key_pem},
        {api->client_ca_pem != NULL ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0,
         api->client_ca_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    api->listener = (struct api_listener){api, settings->request_timeout_s};
    api->daemon = MHD_start_daemon(
        flags, port_of(&address), NULL, NULL, handle, &api->listener, MHD_OPTION_EXTERNAL_LOGGER,
        log_mhd, api, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&address, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)settings->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)settings->max_connections_per_source, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)API_CONNECTION_TIMEOUT_S, MHD_OPTION_NOTIFY_CONNECTION, notify_connection,
        &api->listener, MHD_OPTION_NOTIFY_COMPLETED, request_completed, &api->listener,
        MHD_OPTION_ARRAY, tls_options, MHD_OPTION_END);
    if (api->daemon == NULL) {
        snprintf(err, err_length, "api.listen: cannot serve on %s (address in use, or bad %s)",
                 settings->listen, tls ? "certificate or key" : "address");
        api_stop(api);
        return NULL;
    }
    if (settings->health_listen != NULL && start_health(api, err, err_length) != 0) {
        api_stop(api);
        return NULL;
    }
    log_msg(LOG_INFO, "api listening",
            "addr=%s tls=%s client_certificates=%s connections=%u per_source=%u "
            "request_timeout_s=%u",
            settings->listen, tls ? "yes" : "no", api->client_ca_pem != NULL ? "required" : "no",
            settings->max_connections, settings->max_connections_per_source,
            settings->request_timeout_s);
    return api;
}

void api_stop(struct api *api)
{
    if (api == NULL)
        return;
    if (api->health_daemon != NULL)
        MHD_stop_daemon(api->health_daemon);
    if (api->daemon != NULL)
        MHD_stop_daemon(api->daemon);
    pthread_mutex_lock(&api->lock);
    while (api->producers > 0)
        pthread_cond_wait(&api->idle, &api->lock);
    pthread_mutex_unlock(&api->lock);
    if (api->reaper_started) {
        pthread_mutex_lock(&api->conns_lock);
        api->stopping = true;
        pthread_cond_signal(&api->reaper_wake);
        pthread_mutex_unlock(&api->conns_lock);
        pthread_join(api->reaper, NULL);
    }
    api_free(api);
}
