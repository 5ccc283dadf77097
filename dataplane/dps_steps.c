/*
 * dps_steps: the six DPS resources' own work (PROTOCOL.md section 2), each
 * on an op that dps_handlers.c started and will commit: time, ownership,
 * ACLs and resources answer from the catalog at once; cloud-configuration
 * and credentials read their request (dps_requests.h), check the device id
 * the device names (reserved, blocked, bound to someone else), claim a new
 * one in Redis in a cluster, and hand the signer its request; once signed,
 * their answers carry the token or the certificate.
 */
#include "dataplane/dps_op.h"
#include "dataplane/record_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/uuid.h"
#include "dataplane/blocklist.h"
#include "dataplane/coap_tcp.h"
#include "dataplane/dps_counters.h"
#include "dataplane/dps_requests.h"
#include "dataplane/payload.h"

static void format_rfc3339_seconds(time_t when, char out[32])
{
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int finish_body(struct dps_op *op, struct payload_writer *writer)
{
    long length = payload_finish(writer);
    if (length < 0) {
        dps_op_set_error(op, COAP_INTERNAL_SERVER_ERROR, "response does not fit 8192 bytes");
        return -1;
    }
    op->body_length = (size_t)length;
    return 0;
}

static int begin_body(struct dps_op *op, struct payload_writer *writer)
{
    op->body = malloc(DPS_MAX_PAYLOAD);
    if (op->body == NULL) {
        dps_op_set_error(op, COAP_INTERNAL_SERVER_ERROR, "out of memory");
        return -1;
    }
    payload_init(writer, op->format, op->body, DPS_MAX_PAYLOAD);
    return 0;
}

/*
 * The GET steps all answer 2.05 with a one-member map: key and a text value,
 * or key and a JSON document (json true) served in the negotiated format.
 */
static void answer_member(struct dps_op *op, const char *key, const char *value, bool json)
{
    struct payload_writer writer;
    if (begin_body(op, &writer) != 0) {
        return;
    }
    payload_map(&writer, 1);
    payload_text(&writer, key);
    if (json) {
        payload_json(&writer, value);
    } else {
        payload_text(&writer, value);
    }
    payload_end(&writer);
    if (finish_body(op, &writer) == 0) {
        op->code = COAP_CONTENT;
    }
}

void dps_step_time(struct dps_op *op)
{
    struct timespec now;
    char text[32];
    clock_gettime(CLOCK_REALTIME, &now);
    dps_format_time(&now, text);
    answer_member(op, "time", text, false);
    json_object_set_new(op->step_data, "time", json_string(text));
    dps_op_commit(op, false);
}

void dps_step_ownership(struct dps_op *op)
{
    answer_member(op, "devowneruuid", dps_op_catalog_group(op)->owner_uuid, false);
    json_object_set_new(op->step_data, "owner",
                        json_string(dps_session_group(op->services, op->session)->owner));
    dps_op_commit(op, false);
}

void dps_step_acls(struct dps_op *op)
{
    const char *acl = dps_op_catalog_group(op)->acl_json;
    answer_member(op, "aclist2", acl, true);
    op->step_acl_json = acl;
    dps_op_commit(op, false);
}

void dps_step_resources(struct dps_op *op)
{
    answer_member(op, "resources", dps_op_catalog_group(op)->resources_json, true);
    dps_op_commit(op, false);
}

/* Sets a 4.03 with message, counted by reason; returns -1 for the caller to pass on. */
int dps_op_refuse(struct dps_op *op, enum dps_refusal reason, const char *message)
{
    count(&op->services->counters->refused[reason], 1);
    dps_op_set_error(op, COAP_FORBIDDEN, message);
    return -1;
}

/*
 * What a device may not become, whatever its manufacturer certificate: no
 * one (nil), an owner (any owner's UUID: the owner ACE grants it all rights
 * on every device), a hub (hubs get rights on devices too), or anyone the
 * group's ACLs name. A certificate for such an id, valid under the hub's
 * root, would let the device act as that identity towards its peers and the
 * hub. NULL when the id is free to claim, else why not.
 */
static const char *reserved_reason(const struct dps_op *op, const struct dps_uuid *uuid)
{
    if (uuid_is_nil(uuid)) {
        return "device id is reserved: the nil UUID";
    }
    const struct dps_reserved_id *found = dps_catalog_reserved(op->services->catalog, uuid);
    if (found != NULL) {
        return found->kind == DPS_RESERVED_HUB ? "device id is reserved: a hub id"
                                               : "device id is reserved: an owner's UUID";
    }
    const struct dps_catalog_group *entry = dps_op_catalog_group(op);
    for (size_t i = 0; i < entry->acl_subject_count; i++) {
        if (memcmp(&entry->acl_subjects[i], uuid, sizeof(*uuid)) == 0) {
            return "device id is reserved: a subject of the group's ACLs";
        }
    }
    return NULL;
}

/* Reads one id field of a binding value; 1 when present (into out), 0 absent, -1 store error. */
static int read_binding(const struct dps_op *op, const char *key, const char *field, char out[37])
{
    char *value = NULL;
    size_t length = 0;
    int status = store_get(op->services->store, STORE_BINDINGS, key, strlen(key), &value, &length);
    if (status == STORE_NOT_FOUND) {
        return 0;
    }
    if (status != STORE_OK) {
        return -1;
    }
    json_t *binding = json_loadb(value, length, 0, NULL);
    free(value);
    snprintf(out, 37, "%s", json_string_value(json_object_get(binding, field)) ?: "");
    json_decref(binding);
    return 1;
}

/*
 * Checks a device id the device names for itself: not reserved, not blocked
 * by the owner, free or bound to this manufacturer identity, and this
 * identity bound to no other id (bindings are the owner's: another owner's
 * devices never hold an id against this one's). Sets a 4.03 otherwise,
 * naming the id in the way so the owner can find and release it.
 */
static int check_device_id(struct dps_op *op, const char *device_id)
{
    struct dps_uuid uuid;
    const char *reserved = uuid_text_parse(device_id, strlen(device_id), &uuid) == 0
                               ? reserved_reason(op, &uuid)
                               : "device id is not a UUID";
    if (reserved != NULL) {
        return dps_op_refuse(op, DPS_REFUSED_RESERVED, reserved);
    }
    char key[RECORDS_KEY_MAX];
    snprintf(key, sizeof(key), "device:%s", device_id);
    if (blocklist_contains(op->services->blocklist,
                           dps_session_group(op->services, op->session)->owner, key)) {
        return dps_op_refuse(op, DPS_REFUSED_BLOCKED, "device is blocked");
    }
    const struct dps_catalog_group *entry = dps_op_catalog_group(op);
    char bound[37], message[160];
    records_device_binding_key(entry->owner_key, device_id, key);
    int found = read_binding(op, key, "recordId", bound);
    if (found > 0 && strcmp(bound, op->session->record_id) != 0) {
        snprintf(message, sizeof(message),
                 "device id %s is bound to another manufacturer certificate", device_id);
        return dps_op_refuse(op, DPS_REFUSED_ID_TAKEN, message);
    }
    bool held = found > 0;
    if (found >= 0) {
        records_identity_binding_key(entry->owner_key, op->session->record_id, key);
        found = read_binding(op, key, "deviceId", bound);
        if (found > 0 && strcmp(bound, device_id) != 0) {
            snprintf(message, sizeof(message),
                     "this manufacturer certificate is bound to device id %s", bound);
            return dps_op_refuse(op, DPS_REFUSED_IDENTITY_BOUND, message);
        }
        held = held && found > 0;
    }
    if (found < 0) {
        dps_op_set_error(op, COAP_SERVICE_UNAVAILABLE, "store unavailable, retry");
        return -1;
    }
    if (op->services->cluster == NULL) {
        return 0;
    }
    /* The record holds this id durably: a renewal, Redis is not asked, unless in conflict. */
    if (held && cluster_conflicted(entry->owner_key, device_id)) {
        snprintf(message, sizeof(message),
                 "device id %s is bound twice across the cluster; the owner must release it",
                 device_id);
        return dps_op_refuse(op, DPS_REFUSED_ID_TAKEN, message);
    }
    return held ? 0 : 1;
}

/* Redis answered a claim (or will not): back on the shard's thread through the mailbox. */
static void claim_done(struct cluster_claim *claim)
{
    struct dps_op *op = claim->user;
    mailbox_post(op->services->mailbox, &op->item);
}

/* Asks Redis for a new binding of op->device_id; the step goes on in dps_step_claim_decided(). */
static void claim_device_id(struct dps_op *op)
{
    op->phase = PHASE_CLAIMING;
    op->claim = (struct cluster_claim){.done = claim_done, .user = op};
    if (cluster_claim(op->services->cluster, &op->claim, dps_op_catalog_group(op)->owner_key,
                      op->device_id, op->session->record_id) != 0) {
        dps_step_claim_decided(op, CLUSTER_CLAIM_UNAVAILABLE);
    }
}

/* Picks the hub and gateway: the device's selected one when it is linked, else the first. */
static void choose_gateway(const struct dps_services *services, const struct config_group *group,
                           const struct cloud_request *request, size_t *hub_index,
                           const char **gateway)
{
    const struct config *config = services->config;
    *hub_index = (size_t)(config_find_hub(config, group->hub_ids[0]) - config->hubs);
    *gateway = config->hubs[*hub_index].gateways[0];
    if (request->gateway_id[0] == '\0' || request->gateway_uri == NULL) {
        return;
    }
    for (size_t i = 0; i < group->hub_count; i++) {
        const struct config_hub *hub = config_find_hub(config, group->hub_ids[i]);
        if (strcmp(hub->id, request->gateway_id) != 0) {
            continue;
        }
        for (size_t g = 0; g < hub->gateway_count; g++) {
            if (strlen(hub->gateways[g]) == request->gateway_uri_length &&
                memcmp(hub->gateways[g], request->gateway_uri, request->gateway_uri_length) == 0) {
                *hub_index = (size_t)(hub - config->hubs);
                *gateway = hub->gateways[g];
                return;
            }
        }
    }
}

static void sign_cloud(struct dps_op *op);
static void sign_credentials(struct dps_op *op);

/* Hands the op's signer request out; the step goes on in dps_op_resume(). */
static void sign_submit(struct dps_op *op)
{
    op->sign.done = dps_op_signer_done;
    op->sign.user = op;
    op->phase = PHASE_SIGNING;
    if (signer_submit(op->services->signer, &op->sign) != 0) {
        dps_op_set_error(op, COAP_SERVICE_UNAVAILABLE, "signer busy, retry");
        dps_op_finish(op);
    }
}

/* The step's signature, once its device id is the device's to hold. */
static void sign_step(struct dps_op *op)
{
    if (op->step == STEP_CLOUD) {
        sign_cloud(op);
    } else {
        sign_credentials(op);
    }
}

/*
 * Checks the device id the step names (op->device_id): refused, the step's
 * record says why; a new binding in a cluster, Redis is asked first; else
 * on to the signer.
 */
static void check_then_sign(struct dps_op *op)
{
    int checked = check_device_id(op, op->device_id);
    if (checked < 0) {
        op->device_id[0] = '\0';
        dps_op_commit(op, false);
    } else if (checked > 0) {
        claim_device_id(op);
    } else {
        sign_step(op);
    }
}

void dps_step_cloud(struct dps_op *op, const struct dps_request *request)
{
    struct cloud_request parsed = {0};
    if (dps_parse_cloud_request(request->payload, request->payload_length, &parsed) != 0) {
        dps_op_set_error(op, COAP_BAD_REQUEST,
                         "cloud-configuration needs a map with a UUID \"di\"");
        dps_op_commit(op, false);
        return;
    }
    memcpy(op->device_id, parsed.device_id, sizeof(op->device_id));
    /* The request's bytes go with this call: the gateway is chosen now. */
    choose_gateway(op->services, dps_session_group(op->services, op->session), &parsed,
                   &op->claim_hub_index, &op->claim_gateway);
    check_then_sign(op);
}

/* cloud-configuration, its device id checked (and claimed in Redis when new). */
static void sign_cloud(struct dps_op *op)
{
    memcpy(op->session->device_id, op->device_id, sizeof(op->device_id));
    const struct config_group *group = dps_session_group(op->services, op->session);
    const char *gateway = op->claim_gateway;
    size_t hub_index = op->claim_hub_index;
    op->session->hub_index = hub_index;
    op->session->hub_chosen = true;
    const struct config_hub *hub = &op->services->config->hubs[hub_index];

    json_t *gateways = json_array();
    for (size_t i = 0; i < group->hub_count; i++) {
        const struct config_hub *linked = config_find_hub(op->services->config, group->hub_ids[i]);
        for (size_t g = 0; g < linked->gateway_count; g++) {
            json_array_append_new(
                gateways, json_pack("{s:s, s:s}", "uri", linked->gateways[g], "id", linked->id));
        }
    }
    json_object_set_new(op->step_data, "gateways", gateways);
    json_object_set_new(op->step_data, "providerName", json_string(hub->authorization_provider));
    json_object_set_new(op->step_data, "selectedGateway",
                        json_pack("{s:s, s:s}", "uri", gateway, "id", hub->id));

    op->sign.operation = SIGNER_SIGN_TOKEN;
    op->sign.hub_index = hub_index;
    op->sign.owner = group->owner;
    op->sign.device_id = op->device_id;
    op->sign.issued_at = time(NULL);
    sign_submit(op);
}

void dps_step_answer_cloud(struct dps_op *op)
{
    const struct config_group *group = dps_session_group(op->services, op->session);
    const struct config_hub *hub = &op->services->config->hubs[op->session->hub_index];
    json_t *selected = json_object_get(op->step_data, "selectedGateway");
    const char *gateway = json_string_value(json_object_get(selected, "uri"));
    size_t server_count = 0;
    for (size_t i = 0; i < group->hub_count; i++) {
        server_count += config_find_hub(op->services->config, group->hub_ids[i])->gateway_count;
    }
    struct payload_writer writer;
    if (begin_body(op, &writer) != 0) {
        return;
    }
    payload_map(&writer, 5);
    payload_text(&writer, "apn");
    payload_text(&writer, hub->authorization_provider);
    payload_text(&writer, "cis");
    payload_text(&writer, gateway);
    payload_text(&writer, "at");
    payload_text(&writer, op->sign.token);
    payload_text(&writer, "sid");
    payload_text(&writer, hub->id);
    payload_text(&writer, "x.org.iotivity.servers");
    payload_array(&writer, server_count);
    for (size_t i = 0; i < group->hub_count; i++) {
        const struct config_hub *linked = config_find_hub(op->services->config, group->hub_ids[i]);
        for (size_t g = 0; g < linked->gateway_count; g++) {
            payload_map(&writer, 2);
            payload_text(&writer, "uri");
            payload_text(&writer, linked->gateways[g]);
            payload_text(&writer, "id");
            payload_text(&writer, linked->id);
            payload_end(&writer);
        }
    }
    payload_end(&writer);
    payload_end(&writer);
    if (finish_body(op, &writer) == 0) {
        op->code = COAP_CHANGED;
    }
}

void dps_step_credentials(struct dps_op *op, const struct dps_request *request)
{
    if (request->content_format != COAP_FORMAT_CBOR &&
        request->content_format != COAP_FORMAT_OCF_CBOR) {
        dps_op_set_error(op, COAP_BAD_REQUEST, "credentials needs Content-Format 60 or 10000");
        dps_op_commit(op, false);
        return;
    }
    char claimed[37] = "";
    const char *pem;
    size_t pem_length;
    const char *problem;
    if (dps_parse_credentials_request(request->payload, request->payload_length, claimed, &pem,
                                      &pem_length, &problem) != 0) {
        dps_op_set_error(op, COAP_BAD_REQUEST, problem);
        dps_op_commit(op, false);
        return;
    }
    char reason[128];
    if (csr_check(op->services->libctx, pem, pem_length, &op->csr, reason, sizeof(reason)) != 0) {
        dps_op_set_error(op, COAP_BAD_REQUEST, reason);
        dps_op_commit(op, false);
        return;
    }
    uuid_format(&op->csr.device_id, op->device_id);
    if (claimed[0] != '\0' && strcmp(claimed, op->device_id) != 0) {
        op->device_id[0] = '\0';
        dps_op_set_error(op, COAP_BAD_REQUEST, "CSR device id differs from \"di\"");
        dps_op_commit(op, false);
        return;
    }
    check_then_sign(op);
}

/* credentials, the CSR and its device id checked (and claimed in Redis when new). */
static void sign_credentials(struct dps_op *op)
{
    memcpy(op->session->device_id, op->device_id, sizeof(op->device_id));
    const struct config_group *group = dps_session_group(op->services, op->session);
    size_t hub_index = op->session->hub_chosen
                           ? op->session->hub_index
                           : (size_t)(config_find_hub(op->services->config, group->hub_ids[0]) -
                                      op->services->config->hubs);
    op->session->hub_index = hub_index;
    const struct config_hub *hub = &op->services->config->hubs[hub_index];
    time_t now = time(NULL);
    op->sign.operation = SIGNER_ISSUE_CERTIFICATE;
    op->sign.hub_index = hub_index;
    op->sign.device_id = op->device_id;
    op->sign.spki_der = op->csr.spki_der;
    op->sign.spki_length = op->csr.spki_length;
    /* An hour of slack for devices whose clocks run behind. */
    op->sign.not_before = now - 3600;
    op->sign.not_after = now + hub->certificate_validity_s;
    sign_submit(op);
}

/* One certificate credential (credtype 8) of the creds array: the device's own, or a trust anchor.
 */
static void write_certificate_credential(struct payload_writer *writer, const char *subject,
                                         const char *usage, const char *pem)
{
    payload_map(writer, 5);
    payload_text(writer, "credtype");
    payload_int(writer, 8);
    payload_text(writer, "subjectuuid");
    payload_text(writer, subject);
    payload_text(writer, "credusage");
    payload_text(writer, usage);
    payload_text(writer, "publicdata");
    payload_map(writer, 2);
    payload_text(writer, "data");
    payload_text(writer, pem);
    payload_text(writer, "encoding");
    payload_text(writer, "oic.sec.encoding.pem");
    payload_end(writer);
    payload_text(writer, "tag");
    payload_text(writer, "dps");
    payload_end(writer);
}

void dps_step_answer_credentials(struct dps_op *op)
{
    const struct dps_services *services = op->services;
    const struct config_group *group = dps_session_group(services, op->session);
    const struct dps_catalog_group *entry = dps_op_catalog_group(op);
    const struct issued_certificate *cert = &op->sign.certificate;
    const char *root = signer_hub_root_pem(services->signer, op->session->hub_index);

    for (size_t i = 0; i < ISSUER_SERIAL_LENGTH; i++) {
        snprintf(op->serial_hex + 2 * i, 3, "%02x", cert->serial[i]);
    }
    char not_before[32], not_after[32], issued_at[32];
    format_rfc3339_seconds(cert->not_before, not_before);
    format_rfc3339_seconds(cert->not_after, not_after);
    format_rfc3339_seconds(time(NULL), issued_at);
    json_t *issuance =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "serial", op->serial_hex,
                  "owner", group->owner, "deviceId", op->device_id, "recordId",
                  op->session->record_id, "enrollmentGroupId", group->id, "hubId",
                  services->config->hubs[op->session->hub_index].id, "notBefore", not_before,
                  "notAfter", not_after, "issuedAt", issued_at, "certificatePem", cert->pem);
    op->issuance_json = dps_json_compact(issuance);
    json_decref(issuance);
    json_object_set_new(op->step_data, "identityCertificatePem", json_string(cert->pem));
    json_object_set_new(op->step_data, "serial", json_string(op->serial_hex));
    /* The rest of what the device gets, for the record's credentials (store/records.c). */
    json_object_set_new(op->step_data, "trustCaPem", json_string(root));
    json_object_set_new(op->step_data, "trustCaSubject", json_string("*"));
    if (group->has_psk)
        json_object_set_new(op->step_data, "preSharedKey",
                            json_pack("{s:s, s:s%}", "subjectId", entry->owner_uuid, "key",
                                      (const char *)group->psk, sizeof(group->psk)));

    struct payload_writer writer;
    if (op->issuance_json == NULL || begin_body(op, &writer) != 0) {
        dps_op_set_error(op, COAP_INTERNAL_SERVER_ERROR, "out of memory");
        return;
    }
    payload_map(&writer, 1);
    payload_text(&writer, "creds");
    payload_array(&writer, group->has_psk ? 3 : 2);
    if (group->has_psk) {
        payload_map(&writer, 4);
        payload_text(&writer, "credtype");
        payload_int(&writer, 1);
        payload_text(&writer, "subjectuuid");
        payload_text(&writer, entry->owner_uuid);
        payload_text(&writer, "privatedata");
        payload_map(&writer, 2);
        payload_text(&writer, "data");
        payload_textn(&writer, (const char *)group->psk, sizeof(group->psk));
        payload_text(&writer, "encoding");
        payload_text(&writer, "oic.sec.encoding.raw");
        payload_end(&writer);
        payload_text(&writer, "tag");
        payload_text(&writer, "dps");
        payload_end(&writer);
    }
    write_certificate_credential(&writer, op->device_id, "oic.sec.cred.cert", cert->pem);
    write_certificate_credential(&writer, "*", "oic.sec.cred.trustca", root);
    payload_end(&writer);
    payload_end(&writer);
    if (finish_body(op, &writer) == 0) {
        op->code = COAP_CHANGED;
    }
}

