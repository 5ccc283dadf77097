/*
 * records: provisioning records as whole documents. The store keeps each
 * record as parts ("<record id>/record" for the top-level fields, and one
 * "<record id>/<step>" per step, see store.h) so a step never reads the
 * others; readers (the management API, dpsctl) merge them here into the
 * reference's shape: the top-level fields, then the steps in the order
 * devices run them, then any other part.
 */
#ifndef DPS_RECORDS_H
#define DPS_RECORDS_H

#include <stddef.h>

#include <jansson.h>

struct store;

/*
 * Calls fn(user, record) for each record in record-id order (only record_id
 * when it is not NULL), with the merged document (borrowed: fn takes a
 * reference to keep it). fn returns non-zero to stop. Parts that are not
 * JSON are skipped and counted in *unreadable (may be NULL). Returns
 * STORE_OK or STORE_ERROR.
 */
int records_scan(struct store *store, const char *record_id, int (*fn)(void *user, json_t *record),
                 void *user, size_t *unreadable);

#endif
