/*
 * dps_handlers: the DPS resources (PROTOCOL.md section 2) and the life of one
 * request through the signing limits, the signer and the store. The
 * resources' own work is in dps_steps.c, the op they share in dps_op.h.
 *
 * Each request becomes a dps_op. Synchronous steps (time, ownership, ACLs,
 * resources) build their answer at once; cloud-configuration waits for a
 * token and credentials for a certificate from the signer. Every step then
 * commits its part of the provisioning record (and, for credentials, the
 * issuance log entry and the device-id binding) through the store's group
 * commit, and only when that batch is synced does the device get its answer.
 * Worker threads never touch the op beyond posting it back: all state
 * changes happen on the shard's thread, in dps_op_resume().
 *
 * Who owns what:
 * - The connection owns its session. A session with ops pending is not
 *   freed when its connection closes: it is marked gone, and the last op to
 *   detach from it releases it (session->release frees the connection).
 * - An op owns its buffers and one reference to the services (the shard's
 *   view of the snapshot it started under), taken in dps_op_new() and
 *   dropped last in dps_op_release(), after the op has detached from its
 *   session. A reload that makes another view current, or a connection that
 *   leaves and frees its own reference, never frees what an op still reads.
 * - The signer and the store own an op's request only between submit and
 *   their completion callback, which does nothing but post the op to the
 *   shard's mailbox. A device-id claim in Redis (dataplane/cluster.h) is
 *   the same: the claim is embedded in the op, the shard's Redis client holds
 *   it until its reply (or until the shard stops: then UNAVAILABLE), and the
 *   callback only copies the verdict and posts the op. A connection that
 *   closes or a reload during the round trip finds the op holding its
 *   session (pending) and its view (services) as with the signer.
 * - A signing step's decision by the signing limits (dataplane/cluster_rate.h)
 *   is the same again: the request is embedded in the op with a copy of the
 *   device's payload, the shard's cluster_rate holds it while it waits (for a
 *   lease's refill or a source's bucket in Redis) and hands it back exactly
 *   once, REFUSED when the shard stops; the callback only posts the op.
 *
 * A step that would write a NEW binding (a device id the record does not
 * already hold in the store) asks Redis first when the node is part of a
 * cluster: refused there is a 4.03 like a local conflict; granted goes on to
 * the signer and the same conditional write as a single node. Renewals of
 * bound devices never wait for Redis (a conflict the node knows of refuses
 * them, see cluster_conflicted()). Redis unreachable: cluster policy
 * closed answers 5.03 (the device retries), local binds here and has the
 * next re-seed reconcile.
 */
#include "dataplane/dps_handlers.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"
#include "common/steps.h"
#include "crypto/signer.h"
#include "crypto/uuid.h"
#include "dataplane/cluster.h"
#include "dataplane/cluster_rate.h"
#include "dataplane/coap_tcp.h"
#include "dataplane/dps_counters.h"
#include "dataplane/dps_op.h"
#include "dataplane/record_text.h"
#include "dataplane/mailbox.h"
#include "store/records.h"
#include "store/store.h"

/*
 * The op's write put the top-level record part: later steps of the
 * connection leave it out while the device id is the same and the store has
 * not failed since the write was built (a failure may lose an applied but
 * unsynced line).
 */
static void record_applied(struct dps_op *op)
{
    struct dps_session *session = op->session;
    session->record_written = true;
    session->record_written_failures = op->store_failures;
    memcpy(session->record_written_for, session->device_id, sizeof(session->record_written_for));
}

static void dps_op_resume(struct mailbox_item *item);

void dps_format_time(const struct timespec *when, char out[32])
{
    struct tm tm;
    gmtime_r(&when->tv_sec, &tm);
    size_t length = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    unsigned micro = (unsigned)(when->tv_nsec / 1000) % 1000000u;
    snprintf(out + length, 32 - length, ".%06uZ", micro);
}

