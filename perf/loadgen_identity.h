/*
 * loadgen_identity: device identities at fleet scale for dps-loadgen.
 *
 * Device i of seed S has a P-256 key derived from (S, i) and a manufacturer
 * certificate issued by DIR/mfg-intermediate, so a run is reproducible and
 * its identities can be reused across runs. They live in one file per seed,
 * DIR/fleet-<S>.bin: a header, then fixed-size records (private scalar,
 * public point, certificate DER), memory-mapped when a run uses them.
 * Certificates are built from DER pieces and signed with EVP_DigestSign,
 * which is what makes hundreds of thousands per minute possible.
 *
 * Functions return 0 or -1 with a message in err.
 */
#ifndef DPS_LOADGEN_IDENTITY_H
#define DPS_LOADGEN_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

struct fleet_identities;

struct fleet_generation {
    unsigned generated; /* records written by this call (0: the file already had enough) */
    unsigned total;     /* records in the file afterwards */
    double seconds;     /* time spent generating */
    uint64_t file_bytes;
};

/* Makes sure DIR/fleet-<seed>.bin holds at least count identities, appending what is missing. */
int fleet_identities_ensure(const char *pki_dir, uint64_t seed, unsigned count,
                            struct fleet_generation *report, char *err, size_t err_length);

/* Maps DIR/fleet-<seed>.bin read-only. NULL with err when absent or not made by this DIR. */
struct fleet_identities *fleet_identities_open(const char *pki_dir, uint64_t seed, char *err,
                                               size_t err_length);
void fleet_identities_close(struct fleet_identities *identities);
unsigned fleet_identities_count(const struct fleet_identities *identities);

/*
 * Device index's (1-based) certificate and key, made in libctx. The caller
 * frees both. 0, or -1 when the index is out of range or the record is bad.
 */
int fleet_identity_load(const struct fleet_identities *identities, OSSL_LIB_CTX *libctx,
                        unsigned index, X509 **certificate, EVP_PKEY **key);

/*
 * Checks every record: the DER parses (d2i_X509), its signature verifies
 * against the intermediate and it holds the record's public key. Returns
 * the number of bad records, or -1 with err when the file cannot be read.
 */
long fleet_identities_check(const char *pki_dir, uint64_t seed, char *err, size_t err_length);

/* Device id (UUIDv5 in the URL namespace of "dps-loadgen-fleet-<seed>-<index>"). */
void fleet_identity_device_id(uint64_t seed, unsigned index, char out[37]);

#endif
