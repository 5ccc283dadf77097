/*
 * dpsctl_import: the way in from a plgd DPS. `dpsctl import DIR --data
 * DATADIR` brings its MongoDB collections, exported with mongoexport (JSON
 * lines, the reference's BSON field names), into a stopped dpsd's store
 * (dpsctl_import.c); `dpsctl import-config FILE` converts its configuration
 * file (dpsctl_import_config.c).
 */
#ifndef DPS_DPSCTL_IMPORT_H
#define DPS_DPSCTL_IMPORT_H

#include "control/dpsctl_options.h"
#include "store/store.h"

#include <stddef.h>
#include <stdio.h>

struct client;

int command_import(struct client *client, struct options *options, const void *subject);
int command_import_config(struct client *client, struct options *options, const void *subject);

/*
 * The import itself, one document at a time, for the command and for the
 * fuzz target (tests/fuzz/fuzz_import.c): where it writes and reads
 * bindings back, and where its report goes.
 */
enum import_collection { IMPORT_HUBS, IMPORT_GROUPS, IMPORT_RECORDS };

struct import_target {
    /* Writes the entries together: 0, or -1. */
    int (*put)(void *arg, const struct store_put *entries, size_t count);
    /* 0 with the value at key (malloc'd, NUL-terminated), or -1 when there is none. */
    int (*get)(void *arg, enum store_family family, const char *key, size_t key_length,
               char **value, size_t *length);
    void *arg;
    FILE *report; /* one line for each thing not carried over */
};

struct import;

/* Imported hubs use the registry keys named and sign tokens as issuer. NULL: out of memory. */
struct import *import_new(const struct import_target *target, const char *identity_key,
                          const char *token_key, const char *token_issuer);
/*
 * One document of collection (a mongoexport line, not NUL-terminated); what
 * names it in the report. Hubs first, then groups, then records: groups map
 * the hubs imported before, records take their owner from their group.
 * 0 imported, -1 skipped (reported).
 */
int import_document(struct import *import, enum import_collection collection, const char *text,
                    size_t length, const char *what);
/* Lines written to the report so far. */
size_t import_notes(const struct import *import);
void import_free(struct import *import);

/*
 * Converts a plgd DPS configuration (YAML from in, named name) into ours on
 * out, naming on report every setting not carried. 0, or -1 when in holds
 * no YAML mapping (reported).
 */
int import_config_convert(FILE *in, const char *name, FILE *out, FILE *report);

#endif
