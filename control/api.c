/*
 * api: the management API's handlers and routing (control/api.h) on
 * libmicrohttpd, one thread per connection; its listeners, their generations
 * and reloads are control/api_server.c's.
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
#include "common/address.h"
#include "common/log.h"
#include "control/model.h"
#include "control/peer_client.h"
#include "control/plane.h"
#include "crypto/uuid.h"
#include "store/records.h"
#include "store/redis_admin.h"
#include "store/store.h"

/* api.admins: owners whose tokens see the node as a whole. */
static bool is_admin(const struct config_api *settings, const char *owner)
{
    for (size_t i = 0; i < settings->admin_count; i++) {
        if (strcmp(settings->admins[i], owner) == 0)
            return true;
    }
    return false;
}

static enum MHD_Result queue_status(struct api *api, struct MHD_Connection *connection,
                                    const struct request *request)
{
    const char *owner = request->owner;
    enum MHD_Result refused;
    if (!api_query_none(connection, &refused))
        return refused;
    bool admin = is_admin(request->generation->settings, owner);
    json_t *status = plane_status(api->plane, owner, admin);
    if (status == NULL)
        return api_queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                               "status unavailable");
    /* The live nodes carry node-wide figures only, and only administrators see those. */
    if (admin && cluster_view_enabled(plane_settings(api->plane))) {
        char err[256];
        json_t *nodes = cluster_view_nodes(plane_settings(api->plane), err, sizeof(err));
        json_object_set_new(status, "nodes", nodes != NULL ? nodes : json_array());
        if (nodes == NULL)
            json_object_set_new(status, "nodesError", json_string(err));
    }
    json_t *restart = admin ? api_restart_required(api) : NULL;
    if (json_array_size(restart) > 0)
        json_object_set_new(status, "restartRequired", json_incref(restart));
    json_decref(restart);
    return api_queue_json(connection, MHD_HTTP_OK, status);
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
    if (auth_check(request->generation->auth, authorization, time(NULL), &request->owner, reason,
                   sizeof(reason)) != 0) {
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
        result = api_route_documents(api, connection, request, KIND_GROUP, url + sizeof(groups) - 1,
                                     method, url, owner);
    else if (strncmp(url, hubs, sizeof(hubs) - 1) == 0)
        result = api_route_documents(api, connection, request, KIND_HUB, url + sizeof(hubs) - 1,
                                     method, url, owner);
    else if (strcmp(url, "/api/v1/provisioning-records") == 0)
        result = get ? api_start_stream(api, connection, request, STREAM_RECORDS)
                 : strcmp(method, MHD_HTTP_METHOD_DELETE) == 0
                     ? api_delete_records(api, connection, request)
                     : api_method_not_allowed(connection, method, url);
    else if (strcmp(url, "/api/v1/issuance") == 0)
        result = get ? api_start_stream(api, connection, request, STREAM_ISSUANCE)
                     : api_method_not_allowed(connection, method, url);
    else if (strcmp(url, "/api/v1/bindings") == 0)
        result = get ? api_start_stream(api, connection, request, STREAM_BINDINGS)
                 : strcmp(method, MHD_HTTP_METHOD_DELETE) == 0
                     ? api_release_bindings(api, connection, owner)
                     : api_method_not_allowed(connection, method, url);
    else if (strcmp(url, "/api/v1/blocklist") == 0)
        result = api_route_blocklist(api, connection, request, method, owner);
    else if (strcmp(url, "/api/v1/status") == 0)
        result = get ? queue_status(api, connection, request)
                     : api_method_not_allowed(connection, method, url);
    else
        result = api_queue_error(connection, MHD_HTTP_NOT_FOUND, RPC_NOT_FOUND, "no route %s", url);
    return result;
}

/* /healthz, /readyz and /metrics: served on either listener, without a token. */
static bool monitoring_route(const char *url)
{
    return strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 ||
           strcmp(url, "/metrics") == 0;
}

