/*
 * loadgen_prepare: what a fleet device is given before a run's clock starts
 * (--prepare ahead, the default), so that the run itself spends the
 * generator's CPU on what drives the server: the two handshakes and the
 * requests. For each device a worker will start (loadgen_fleet.c):
 *
 * - its manufacturer identity as OpenSSL objects (certificate and key, read
 *   from DIR/fleet-SEED.bin), ready for its connections;
 * - when its scenario sends a CSR, a fresh P-256 key pair and the CSR signed
 *   with it (PEM), with the key's SubjectPublicKeyInfo, which the identity
 *   certificate it receives must carry. A real device generates its key pair
 *   before it asks (and keeps it when it starts over), so the server sees
 *   what it sees with --prepare inline: the same request, from a key made
 *   earlier. The private key is not kept: nothing after the CSR needs it.
 *
 * Ownership: a worker owns its prepared devices; a device it starts takes
 * the objects over (the entry is left empty), and what was never started is
 * freed with the worker.
 */
#ifndef DPS_LOADGEN_PREPARE_H
#define DPS_LOADGEN_PREPARE_H

#include <stdbool.h>

#include <openssl/types.h>

#include "perf/loadgen_device.h"
#include "perf/loadgen_identity.h"
#include "perf/loadgen_kit.h"

struct prepared_device {
    X509 *certificate; /* NULL: nothing prepared, the device loads its identity when it starts */
    EVP_PKEY *key;
    struct device_csr csr; /* csr.pem NULL: no CSR prepared */
};

/*
 * Prepares device identity (1-based) of identities with the kit's library
 * context and, with csr, a CSR for device id di. 0, or -1 with nothing kept.
 */
int prepared_device_make(struct prepared_device *out, const struct fleet_identities *identities,
                         unsigned identity, struct device_kit *kit, const char *di, bool csr);
void prepared_device_clear(struct prepared_device *prepared);

#endif