static void now_ns_text(char out[24])
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    snprintf(out, 24, "%" PRId64, (int64_t)now.tv_sec * 1000000000 + now.tv_nsec);
}

/* ---- sessions ---- */

const struct config_group *dps_session_group(const struct dps_services *services,
                                             const struct dps_session *session)
{
    return &services->config->groups[session->attestation.group_index];
}

void dps_session_start(const struct dps_services *services, struct dps_session *session)
{
    uuid_format(&session->attestation.record_id, session->record_id);
    /* The record of this manufacturer identity under the group's owner: owners never share one. */
    const struct dps_catalog_group *entry =
        &services->catalog->groups[session->attestation.group_index];
    char key[RECORDS_KEY_MAX];
    size_t key_length = records_part_key(entry->owner_key, session->record_id, "record", key);
    char *value = NULL;
    size_t length = 0;
    if (store_get(services->store, STORE_RECORDS, key, key_length, &value, &length) == STORE_OK) {
        /* An absent member and an empty one come to the same here. */
        char scanned_created[RECORD_SCAN_TEXT], scanned_device[RECORD_SCAN_TEXT];
        json_t *record = NULL;
        const char *created = scanned_created, *device = scanned_device;
        if (!dps_record_scan(value, length, scanned_created, scanned_device)) {
            record = json_loadb(value, length, 0, NULL);
            created = json_string_value(json_object_get(record, "creationDate"));
            device = json_string_value(json_object_get(record, "deviceId"));
        }
        if (created != NULL) {
            /* Cut to the field as it always was. */
            size_t created_length = strnlen(created, sizeof(session->creation_date) - 1);
            memcpy(session->creation_date, created, created_length);
            session->creation_date[created_length] = '\0';
        }
        if (device != NULL && strlen(device) == UUID_STRING_LENGTH) {
            memcpy(session->device_id, device, UUID_STRING_LENGTH + 1);
        }
        json_decref(record);
        free(value);
    }
    if (session->creation_date[0] == '\0') {
        now_ns_text(session->creation_date);
    }
}

void dps_session_clear(struct dps_session *session)
{
    free(session->leaf_pem);
    session->leaf_pem = NULL;
}

/* ---- ops ---- */

static struct dps_op *dps_op_new(const struct dps_services *services, struct dps_session *session,
                                 const struct dps_request *request, dps_reply_fn reply,
                                 enum dps_step step, enum payload_format format, int content_format)
{
    struct dps_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        return NULL;
    }
    op->item.run = dps_op_resume;
    op->services = services;
    op->session = session;
    op->reply = reply;
    op->step = step;
    op->format = format;
    op->content_format = content_format;
    op->token_length = request->token_length;
    memcpy(op->token, request->token, request->token_length);
    op->step_data = json_object();
    clock_gettime(CLOCK_MONOTONIC, &op->started);
    services->hold(services);
    session->pending++;
    (*services->pending_ops)++;
    return op;
}

/*
 * Frees the op's memory and drops its reference to the services; the
 * session is not touched (it may be gone: detach first).
 */
static void dps_op_release(struct dps_op *op)
{
    const struct dps_services *services = op->services;
    (*services->pending_ops)--;
    free(op->body);
    free(op->request_payload);
    free(op->record_json);
    free(op->step_json);
    free(op->issuance_json);
    free(op->device_binding_json);
    free(op->identity_binding_json);
    free(op->sign.certificate.pem);
    free(op->sign.token);
    json_decref(op->step_data);
    free(op);
    services->drop(services);
}

/*
 * Detaches the op from its session. Returns false when the connection is
 * gone (the session is then released once nothing else is pending).
 */
static bool dps_op_detach(struct dps_op *op)
{
    struct dps_session *session = op->session;
    session->pending--;
    if (session->gone) {
        if (session->pending == 0) {
            session->release(session);
        }
        return false;
    }
    return true;
}

