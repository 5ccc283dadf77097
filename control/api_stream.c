/*
 * api_stream: the store-backed lists (provisioning records, issuance,
 * bindings), streamed from a producer thread through a pipe, and fanned out
 * to the cluster's other nodes (control/fanout.h). See control/api.c.
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

/*
 * Streams from the store: a producer thread runs a scan and writes result
 * lines into a pipe that the response reads.
 */
struct stream {
    struct api *api;
    struct api_generation *generation; /* its TLS identity for the peers; kept (streams) */
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
 * whoever holds its group id now. The records filters are the reference's,
 * ORed as it does: a record matches when any value of any of them matches.
 */
static bool record_matches(const query_t *query, json_t *record)
{
    static const char *const filters[][2] = {{"idFilter", "id"},
                                             {"deviceIdFilter", "deviceId"},
                                             {"enrollmentGroupIdFilter", "enrollmentGroupId"}};
    bool filtered = false, visible = false;
    for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++) {
        filtered = filtered || json_array_size(json_object_get(query, filters[i][0])) > 0;
        visible =
            visible || api_query_lists(query, filters[i][0],
                                       json_string_value(json_object_get(record, filters[i][1])));
    }
    return !filtered || visible;
}

static int record_result(void *user, json_t *record)
{
    struct stream *stream = user;
    if (!record_matches(stream->query, record))
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
        api_query_matches(stream->query, "deviceIdFilter",
                          json_string_value(json_object_get(entry, "deviceId"))) &&
        api_query_matches(stream->query, "serialFilter",
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
    if (!api_query_matches(stream->query, "deviceIdFilter", device_id))
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
            !api_query_matches(stream->query, "deviceIdFilter", stream->conflicts[i]))
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
        /* One idFilter, and no other filter to OR with it, narrows the scan to that record's keys.
         */
        json_t *ids = json_object_get(stream->query, "idFilter");
        char id[UUID_STRING_LENGTH + 1] = "";
        if (json_array_size(ids) == 1 && json_object_size(stream->query) == 1)
            api_uuid_text_normalise(json_string_value(json_array_get(ids, 0)), id);
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
        .certificate_pem = stream->generation->cert_pem,
        .key_pem = stream->generation->key_pem,
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
    struct api_generation *generation = stream->generation;
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
    generation->streams--;
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

static const char *const record_parameters[] = {"idFilter", "deviceIdFilter",
                                                "enrollmentGroupIdFilter", NULL};

/* Records deleted per scan: the ids held in memory at once, whatever the fleet. */
#define DELETE_BATCH 1024

static bool record_doomed(void *user, json_t *record)
{
    return record_matches(user, record);
}

/* This node's part: the count deleted, or -1 when the store failed. */
static json_int_t delete_local(struct store *store, const char *owner, const query_t *query)
{
    json_t *ids = json_object_get(query, "idFilter");
    char id[UUID_STRING_LENGTH + 1] = "";
    /* One idFilter, and no other filter to OR with it, narrows the scan to that record's keys. */
    if (json_array_size(ids) == 1 && json_object_size(query) == 1)
        api_uuid_text_normalise(json_string_value(json_array_get(ids, 0)), id);
    long count = records_delete_matching(store, owner, id[0] != '\0' ? id : NULL, record_doomed,
                                         (void *)query, DELETE_BATCH);
    if (count > 0)
        log_msg(LOG_INFO, "records deleted", "count=%ld owner=\"%s\"", count, owner);
    return count;
}

/* A node's part (a cluster_view entry): its {"count"}, 0 for this node itself, or -1 with err. */
static json_int_t delete_on_node(const struct config *settings, const json_t *node,
                                 const struct stream *forward, char *err, size_t err_length)
{
    const char *name = json_string_value(json_object_get(node, "name"));
    const char *url = json_string_value(json_object_get(node, "apiUrl"));
    if (name == NULL || strcmp(name, settings->cluster.node) == 0)
        return 0;
    if (url == NULL) {
        snprintf(err, err_length, "no apiUrl");
        return -1;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        snprintf(err, err_length, "pipe: %s", strerror(errno));
        return -1;
    }
    /* {"count": N} fits the pipe's buffer: the whole answer is read once the call returns. */
    int status = peer_request("DELETE", url, settings->api.cert_file, forward->generation->cert_pem,
                              forward->generation->key_pem, forward->path, forward->token,
                              API_FANOUT_CONNECT_MS, API_FANOUT_STALL_MS, fds[1], err, err_length);
    close(fds[1]);
    char answer[256];
    ssize_t length = status == 0 ? read(fds[0], answer, sizeof(answer) - 1) : -1;
    close(fds[0]);
    if (status != 0)
        return -1;
    json_t *parsed = length > 0 ? json_loadb(answer, (size_t)length, 0, NULL) : NULL;
    json_t *count = json_object_get(parsed, "count");
    json_int_t value = json_is_integer(count) ? json_integer_value(count) : -1;
    json_decref(parsed);
    if (value < 0)
        snprintf(err, err_length, "answered no count");
    return value;
}

/*
 * DELETE /api/v1/provisioning-records: the caller's records that the
 * filters of GET match, and only those (records_delete: each record's
 * parts; bindings and the issuance log stay). A filter is required: without
 * one the reference deletes all the owner's records, we answer 400 (the same
 * safety as groups, hubs and bindings). In a cluster a record lives on the
 * node that wrote it (on several when a device came through several), so
 * the node asked deletes on every live node, with the caller's token and
 * the forwarded mark as the lists do (control/fanout.h): {"count"} sums
 * them. A node that does not answer makes the answer 503 naming it (what
 * the others deleted stays deleted; the same DELETE again finishes it).
 */
enum MHD_Result api_delete_records(struct api *api, struct MHD_Connection *connection,
                                   const struct request *request)
{
    const char *owner = request->owner;
    query_t *query = api_query_collect(connection);
    bool ok;
    enum MHD_Result result =
        api_check_query(connection, query, record_parameters, record_parameters, &ok);
    if (!ok) {
        json_decref(query);
        return result;
    }
    bool filtered = false;
    for (size_t i = 0; record_parameters[i] != NULL; i++)
        filtered = filtered || json_array_size(json_object_get(query, record_parameters[i])) > 0;
    if (!filtered) {
        json_decref(query);
        return api_queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
                               "idFilter, deviceIdFilter or enrollmentGroupIdFilter: one is "
                               "required (name the records to delete; a DELETE without a filter "
                               "deletes nothing)");
    }
    json_int_t count = delete_local(plane_store(api->plane), owner, query);
    if (count < 0) {
        json_decref(query);
        return api_queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                               "the store refused the delete");
    }
    if (!stream_fans_out(api, connection)) {
        json_decref(query);
        return api_queue_json(connection, MHD_HTTP_OK, json_pack("{s:I}", "count", count));
    }
    struct stream forward = {.api = api, .generation = request->generation, .kind = STREAM_RECORDS};
    const struct config *settings = plane_settings(api->plane);
    char err[256] = "", unanswered[1024] = "";
    size_t silent = 0;
    json_t *nodes = stream_forwarding(&forward, connection, query) == 0
                        ? cluster_view_nodes(settings, err, sizeof(err))
                        : NULL;
    if (nodes == NULL) {
        snprintf(unanswered, sizeof(unanswered), " the other nodes (%s)",
                 err[0] != '\0' ? err : "out of memory");
        silent++;
    }
    size_t index;
    json_t *node;
    json_array_foreach(nodes, index, node)
    {
        json_int_t part = delete_on_node(settings, node, &forward, err, sizeof(err));
        size_t used = strlen(unanswered);
        if (part >= 0)
            count += part;
        else if (snprintf(unanswered + used, sizeof(unanswered) - used, "%s %s (%s)",
                          silent++ > 0 ? ";" : "", json_string_value(json_object_get(node, "name")),
                          err) < 0)
            break;
    }
    json_decref(nodes);
    if (forward.token != NULL)
        explicit_bzero(forward.token, strlen(forward.token));
    free(forward.token);
    free(forward.path);
    json_decref(query);
    if (silent > 0) {
        cluster_view_count_fanout_error();
        return api_queue_error(connection, MHD_HTTP_SERVICE_UNAVAILABLE, RPC_UNAVAILABLE,
                               "partial: %" JSON_INTEGER_FORMAT " deleted, but not on:%s; the "
                               "same DELETE again finishes it",
                               count, unanswered);
    }
    return api_queue_json(connection, MHD_HTTP_OK, json_pack("{s:I}", "count", count));
}

