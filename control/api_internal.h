/*
 * api_internal: what the management API's files share (control/api.c, the
 * handlers and routing; api_server.c, the listeners, their generations and reloads; api_reply.c,
 * answers and query parameters; api_documents.c, groups, hubs, the blocklist and bindings;
 * api_stream.c, the store-backed lists). Private to them: nothing else includes it.
 */
#ifndef DPS_CONTROL_API_INTERNAL_H
#define DPS_CONTROL_API_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <jansson.h>
#include <microhttpd.h>

#include "control/api.h"
#include "control/plane.h"
#include "crypto/uuid.h"

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

/* A listening socket the API bound (control/api.c: bind_listener). */
struct api_socket {
    int fd; /* -1: none */
    int family;
    bool loopback;
};

struct api_generation;

/* A listener: the API's own, or the health listener's (probes and metrics only). */
struct api_listener {
    struct api_generation *generation;
    unsigned timeout_s;
};

/*
 * What a reload may change, what it loads, and the daemons serving with it
 * (control/api_server.c says who frees it and when).
 */
struct api_generation {
    struct api *api;
    struct config *config;             /* owns settings after a reload; NULL: the plane's */
    const struct config_api *settings; /* admins, limits, deadline, the files below */
    struct auth *auth;                 /* operator keys */
    char *cert_pem;
    char *client_ca_pem; /* api.clientCA: client certificates required when set */
    char *key_pem;
    struct MHD_Daemon *daemon;
    struct MHD_Daemon *health_daemon; /* api.healthListen, or NULL */
    struct api_listener listener;
    struct api_listener health_listener;
    int quiesced[2];             /* retired: the daemons' copies of the sockets, or -1 */
    unsigned streams;            /* lists streaming from it, under api->lock */
    struct api_generation *next; /* the retired list */
};

struct api {
    struct api_socket socket;        /* api.listen */
    struct api_socket health_socket; /* api.healthListen */
    struct plane *plane;
    /* As dpsd started: the addresses and the quotas (the plane's settings). */
    const struct config_api *settings;
    struct api_generation *current; /* under lock */
    struct api_generation *retired; /* under lock, freed by the reaper once idle */
    json_t *restart_required;       /* under lock: setting names a reload could not apply */

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
    struct api_generation *generation; /* the one whose daemon serves the request */
    char *path;                        /* the path routed by (control/api.c: route_path) */
    char *owner;                       /* /api/v1 routes: the token's owner */
    bool refused;                      /* answered in the first call: the body is discarded */
    char *body;
    size_t length;
    bool too_large;
};

/* Query parameters: name -> list of values. */
typedef json_t query_t;

/* Groups and hubs: the kinds of document the plane keeps. */
enum kind {
    KIND_GROUP,
    KIND_HUB,
};

/* The store-backed lists. */
enum stream_kind {
    STREAM_RECORDS,
    STREAM_ISSUANCE,
    STREAM_BINDINGS,
};

/* "result" lines of json values, for the lists built in memory. */
struct ndjson {
    char *text;
    size_t length;
    size_t capacity;
    bool failed;
};

enum MHD_Result api_queue_text(struct MHD_Connection *connection, unsigned status,
                               const char *content_type, const char *text, size_t length);

enum MHD_Result api_queue_json(struct MHD_Connection *connection, unsigned status, json_t *json);

/* api_queue_json with headers: pairs of name and value, NULL-terminated (or NULL). */
enum MHD_Result api_queue_json_headers(struct MHD_Connection *connection, unsigned status,
                                       json_t *json, const char *const *headers);

__attribute__((format(printf, 4, 5))) enum MHD_Result
api_queue_error(struct MHD_Connection *connection, unsigned status, enum rpc_code code,
                const char *fmt, ...);

enum MHD_Result api_queue_plane_error(struct MHD_Connection *connection, int status,
                                      const char *err);

query_t *api_query_collect(struct MHD_Connection *connection);

bool api_query_matches(const query_t *query, const char *name, const char *text);

bool api_query_lists(const query_t *query, const char *name, const char *text);

enum MHD_Result api_check_query(struct MHD_Connection *connection, const query_t *query,
                                const char *const *allowed, const char *const *uuid_filters,
                                bool *ok);

/*
 * For a route that takes no query parameter: true when the request has none; else false with
 * the 400 naming the first one queued in *result. Every route refuses a parameter it does not
 * know, so a misspelt option is never silently ignored.
 */
bool api_query_none(struct MHD_Connection *connection, enum MHD_Result *result);

int api_uuid_text_normalise(const char *text, char out[UUID_STRING_LENGTH + 1]);

bool api_same_owner(const char *owner, const char *caller);

void api_ndjson_result(struct ndjson *out, json_t *value);

enum MHD_Result api_queue_ndjson(struct MHD_Connection *connection, struct ndjson *out);

enum MHD_Result api_method_not_allowed(struct MHD_Connection *connection, const char *method,
                                       const char *url);

enum MHD_Result api_route_blocklist(struct api *api, struct MHD_Connection *connection,
                                    const struct request *request, const char *method,
                                    const char *owner);

enum MHD_Result api_release_bindings(struct api *api, struct MHD_Connection *connection,
                                     const char *owner);

enum MHD_Result api_route_documents(struct api *api, struct MHD_Connection *connection,
                                    const struct request *request, enum kind kind, const char *rest,
                                    const char *method, const char *url, const char *owner);

enum MHD_Result api_start_stream(struct api *api, struct MHD_Connection *connection,
                                 const struct request *request, enum stream_kind kind);

/* DELETE /api/v1/provisioning-records (control/api_stream.c). */
enum MHD_Result api_delete_records(struct api *api, struct MHD_Connection *connection,
                                   const struct request *request);

/* libmicrohttpd's callbacks (control/api.c); user is the struct api_listener. */
enum MHD_Result api_handle(void *user, struct MHD_Connection *connection, const char *url,
                           const char *method, const char *version, const char *upload_data,
                           size_t *upload_data_size, void **context);
enum MHD_Result api_handle_health(void *user, struct MHD_Connection *connection, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **context);
void api_notify_connection(void *user, struct MHD_Connection *connection, void **socket_context,
                           enum MHD_ConnectionNotificationCode code);
void api_request_completed(void *user, struct MHD_Connection *connection, void **context,
                           enum MHD_RequestTerminationCode code);

/* The reaper thread (control/api.c): request deadlines, and api_collect_retired each second. */
void *api_reaper_run(void *user);

/* Frees the retired generations with no connection and no stream left (api_server.c). */
void api_collect_retired(struct api *api);

/* The setting names the last reload could not apply (a new reference, an array). */
json_t *api_restart_required(struct api *api);

#endif