static void dps_op_free(struct dps_op *op)
{
    dps_op_detach(op);
    dps_op_release(op);
}

static void send_reply(const struct dps_services *services, struct dps_session *session,
                       dps_reply_fn reply, const uint8_t *token, uint8_t token_length, uint8_t code,
                       int content_format, uint32_t max_age, const uint8_t *payload,
                       size_t payload_length)
{
    (void)services;
    if (session->gone) {
        return;
    }
    struct dps_response response = {
        .code = code,
        .content_format = content_format,
        .max_age = max_age,
        .payload = payload,
        .payload_length = payload_length,
        .token_length = token_length,
    };
    memcpy(response.token, token, token_length);
    reply(session, &response);
}

static void reply_error(const struct dps_services *services, struct dps_session *session,
                        const struct dps_request *request, dps_reply_fn reply, uint8_t code,
                        uint32_t max_age, const char *message)
{
    send_reply(services, session, reply, request->token, request->token_length, code, -1, max_age,
               (const uint8_t *)message, strlen(message));
}

/*
 * Finishes an op: answers the device unless it left, and frees the op. The
 * session's pending count drops before the answer goes out, so the
 * connection can take its next request from inside the reply.
 */
/*
 * Answers the device. Normally the op detaches from its session first, so
 * the connection can take its next request from inside the reply. An op
 * that still waits for its lazy write (keep) stays attached: the
 * connection answers but takes no next request until the write is done, so
 * one connection never has more than one step in the store.
 */
static void dps_op_answer(struct dps_op *op, bool keep)
{
    bool ok = op->code < COAP_BAD_REQUEST;
    op->answered = true;
    const struct config_group *group = dps_session_group(op->services, op->session);
    dps_count_answer(op->services->counters, op->step, op->code, &op->started);
    if (op->step == STEP_CREDENTIALS && ok) {
        count(&op->services->counters->issued, 1);
        /* One line per provisioning outcome: the certificate left, durably logged. */
        log_msg(LOG_INFO, "device provisioned", "record=%s device=%s group=%s serial=%s",
                op->session->record_id, op->session->device_id, group->id, op->serial_hex);
    }
    log_msg(ok ? LOG_DEBUG : LOG_INFO, "step",
            "step=%s code=%d.%02d record=%s device=%s group=%s%s%s%s",
            dps_step_routes[op->step].record_part, op->code >> 5, op->code & 31,
            op->session->record_id, op->session->device_id[0] ? op->session->device_id : "-",
            group->id, ok ? "" : " error=\"", ok ? "" : op->error, ok ? "" : "\"");
    struct dps_session *session = op->session;
    if (keep ? !session->gone : dps_op_detach(op)) {
        if (ok) {
            send_reply(op->services, session, op->reply, op->token, op->token_length, op->code,
                       op->content_format, 0, op->body, op->body_length);
        } else {
            send_reply(op->services, session, op->reply, op->token, op->token_length, op->code, -1,
                       op->code == COAP_SERVICE_UNAVAILABLE ? DPS_RETRY_SECONDS : 0,
                       (const uint8_t *)op->error, strlen(op->error));
        }
    }
}

void dps_op_finish(struct dps_op *op)
{
    dps_op_answer(op, false);
    dps_op_release(op);
}

const struct dps_catalog_group *dps_op_catalog_group(const struct dps_op *op)
{
    return &op->services->catalog->groups[op->session->attestation.group_index];
}

static void store_done(struct store_write *write)
{
    struct dps_op *op = write->user;
    mailbox_post(op->services->mailbox, &op->item);
}

void dps_op_signer_done(struct signer_request *request)
{
    struct dps_op *op = request->user;
    mailbox_post(op->services->mailbox, &op->item);
}

void dps_op_set_error(struct dps_op *op, uint8_t code, const char *message)
{
    op->code = code;
    snprintf(op->error, sizeof(op->error), "%s", message);
}