enum MHD_Result api_start_stream(struct api *api, struct MHD_Connection *connection,
                                 const struct request *request, enum stream_kind kind)
{
    const char *owner = request->owner;
    static const char *const issuance_parameters[] = {"deviceIdFilter", "serialFilter", "since",
                                                      "until", NULL};
    static const char *const binding_parameters[] = {"deviceIdFilter", NULL};
    static const char *const issuance_uuids[] = {"deviceIdFilter", NULL};
    const char *const *allowed = kind == STREAM_RECORDS    ? record_parameters
                                 : kind == STREAM_ISSUANCE ? issuance_parameters
                                                           : binding_parameters;
    const char *const *uuids = kind == STREAM_RECORDS ? record_parameters : issuance_uuids;
    query_t *query = api_query_collect(connection);
    bool ok;
    enum MHD_Result result = api_check_query(connection, query, allowed, uuids, &ok);
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
            return api_queue_error(connection, MHD_HTTP_BAD_REQUEST, RPC_INVALID_ARGUMENT,
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
        return api_queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                               "cannot start the stream: %s", strerror(errno));
    }
    stream->api = api;
    stream->generation = request->generation;
    stream->kind = kind;
    stream->query = query;
    stream->forwarded =
        cluster_view_enabled(plane_settings(api->plane)) && !stream_fans_out(api, connection);
    if (stream_fans_out(api, connection) && (stream_forwarding(stream, connection, query) != 0)) {
        close(fds[0]);
        close(fds[1]);
        stream_free(stream);
        return api_queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
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
    if (started) {
        api->producers++;
        request->generation->streams++;
    }
    pthread_mutex_unlock(&api->lock);
    pthread_attr_destroy(&attributes);
    if (!started) {
        close(fds[1]);
        stream_free(stream);
        if (response != NULL)
            MHD_destroy_response(response);
        else
            close(fds[0]);
        return api_queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                               "cannot start the stream");
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson");
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    result = MHD_queue_response(connection, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    return result;
}
