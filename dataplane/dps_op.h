/*
 * dps_op: one DPS request in flight, shared by the DPS handlers' files (not
 * an interface for other modules). dps_handlers.c owns the op's life (its
 * start, answer, durable commit, resumption from the mailbox and the
 * signing limits); dps_steps.c holds the six resources' own work (reading
 * the request, the device-id checks and claim, the signer's request, the
 * answer's body). Ownership is as dps_handlers.c's header says.
 */
#ifndef DPS_DATAPLANE_DPS_OP_H
#define DPS_DATAPLANE_DPS_OP_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "crypto/csr.h"
#include "crypto/signer.h"
#include "dataplane/cluster.h"
#include "dataplane/cluster_rate.h"
#include "dataplane/dps_handlers.h"
#include "dataplane/mailbox.h"
#include "store/records.h"
#include "store/store.h"

#define DPS_MAX_PAYLOAD 8192
#define DPS_RETRY_SECONDS 1

enum dps_phase {
    PHASE_LIMITING, /* waiting for the signing limits (a lease's refill, a source's bucket) */
    PHASE_CLAIMING, /* waiting for Redis to grant a new device-id binding */
    PHASE_SIGNING,
    PHASE_COMMITTING,
};

struct dps_op {
    struct mailbox_item item;
    struct timespec started;
    const struct dps_services *services;
    struct dps_session *session;
    dps_reply_fn reply;
    enum dps_step step;
    enum dps_phase phase;
    bool answered;           /* the device has its answer; only a lazy write is left */
    uint64_t store_failures; /* the store's failure count when the write was built */
    uint8_t token[8];
    uint8_t token_length;
    enum payload_format format;
    int content_format;

    /* The answer, sent once the record is durable. */
    uint8_t code;
    char error[160];
    uint8_t *body;
    size_t body_length;

    /* A signing step's request, kept while the limits decide, and their decision. */
    uint8_t *request_payload;
    size_t request_payload_length;
    int request_content_format;
    struct cluster_rate_request limit;

    /* Work handed to the signer and the store. */
    struct signer_request sign;
    struct store_write write;
    char device_id[37];
    char key_record[RECORDS_KEY_MAX];
    char key_step[RECORDS_KEY_MAX];
    char key_issuance[RECORDS_KEY_MAX];
    char key_device_binding[RECORDS_KEY_MAX];
    char key_identity_binding[RECORDS_KEY_MAX];
    char serial_hex[2 * ISSUER_SERIAL_LENGTH + 1];
    char *record_json;
    char *step_json;
    char *issuance_json;
    char *device_binding_json;
    char *identity_binding_json;
    json_t *step_data; /* step-specific fields of the record part */
    /* The catalog's ACL list (JSON text, compact), put first in the record part as is. */
    const char *step_acl_json;
    struct csr_result csr;
    /* A new binding's claim in Redis, and where cloud-configuration goes once granted. */
    struct cluster_claim claim;
    size_t claim_hub_index;
    const char *claim_gateway; /* in the op's configuration */
};

/* ---- dps_handlers.c ---- */

/* The enrollment group of the session's device. */
const struct config_group *dps_session_group(const struct dps_services *services,
                                             const struct dps_session *session);
/* Its catalog entry (owner, ACLs, resources). */
const struct dps_catalog_group *dps_op_catalog_group(const struct dps_op *op);
/* Sets the answer to an error code with message (its diagnostic payload). */
void dps_op_set_error(struct dps_op *op, uint8_t code, const char *message);
/* Commits the step's record parts (with the issuance entry), answering once durable. */
void dps_op_commit(struct dps_op *op, bool with_issuance);
/* Answers the device now, without a record line, and frees the op. */
void dps_op_finish(struct dps_op *op);
/* The signer's completion callback: the op goes back to its shard's mailbox. */
void dps_op_signer_done(struct signer_request *request);

/* ---- dps_steps.c ---- */

/* The steps, from their (admitted) request on. */
void dps_step_time(struct dps_op *op);
void dps_step_ownership(struct dps_op *op);
void dps_step_acls(struct dps_op *op);
void dps_step_resources(struct dps_op *op);
void dps_step_cloud(struct dps_op *op, const struct dps_request *request);
void dps_step_credentials(struct dps_op *op, const struct dps_request *request);
/* The answer of a signed step (its token or certificate), before its commit. */
void dps_step_answer_cloud(struct dps_op *op);
void dps_step_answer_credentials(struct dps_op *op);
/* Redis's verdict on a new binding: on to the signer, or refused. */
void dps_step_claim_decided(struct dps_op *op, enum cluster_claim_result result);
/* Sets a 4.03 with message, counted by reason; returns -1 for the caller to pass on. */
int dps_op_refuse(struct dps_op *op, enum dps_refusal reason, const char *message);

#endif