/*
 * The record's top-level part, written at a connection's first step (it
 * never needs a read): attestation.date is then that connection's, the
 * device's last successful attestation.
 */
static char *record_part_json(const struct dps_services *services,
                              const struct dps_session *session)
{
    const struct config_group *group = dps_session_group(services, session);
    char attested[24];
    now_ns_text(attested);
    json_t *record = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:{s:s, s:s}}}", "id",
                               session->record_id, "enrollmentGroupId", group->id, "deviceId",
                               session->device_id, "owner", group->owner, "creationDate",
                               session->creation_date, "attestation", "date", attested, "x509",
                               "certificatePem", session->leaf_pem != NULL ? session->leaf_pem : "",
                               "commonName", session->attestation.leaf_common_name);
    if (record != NULL && session->peer != NULL)
        json_object_set_new(record, "remoteAddress", json_string(session->peer));
    char *text = dps_json_compact(record);
    json_decref(record);
    return text;
}

static char *step_part_json(struct dps_op *op)
{
    char date[24];
    now_ns_text(date);
    json_t *status = json_pack("{s:s, s:i, s:s}", "date", date, "coapCode", op->code,
                               "errorMessage", op->code < COAP_BAD_REQUEST ? "" : op->error);
    json_object_set_new(op->step_data, "status", status);
    char *text = dps_json_compact(op->step_data);
    if (text == NULL || op->step_acl_json == NULL) {
        return text;
    }
    /* {"accessControlList":<the catalog's text>,<the rest>: no parse of a list that never
     * changes; step_data holds "status" at least, so the rest is never empty. */
    static const char member[] = "{\"accessControlList\":";
    size_t acl_length = strlen(op->step_acl_json);
    size_t rest_length = strlen(text + 1);
    char *joined = malloc(sizeof(member) - 1 + acl_length + 1 + rest_length + 1);
    if (joined != NULL) {
        char *cursor = joined;
        memcpy(cursor, member, sizeof(member) - 1);
        cursor += sizeof(member) - 1;
        memcpy(cursor, op->step_acl_json, acl_length);
        cursor += acl_length;
        *cursor++ = ',';
        memcpy(cursor, text + 1, rest_length + 1);
    }
    free(text);
    return joined;
}

static void add_put(struct store_write *write, enum store_family family, const char *key,
                    const char *value)
{
    struct store_put *put = &write->puts[write->put_count++];
    put->family = family;
    put->key = key;
    put->key_length = strlen(key);
    put->value = value;
    put->value_length = strlen(value);
}

/*
 * Commits the step's record parts (plus, for credentials, the issuance entry)
 * under the group owner's key, and answers when they are durable. A step
 * that names a device id also writes the binding pair, on the condition that
 * the id is free or this identity's and that this identity holds no other
 * id, in the same batch: two shards racing for one id cannot both win.
 */
