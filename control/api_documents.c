/*
 * api_documents: the routes of the documents the plane keeps (enrollment
 * groups, hubs), of the blocklist and of device-id bindings. Ownership is
 * checked here; the plane validates, stores and publishes (control/plane.h).
 */
#include "control/api_internal.h"

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
            return api_same_owner(kind_owner(config, kind, i), owner) ? (long)i : -1;
    }
    return -1;
}

static enum MHD_Result list_documents(struct api *api, struct MHD_Connection *connection,
                                      enum kind kind, const char *owner)
{
    static const char *const allowed[] = {"idFilter", NULL};
    query_t *query = api_query_collect(connection);
    bool ok;
    enum MHD_Result result = api_check_query(connection, query, allowed, allowed, &ok);
    if (!ok) {
        json_decref(query);
        return result;
    }
    struct ndjson out = {0};
    const struct config *config = plane_config_acquire(api->plane);
    for (size_t i = 0; i < kind_count(config, kind); i++) {
        if (!api_same_owner(kind_owner(config, kind, i), owner) ||
            !api_query_matches(query, "idFilter", kind_id(config, kind, i)))
            continue;
        api_ndjson_result(&out, kind == KIND_GROUP ? model_group_to_api(&config->groups[i])
                                                   : model_hub_to_api(&config->hubs[i]));
    }
    plane_config_release(api->plane, config);
    json_decref(query);
    return api_queue_ndjson(connection, &out);
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
        *result = api_queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                                  "body: not JSON: %s (line %d, column %d)", error.text, error.line,
                                  error.column);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        *result = api_queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                                  "body: must be a JSON object");
        return NULL;
    }
    bool wrong = false;
    const char *named_owner = doc_string(doc, "owner", &wrong);
    const char *id = doc_id(doc, kind, &wrong);
    if (named_owner != NULL && strcmp(named_owner, owner) != 0) {
        json_decref(doc);
        *result =
            api_queue_error(connection, MHD_HTTP_FORBIDDEN, RPC_PERMISSION_DENIED,
                            "owner: the token's owner may not write documents of another owner");
        return NULL;
    }
    if (path_id != NULL && id != NULL && strcasecmp(id, path_id) != 0) {
        json_decref(doc);
        *result = api_queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                                  "id: \"%s\" differs from the id in the path", id);
        return NULL;
    }
    /* A generated id is random (version 4): never one that existed, whoever owned it. */
    char generated[UUID_STRING_LENGTH + 1];
    if (path_id == NULL && id == NULL && !wrong) {
        struct dps_uuid uuid;
        if (uuid_random(&uuid) != 0) {
            json_decref(doc);
            *result = api_queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
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
        *result = api_queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                                  "out of memory");
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
        if (hub != NULL && !api_same_owner(hub->owner, owner))
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
        return api_queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
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
        return api_queue_error(connection, MHD_HTTP_NOT_FOUND, RPC_NOT_FOUND, "no %s %s",
                               kind_name(kind), path_id);
    }
    if (foreign_hub >= 0) {
        const char *hub_id =
            json_string_value(json_array_get(json_object_get(doc, "hubIds"), (size_t)foreign_hub));
        result = api_queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                                 "hubIds[%ld]: unknown hub \"%s\"", foreign_hub, hub_id);
        json_decref(doc);
        return result;
    }
    char err[1024] = "";
    int status = kind == KIND_GROUP ? plane_put_group(api->plane, doc, create, err, sizeof(err))
                                    : plane_put_hub(api->plane, doc, create, err, sizeof(err));
    if (status != PLANE_OK) {
        json_decref(doc);
        return api_queue_plane_error(connection, status, err);
    }
    /* Stored, so id is the document's valid UUID; doc holds it until here. */
    log_msg(LOG_INFO, create ? "api created" : "api replaced", "kind=\"%s\" id=%s owner=\"%s\"",
            kind_name(kind), id, owner);
    json_t *stored = stored_document(api, kind, id);
    json_decref(doc);
    if (stored == NULL)
        return api_queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                               "the %s was stored but is not in force", kind_name(kind));
    return api_queue_json(connection, MHD_HTTP_OK, stored);
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
    query_t *query = api_query_collect(connection);
    bool ok;
    *result = api_check_query(connection, query, allowed, uuids ? allowed : no_uuids, &ok);
    if (!ok) {
        json_decref(query);
        return NULL;
    }
    *values = json_object_get(query, name);
    if (json_array_size(*values) == 0) {
        json_decref(query);
        *result = api_queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
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
            result = api_queue_plane_error(connection, status, err);
            json_decref(query);
            return result;
        }
        log_msg(LOG_INFO, "api deleted", "kind=\"%s\" id=%s owner=\"%s\"", kind_name(kind), id,
                owner);
        count++;
    }
    json_decref(query);
    return api_queue_json(connection, MHD_HTTP_OK, json_pack("{s:I}", "count", count));
}

