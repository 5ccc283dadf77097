/*
 * snapshot: one generation of what the data plane serves by: the settings,
 * enrollment groups and hubs in force, the answers derived from them, and
 * the signer holding those hubs' keys. Immutable once published; reference
 * counted, so a connection finishes on the generation it started with while
 * new connections take the next one. The control plane (control/plane.c)
 * builds, publishes and frees snapshots; shards only read them.
 */
#ifndef DPS_SNAPSHOT_H
#define DPS_SNAPSHOT_H

#include <stdatomic.h>
#include <stdint.h>

#include "common/domain.h"
#include "dataplane/dps_handlers.h"

struct blocklist;
struct signer;

struct snapshot {
    _Atomic unsigned references;
    uint64_t generation;
    const struct config *config; /* settings, groups and hubs of this generation */
    const struct dps_catalog *catalog;
    struct signer *signer;
    const struct blocklist *blocklist; /* blocked identities, checked at the handshake */
    /* The TLS server certificate chain and key, read once by the control plane. */
    const char *tls_cert_pem;
    const char *tls_key_pem;
    void (*destroy)(struct snapshot *snapshot); /* called when the last reference goes */
};

static inline void snapshot_retain(struct snapshot *snapshot)
{
    atomic_fetch_add(&snapshot->references, 1);
}

static inline void snapshot_release(struct snapshot *snapshot)
{
    if (snapshot != NULL && atomic_fetch_sub(&snapshot->references, 1) == 1) {
        snapshot->destroy(snapshot);
    }
}

#endif
