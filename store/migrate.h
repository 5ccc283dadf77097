/*
 * migrate: brings a store written by an earlier dpsd to the current key
 * layout (store.h), once, when store_open() finds no layout recorded. Used
 * by store.c only, before the writer starts.
 */
#ifndef DPS_MIGRATE_H
#define DPS_MIGRATE_H

#include <stddef.h>

struct store;

/*
 * Moves every key of layout 1 (no owner in the key) under its owner's key:
 * records by the owner their top-level part names, issuance entries and
 * bindings by the owner of the record they name. Each move is one synced
 * batch that writes the new keys and deletes the old ones, and a record's
 * parts move together, so a crash midway loses nothing and the next open
 * continues. Keys whose owner cannot be found stay where they are (logged;
 * readers count them as unreadable). 0, or -1 with err.
 */
int migrate_from_layout_1(struct store *store, char *err, size_t err_length);

#endif
