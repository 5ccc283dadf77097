/*
 * plane_metrics: what the node shows of itself: the Prometheus text of
 * /metrics (the node, its shards, the provisioning steps, the signer, the
 * store, and with a cluster its Redis clients, rate leases and the shared
 * configuration's sync) and the status document of the management API.
 *
 * Both only read: the snapshot in force through plane_config_acquire, the
 * counters each module keeps, and plane->blocklist under plane->lock for
 * the count of entries.
 */
#include "control/plane_internal.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/steps.h"
#include "control/allocator.h"
#include "control/cluster_view.h"
#include "control/jwks_remote.h"
#include "crypto/signer.h"
#include "dataplane/cluster.h"
#include "dataplane/cluster_rate.h"
#include "dataplane/dps_handlers.h"
#include "dataplane/shard.h"
#include "store/store.h"

/* The signing limits' leases from Redis, and whether this node runs on its share. */
static void plane_rate_metrics(FILE *out)
{
    struct cluster_rate_stats rate;
    cluster_rate_stats_get(&rate);
    fprintf(out,
            "# HELP dps_rate_leases_total Token leases Redis answered for the signing limits.\n"
            "# TYPE dps_rate_leases_total counter\ndps_rate_leases_total %llu\n"
            "# HELP dps_rate_tokens_total Signing tokens: granted by Redis in leases; steps "
            "admitted and refused (5.03) on this node.\n# TYPE dps_rate_tokens_total counter\n"
            "dps_rate_tokens_total{result=\"granted\"} %llu\n"
            "dps_rate_tokens_total{result=\"admitted\"} %llu\n"
            "dps_rate_tokens_total{result=\"refused\"} %llu\n"
            "# HELP dps_rate_redis_round_trips_total Lease scripts sent to Redis, and those "
            "without a usable answer.\n# TYPE dps_rate_redis_round_trips_total counter\n"
            "dps_rate_redis_round_trips_total %llu\n"
            "dps_rate_redis_round_trips_total{result=\"failed\"} %llu\n"
            "# HELP dps_rate_fallback 1 while Redis is unreachable and the limits fall back to "
            "this node's share.\n# TYPE dps_rate_fallback gauge\ndps_rate_fallback %d\n"
            "# HELP dps_rate_live_nodes Live nodes as last seen in Redis (the share's divisor).\n"
            "# TYPE dps_rate_live_nodes gauge\ndps_rate_live_nodes %u\n",
            (unsigned long long)rate.leases, (unsigned long long)rate.granted,
            (unsigned long long)rate.admitted, (unsigned long long)rate.refused,
            (unsigned long long)rate.round_trips, (unsigned long long)rate.failures,
            rate.fallback > 0 ? 1 : 0, rate.live_nodes);
    fprintf(out,
            "# HELP dps_rate_source_total Signing steps the per-source limit admitted and "
            "refused (5.03).\n# TYPE dps_rate_source_total counter\n"
            "dps_rate_source_total{result=\"admitted\"} %llu\n"
            "dps_rate_source_total{result=\"refused\"} %llu\n"
            "# HELP dps_rate_source_redis_round_trips_total Per-source scripts sent to Redis, and "
            "those decided here for want of an answer.\n"
            "# TYPE dps_rate_source_redis_round_trips_total counter\n"
            "dps_rate_source_redis_round_trips_total %llu\n"
            "dps_rate_source_redis_round_trips_total{result=\"failed\"} %llu\n"
            "# HELP dps_rate_lease_waits_total Signing steps that waited for a lease's refill "
            "instead of a refusal.\n# TYPE dps_rate_lease_waits_total counter\n"
            "dps_rate_lease_waits_total %llu\n",
            (unsigned long long)rate.source_admitted, (unsigned long long)rate.source_refused,
            (unsigned long long)rate.source_round_trips, (unsigned long long)rate.source_failures,
            (unsigned long long)rate.waits);
}

