/*
 * store: the appliance's durable state in RocksDB, one column family per
 * kind of record, and the group-commit writers.
 *
 * Column families and their keys (values are JSON documents, see README).
 * What devices leave behind is kept per owner: every such key starts with
 * the owner key of the owner it was written for (store/records.h: a UUID
 * derived from the owner string), so one owner's reads never meet another's
 * data, whatever group ids or manufacturer certificates they share.
 *   enrollment_groups  group id (UUID text)                  -> group
 *   hubs               hub id (UUID text)                    -> hub
 *   records            owner key "/" record id "/" step name -> step (see below)
 *   issuance           owner key "/" serial (lower-case hex) -> issued certificate entry
 *   bindings           owner key "/device/" device id        -> {"recordId", "owner"}
 *                      owner key "/record/" record id        -> {"deviceId", "owner"}
 *   blocklist          entry id (see control/plane.h)        -> blocklist entry (with its owner)
 *   cluster            the configuration shared through Redis (control/cluster_sync.c):
 *                      "generation" -> the cluster generation applied, "epoch" -> the
 *                      Redis data set it counts in, "outbox/<seq>" -> a change made here not
 *                      yet in Redis, "refused/<kind>/<id>" -> a change this node could not apply
 *
 * A provisioning record is the set of keys "<owner key>/<record id>/<part>":
 * part "record" holds the top-level fields (id, enrollmentGroupId, deviceId,
 * owner, creationDate, attestation), and each step has its own key named as
 * the reference's JSON field: "plgdTime", "ownership", "cloud",
 * "credential", "acl", "resources". Each step value is {"status": {"date":
 * "<ns>", "coapCode": N, "errorMessage": "..."}, ...step data}. Writing a
 * step never needs to read the others; a reader merges the parts into one
 * object. The same manufacturer certificate under two owners is two records.
 *
 * Issuance entries: {"serial", "owner", "deviceId", "recordId",
 * "enrollmentGroupId", "hubId", "notBefore", "notAfter", "issuedAt" (RFC 3339
 * UTC), "certificatePem"}.
 *
 * Bindings come in pairs: a device id is bound to one record (manufacturer
 * identity) and that record to one device id, both per owner.
 *
 * Layout. The default column family holds "layout" (the key layout's
 * version, "2"). A store without it was written by an earlier dpsd (layout
 * 1: records under "<record id>/<part>", issuance under the serial, bindings
 * under the device id, no owner in the key); store_open() moves its keys to
 * the current layout before anything else runs (store/migrate.h), and a
 * read-only open refuses it with a message saying so. A read-only open of a
 * store written before a family existed (cluster) finds that family empty.
 *
 * Writes go through several writer threads: store_submit() queues a
 * store_write, a free writer takes what is queued, applies it as one
 * WriteBatch with sync=true (one fdatasync for many devices; RocksDB also
 * shares one sync among writers committing at once), and then calls each
 * write's done() on that writer thread. A response that depends on a write
 * is sent only from done(), so it is never acknowledged before it is
 * durable. Writes that share a key (put or condition) are committed in the
 * order they were queued; writes that share none may commit in any order.
 *
 * A write may carry conditions, checked by its writer against the database
 * and the writes ahead of it in the same batch: "key is absent or already
 * holds this value", each of them. That serialises device-id binding across
 * shards.
 *
 * A failed commit answers every write of its batch STORE_ERROR (nothing of
 * it is acknowledged) and makes the store unhealthy until a writer thread
 * has reopened the database; no restart is needed.
 */
#ifndef DPS_STORE_H
#define DPS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum store_family {
    STORE_GROUPS,
    STORE_HUBS,
    STORE_RECORDS,
    STORE_ISSUANCE,
    STORE_BINDINGS,
    STORE_BLOCKLIST,
    STORE_CLUSTER,
    STORE_FAMILY_COUNT,
};

enum store_status {
    STORE_OK = 0,
    STORE_ERROR = -1,    /* I/O error: nothing of this write was applied */
    STORE_CONFLICT = -2, /* the condition did not hold: nothing of this write was applied */
    STORE_BUSY = -3,     /* the commit queue is full */
    STORE_NOT_FOUND = -4,
};

#define STORE_MAX_PUTS 8
#define STORE_MAX_CONDITIONS 2
#define STORE_LAYOUT_VERSION 2
#define STORE_DEFAULT_WRITERS 16
#define STORE_MAX_WRITERS 32