static enum MHD_Result route(struct api *api, struct MHD_Connection *connection,
                             const struct request *request, const char *url, const char *method)
{
    bool get =
        strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    enum MHD_Result refused;
    if (monitoring_route(url) && get && !api_query_none(connection, &refused))
        return refused;
    if (strcmp(url, "/healthz") == 0)
        return get ? api_queue_text(connection, MHD_HTTP_OK, "text/plain", "ok\n", 3)
                   : api_method_not_allowed(connection, method, url);
    if (strcmp(url, "/readyz") == 0) {
        if (!get)
            return api_method_not_allowed(connection, method, url);
        return plane_ready(api->plane)
                   ? api_queue_text(connection, MHD_HTTP_OK, "text/plain", "ready\n", 6)
                   : api_queue_text(connection, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain",
                                    "not ready\n", 10);
    }
    if (strcmp(url, "/metrics") == 0) {
        if (!get)
            return api_method_not_allowed(connection, method, url);
        char *metrics = plane_metrics(api->plane);
        if (metrics == NULL)
            return api_queue_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, RPC_INTERNAL,
                                   "metrics unavailable");
        enum MHD_Result result =
            api_queue_text(connection, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                           metrics, strlen(metrics));
        free(metrics);
        return result;
    }
    if (request != NULL && request->owner != NULL && strncmp(url, "/api/v1/", 8) == 0)
        return route_api(api, connection, request, url, method);
    return api_queue_error(connection, MHD_HTTP_NOT_FOUND, RPC_NOT_FOUND, "no route %s", url);
}

/* /healthz, /readyz and /metrics, on either listener; false when url is none of them. */
static bool route_probe(struct api *api, struct MHD_Connection *connection, const char *url,
                        const char *method, enum MHD_Result *result)
{
    if (!monitoring_route(url))
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

void api_notify_connection(void *user, struct MHD_Connection *connection, void **socket_context,
                           enum MHD_ConnectionNotificationCode code)
{
    struct api_listener *listener = user;
    struct api *api = listener->generation->api;
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
void *api_reaper_run(void *user)
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
        pthread_mutex_unlock(&api->conns_lock);
        api_collect_retired(api);
        pthread_mutex_lock(&api->conns_lock);
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
    if (request->generation->client_ca_pem != NULL && !is_probe(url) &&
        !client_certificate_valid(connection)) {
        conn_answering(api, connection);
        return api_queue_error(connection, MHD_HTTP_UNAUTHORIZED, RPC_UNAUTHENTICATED,
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
        return api_queue_error(connection, MHD_HTTP_CONTENT_TOO_LARGE, RPC_RESOURCE_EXHAUSTED,
                               "body: larger than %d bytes", API_BODY_LIMIT);
    }
    request->refused = false;
    return MHD_YES;
}

/*
 * The path a request is routed by, as the reference's router takes it: the
 * plgd bundle's prefix (/device-provisioning-service/api/...) and trailing
 * slashes removed. Every check (token, owner, route) sees this path only.
 * NULL when out of memory.
 */
static char *route_path(const char *url)
{
    static const char bundle_api[] = "/device-provisioning-service/api/";
    static const size_t bundle_length = sizeof("/device-provisioning-service") - 1;
    if (strncmp(url, bundle_api, sizeof(bundle_api) - 1) == 0)
        url += bundle_length;
    size_t length = strlen(url);
    while (length > 1 && url[length - 1] == '/')
        length--;
    return strndup(url, length);
}

enum MHD_Result api_handle(void *user, struct MHD_Connection *connection, const char *url,
                           const char *method, const char *version, const char *upload_data,
                           size_t *upload_data_size, void **context)
{
    struct api_generation *generation = ((struct api_listener *)user)->generation;
    struct api *api = generation->api;
    struct request *request = *context;
    if (request == NULL) {
        if ((request = calloc(1, sizeof(*request))) == NULL)
            return MHD_NO;
        *context = request;
        request->generation = generation;
        if ((request->path = route_path(url)) == NULL)
            return MHD_NO;
        return handle_headers(api, connection, request->path, request);
    }
    url = request->path;
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
        return api_queue_error(connection, MHD_HTTP_CONTENT_TOO_LARGE, RPC_RESOURCE_EXHAUSTED,
                               "body: larger than %d bytes", API_BODY_LIMIT);
    return route(api, connection, request, url, method);
}

/* The health listener: the probes and metrics only, no token, no body. */
enum MHD_Result api_handle_health(void *user, struct MHD_Connection *connection, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **context)
{
    struct api *api = ((struct api_listener *)user)->generation->api;
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
    return api_queue_error(connection, MHD_HTTP_NOT_FOUND, RPC_NOT_FOUND,
                           "no route %s (this listener serves /healthz, /readyz and /metrics)",
                           url);
}

void api_request_completed(void *user, struct MHD_Connection *connection, void **context,
                           enum MHD_RequestTerminationCode code)
{
    struct api *api = ((struct api_listener *)user)->generation->api;
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
    free(request->path);
    free(request->body);
    free(request);
    *context = NULL;
}
