/*
 * dps_handlers: the DPS resources of PROTOCOL.md section 2, above CoAP.
 *
 * A handler takes a decoded request and the connection's session and
 * answers through dps_reply(); it never sees a socket, an SSL object or a
 * buffer. Steps that need a signature or a durable write continue on worker
 * threads and come back to the shard through its mailbox: the handler's
 * answer then arrives later, but always on the shard's thread, and always
 * after the step's record is synced to disk.
 *
 * Every step writes its part of the provisioning record (store.h) before
 * answering, success or failure, so a record shows each step with its code.
 */
#ifndef DPS_HANDLERS_H
#define DPS_HANDLERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/domain.h"
#include "common/steps.h"
#include "crypto/attestation.h"
#include "crypto/uuid.h"
#include "dataplane/payload.h"

struct blocklist;
struct cluster;
struct cluster_rate;
struct dps_counters;
struct signer;
struct store;
struct mailbox;

/*
 * What handlers may use. One per shard and snapshot generation (the shard's
 * view of a snapshot, dataplane/shard.c): the configuration, signer and store
 * are shared (read-only or thread-safe); the library context and mailbox are
 * the shard's own.
 *
 * The services are reference counted by their owner. Every operation that
 * outlives dps_handle() holds one reference from its start to its release
 * (hold/drop, called on the shard's thread only), so what it reads after its
 * connection is gone, or after a reload made another generation current,
 * stays valid.
 */
struct dps_services {
    const struct config *config;
    const struct dps_catalog *catalog;
    struct signer *signer;
    struct store *store;
    struct mailbox *mailbox;
    OSSL_LIB_CTX *libctx;
    struct cluster_rate *rate; /* the shard's signing limits (dataplane/cluster_rate.h) */
    const struct blocklist *blocklist;
    struct cluster *cluster; /* the shard's Redis side (dataplane/cluster.h); NULL: single node */
    unsigned *pending_ops;   /* this shard's requests waiting for workers (shard-owned) */
    struct dps_counters *counters; /* this shard's step counters (shard-owned) */
    void (*hold)(const struct dps_services *services);
    void (*drop)(const struct dps_services *services);
};

/*
 * Derived from the configuration once per snapshot and shared read-only: per
 * group its owner UUID and owner key (store/records.h), its complete ACL list
 * and its initial resources as JSON text (the record's form), ready to serve
 * in any format, and the UUIDs its ACLs name as subjects.
 */
struct dps_catalog_group {
    char owner_uuid[37];
    char owner_key[37];   /* where the group's devices' records, issuance and bindings live */
    char *acl_json;       /* JSON array: default entries and/or the group's own */
    char *resources_json; /* JSON array of {"href","content"}; "[]" when none */
    struct dps_uuid *acl_subjects; /* every "subject": {"uuid"} of acl_json */
    size_t acl_subject_count;
};

/* Why a device id is reserved: it names someone a device must never become. */
enum dps_reserved_kind {
    DPS_RESERVED_OWNER, /* an owner's UUID (any owner with a group or a hub) */
    DPS_RESERVED_HUB,   /* a hub id */
};

struct dps_reserved_id {
    struct dps_uuid uuid;
    enum dps_reserved_kind kind;
};

struct dps_catalog {
    struct dps_catalog_group *groups; /* config->group_count entries */
    struct dps_reserved_id *reserved; /* sorted by uuid, for bsearch */
    size_t reserved_count;
};

/*
 * Builds the catalog of config. With a previous configuration and its
 * catalog (built against the same hubs), the entries of groups whose inputs
 * did not change are copied rather than derived again, so a change costs
 * what it touches. 0, or -1 with err naming the group when its ACL or
 * resources do not fit the protocol.
 */
int dps_catalog_build(const struct config *config, const struct config *previous_config,
                      const struct dps_catalog *previous, struct dps_catalog *catalog, char *err,
                      size_t err_length);
void dps_catalog_free(const struct config *config, struct dps_catalog *catalog);
/* The entry of catalog->reserved for uuid, or NULL. */
const struct dps_reserved_id *dps_catalog_reserved(const struct dps_catalog *catalog,
                                                   const struct dps_uuid *uuid);

