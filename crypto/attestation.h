/*
 * attestation: proves a device's identity from the manufacturer certificate
 * chain it presents in the TLS handshake, and finds its enrollment group.
 *
 * Matching (PROTOCOL.md section 3): walk the presented chain from the leaf
 * upward; the group whose first configured CA certificate issued the lowest
 * certificate wins (issuer name equal to the CA's subject, and the signature
 * verifies with the CA's key). Then the whole chain must verify up to that
 * group's root, at the current time, or at the midpoint of the leaf's
 * validity when the group accepts expired certificates. The leaf must carry
 * EKU clientAuth.
 *
 * Two groups whose first CA certificates are the same (same subject and same
 * public key) could match the same devices: attestation_create() refuses
 * such a configuration, so matching is always deterministic. The message
 * names both groups when they have one owner, and only the group of the
 * change otherwise (never another owner's group or CA).
 *
 * The configured chain is proven once at creation and its first CA becomes
 * a partial-chain trust anchor; verified leaves are cached for a while (at
 * most ten minutes, never past an expiry), so a device's second connection
 * costs no chain verification. Verdicts are also shared between the objects
 * of one process (all shards), keyed by the leaf and the digest of the
 * group's chain and CRL texts, so a second connection landing on another
 * shard verifies no chain either (see attestation.c).
 *
 * One attestation object belongs to one shard and its OpenSSL library
 * context: certificates are loaded with the _ex calls into that context, so
 * shards never share OpenSSL state.
 */
#ifndef DPS_ATTESTATION_H
#define DPS_ATTESTATION_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/types.h>
#include <openssl/x509.h> /* declares STACK_OF(X509) before the prototypes use it */

#include "common/domain.h"
#include "crypto/uuid.h"

struct attestation;

struct attestation *attestation_create(OSSL_LIB_CTX *libctx, const struct config *config, char *err,
                                       size_t err_length);

/*
 * The same, sharing with previous (built in the same library context; may
 * be NULL) the loaded chains and CRLs of groups whose texts are the same: a
 * change proves only the groups it touches, and compares only their first
 * CAs with the others. The verified-leaf cache starts empty.
 */
struct attestation *attestation_create_from(OSSL_LIB_CTX *libctx, const struct config *config,
                                            const struct attestation *previous, char *err,
                                            size_t err_length);
void attestation_free(struct attestation *attestation);

/* RFC 5280's ub-common-name: a leaf whose CN is longer is refused, not cut. */
#define ATTESTATION_CN_MAX_CHARACTERS 64

struct attestation_result {
    size_t group_index;        /* into config->groups */
    struct dps_uuid record_id; /* UUIDv5(X.500, leaf DER SubjectPublicKeyInfo) */
    /* UTF-8, whole; "" when the leaf has none. Up to 4 bytes per character. */
    char leaf_common_name[4 * ATTESTATION_CN_MAX_CHARACTERS + 1];
    uint8_t leaf_serial[20]; /* the manufacturer certificate's serial */
    size_t leaf_serial_length;
    uint8_t spki_sha256[32]; /* SHA-256 of the leaf's DER SubjectPublicKeyInfo */
};

/*
 * Attests a presented chain: leaf first, then any intermediates the device
 * sent (chain may be NULL). 0 on success; -1 with a reason in err (no
 * matching group, untrusted, expired, missing clientAuth, a common name
 * longer than ATTESTATION_CN_MAX_CHARACTERS or holding NUL, ...).
 */
int attestation_verify(struct attestation *attestation, X509 *leaf, STACK_OF(X509) * chain,
                       time_t now, struct attestation_result *result, char *err, size_t err_length);

struct attestation_stats {
    uint64_t verifications; /* chains verified in full (or refused before the chain) */
    uint64_t cache_hits;    /* no chain verified: this object's cache, or the shared verdicts */
    uint64_t shared_hits;   /* of cache_hits: verdicts another attestation object published */
};

void attestation_get_stats(const struct attestation *attestation, struct attestation_stats *stats);

/* The leaf as PEM (malloc'd), for the provisioning record. */
char *attestation_leaf_pem(X509 *leaf);

#endif