/* Operator keys from an identity provider (only with api.authority or api.jwksUrl). */
static void plane_operator_key_metrics(FILE *out)
{
    struct jwks_remote_stats keys;
    jwks_remote_stats_get(&keys);
    if (keys.providers == 0) {
        return;
    }
    fprintf(out,
            "# HELP dps_operator_key_fetches_total Fetches of the identity provider's keys "
            "(discovery when needed, then the JWKS), and those that installed nothing.\n"
            "# TYPE dps_operator_key_fetches_total counter\n"
            "dps_operator_key_fetches_total %llu\n"
            "dps_operator_key_fetches_total{result=\"failed\"} %llu\n"
            "# HELP dps_operator_key_last_success_timestamp_seconds When keys were last "
            "installed (Unix time); 0 before the first success.\n"
            "# TYPE dps_operator_key_last_success_timestamp_seconds gauge\n"
            "dps_operator_key_last_success_timestamp_seconds %lld\n"
            "# HELP dps_operator_keys Operator token keys held from the last installed JWKS.\n"
            "# TYPE dps_operator_keys gauge\ndps_operator_keys %u\n",
            (unsigned long long)keys.attempts, (unsigned long long)keys.failures,
            (long long)keys.last_success_unix, keys.keys);
}

/*
 * The counters of each shard's Redis client (store/redis.h, struct redis_stats), read from the
 * shard's struct cluster, which owns them: they outlive the client. The shard's rate leases go
 * through the same client; the control plane's own client is not counted here.
 */
static void plane_redis_client_metrics(const struct redis_stats *stats, unsigned count, FILE *out)
{
    static const struct {
        const char *name, *type, *help;
        size_t offset;
    } redis_metrics[] = {
        {"dps_redis_commands_total", "counter", "Commands the shard's Redis client accepted.",
         offsetof(struct redis_stats, commands)},
        {"dps_redis_replies_total", "counter", "Commands Redis answered (a result or an error).",
         offsetof(struct redis_stats, replies)},
        {"dps_redis_unavailable_total", "counter",
         "Commands refused or answered unavailable: Redis down, deadline passed, connection lost.",
         offsetof(struct redis_stats, unavailable)},
        {"dps_redis_busy_total", "counter",
         "Commands refused because the client's in-flight limit was reached.",
         offsetof(struct redis_stats, busy)},
        {"dps_redis_timeouts_total", "counter",
         "Connections to the primary dropped as stalled (deadlines passed).",
         offsetof(struct redis_stats, timeouts)},
        {"dps_redis_late_total", "counter",
         "Commands answered unavailable at their deadline while the connection was kept.",
         offsetof(struct redis_stats, late)},
        {"dps_redis_late_replies_total", "counter",
         "Replies that came after their command's deadline (read and dropped).",
         offsetof(struct redis_stats, late_replies)},
        {"dps_redis_connects_total", "counter", "Times the client became ready on a primary.",
         offsetof(struct redis_stats, connects)},
        {"dps_redis_noscript_reloads_total", "counter",
         "Scripts loaded again after Redis answered NOSCRIPT.",
         offsetof(struct redis_stats, noscript_reloads)},
        {"dps_redis_failovers_total", "counter", "Moves to another primary (Sentinel).",
         offsetof(struct redis_stats, failovers)},
        {"dps_redis_in_flight", "gauge", "Commands waiting for Redis's answer now.",
         offsetof(struct redis_stats, in_flight)},
    };
    for (size_t m = 0; m < sizeof(redis_metrics) / sizeof(redis_metrics[0]); m++) {
        fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", redis_metrics[m].name, redis_metrics[m].help,
                redis_metrics[m].name, redis_metrics[m].type);
        for (unsigned i = 0; i < count; i++) {
            uint64_t value;
            memcpy(&value, (const char *)&stats[i] + redis_metrics[m].offset, sizeof(value));
            fprintf(out, "%s{shard=\"%u\"} %llu\n", redis_metrics[m].name, i,
                    (unsigned long long)value);
        }
    }
}

