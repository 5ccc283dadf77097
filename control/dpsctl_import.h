/*
 * dpsctl_import: `dpsctl import DIR --data DATADIR` brings a plgd DPS's
 * MongoDB collections, exported with mongoexport (JSON lines, the
 * reference's BSON field names), into a stopped dpsd's store
 * (dpsctl_import.c).
 */
#ifndef DPS_DPSCTL_IMPORT_H
#define DPS_DPSCTL_IMPORT_H

#include "control/dpsctl_options.h"

struct client;

int command_import(struct client *client, struct options *options, const void *subject);

#endif