void dps_op_commit(struct dps_op *op, bool with_issuance)
{
    struct dps_session *session = op->session;
    const struct dps_catalog_group *entry = dps_op_catalog_group(op);
    free(op->record_json);
    free(op->step_json);
    /*
     * The top-level part changes only with the connection (attestation) and
     * the device id: it is written once per connection and again when the
     * device names itself, not with every step.
     */
    /*
     * An answer that hands out a token or a certificate waits for a synced
     * batch holding its record, issuance entry and binding. The top-level
     * part is in that batch unless this connection's store already applied
     * it for this device id: that write is then in the WAL ahead of this
     * batch (a connection has one write in the store at a time), and this
     * batch's sync makes both durable. The other steps' lines are lazy:
     * the device is answered once its line is queued, and the next synced
     * batch makes it durable (a crash may lose such a line, never an issued
     * certificate; the device can ask again).
     */
    bool hands_out =
        op->code < COAP_BAD_REQUEST && (op->step == STEP_CLOUD || op->step == STEP_CREDENTIALS);
    struct store_stats store_stats;
    store_get_stats(op->services->store, &store_stats);
    op->store_failures = store_stats.failures;
    bool record_current = session->record_written &&
                          session->record_written_failures == store_stats.failures &&
                          strcmp(session->record_written_for, session->device_id) == 0;
    op->record_json = record_current ? NULL : record_part_json(op->services, session);
    op->step_json = step_part_json(op);
    memset(&op->write, 0, sizeof(op->write));
    records_part_key(entry->owner_key, session->record_id, "record", op->key_record);
    records_part_key(entry->owner_key, session->record_id, dps_step_routes[op->step].record_part,
                     op->key_step);
    if (!record_current) {
        add_put(&op->write, STORE_RECORDS, op->key_record, op->record_json);
    }
    add_put(&op->write, STORE_RECORDS, op->key_step, op->step_json);
    if (with_issuance) {
        records_issuance_key(entry->owner_key, op->serial_hex, op->key_issuance);
        add_put(&op->write, STORE_ISSUANCE, op->key_issuance, op->issuance_json);
    }
    bool binding_ready = true;
    if (op->device_id[0] != '\0' && op->code < COAP_BAD_REQUEST) {
        const char *owner = dps_session_group(op->services, session)->owner;
        free(op->device_binding_json);
        free(op->identity_binding_json);
        op->device_binding_json = records_device_binding_value(owner, session->record_id);
        op->identity_binding_json = records_identity_binding_value(owner, op->device_id);
        binding_ready = op->device_binding_json != NULL && op->identity_binding_json != NULL;
        if (binding_ready) {
            records_device_binding_key(entry->owner_key, op->device_id, op->key_device_binding);
            records_identity_binding_key(entry->owner_key, session->record_id,
                                         op->key_identity_binding);
            add_put(&op->write, STORE_BINDINGS, op->key_device_binding, op->device_binding_json);
            op->write.conditions[op->write.condition_count++] =
                op->write.puts[op->write.put_count - 1];
            add_put(&op->write, STORE_BINDINGS, op->key_identity_binding,
                    op->identity_binding_json);
            op->write.conditions[op->write.condition_count++] =
                op->write.puts[op->write.put_count - 1];
        }
    }
    op->write.done = store_done;
    op->write.user = op;
    op->write.lazy = !hands_out;
    op->phase = PHASE_COMMITTING;
    if ((!record_current && op->record_json == NULL) || op->step_json == NULL || !binding_ready) {
        dps_op_set_error(op, COAP_INTERNAL_SERVER_ERROR, "out of memory");
        dps_op_finish(op);
        return;
    }
    int submitted = store_submit(op->services->store, &op->write);
    if (submitted != STORE_OK) {
        dps_op_set_error(op, COAP_SERVICE_UNAVAILABLE,
                         submitted == STORE_BUSY ? "store busy, retry"
                                                 : "store unavailable, retry");
        dps_op_finish(op);
        return;
    }
    if (op->write.lazy) {
        /* The op stays, owning the write's buffers, until the store hands it back. */
        dps_op_answer(op, true);
    }
}

/* ---- signing limits ---- */

/* The limits decided later (a lease's refill, a source's bucket in Redis): back through the
 * mailbox. */
static void limit_done(struct cluster_rate_request *limit)
{
    struct dps_op *op = limit->user;
    mailbox_post(op->services->mailbox, &op->item);
}

/*
 * The signing limits' verdict: admitted goes on with the step's request as
 * it came; refused answers 5.03 with Max-Age at once, before any work and
 * without a record line, as a busy node does.
 */
