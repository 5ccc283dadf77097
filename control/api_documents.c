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
#include "common/error.h"
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

/* A hub's id in the API: its record id, which is its hubId unless the API generated one. */
static const char *hub_record_id(const struct config_hub *hub)
{
    return hub->record_id != NULL ? hub->record_id : hub->id;
}

/*
 * True when id names document i: a group's id; a hub's record id, or its
 * hubId (which our first API called a hub's id).
 */
static bool names_document(const struct config *config, enum kind kind, size_t i, const char *id)
{
    return strcasecmp(kind_id(config, kind, i), id) == 0 ||
           (kind == KIND_HUB && strcasecmp(hub_record_id(&config->hubs[i]), id) == 0);
}

/*
 * The index of the caller's document id names, or -1. Only the caller's
 * documents are looked at: a hub's record id may be spelt like another
 * owner's hubId, and that other hub must neither hide the caller's nor be
 * found. A hub's record id is preferred to a hubId (the reference's ids).
 */
static long find_owned(const struct config *config, enum kind kind, const char *id,
                       const char *owner)
{
    long by_hub_id = -1;
    for (size_t i = 0; i < kind_count(config, kind); i++) {
        if (!api_same_owner(kind_owner(config, kind, i), owner))
            continue;
        if (kind == KIND_GROUP && strcasecmp(kind_id(config, kind, i), id) == 0)
            return (long)i;
        if (kind == KIND_HUB && strcasecmp(hub_record_id(&config->hubs[i]), id) == 0)
            return (long)i;
        if (kind == KIND_HUB && by_hub_id < 0 && strcasecmp(config->hubs[i].id, id) == 0)
            by_hub_id = (long)i;
    }
    return by_hub_id;
}

/* The lists' filters: the reference's GetEnrollmentGroupsRequest and GetHubsRequest. */
static const char *const GROUP_FILTERS[] = {"idFilter", "hubIdFilter",
                                            "attestationMechanismX509CertificateNames", NULL};
static const char *const HUB_FILTERS[] = {"idFilter", "hubIdFilter", NULL};

/*
 * Filters are ORed, as in the reference: a document is listed when no filter
 * is given or any one value of any filter matches it. hubIdFilter matches a
 * group naming the hub, and attestationMechanismX509CertificateNames a
 * group's leadCertificateName (exactly, as the reference's store does).
 */
static bool document_listed(const struct config *config, enum kind kind, size_t i,
                            const query_t *query)
{
    const char *const *filters = kind == KIND_GROUP ? GROUP_FILTERS : HUB_FILTERS;
    bool filtered = false;
    for (size_t f = 0; filters[f] != NULL; f++)
        filtered = filtered || json_array_size(json_object_get(query, filters[f])) > 0;
    if (!filtered)
        return true;
    if (kind == KIND_HUB) {
        const struct config_hub *hub = &config->hubs[i];
        return api_query_lists(query, "idFilter", hub_record_id(hub)) ||
               api_query_lists(query, "idFilter", hub->id) ||
               api_query_lists(query, "hubIdFilter", hub->id);
    }
    const struct config_group *group = &config->groups[i];
    bool listed = api_query_lists(query, "idFilter", group->id);
    for (size_t h = 0; !listed && h < group->hub_count; h++)
        listed = api_query_lists(query, "hubIdFilter", group->hub_ids[h]);
    size_t n;
    json_t *name;
    json_array_foreach(json_object_get(query, "attestationMechanismX509CertificateNames"), n, name)
    {
        listed =
            listed || (group->lead_certificate_name != NULL && json_string_value(name)[0] != '\0' &&
                       strcmp(group->lead_certificate_name, json_string_value(name)) == 0);
    }
    return listed;
}

