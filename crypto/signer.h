/*
 * signer: the only component that holds private keys (hub identity CAs and
 * token-signing keys). Shards never see a key: they submit typed requests to
 * a bounded queue; worker threads take them in batches, sign, and call each
 * request's done() callback from the worker thread, which the shard uses to
 * post the result into its own mailbox (dataplane/mailbox.h).
 *
 * Each worker thread has its own OpenSSL library context and its own copies
 * of the keys, so workers never contend on OpenSSL locks.
 */
#ifndef DPS_SIGNER_H
#define DPS_SIGNER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/domain.h"
#include "crypto/issuer.h"

enum signer_operation {
    SIGNER_ISSUE_CERTIFICATE,
    SIGNER_SIGN_TOKEN,
};

struct signer_request {
    /* Filled by the requester. */
    enum signer_operation operation;
    size_t hub_index; /* into config->hubs */
    /* SIGNER_ISSUE_CERTIFICATE: device_id (below; the subject is CN=uuid:<it>), the CSR's
     * key (DER), validity window. */
    const uint8_t *spki_der;
    size_t spki_length;
    time_t not_before;
    time_t not_after;
    /* SIGNER_SIGN_TOKEN: the owner and device id to put in the hub's claims. */
    const char *owner;
    const char *device_id; /* both operations */
    time_t issued_at;
    void (*done)(struct signer_request *request); /* called on a worker thread */
    void *user;

    /* Filled by the signer before done(). */
    int status; /* 0, or -1 with error set */
    char error[128];
    struct issued_certificate
        certificate; /* SIGNER_ISSUE_CERTIFICATE; pem is free()d by the requester */
    char *token;     /* SIGNER_SIGN_TOKEN; free() by the requester */
    time_t token_expires;

    struct signer_request *next; /* queue link, owned by the signer while queued */
};

struct signer_stats {
    size_t queue_depth;
    uint64_t batches;
    uint64_t requests;
};

struct signer;

/*
 * Loads every hub's CA and token key (once per worker thread) and starts the
 * workers. queue_limit bounds waiting requests. NULL with err (naming the
 * file) when a key cannot be loaded.
 */
struct signer *signer_create(const struct config *config, unsigned threads, size_t queue_limit,
                             char *err, size_t err_length);

/* Stops the workers after finishing queued requests. */
void signer_destroy(struct signer *signer);

/* Queues a request. 0, or -EAGAIN when the queue is full (answer 5.03). */
int signer_submit(struct signer *signer, struct signer_request *request);

/* PEM of hub's root CA (stable for the signer's life); NULL for an unknown hub. */
const char *signer_hub_root_pem(const struct signer *signer, size_t hub_index);

void signer_get_stats(struct signer *signer, struct signer_stats *stats);

#endif