/* ---- the blocklist and bindings (our extensions) ---- */

enum MHD_Result api_route_blocklist(struct api *api, struct MHD_Connection *connection,
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
            api_ndjson_result(&out, json_incref(entry));
        }
        json_decref(entries);
        return api_queue_ndjson(connection, &out);
    }
    if (strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
        json_error_t error;
        json_t *body = json_loadb(request->body != NULL ? request->body : "", request->length,
                                  JSON_REJECT_DUPLICATES, &error);
        if (body == NULL)
            return api_queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                                   "body: not JSON: %s (line %d, column %d)", error.text,
                                   error.line, error.column);
        char err[1024] = "";
        json_t *entry = NULL;
        int status = plane_block(api->plane, owner, body, &entry, err, sizeof(err));
        json_decref(body);
        if (status != PLANE_OK)
            return api_queue_plane_error(connection, status, err);
        return api_queue_json(connection, MHD_HTTP_OK, entry);
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
                return api_queue_plane_error(connection, status, err);
            }
        }
        json_decref(query);
        return api_queue_json(connection, MHD_HTTP_OK, json_pack("{s:I}", "count", count));
    }
    return api_method_not_allowed(connection, method, "/api/v1/blocklist");
}

/*
 * Releases device-id bindings of the caller's devices: the id may be claimed
 * by another manufacturer identity (a replaced board, say), and the identity
 * that held it may claim one id again (a board that reset its id).
 */
enum MHD_Result api_release_bindings(struct api *api, struct MHD_Connection *connection,
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
        if (api_uuid_text_normalise(json_string_value(value), device) < 0)
            continue;
        if (clustered && records_binding_get(store, owner, device, record_id) != STORE_OK)
            record_id[0] = '\0';
        int status = records_binding_release(store, owner, device);
        if (status != STORE_OK && status != STORE_NOT_FOUND) {
            json_decref(query);
            return api_queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
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
                return api_queue_error(connection, MHD_HTTP_SERVICE_UNAVAILABLE, RPC_UNAVAILABLE,
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
    return api_queue_json(connection, MHD_HTTP_OK, json_pack("{s:I}", "count", count));
}

/* Routes of the document collections: /api/v1/enrollment-groups and /api/v1/hubs. */
enum MHD_Result api_route_documents(struct api *api, struct MHD_Connection *connection,
                                    const struct request *request, enum kind kind, const char *rest,
                                    const char *method, const char *url, const char *owner)
{
    if (rest[0] == '\0') {
        if (strcmp(method, MHD_HTTP_METHOD_GET) == 0)
            return list_documents(api, connection, kind, owner);
        if (strcmp(method, MHD_HTTP_METHOD_POST) == 0)
            return put_document(api, connection, request, kind, NULL, owner);
        if (strcmp(method, MHD_HTTP_METHOD_DELETE) == 0)
            return delete_documents(api, connection, kind, owner);
        return api_method_not_allowed(connection, method, url);
    }
    if (rest[0] == '/' && rest[1] != '\0' && strchr(rest + 1, '/') == NULL) {
        if (strcmp(method, MHD_HTTP_METHOD_PUT) == 0)
            return put_document(api, connection, request, kind, rest + 1, owner);
        return api_method_not_allowed(connection, method, url);
    }
    return api_queue_error(connection, MHD_HTTP_NOT_FOUND, RPC_NOT_FOUND, "no route %s", url);
}
