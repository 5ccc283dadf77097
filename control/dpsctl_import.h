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

struct client;

int command_import(struct client *client, struct options *options, const void *subject);
int command_import_config(struct client *client, struct options *options, const void *subject);

#endif