static enum MHD_Result list_documents(struct api *api, struct MHD_Connection *connection,
                                      enum kind kind, const char *owner)
{
    static const char *const uuid_filters[] = {"idFilter", "hubIdFilter", NULL};
    query_t *query = api_query_collect(connection);
    bool ok;
    enum MHD_Result result = api_check_query(
        connection, query, kind == KIND_GROUP ? GROUP_FILTERS : HUB_FILTERS, uuid_filters, &ok);
    if (!ok) {
        json_decref(query);
        return result;
    }
    struct ndjson out = {0};
    const struct config *config = plane_config_acquire(api->plane);
    for (size_t i = 0; i < kind_count(config, kind); i++) {
        if (!api_same_owner(kind_owner(config, kind, i), owner) ||
            !document_listed(config, kind, i, query))
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

/*
 * Parses the body into an object and sets its owner (the token's). NULL
 * after queueing the error response in *result.
 */
static json_t *parse_document(struct MHD_Connection *connection, const struct request *request,
                              const char *owner, enum MHD_Result *result)
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
    if (named_owner != NULL && strcmp(named_owner, owner) != 0) {
        json_decref(doc);
        *result =
            api_queue_error(connection, MHD_HTTP_FORBIDDEN, RPC_PERMISSION_DENIED,
                            "owner: the token's owner may not write documents of another owner");
        return NULL;
    }
    if (json_object_set_new(doc, "owner", json_string(owner)) != 0) {
        json_decref(doc);
        *result = api_queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                                  "out of memory");
        return NULL;
    }
    return doc;
}

/* A new random (version 4) id: never one that existed, whoever owned it. */
static int generate_id(char out[UUID_STRING_LENGTH + 1])
{
    struct dps_uuid uuid;
    if (uuid_random(&uuid) != 0)
        return -1;
    uuid_format(&uuid, out);
    return 0;
}

/*
 * Sets the ids of doc: a group's id (the path's, or the body's or a new one
 * for a create); a hub's record id and hubId. A hub created from a hubId
 * gets a new record id as in the reference; one created from an id alone
 * (our first API) has it as both. A replaced hub keeps both: the path and
 * the body's id may give either, and the body's hubId may not change it.
 * current is the replaced document's index, or -1. The error is in err.
 */
static int assign_ids(const struct config *config, json_t *doc, enum kind kind, const char *path_id,
                      long current, char *err, size_t err_length)
{
    bool wrong = false;
    const char *id = doc_string(doc, "id", &wrong);
    const char *hub_id = kind == KIND_HUB ? doc_string(doc, "hubId", &wrong) : NULL;
    char record[UUID_STRING_LENGTH + 1] = "", generated[UUID_STRING_LENGTH + 1] = "";
    if (wrong)
        return 0; /* the model names the field that is not a string */
    if (path_id != NULL && id != NULL && !names_document(config, kind, (size_t)current, id))
        return error_set(err, err_length, "id: \"%s\" differs from the id in the path", id);
    if (current >= 0 && kind == KIND_HUB) {
        const struct config_hub *hub = &config->hubs[current];
        if (hub_id != NULL && strcasecmp(hub_id, hub->id) != 0)
            return error_set(err, err_length,
                             "hubId: \"%s\" differs from the hub's hubId %s (a hub's hubId cannot "
                             "change: create a hub with the new one and move the groups to it)",
                             hub_id, hub->id);
        snprintf(record, sizeof(record), "%s", hub_record_id(hub));
        hub_id = hub->id;
    } else if (current >= 0) {
        snprintf(record, sizeof(record), "%s", config->groups[current].id);
    } else if (kind == KIND_HUB && hub_id != NULL) {
        bool same = id != NULL && strcasecmp(id, hub_id) == 0;
        if (!same && generate_id(generated) != 0)
            return error_set(err, err_length, "cannot generate an id");
        snprintf(record, sizeof(record), "%s", same ? hub_id : generated);
    } else if (id != NULL) {
        snprintf(record, sizeof(record), "%.*s", UUID_STRING_LENGTH, id);
        if (strlen(id) > UUID_STRING_LENGTH)
            return 0; /* not a UUID: the model says so */
    } else if (generate_id(record) != 0) {
        return error_set(err, err_length, "cannot generate an id");
    }
    char hub_copy[UUID_STRING_LENGTH + 1];
    snprintf(hub_copy, sizeof(hub_copy), "%s", hub_id != NULL ? hub_id : record);
    int set = json_object_set_new(doc, "id", json_string(record));
    if (kind == KIND_HUB)
        set |= json_object_set_new(doc, "hubId", json_string(hub_copy));
    return set == 0 ? 0 : error_set(err, err_length, "out of memory");
}

/*
 * Our members a reference client does not know: a replace that leaves one
 * out keeps the stored value (null clears it), so the reference's web UI
 * cannot wipe a group's ACL or a hub's keys by saving a form.
 */
static const char *const GROUP_EXTENSIONS[] = {"acl", "resources", "disabled", NULL};
static const char *const HUB_EXTENSIONS[] = {"identityCertificate", "token", NULL};