static void limit_decided(struct dps_op *op, enum cluster_rate_verdict verdict)
{
    if (verdict == CLUSTER_RATE_ADMITTED) {
        struct dps_request request = {
            .content_format = op->request_content_format,
            .payload = op->request_payload,
            .payload_length = op->request_payload_length,
        };
        if (op->step == STEP_CLOUD) {
            dps_step_cloud(op, &request);
        } else {
            dps_step_credentials(op, &request);
        }
        return;
    }
    static const char message[] = "rate limited, retry";
    uint32_t seconds = (uint32_t)((op->limit.retry_after_ns + 999999999) / 1000000000);
    count(&op->services->counters->rate_limited, 1);
    struct dps_session *session = op->session;
    if (dps_op_detach(op)) {
        send_reply(op->services, session, op->reply, op->token, op->token_length,
                   COAP_SERVICE_UNAVAILABLE, -1, seconds > 0 ? seconds : 1,
                   (const uint8_t *)message, sizeof(message) - 1);
    }
    dps_op_release(op);
}

/*
 * A signing step first passes the signing limits (dataplane/cluster_rate.h):
 * its group's, the node's or cluster's, and its source address's. They may
 * answer later, so the request's payload is kept in the op meanwhile.
 */
static void limit_step(struct dps_op *op, const struct dps_request *request)
{
    op->request_content_format = request->content_format;
    op->request_payload_length = request->payload_length;
    op->request_payload = malloc(request->payload_length + 1);
    if (op->request_payload == NULL) {
        dps_op_set_error(op, COAP_SERVICE_UNAVAILABLE, "out of memory");
        dps_op_finish(op);
        return;
    }
    if (request->payload_length > 0) {
        memcpy(op->request_payload, request->payload, request->payload_length);
    }
    op->phase = PHASE_LIMITING;
    op->limit = (struct cluster_rate_request){.done = limit_done, .user = op};
    snprintf(op->limit.group_id, sizeof(op->limit.group_id), "%s",
             dps_session_group(op->services, op->session)->id);
    source_rate_key(op->session->peer, op->limit.source);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    enum cluster_rate_verdict verdict = cluster_rate_admit(
        op->services->rate, &op->limit, (int64_t)now.tv_sec * 1000000000 + now.tv_nsec);
    if (verdict != CLUSTER_RATE_PENDING) {
        limit_decided(op, verdict);
    }
}

/* Runs on the shard's thread each time the signer, the store or Redis hands the op back. */
static void dps_op_resume(struct mailbox_item *item)
{
    struct dps_op *op = (struct dps_op *)item;
    if (op->phase == PHASE_LIMITING) {
        if (op->session->gone) {
            dps_op_free(op);
            return;
        }
        limit_decided(op, op->limit.verdict);
        return;
    }
    if (op->phase == PHASE_CLAIMING) {
        if (op->session->gone) {
            dps_op_free(op);
            return;
        }
        dps_step_claim_decided(op, op->claim.result);
        return;
    }
    if (op->answered) {
        /* A lazy line is written: the device has its answer; its connection moves on. */
        struct dps_session *session = op->session;
        if (op->write.status != STORE_OK) {
            log_msg(LOG_WARN, "record line not written", "step=%s status=%d",
                    dps_step_routes[op->step].record_part, op->write.status);
        } else if (op->record_json != NULL) {
            record_applied(op);
        }
        if (dps_op_detach(op) && session->pending == 0) {
            session->resume(session);
        }
        dps_op_release(op);
        return;
    }
    if (op->phase == PHASE_SIGNING) {
        if (op->session->gone) {
            dps_op_free(op);
            return;
        }
        if (op->sign.status != 0) {
            log_msg(LOG_ERROR, "signing failed", "step=%s error=\"%s\"",
                    dps_step_routes[op->step].record_part, op->sign.error);
            dps_op_set_error(op, COAP_SERVICE_UNAVAILABLE, "signing failed, retry");
            dps_op_finish(op);
            return;
        }
        bool issued = op->step == STEP_CREDENTIALS;
        if (issued) {
            dps_step_answer_credentials(op);
        } else {
            dps_step_answer_cloud(op);
        }
        dps_op_commit(op, issued && op->code < COAP_BAD_REQUEST);
        return;
    }
    if (op->phase == PHASE_COMMITTING && op->write.status == STORE_CONFLICT) {
        /* Another manufacturer identity bound this device id first, or this identity bound
         * another id: nothing was written, the certificate never leaves; record the refusal
         * and answer 4.03. */
        if (op->write.failed_condition == 0) {
            dps_op_refuse(op, DPS_REFUSED_ID_TAKEN,
                          "device id is bound to another manufacturer certificate");
        } else {
            dps_op_refuse(op, DPS_REFUSED_IDENTITY_BOUND,
                          "this manufacturer certificate is bound to another device id");
        }
        op->device_id[0] = '\0';
        op->session->device_id[0] = '\0'; /* the claim was not this identity's to make */
        json_object_clear(op->step_data);
        op->step_acl_json = NULL;
        dps_op_commit(op, false);
        return;
    }
    if (op->write.status != STORE_OK) {
        log_msg(LOG_ERROR, "record commit failed", "step=%s record=%s",
                dps_step_routes[op->step].record_part, op->session->record_id);
        dps_op_set_error(op, COAP_SERVICE_UNAVAILABLE, "store unavailable, retry");
    } else if (op->record_json != NULL) {
        record_applied(op);
    }
    dps_op_finish(op);
}

