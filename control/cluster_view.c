/*
 * cluster_view: see cluster_view.h. One thread per node; it sleeps on a
 * condition variable so stopping does not wait out an interval.
 */
#include "control/cluster_view.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "common/log.h"
#include "control/plane.h"
#include "dataplane/dps_handlers.h"
#include "store/redis_admin.h"

struct cluster_view {
    struct plane *plane;
    const struct config *settings;
    struct redis_admin_session *redis; /* the beats' kept connection (redis_admin.h) */
    char version[64];
    char started_at[32];
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    bool failing; /* the last beat failed: log once per outage, not every second */
    uint64_t issued_before;
    char local_address[64]; /* for wildcard listen addresses (announced()) */
    struct timespec beat_before;
};

static atomic_uint_fast64_t heartbeats_total;
static atomic_uint_fast64_t heartbeat_failures_total;
static atomic_uint_fast64_t heartbeat_connections_total;
static atomic_uint_fast64_t fanout_errors_total;

bool cluster_view_enabled(const struct config *settings)
{
    return settings->cluster.redis != NULL || settings->cluster.sentinel_count > 0;
}

static double seconds_between(const struct timespec *from, const struct timespec *to)
{
    return (double)(to->tv_sec - from->tv_sec) + (double)(to->tv_nsec - from->tv_nsec) / 1e9;
}

/*
 * listen (HOST:PORT) as the other nodes can reach it: a wildcard host
 * (0.0.0.0, [::]) becomes the address this machine reaches Redis from,
 * learned once.
 */
static void announced(struct cluster_view *view, const char *listen, char *out, size_t size)
{
    const char *colon = strrchr(listen, ':');
    bool wildcard = colon != NULL && (strncmp(listen, "0.0.0.0:", 8) == 0 ||
                                      strncmp(listen, "[::]:", 5) == 0 || colon == listen);
    char err[256];
    if (wildcard && view->local_address[0] == '\0' &&
        redis_admin_local_address(view->redis, view->local_address, sizeof(view->local_address),
                                  err, sizeof(err)) != 0)
        view->local_address[0] = '\0';
    if (!wildcard || view->local_address[0] == '\0')
        snprintf(out, size, "%s", listen);
    else if (strchr(view->local_address, ':') != NULL)
        snprintf(out, size, "[%s]%s", view->local_address, colon);
    else
        snprintf(out, size, "%s%s", view->local_address, colon);
}

/* This node's entry now (cluster_view.h), as JSON text (malloc'd) or NULL. */
static char *entry_text(struct cluster_view *view)
{
    const struct config *settings = view->settings;
    json_t *status = plane_status(view->plane, "", true);
    if (status == NULL)
        return NULL;
    bool ready = json_is_true(json_object_get(status, "ready"));
    bool degraded = json_is_true(json_object_get(status, "degraded"));
    json_t *node = json_object_get(status, "node");
    const char *redis_state =
        json_string_value(json_object_get(json_object_get(status, "redis"), "state"));

    struct dps_stats stats;
    dps_stats_get(&stats);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double elapsed = seconds_between(&view->beat_before, &now);
    double rate =
        elapsed > 0 ? (double)(stats.certificates_issued - view->issued_before) / elapsed : 0;
    view->issued_before = stats.certificates_issued;
    view->beat_before = now;

    char api_url[192], device_address[160];
    int written = snprintf(api_url, sizeof(api_url), "%s://",
                           settings->api.cert_file != NULL ? "https" : "http");
    announced(view, settings->api.listen != NULL ? settings->api.listen : "", api_url + written,
              sizeof(api_url) - (size_t)written);
    announced(view, settings->listen[0], device_address, sizeof(device_address));
    json_t *entry = json_pack(
        "{s:s, s:s, s:s, s:s, s:O?, s:O?, s:f, s:s, s:s, s:s}", "name", settings->cluster.node,
        "apiUrl", api_url, "deviceAddress", device_address, "state",
        !ready     ? "unready"
        : degraded ? "degraded"
                   : "ready",
        "connections", json_object_get(node, "connections"), "configurationGeneration",
        json_object_get(node, "configurationGeneration"), "provisioningsPerSecond",
        (double)(long long)(rate * 10 + 0.5) / 10, "version", view->version, "openssl",
        OpenSSL_version(OPENSSL_VERSION), "startedAt", view->started_at);
    if (entry != NULL && settings->api.listen == NULL)
        json_object_del(entry, "apiUrl");
    if (entry != NULL && !ready)
        json_object_set_new(entry, "reason",
                            json_string("not taking devices (starting or draining)"));
    else if (entry != NULL && degraded)
        json_object_set_new(entry, "reason",
                            json_sprintf("redis %s", redis_state != NULL ? redis_state : "down"));
    json_decref(status);
    char *text = entry != NULL ? json_dumps(entry, JSON_COMPACT) : NULL;
    json_decref(entry);
    return text;
}

static void beat(struct cluster_view *view)
{
    char err[256] = "out of memory";
    char *entry = entry_text(view);
    int status = entry != NULL ? redis_admin_heartbeat(view->redis, view->settings->cluster.node,
                                                       entry, CLUSTER_VIEW_TTL_MS, err, sizeof(err))
                               : -1;
    free(entry);
    atomic_store(&heartbeat_connections_total, redis_admin_session_connects(view->redis));
    if (status == 0) {
        atomic_fetch_add(&heartbeats_total, 1);
        if (view->failing)
            log_msg(LOG_INFO, "heartbeat back", "node=%s", view->settings->cluster.node);
        view->failing = false;
        return;
    }
    atomic_fetch_add(&heartbeat_failures_total, 1);
    if (!view->failing)
        log_msg(LOG_WARN, "heartbeat failed", "node=%s error=\"%s\"", view->settings->cluster.node,
                err);
    view->failing = true;
}