static int keep_extensions(json_t *doc, const json_t *stored, enum kind kind)
{
    const char *const *members = kind == KIND_GROUP ? GROUP_EXTENSIONS : HUB_EXTENSIONS;
    int rc = 0;
    for (size_t i = 0; members[i] != NULL; i++) {
        json_t *value = json_object_get(stored, members[i]);
        if (json_object_get(doc, members[i]) == NULL && value != NULL)
            rc |= json_object_set(doc, members[i], value);
    }
    if (kind == KIND_HUB)
        return rc;
    /* The CRLs beside the chain. */
    json_t *x509 = json_object_get(json_object_get(doc, "attestationMechanism"), "x509");
    json_t *crls = json_object_get(
        json_object_get(json_object_get(stored, "attestationMechanism"), "x509"), "crls");
    if (json_is_object(x509) && json_object_get(x509, "crls") == NULL && crls != NULL)
        rc |= json_object_set(x509, "crls", crls);
    return rc;
}

/* True when the request asks for strict reading (RFC 7240 "Prefer: handling=strict"). */
static bool prefers_strict(struct MHD_Connection *connection)
{
    const char *prefer = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Prefer");
    for (const char *at = prefer; at != NULL && (at = strcasestr(at, "handling")) != NULL; at++) {
        const char *value = at + strlen("handling");
        while (*value == ' ')
            value++;
        if (*value == '=' && strncasecmp(value + 1 + strspn(value + 1, " "), "strict", 6) == 0)
            return true;
    }
    return false;
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

/*
 * The reference's web UI fills a group's hubIds with the hubs' record ids
 * (plgd-dev/hub http-gateway/web/src/containers/DeviceProvisioning/
 * EnrollmentGroups/NewEnrollmentGroupsPage/Steps/Step1/Step1.tsx, "value:
 * linkedHub.id"), where a group names hubs by hubId. A value that is the
 * record id of one of the caller's hubs, and the hubId of none of them, is
 * stored as that hub's hubId. Other owners' hubs are not looked at: their
 * ids stay as sent and are refused as unknown.
 */
static int hub_ids_from_record_ids(const struct config *config, json_t *doc, const char *owner)
{
    json_t *hub_ids = json_object_get(doc, "hubIds");
    size_t i;
    json_t *value;
    json_array_foreach(hub_ids, i, value)
    {
        const char *named = json_string_value(value);
        const struct config_hub *by_hub_id = named != NULL ? config_find_hub(config, named) : NULL;
        if (named == NULL || (by_hub_id != NULL && api_same_owner(by_hub_id->owner, owner)))
            continue;
        long index = find_owned(config, KIND_HUB, named, owner);
        if (index >= 0 && json_array_set_new(hub_ids, i, json_string(config->hubs[index].id)) != 0)
            return -1;
    }
    return 0;
}

/*
 * Answers a create or replace: the stored document, with the members that
 * were ignored named in Dps-Ignored-Fields (or the strictness applied).
 */
static enum MHD_Result answer_stored(struct MHD_Connection *connection, json_t *stored,
                                     const json_t *ignored, bool strict)
{
    /* Whole names only: those that do not fit are counted ("and N more"), never cut. */
    char names[1024] = "";
    size_t used = 0, left_out = 0;
    size_t i;
    json_t *path;
    json_array_foreach(ignored, i, path)
    {
        const char *name = json_string_value(path);
        size_t need = strlen(name) + (used > 0 ? 2 : 0);
        if (left_out == 0 && used + need + sizeof(", and 4294967295 more") <= sizeof(names)) {
            used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
                                     used > 0 ? ", " : "", name);
        } else {
            left_out++;
        }
    }
    if (left_out > 0)
        used += (size_t)snprintf(names + used, sizeof(names) - used, "%sand %zu more",
                                 used > 0 ? ", " : "", left_out);
    /* A member's name may hold any character: a control one would get the header refused. */
    for (char *c = names; *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    }
    const char *headers[] = {strict ? "Preference-Applied" : "Dps-Ignored-Fields",
                             strict ? "handling=strict" : names, NULL};
    return api_queue_json_headers(connection, MHD_HTTP_OK, stored,
                                  strict || used > 0 ? headers : NULL);
}

