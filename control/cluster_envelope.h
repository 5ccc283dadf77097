/*
 * cluster_envelope: a group, hub or blocklist entry as the cluster shares it
 * through Redis (control/cluster_sync.c), and the names it goes by.
 *
 * An envelope is one compact JSON object: {"generation" (set by Redis when
 * the change is ordered; absent in a node's outbox), "kind" ("group", "hub"
 * or "block"), "id", "owner" (may be absent), "deleted" (a tombstone: doc
 * is null), "doc" (the document as the store holds it), "node" (where the
 * change was made)}. Its field, "<kind>/<id>", names it in Redis's hash of
 * documents and log, and in a node's list of refused changes.
 */
#ifndef DPS_CLUSTER_ENVELOPE_H
#define DPS_CLUSTER_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "control/plane.h"

#define CLUSTER_FIELD_MAX 96 /* "block/" + an id of at most 80 bytes */

struct cluster_envelope {
    json_t *root;        /* owns everything below */
    uint64_t generation; /* 0 when absent */
    enum plane_kind kind;
    const char *id;
    const char *owner; /* NULL when absent */
    const json_t *doc; /* NULL when deleted */
    const char *node;  /* "" when absent */
    char field[CLUSTER_FIELD_MAX];
};

/* The envelope of change made on node, without a generation (malloc'd); NULL: out of memory. */
char *cluster_envelope_encode(const struct plane_change *change, const char *node);

/*
 * Reads an envelope. 0, or -1 when it is not one (not JSON, an unknown kind,
 * no id or one too long, a live document that is not an object, a tombstone
 * with a document). Free with cluster_envelope_clear().
 */
int cluster_envelope_decode(const char *text, size_t length, struct cluster_envelope *envelope);
void cluster_envelope_clear(struct cluster_envelope *envelope);

const char *cluster_kind_name(enum plane_kind kind);
/* "<kind>/<id>" into out; 0, or -1 when it does not fit. */
int cluster_field(enum plane_kind kind, const char *id, char out[CLUSTER_FIELD_MAX]);

#endif