struct store_put {
    enum store_family family;
    const char *key; /* bytes, not necessarily NUL-terminated */
    size_t key_length;
    const char *value; /* store_put_sync() only: NULL deletes the key */
    size_t value_length;
};

struct store_write {
    /* Filled by the requester; the buffers must live until done(). */
    struct store_put puts[STORE_MAX_PUTS];
    size_t put_count;
    /* Each conditions[i].key must be absent or hold conditions[i].value. */
    struct store_put conditions[STORE_MAX_CONDITIONS];
    size_t condition_count;
    void (*done)(struct store_write *write); /* called on a writer thread */
    void *user;
    /*
     * A lazy write needs no fsync of its own: it is appended to the WAL with
     * its batch, and made durable by the next synced batch (a batch is synced
     * when any of its writes is not lazy). done() still comes after the
     * append; a crash before the next sync may lose it. For record lines
     * whose answer hands out nothing that must be on record first.
     */
    bool lazy;

    /* Filled by the store before done(). */
    int status;               /* enum store_status */
    size_t failed_condition;  /* STORE_CONFLICT: the index of the condition that did not hold */
    struct store_write *next; /* queue link */
};

struct store_stats {
    uint64_t commits;      /* synced batches */
    uint64_t lazy_commits; /* batches of lazy writes only, appended without a sync */
    uint64_t writes;       /* store_write requests applied */
    size_t queue_depth;
    uint64_t failures;   /* failed commits and synchronous writes */
    uint64_t recoveries; /* reopens that made the store writable again after a failure */
};

struct store;

/*
 * Opens (creating if needed, mode 0700) the database in dir, brings a store
 * of an earlier layout to the current one, and starts `writers` writer
 * threads (0: STORE_DEFAULT_WRITERS; at most STORE_MAX_WRITERS). A dir group
 * or others may write to is refused. NULL with err.
 */
struct store *store_open(const char *dir, size_t queue_limit, size_t writers, char *err,
                         size_t err_length);

/*
 * Opens an existing database read-only (tools; works while the daemon runs).
 * NULL with err, also when the store is of an earlier layout (it cannot be
 * migrated read-only).
 */
struct store *store_open_readonly(const char *dir, char *err, size_t err_length);

/* Finishes queued writes, stops the writers, closes the database. */
void store_close(struct store *store);

/*
 * Queues a write. STORE_OK, or STORE_BUSY when the queue is full, or
 * STORE_ERROR when read-only or unhealthy (see store_healthy()).
 */
int store_submit(struct store *store, struct store_write *write);

/*
 * Writes synchronously (one synced batch, no condition; a put whose value is
 * NULL deletes its key); for start-up seeding, the control plane and tools,
 * not for the data path. STORE_OK or STORE_ERROR.
 */
int store_put_sync(struct store *store, const struct store_put *puts, size_t count);

/* Deletes one key synchronously (control plane). STORE_OK (also when absent) or STORE_ERROR. */
int store_delete_sync(struct store *store, enum store_family family, const char *key,
                      size_t key_length);

/* Reads one value (malloc'd, NUL-terminated for convenience). STORE_OK, STORE_NOT_FOUND,
 * STORE_ERROR. */
int store_get(struct store *store, enum store_family family, const char *key, size_t key_length,
              char **value, size_t *value_length);

/*
 * Calls fn for every key starting with prefix (all keys when prefix_length is
 * 0), in key order, until fn returns non-zero. Returns STORE_OK or STORE_ERROR.
 */
int store_scan(struct store *store, enum store_family family, const char *prefix,
               size_t prefix_length,
               int (*fn)(void *user, const char *key, size_t key_length, const char *value,
                         size_t value_length),
               void *user);

/*
 * Calls fn for every key of the family after the key `after` (from the first
 * key when after_length is 0), in key order, until fn returns non-zero: a
 * long walk can stop and resume where it left off. STORE_OK or STORE_ERROR.
 */
int store_scan_after(struct store *store, enum store_family family, const char *after,
                     size_t after_length,
                     int (*fn)(void *user, const char *key, size_t key_length, const char *value,
                               size_t value_length),
                     void *user);

void store_get_stats(struct store *store, struct store_stats *stats);

/*
 * False from a failed write until the writer has reopened the database and
 * proved it writable again (it retries with a back-off up to 5 s). Meanwhile
 * every write fails at once with STORE_ERROR, and reads fail with
 * STORE_ERROR while the database is being reopened or could not be.
 */
bool store_healthy(struct store *store);

const char *store_family_name(enum store_family family);

#endif