static enum MHD_Result put_document(struct api *api, struct MHD_Connection *connection,
                                    const struct request *request, enum kind kind,
                                    const char *path_id, const char *owner)
{
    enum MHD_Result result;
    bool create = path_id == NULL;
    if (!api_query_none(connection, &result))
        return result;
    if (!create && !config_uuid_valid(path_id))
        return api_queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                               "id: \"%s\" is not a UUID", path_id);
    json_t *doc = parse_document(connection, request, owner, &result);
    if (doc == NULL)
        return result;
    /* Unknown members are dropped, as the reference does, unless the caller asks for strictness. */
    bool strict = prefers_strict(connection);
    json_t *ignored = json_array();
    if (!strict && kind == KIND_GROUP)
        model_group_prune(doc, ignored);
    else if (!strict)
        model_hub_prune(doc, ignored);

    /*
     * Replacing needs the caller to own the current document, and a group may
     * only name the caller's hubs: others' documents do not exist for it.
     */
    char err[1024] = "";
    const struct config *config = plane_config_acquire(api->plane);
    long current = create ? -1 : find_owned(config, kind, path_id, owner);
    json_t *stored = current < 0          ? NULL
                     : kind == KIND_GROUP ? model_group_to_api(&config->groups[current])
                                          : model_hub_to_api(&config->hubs[current]);
    int status = create || current >= 0
                     ? assign_ids(config, doc, kind, path_id, current, err, sizeof(err))
                     : 0;
    if (status == 0 && stored != NULL && keep_extensions(doc, stored, kind) != 0)
        status = error_set(err, sizeof(err), "out of memory");
    if (status == 0 && kind == KIND_GROUP && hub_ids_from_record_ids(config, doc, owner) != 0)
        status = error_set(err, sizeof(err), "out of memory");
    long foreign_hub = kind == KIND_GROUP ? foreign_hub_index(config, doc, owner) : -1;
    plane_config_release(api->plane, config);
    json_decref(stored);
    if (!create && current < 0) {
        json_decref(doc);
        json_decref(ignored);
        return api_queue_error(connection, MHD_HTTP_NOT_FOUND, RPC_NOT_FOUND, "no %s %s",
                               kind_name(kind), path_id);
    }
    if (status != 0 || foreign_hub >= 0) {
        if (status == 0)
            snprintf(err, sizeof(err), "hubIds[%ld]: unknown hub \"%s\"", foreign_hub,
                     json_string_value(
                         json_array_get(json_object_get(doc, "hubIds"), (size_t)foreign_hub)));
        json_decref(doc);
        json_decref(ignored);
        return api_queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT, "%s", err);
    }
    status = kind == KIND_GROUP ? plane_put_group(api->plane, doc, create, err, sizeof(err))
                                : plane_put_hub(api->plane, doc, create, err, sizeof(err));
    if (status != PLANE_OK) {
        json_decref(doc);
        json_decref(ignored);
        return api_queue_plane_error(connection, status, err);
    }
    /* Stored, so the document's ids are valid UUIDs; doc holds them until here. */
    const char *id = json_string_value(json_object_get(doc, kind == KIND_HUB ? "hubId" : "id"));
    log_msg(LOG_INFO, create ? "api created" : "api replaced", "kind=\"%s\" id=%s owner=\"%s\"",
            kind_name(kind), id, owner);
    stored = stored_document(api, kind, id);
    json_decref(doc);
    if (stored == NULL) {
        json_decref(ignored);
        return api_queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                               "the %s was stored but is not in force", kind_name(kind));
    }
    result = answer_stored(connection, stored, ignored, strict);
    json_decref(ignored);
    return result;
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
    /* The reference deletes all of the owner's documents when no id is named; we refuse. */
    query_t *query = required_filter(
        connection, "idFilter", true,
        kind == KIND_GROUP
            ? "name the ids of the enrollment groups to delete: a delete without a filter is "
              "refused here, where the reference would delete every group of the owner"
            : "name the ids of the hubs to delete: a delete without a filter is refused here, "
              "where the reference would delete every hub of the owner",
        &ids, &result);
    if (query == NULL)
        return result;
    json_int_t count = 0;
    size_t i;
    json_t *value;
    json_array_foreach(ids, i, value)
    {
        /* A hub is deleted by its hubId, whichever of its ids was named. */
        char id[UUID_STRING_LENGTH + 1];
        const struct config *config = plane_config_acquire(api->plane);
        long index = find_owned(config, kind, json_string_value(value), owner);
        if (index >= 0)
            snprintf(id, sizeof(id), "%s", kind_id(config, kind, (size_t)index));
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
        /* No filters: a parameter is refused rather than ignored, which would widen the list. */
        enum MHD_Result refused;
        if (!api_query_none(connection, &refused))
            return refused;
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
        enum MHD_Result refused;
        if (!api_query_none(connection, &refused))
            return refused;
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