/*
 * Redis's verdict on a new binding: refused is a 4.03 with the same record
 * line and metric reason as a local conflict; unavailable follows the
 * cluster's policy; granted goes on to the signer.
 */
void dps_step_claim_decided(struct dps_op *op, enum cluster_claim_result result)
{
    char message[160];
    switch (result) {
    case CLUSTER_CLAIM_GRANTED:
        break;
    case CLUSTER_CLAIM_ID_TAKEN:
        snprintf(message, sizeof(message),
                 "device id %s is bound to another manufacturer certificate", op->device_id);
        dps_op_refuse(op, DPS_REFUSED_ID_TAKEN, message);
        break;
    case CLUSTER_CLAIM_IDENTITY_BOUND:
        snprintf(message, sizeof(message), "this manufacturer certificate is bound to device id %s",
                 op->claim.holder);
        dps_op_refuse(op, DPS_REFUSED_IDENTITY_BOUND, message);
        break;
    case CLUSTER_CLAIM_CONFLICT:
        snprintf(message, sizeof(message),
                 "device id %s is bound twice across the cluster; the owner must release it",
                 op->device_id);
        dps_op_refuse(op, DPS_REFUSED_ID_TAKEN, message);
        break;
    case CLUSTER_CLAIM_UNAVAILABLE:
        if (cluster_policy(op->services->cluster) == CONFIG_BINDINGS_CLOSED) {
            dps_op_set_error(op, COAP_SERVICE_UNAVAILABLE, "cluster unavailable, retry");
            dps_op_finish(op);
            return;
        }
        cluster_note_local_binding(op->services->cluster, dps_op_catalog_group(op)->owner_key,
                                   op->device_id, op->session->record_id);
        break;
    }
    if (result != CLUSTER_CLAIM_GRANTED && result != CLUSTER_CLAIM_UNAVAILABLE) {
        op->device_id[0] = '\0';
        dps_op_commit(op, false);
        return;
    }
    sign_step(op);
}
