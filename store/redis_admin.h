/*
 * redis_admin: short blocking calls to the cluster's Redis for the
 * management API, which runs on its own threads and not on a shard's loop
 * (store/redis.h is the client for loops). Each call opens one connection
 * (a fixed address, a unix socket, or the primary the first answering
 * sentinel names), AUTH and SELECT as configured, does its work and closes;
 * every step is bounded by timeout_ms. Operators release bindings rarely, so
 * a connection per call costs nothing that matters and holds no state that
 * could go stale across failovers.
 *
 * The heartbeat (control/cluster_view.h) is the exception: it writes every
 * second for the node's whole life, so it keeps one connection in a
 * redis_admin_session, owned by the one thread that uses it. A session
 * connects on its first call, keeps the connection while Redis answers, and
 * drops it on any failure (no answer, a cut connection, an error reply such
 * as READONLY after a failover): the next call connects again, through the
 * sentinels when configured, so it follows a failover. Connecting again
 * backs off: after a failed attempt, calls fail at once without touching the
 * network for 0.5 s, then 1, 2 and at most 4 s, until one succeeds.
 *
 * The keys are those of dataplane/cluster.h, after key_prefix.
 */
#ifndef DPS_STORE_REDIS_ADMIN_H
#define DPS_STORE_REDIS_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/domain.h"

/*
 * Removes the cluster's side of owner_key's binding of device_id: the
 * binding, the identity key of the record Redis names for it (and of
 * record_id when not NULL: the record this node had bound) and any conflict
 * key, then publishes the release on <prefix>release ("<device id>
 * <owner>") so every node drops its own durable copy. *removed tells
 * whether Redis held any of them. 0, or -1 with err.
 */
int redis_admin_release(const struct config_cluster *cluster, const char *owner_key,
                        const char *owner, const char *device_id, const char *record_id,
                        bool *removed, char *err, size_t err_length);

/*
 * The device ids of owner_key that a re-seed found bound twice, as a
 * malloc'd array of 36-character ids (NULL and 0 when none). 0, or -1 with
 * err.
 */
int redis_admin_conflicts(const struct config_cluster *cluster, const char *owner_key,
                          char (**device_ids)[37], size_t *count, char *err, size_t err_length);

/* A kept connection (see above); cluster is borrowed and must outlive it. NULL: out of memory. */
struct redis_admin_session;
struct redis_admin_session *redis_admin_session_new(const struct config_cluster *cluster);
void redis_admin_session_free(struct redis_admin_session *session);
/* Connections this session opened (each success counts once): for tests and logs. */
unsigned long redis_admin_session_connects(const struct redis_admin_session *session);

/*
 * Heartbeats (control/cluster_view.h): <prefix>node:<node> holds entry (this
 * node's JSON) for ttl_ms, and <prefix>nodes names every node that wrote
 * one (both pipelined in one round trip). A node that stops beating
 * disappears when its key expires; the set is pruned by whoever lists it.
 * 0, or -1 with err.
 */
int redis_admin_heartbeat(struct redis_admin_session *session, const char *node, const char *entry,
                          unsigned ttl_ms, char *err, size_t err_length);

/*
 * The address (numeric, no port) this machine uses to reach the cluster's
 * Redis: a node listening on a wildcard address announces it, as the one
 * its peers most likely reach it on. 0, or -1 with err.
 */
int redis_admin_local_address(struct redis_admin_session *session, char *address, size_t size,
                              char *err, size_t err_length);

/*
 * A node leaving (it stops): its entry goes at once. Tries once even while
 * backing off. 0, or -1 with err.
 */
int redis_admin_leave(struct redis_admin_session *session, const char *node, char *err,
                      size_t err_length);

/*
 * The entries of the live nodes (malloc'd strings in a malloc'd array, in
 * the order of their names; redis_admin_entries_free frees them). 0, or -1
 * with err.
 */
int redis_admin_nodes(const struct config_cluster *cluster, char ***entries, size_t *count,
                      char *err, size_t err_length);
void redis_admin_entries_free(char **entries, size_t count);

#endif
