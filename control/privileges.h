/*
 * privileges: lets dpsd give up root once its listeners are bound.
 *
 * With the configuration's `user: NAME`, privileges_drop() (called by dpsd
 * right after the data plane started, before the management API starts)
 * switches the whole process, all threads, to that user: its primary group,
 * its supplementary groups, then its uid, and sets no_new_privs. The
 * listeners stay bound and the shards keep their io_uring rings.
 *
 * From then on the daemon reads files as that user: the configuration (read
 * again on SIGHUP), the certificates, keys and CRLs must be readable by it,
 * and the data folder writable; privileges_drop() checks them after the
 * switch and fails naming the first that is not. The management API binds
 * after the switch, so its port must be 1024 or above (or the process needs
 * CAP_NET_BIND_SERVICE, as the systemd unit grants).
 *
 * Without `user`, or when the process already runs as that user (the systemd
 * unit starts it as User=dps), nothing changes.
 */
#ifndef DPS_PRIVILEGES_H
#define DPS_PRIVILEGES_H

#include <stddef.h>

#include "control/config.h"

/* 0, or -1 with the problem in err (then the daemon must stop). */
int privileges_drop(const struct config *settings, char *err, size_t err_length);

#endif