static void *view_run(void *user)
{
    struct cluster_view *view = user;
    pthread_mutex_lock(&view->lock);
    while (!view->stopping) {
        pthread_mutex_unlock(&view->lock);
        beat(view);
        pthread_mutex_lock(&view->lock);
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += CLUSTER_VIEW_INTERVAL_MS / 1000;
        deadline.tv_nsec += (CLUSTER_VIEW_INTERVAL_MS % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (!view->stopping &&
               pthread_cond_timedwait(&view->wake, &view->lock, &deadline) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&view->lock);
    return NULL;
}

struct cluster_view *cluster_view_start(struct plane *plane, const char *version, char *err,
                                        size_t err_length)
{
    err[0] = '\0';
    const struct config *settings = plane_settings(plane);
    if (!cluster_view_enabled(settings))
        return NULL;
    struct cluster_view *view = calloc(1, sizeof(*view));
    if (view == NULL) {
        snprintf(err, err_length, "out of memory");
        return NULL;
    }
    view->plane = plane;
    view->settings = settings;
    view->redis = redis_admin_session_new(&settings->cluster);
    if (view->redis == NULL) {
        snprintf(err, err_length, "out of memory");
        free(view);
        return NULL;
    }
    snprintf(view->version, sizeof(view->version), "%s", version);
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    dps_format_time(&wall, view->started_at);
    clock_gettime(CLOCK_MONOTONIC, &view->beat_before);
    struct dps_stats stats;
    dps_stats_get(&stats);
    view->issued_before = stats.certificates_issued;
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&view->wake, &attributes);
    pthread_condattr_destroy(&attributes);
    pthread_mutex_init(&view->lock, NULL);
    int status = pthread_create(&view->thread, NULL, view_run, view);
    if (status != 0) {
        snprintf(err, err_length, "heartbeat thread: %s", strerror(status));
        pthread_cond_destroy(&view->wake);
        pthread_mutex_destroy(&view->lock);
        redis_admin_session_free(view->redis);
        free(view);
        return NULL;
    }
    return view;
}

void cluster_view_stop(struct cluster_view *view)
{
    if (view == NULL)
        return;
    pthread_mutex_lock(&view->lock);
    view->stopping = true;
    pthread_cond_signal(&view->wake);
    pthread_mutex_unlock(&view->lock);
    pthread_join(view->thread, NULL);
    char err[256];
    if (redis_admin_leave(view->redis, view->settings->cluster.node, err, sizeof(err)) != 0)
        log_msg(LOG_WARN, "heartbeat not withdrawn", "node=%s error=\"%s\"",
                view->settings->cluster.node, err);
    log_msg(LOG_INFO, "heartbeats stopped", "node=%s redis_connections=%lu",
            view->settings->cluster.node, redis_admin_session_connects(view->redis));
    redis_admin_session_free(view->redis);
    pthread_cond_destroy(&view->wake);
    pthread_mutex_destroy(&view->lock);
    free(view);
}

json_t *cluster_view_nodes(const struct config *settings, char *err, size_t err_length)
{
    char **entries;
    size_t count;
    if (redis_admin_nodes(&settings->cluster, &entries, &count, err, err_length) != 0)
        return NULL;
    json_t *nodes = json_array();
    for (size_t i = 0; nodes != NULL && i < count; i++) {
        json_t *entry = json_loads(entries[i], 0, NULL);
        if (json_is_object(entry))
            json_array_append(nodes, entry);
        json_decref(entry);
    }
    redis_admin_entries_free(entries, count);
    if (nodes == NULL)
        snprintf(err, err_length, "out of memory");
    return nodes;
}

void cluster_view_count_fanout_error(void)
{
    atomic_fetch_add(&fanout_errors_total, 1);
}

void cluster_view_metrics(FILE *out)
{
    fprintf(
        out,
        "# HELP dps_cluster_heartbeats_total Heartbeats written to Redis.\n"
        "# TYPE dps_cluster_heartbeats_total counter\ndps_cluster_heartbeats_total %llu\n"
        "# HELP dps_cluster_heartbeat_failures_total Heartbeats Redis did not take.\n"
        "# TYPE dps_cluster_heartbeat_failures_total counter\n"
        "dps_cluster_heartbeat_failures_total %llu\n"
        "# HELP dps_cluster_heartbeat_connections_total Connections to Redis the heartbeats "
        "opened (one kept while Redis answers).\n"
        "# TYPE dps_cluster_heartbeat_connections_total counter\n"
        "dps_cluster_heartbeat_connections_total %llu\n"
        "# HELP dps_cluster_fanout_errors_total Calls to other nodes' APIs for a cluster-wide "
        "list that failed or timed out.\n"
        "# TYPE dps_cluster_fanout_errors_total counter\ndps_cluster_fanout_errors_total %llu\n",
        (unsigned long long)atomic_load(&heartbeats_total),
        (unsigned long long)atomic_load(&heartbeat_failures_total),
        (unsigned long long)atomic_load(&heartbeat_connections_total),
        (unsigned long long)atomic_load(&fanout_errors_total));
}