/* ---- dispatch ---- */

void dps_handle(const struct dps_services *services, struct dps_session *session,
                const struct dps_request *request, dps_reply_fn reply)
{
    size_t index = 0;
    while (index < STEP_COUNT && strcmp(dps_step_routes[index].path, request->path) != 0)
        index++;
    if (index == STEP_COUNT) {
        reply_error(services, session, request, reply, COAP_NOT_FOUND, 0, "no such resource");
        return;
    }
    enum dps_step step = (enum dps_step)index;
    uint8_t method = dps_step_routes[step].post ? COAP_POST : COAP_GET;
    if (method != request->method) {
        reply_error(services, session, request, reply, COAP_METHOD_NOT_ALLOWED, 0,
                    method == COAP_GET ? "use GET" : "use POST");
        return;
    }
    enum payload_format format = PAYLOAD_CBOR;
    int content_format = COAP_FORMAT_OCF_CBOR;
    if (request->accept == COAP_FORMAT_CBOR) {
        content_format = COAP_FORMAT_CBOR;
    } else if (request->accept == COAP_FORMAT_JSON) {
        format = PAYLOAD_JSON;
        content_format = COAP_FORMAT_JSON;
    } else if (request->accept != -1 && request->accept != COAP_FORMAT_OCF_CBOR) {
        reply_error(services, session, request, reply, COAP_NOT_ACCEPTABLE, 0,
                    "Accept must be 10000, 60 or 50");
        return;
    }
    /* Backpressure before any work: 5.03 + Max-Age makes the device retry this step. */
    if (*services->pending_ops >= services->config->max_pending) {
        reply_error(services, session, request, reply, COAP_SERVICE_UNAVAILABLE, DPS_RETRY_SECONDS,
                    "busy, retry");
        count(&services->counters->busy, 1);
        return;
    }
    struct dps_op *op = dps_op_new(services, session, request, reply, step, format, content_format);
    if (op == NULL) {
        reply_error(services, session, request, reply, COAP_SERVICE_UNAVAILABLE, DPS_RETRY_SECONDS,
                    "out of memory");
        return;
    }
    switch (step) {
    case STEP_CLOUD:
    case STEP_CREDENTIALS:
        limit_step(op, request);
        break;
    case STEP_TIME:
        dps_step_time(op);
        break;
    case STEP_OWNERSHIP:
        dps_step_ownership(op);
        break;
    case STEP_ACLS:
        dps_step_acls(op);
        break;
    case STEP_RESOURCES:
        dps_step_resources(op);
        break;
    }
}