/* Per connection: who the device proved to be. */
struct dps_session {
    struct attestation_result attestation;
    char *leaf_pem; /* manufacturer leaf, for the record */
    char record_id[37];
    char device_id[37]; /* "" until the device names itself */
    size_t hub_index;   /* hub chosen at cloud-configuration */
    bool hub_chosen;
    char creation_date[24]; /* ns since epoch, text; loaded or set at first step */
    const char *peer;       /* the device's address ("HOST:PORT", behind a balancer its PROXY
                               header's), owned by the connection; for the record */
    /*
     * The top-level record part is applied for record_written_for (in the
     * WAL, durable with the next synced batch), unless the store has failed
     * since (its failure count is no longer record_written_failures).
     */
    bool record_written;
    char record_written_for[37];
    uint64_t record_written_failures;
    unsigned pending;                             /* requests waiting for workers */
    bool gone;                                    /* the connection closed while work was pending */
    void (*release)(struct dps_session *session); /* frees the connection once idle */
    void (*resume)(struct dps_session *session);  /* takes its next request once idle */
};

struct dps_request {
    uint8_t method;
    const char *path;
    int content_format; /* -1 when absent */
    int accept;         /* -1 when absent */
    const uint8_t *payload;
    size_t payload_length;
    uint8_t token[8];
    uint8_t token_length;
};

struct dps_response {
    uint8_t code;
    int content_format; /* -1: none (diagnostic text) */
    uint32_t max_age;   /* seconds, sent when non-zero (5.03) */
    const uint8_t *payload;
    size_t payload_length;
    uint8_t token[8];
    uint8_t token_length;
};

/*
 * Called on the shard's thread with the response; for a session whose
 * connection is gone it is not called. The payload is valid only during the call.
 */
typedef void (*dps_reply_fn)(struct dps_session *session, const struct dps_response *response);

void dps_handle(const struct dps_services *services, struct dps_session *session,
                const struct dps_request *request, dps_reply_fn reply);

/* Loads or initialises session fields after a successful handshake. */
void dps_session_start(const struct dps_services *services, struct dps_session *session);
void dps_session_clear(struct dps_session *session);

/* ---- counters for /metrics: per shard, summed when read ---- */

#define DPS_LATENCY_BUCKETS 12

/* A shard's own counters (dps_services.counters); freeing one keeps what it counted. */
struct dps_counters *dps_counters_new(void);
void dps_counters_free(struct dps_counters *counters);

/* Upper bounds (seconds) of the latency histogram buckets; one more bucket is +Inf. */
extern const double dps_latency_bounds[DPS_LATENCY_BUCKETS];

struct dps_step_stats {
    const char *name;     /* the record part: "plgdTime", "ownership", ... */
    uint64_t by_class[3]; /* answers 2.xx, 4.xx, 5.xx */
    uint64_t latency_buckets[DPS_LATENCY_BUCKETS + 1]; /* not cumulative */
    double latency_sum_s;
};

/* Why a device's claim of a device id was refused (4.03). */
enum dps_refusal {
    DPS_REFUSED_RESERVED,       /* nil, an owner's UUID, a hub id or an ACL subject */
    DPS_REFUSED_ID_TAKEN,       /* the id is bound to another manufacturer identity */
    DPS_REFUSED_IDENTITY_BOUND, /* this manufacturer identity is bound to another id */
    DPS_REFUSED_BLOCKED,        /* the owner blocked the id */
    DPS_REFUSAL_COUNT,
};

struct dps_stats {
    struct dps_step_stats steps[STEP_COUNT];
    uint64_t rate_limited; /* 5.03 from the signing rate limit */
    uint64_t busy;         /* 5.03 from the pending limit or full queues */
    uint64_t certificates_issued;
    uint64_t device_id_refused[DPS_REFUSAL_COUNT];
};

/* The metric label of a refusal: "reserved", "id_taken", "identity_bound", "blocked". */
const char *dps_refusal_name(enum dps_refusal refusal);

void dps_stats_get(struct dps_stats *stats);

/* Current time as RFC 3339 UTC with microseconds, e.g. 2026-11-28T03:29:22.347476Z. */
void dps_format_time(const struct timespec *when, char out[32]);

#endif
