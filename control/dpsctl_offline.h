/*
 * dpsctl_offline: the list commands' store reader for --data DIR
 * (dpsctl_offline.c).
 */
#ifndef DPS_DPSCTL_OFFLINE_H
#define DPS_DPSCTL_OFFLINE_H

#include "control/dpsctl_options.h"
#include "control/dpsctl_table.h"
#include "crypto/uuid.h"
#include "store/store.h"

/* Client-side filters of the offline lists, the same the API applies. */
struct filters {
    char device_id[UUID_STRING_LENGTH + 1];
    char group_id[UUID_STRING_LENGTH + 1];
    char record_id[UUID_STRING_LENGTH + 1];
    const char *serial;
    const char *since;
    const char *until;
};

/* Every entry of family in --data's store that passes filters, into sink. An exit code. */
int offline_list(const struct options *options, enum store_family family,
                 const struct filters *filters, struct sink *sink);

#endif