/* The shards' Redis clients and the bindings shared through Redis (only with cluster.redis). */
static void plane_cluster_metrics(struct plane *plane, FILE *out)
{
    struct cluster_status status;
    if (plane->shard_count == 0 || !shard_cluster_status(plane->shards[0], &status)) {
        return;
    }
    struct redis_stats redis[PLANE_MAX_SHARDS];
    fprintf(out, "# HELP dps_redis_up 1 while the shard's Redis client is connected to the "
                 "primary.\n# TYPE dps_redis_up gauge\n");
    for (unsigned i = 0; i < plane->shard_count; i++) {
        shard_cluster_status(plane->shards[i], &status);
        redis[i] = status.redis;
        fprintf(out, "dps_redis_up{shard=\"%u\"} %d\n", i, status.up ? 1 : 0);
    }
    plane_redis_client_metrics(redis, plane->shard_count, out);
    plane_rate_metrics(out);
    struct cluster_stats stats;
    cluster_stats_get(&stats);
    fprintf(out,
            "# HELP dps_binding_conflicts_total Device ids a re-seed found bound to two records "
            "across the cluster (both refused until released).\n"
            "# TYPE dps_binding_conflicts_total counter\ndps_binding_conflicts_total %llu\n"
            "# HELP dps_bindings_unreconciled_total Bindings made while Redis was unreachable "
            "(bindingsWhenRedisDown: local), reconciled by the next re-seed.\n"
            "# TYPE dps_bindings_unreconciled_total counter\n"
            "dps_bindings_unreconciled_total %llu\n"
            "# HELP dps_bindings_seeded_total Bindings this node wrote into Redis on re-seeds.\n"
            "# TYPE dps_bindings_seeded_total counter\ndps_bindings_seeded_total %llu\n"
            "# HELP dps_binding_claims_total New device-id bindings Redis answered, by result.\n"
            "# TYPE dps_binding_claims_total counter\n"
            "dps_binding_claims_total{result=\"granted\"} %llu\n"
            "dps_binding_claims_total{result=\"refused\"} %llu\n"
            "dps_binding_claims_total{result=\"unavailable\"} %llu\n",
            (unsigned long long)stats.conflicts, (unsigned long long)stats.unreconciled,
            (unsigned long long)stats.seeded,
            (unsigned long long)(stats.claims - stats.claims_refused),
            (unsigned long long)stats.claims_refused, (unsigned long long)stats.unavailable);
}

/* {state, primary} of the shards' Redis clients: "down" when any is; NULL without Redis. */
static json_t *plane_redis_status(struct plane *plane, bool *degraded)
{
    struct cluster_status status, first;
    *degraded = false;
    if (plane->shard_count == 0 || !shard_cluster_status(plane->shards[0], &first)) {
        return NULL;
    }
    const char *state = first.state;
    for (unsigned i = 0; i < plane->shard_count; i++) {
        shard_cluster_status(plane->shards[i], &status);
        if (!status.up) {
            *degraded = true;
            state = status.state[0] == 'c' ? "connecting" : "down";
        }
    }
    return json_pack("{s:s, s:s}", "state", state, "primary", first.primary);
}

