/*
 * records: what devices leave in the store, kept per owner: provisioning
 * records, the issuance log and device-id bindings (store.h lays out the
 * keys). Every key starts with the owner key of the owner it was written
 * for, and every value names that owner, so a reader given an owner scans
 * only that owner's keys and checks the owner in each value: another
 * owner's data is never read, whatever group id or manufacturer certificate
 * the two share.
 *
 * The store keeps each record as parts ("<owner key>/<record id>/record" for
 * the top-level fields, and one "<owner key>/<record id>/<step>" per step)
 * so a step never reads the others; readers (the management API, dpsctl)
 * merge them here into the reference's shape: the top-level fields, then
 * the steps in the order devices run them, then any other part. The parts
 * stay as the data path writes them (each step {"status", ...}, the ACL in
 * the OCF form devices get); records_scan() serves them as plgd's
 * ProvisioningRecord in protobuf JSON (README, "Provisioning records"), so
 * records of every age, imported ones included, read alike with no
 * migration. A part already in the reference's shape is served as it is.
 *
 * Bindings come in pairs, both written by the data path in one conditional
 * write: "<owner key>/device/<device id>" -> {"recordId", "owner"} (the id is
 * this identity's) and "<owner key>/record/<record id>" -> {"deviceId",
 * "owner"} (this identity has its one id). Releasing a binding deletes both.
 */
#ifndef DPS_RECORDS_H
#define DPS_RECORDS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct store;

#define RECORDS_OWNER_KEY_LENGTH 36
/* Room for every key this module builds: an owner key, "/record/" or "/", a UUID, "/", a part. */
#define RECORDS_KEY_MAX 112

/*
 * The owner key: UUIDv5 (URL namespace) of the owner string. Always derived,
 * never the owner string itself even when that is a UUID, so no two owners
 * share one; for an ordinary owner it equals the owner UUID devices get
 * (owner "1": b80c8fef-a677-5340-85fb-2c162d75df03).
 */
void records_owner_key(const char *owner, char out[RECORDS_OWNER_KEY_LENGTH + 1]);

/*
 * Keys, NUL-terminated in out (at least RECORDS_KEY_MAX bytes); each returns
 * the key's length, or 0 when an argument is too long.
 */
size_t records_part_key(const char *owner_key, const char *record_id, const char *part, char *out);
size_t records_issuance_key(const char *owner_key, const char *serial, char *out);
size_t records_device_binding_key(const char *owner_key, const char *device_id, char *out);
size_t records_identity_binding_key(const char *owner_key, const char *record_id, char *out);

/*
 * The values of a binding pair (malloc'd; NULL when out of memory): for the
 * device key {"recordId": record_id, "owner": owner}, for the identity key
 * {"deviceId": device_id, "owner": owner}. Always the same bytes for the
 * same arguments, so a conditional write can compare them.
 */
char *records_device_binding_value(const char *owner, const char *record_id);
char *records_identity_binding_value(const char *owner, const char *device_id);

/*
 * Calls fn(user, record) for each of owner's records in record-id order
 * (every owner's, owner by owner, when owner is NULL; only record_id when it
 * is not NULL), with the merged document (borrowed: fn takes a reference to
 * keep it). fn returns non-zero to stop. Parts that are not JSON or not in
 * the layout are skipped and counted in *unreadable (may be NULL). Returns
 * STORE_OK or STORE_ERROR.
 */
int records_scan(struct store *store, const char *owner, const char *record_id,
                 int (*fn)(void *user, json_t *record), void *user, size_t *unreadable);

/*
 * Deletes owner's record record_id: every part of it, in one synced batch.
 * What else the device left stays: its device-id binding (the identity
 * keeps its id: see records_binding_release()) and its issuance entries
 * (the log of what was signed). A device that comes back starts the record
 * again, under the same id. STORE_OK, STORE_NOT_FOUND (owner has no such
 * record) or STORE_ERROR.
 */
int records_delete(struct store *store, const char *owner, const char *record_id);

/*
 * Deletes, as records_delete() does, each of owner's records (only
 * record_id when it is not NULL) that match(user, record) accepts. At most
 * batch ids are held at once: a scan collects a batch, the batch is
 * deleted, and the next scan finds what is left, until one comes back
 * short. Returns how many were deleted, or -1 when the store failed (those
 * deleted before stay deleted).
 */
long records_delete_matching(struct store *store, const char *owner, const char *record_id,
                             bool (*match)(void *user, json_t *record), void *user, size_t batch);

/*
 * The issuance log: each entry of owner (every owner's when NULL), with its
 * "serial" and "owner", as with records_scan().
 */
int records_issuance_scan(struct store *store, const char *owner,
                          int (*fn)(void *user, json_t *entry), void *user, size_t *unreadable);

/* Bindings: {"deviceId", "recordId", "owner"} for each device id bound, as above. */
int records_bindings_scan(struct store *store, const char *owner,
                          int (*fn)(void *user, json_t *binding), void *user, size_t *unreadable);

/*
 * The record id that device_id is bound to among owner's bindings
 * (record_id gets it, 37 bytes). STORE_OK, STORE_NOT_FOUND or STORE_ERROR.
 */
int records_binding_get(struct store *store, const char *owner, const char *device_id,
                        char *record_id);

/*
 * Releases owner's binding of device_id: the device id is free again, and
 * the record that held it may bind one device id again (the same or
 * another). One synced batch. STORE_OK, STORE_NOT_FOUND or STORE_ERROR.
 */
int records_binding_release(struct store *store, const char *owner, const char *device_id);

#endif