char *plane_metrics(struct plane *plane)
{
    char *text = NULL;
    size_t length = 0;
    FILE *out = open_memstream(&text, &length);
    if (out == NULL) {
        return NULL;
    }
    const struct config *config = plane_config_acquire(plane);
    struct plane_snapshot *snapshot = plane_snapshot_of(config);

    fprintf(out,
            "# HELP dps_ready 1 while the node takes devices.\n# TYPE dps_ready gauge\n"
            "dps_ready %d\n",
            plane_ready(plane) ? 1 : 0);
    fprintf(out,
            "# HELP dps_build_info The OpenSSL and the malloc this process runs.\n"
            "# TYPE dps_build_info gauge\n"
            "dps_build_info{openssl=\"%s\",allocator=\"%s\"} 1\n",
            OpenSSL_version(OPENSSL_VERSION), allocator_running());
    fprintf(out,
            "# HELP dps_configuration_generation Snapshots published since start (in a cluster: "
            "the cluster's configuration generation this node applied).\n"
            "# TYPE dps_configuration_generation gauge\ndps_configuration_generation %llu\n",
            (unsigned long long)(plane->sync.generation != NULL
                                     ? plane->sync.generation(plane->sync.user)
                                     : snapshot->base.generation));
    if (plane->sync.metrics != NULL) {
        plane->sync.metrics(plane->sync.user, out);
    }

    /* One row a series; rows of one metric follow each other and share its HELP and TYPE. */
    static const struct {
        const char *name, *type, *help, *labels;
        size_t offset;
    } shard_metrics[] = {
        {"dps_connections", "gauge", "Connections open.", "",
         offsetof(struct shard_stats, connections)},
        {"dps_connections_accepted_total", "counter", "Connections accepted.", "",
         offsetof(struct shard_stats, accepted)},
        {"dps_handshakes_total", "counter", "TLS handshakes by result.", ",result=\"ok\"",
         offsetof(struct shard_stats, handshakes_ok)},
        {"dps_handshakes_total", NULL, NULL, ",result=\"failed\"",
         offsetof(struct shard_stats, handshakes_failed)},
        {"dps_requests_total", "counter", "CoAP requests received.", "",
         offsetof(struct shard_stats, requests)},
        {"dps_protocol_errors_total", "counter", "Malformed or oversized frames.", "",
         offsetof(struct shard_stats, protocol_errors)},
        {"dps_attestations_total", "counter",
         "Manufacturer certificates attested: chains verified in full, or leaves found in the "
         "verified-leaf cache (a device's next connection within its lifetime).",
         ",path=\"full\"", offsetof(struct shard_stats, attestations_full)},
        {"dps_attestations_total", NULL, NULL, ",path=\"cache\"",
         offsetof(struct shard_stats, attestations_cached)},
        {"dps_handshakes_blocked_total", "counter", "Handshakes refused by the blocklist.", "",
         offsetof(struct shard_stats, blocked)},
        {"dps_admission_refused_total", "counter",
         "Connections refused at accept, before TLS (connection limits, per-source budgets).", "",
         offsetof(struct shard_stats, admission_refused)},
        {"dps_proxy_refused_total", "counter",
         "Connections from a trusted balancer closed for a missing or malformed PROXY header.", "",
         offsetof(struct shard_stats, proxy_refused)},
    };
    struct shard_stats stats[PLANE_MAX_SHARDS];
    for (unsigned i = 0; i < plane->shard_count; i++) {
        shard_get_stats(plane->shards[i], &stats[i]);
    }
    for (size_t m = 0; m < sizeof(shard_metrics) / sizeof(shard_metrics[0]); m++) {
        if (shard_metrics[m].help != NULL) {
            fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", shard_metrics[m].name,
                    shard_metrics[m].help, shard_metrics[m].name, shard_metrics[m].type);
        }
        for (unsigned i = 0; i < plane->shard_count; i++) {
            const char *field = (const char *)&stats[i] + shard_metrics[m].offset;
            unsigned long long value =
                shard_metrics[m].offset == offsetof(struct shard_stats, connections)
                    ? *(const unsigned *)field
                    : (unsigned long long)*(const uint64_t *)field;
            fprintf(out, "%s{shard=\"%u\"%s} %llu\n", shard_metrics[m].name, i,
                    shard_metrics[m].labels, value);
        }
    }

    plane_cluster_metrics(plane, out);
    fprintf(out,
            "# HELP dps_handshake_failures_total Failed handshakes by reason: the manufacturer "
            "chain was refused, the device is blocked, or TLS itself failed.\n"
            "# TYPE dps_handshake_failures_total counter\n");
    for (unsigned i = 0; i < plane->shard_count; i++) {
        uint64_t refused = stats[i].refused_attestation + stats[i].blocked;
        uint64_t tls =
            stats[i].handshakes_failed > refused ? stats[i].handshakes_failed - refused : 0;
        fprintf(out,
                "dps_handshake_failures_total{shard=\"%u\",reason=\"attestation\"} %llu\n"
                "dps_handshake_failures_total{shard=\"%u\",reason=\"blocked\"} %llu\n"
                "dps_handshake_failures_total{shard=\"%u\",reason=\"tls\"} %llu\n",
                i, (unsigned long long)stats[i].refused_attestation, i,
                (unsigned long long)stats[i].blocked, i, (unsigned long long)tls);
    }

    struct dps_stats dps;
    dps_stats_get(&dps);
    static const char *const classes[] = {"2xx", "4xx", "5xx"};
    fprintf(out, "# HELP dps_provisioning_steps_total Device steps answered, by step and result "
                 "class.\n# TYPE dps_provisioning_steps_total counter\n");
    for (size_t s = 0; s < STEP_COUNT; s++) {
        for (size_t c = 0; c < 3; c++) {
            fprintf(out, "dps_provisioning_steps_total{step=\"%s\",class=\"%s\"} %llu\n",
                    dps.steps[s].name, classes[c], (unsigned long long)dps.steps[s].by_class[c]);
        }
    }
    fprintf(out, "# HELP dps_provisioning_step_duration_seconds Time from request to answer, "
                 "record synced.\n# TYPE dps_provisioning_step_duration_seconds histogram\n");
    for (size_t s = 0; s < STEP_COUNT; s++) {
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= DPS_LATENCY_BUCKETS; b++) {
            cumulative += dps.steps[s].latency_buckets[b];
            if (b < DPS_LATENCY_BUCKETS) {
                fprintf(out,
                        "dps_provisioning_step_duration_seconds_bucket{step=\"%s\",le=\"%g\"} "
                        "%llu\n",
                        dps.steps[s].name, dps_latency_bounds[b], (unsigned long long)cumulative);
            } else {
                fprintf(out,
                        "dps_provisioning_step_duration_seconds_bucket{step=\"%s\",le=\"+Inf\"} "
                        "%llu\n",
                        dps.steps[s].name, (unsigned long long)cumulative);
            }
        }
        fprintf(out, "dps_provisioning_step_duration_seconds_sum{step=\"%s\"} %.6f\n",
                dps.steps[s].name, dps.steps[s].latency_sum_s);
        fprintf(out, "dps_provisioning_step_duration_seconds_count{step=\"%s\"} %llu\n",
                dps.steps[s].name, (unsigned long long)cumulative);
    }
    fprintf(out,
            "# HELP dps_rejections_total Requests answered 5.03 before any work, by reason.\n"
            "# TYPE dps_rejections_total counter\n"
            "dps_rejections_total{reason=\"rate_limit\"} %llu\n"
            "dps_rejections_total{reason=\"busy\"} %llu\n",
            (unsigned long long)dps.rate_limited, (unsigned long long)dps.busy);
    fprintf(out,
            "# HELP dps_certificates_issued_total Identity certificates handed out (logged "
            "durably).\n# TYPE dps_certificates_issued_total counter\n"
            "dps_certificates_issued_total %llu\n",
            (unsigned long long)dps.certificates_issued);
    fprintf(out, "# HELP dps_device_id_refusals_total Device ids a device named for itself and "
                 "was refused (4.03), by reason.\n# TYPE dps_device_id_refusals_total counter\n");
    for (size_t r = 0; r < DPS_REFUSAL_COUNT; r++) {
        fprintf(out, "dps_device_id_refusals_total{reason=\"%s\"} %llu\n", dps_refusal_name(r),
                (unsigned long long)dps.device_id_refused[r]);
    }

    struct signer_stats signer;
    signer_get_stats(snapshot->base.signer, &signer);
    fprintf(out,
            "# HELP dps_signer_queue_depth Requests waiting for the signer.\n"
            "# TYPE dps_signer_queue_depth gauge\ndps_signer_queue_depth %zu\n"
            "# HELP dps_signer_batches_total Batches the signer took.\n"
            "# TYPE dps_signer_batches_total counter\ndps_signer_batches_total %llu\n"
            "# HELP dps_signer_requests_total Requests the signer finished.\n"
            "# TYPE dps_signer_requests_total counter\ndps_signer_requests_total %llu\n",
            signer.queue_depth, (unsigned long long)signer.batches,
            (unsigned long long)signer.requests);
    struct store_stats store;
    store_get_stats(plane->store, &store);
    fprintf(out,
            "# HELP dps_store_commits_total Synced write batches (group commits).\n"
            "# TYPE dps_store_commits_total counter\ndps_store_commits_total %llu\n"
            "# HELP dps_store_lazy_commits_total Batches of lazy record lines only, appended "
            "without a sync (the next synced batch makes them durable).\n"
            "# TYPE dps_store_lazy_commits_total counter\ndps_store_lazy_commits_total %llu\n"
            "# HELP dps_store_writes_total Writes applied.\n"
            "# TYPE dps_store_writes_total counter\ndps_store_writes_total %llu\n"
            "# HELP dps_store_queue_depth Writes waiting for the next commit.\n"
            "# TYPE dps_store_queue_depth gauge\ndps_store_queue_depth %zu\n"
            "# HELP dps_store_healthy 1 while the store makes records durable.\n"
            "# TYPE dps_store_healthy gauge\ndps_store_healthy %d\n"
            "# HELP dps_store_failures_total Commits that failed (devices got 5.03).\n"
            "# TYPE dps_store_failures_total counter\ndps_store_failures_total %llu\n"
            "# HELP dps_store_recoveries_total Times the store reopened itself after a failure.\n"
            "# TYPE dps_store_recoveries_total counter\ndps_store_recoveries_total %llu\n",
            (unsigned long long)store.commits, (unsigned long long)store.lazy_commits,
            (unsigned long long)store.writes, store.queue_depth,
            store_healthy(plane->store) ? 1 : 0, (unsigned long long)store.failures,
            (unsigned long long)store.recoveries);
    plane_operator_key_metrics(out);
    if (cluster_view_enabled(plane->settings))
        cluster_view_metrics(out);
    plane_config_release(plane, config);
    fclose(out);
    return text;
}

json_t *plane_status(struct plane *plane, const char *owner, bool admin)
{
    const struct config *config = plane_config_acquire(plane);
    const struct config_api *api = &plane->settings->api;
    pthread_mutex_lock(&plane->lock);
    size_t blocks = json_array_size(plane->blocklist), own_blocks = 0;
    size_t index;
    json_t *entry;
    json_array_foreach(plane->blocklist, index, entry)
    {
        own_blocks += strcmp(json_string_value(json_object_get(entry, "owner")), owner) == 0;
    }
    pthread_mutex_unlock(&plane->lock);
    json_t *status = json_pack(
        "{s:b, s:s, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I}}", "ready", plane_ready(plane),
        "owner", owner, "enrollmentGroups", (json_int_t)plane_owned_count(config, true, owner),
        "hubs", (json_int_t)plane_owned_count(config, false, owner), "blocklistEntries",
        (json_int_t)own_blocks, "quotas", "enrollmentGroups", (json_int_t)api->quota_groups, "hubs",
        (json_int_t)api->quota_hubs, "blocklistEntries", (json_int_t)api->quota_blocks,
        "requestsPerSecond", (json_int_t)api->quota_requests_per_second, "requestBurst",
        (json_int_t)api->quota_request_burst);
    if (status != NULL && admin) {
        unsigned connections = 0;
        for (unsigned i = 0; i < plane->shard_count; i++) {
            struct shard_stats stats;
            shard_get_stats(plane->shards[i], &stats);
            connections += stats.connections;
        }
        json_t *node = json_pack(
            "{s:i, s:s, s:i, s:I, s:I, s:I, s:I}", "shards", (int)plane->shard_count, "backend",
            plane->shard_count > 0 ? shard_backend_name(plane->shards[0]) : "none", "connections",
            (int)connections, "configurationGeneration",
            (json_int_t)(plane->sync.generation != NULL
                             ? plane->sync.generation(plane->sync.user)
                             : plane_snapshot_of(config)->base.generation),
            "enrollmentGroups", (json_int_t)config->group_count, "hubs",
            (json_int_t)config->hub_count, "blocklistEntries", (json_int_t)blocks);
        if (node != NULL && plane->sync.status != NULL) {
            json_object_set_new(node, "configurationSync", plane->sync.status(plane->sync.user));
        }
        if (node == NULL || json_object_set_new(status, "node", node) != 0) {
            json_decref(status);
            status = NULL;
        }
    }
    plane_config_release(plane, config);
    json_object_set_new(status, "openssl", json_string(OpenSSL_version(OPENSSL_VERSION)));
    json_object_set_new(status, "allocator", json_string(allocator_running()));
    bool degraded;
    json_t *redis = plane_redis_status(plane, &degraded);
    if (redis != NULL) {
        /* Degraded, not unready: the node goes on (renewals, the closed or local policy). */
        json_object_set_new(status, "redis", redis);
        json_object_set_new(status, "degraded", json_boolean(degraded));
        struct cluster_rate_stats rate;
        cluster_rate_stats_get(&rate);
        json_object_set_new(status, "rateLimits",
                            json_pack("{s:s, s:i}", "mode", rate.fallback > 0 ? "share" : "cluster",
                                      "liveNodes", (json_int_t)rate.live_nodes));
    }
    return status;
}
