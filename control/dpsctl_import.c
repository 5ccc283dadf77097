/*
 * dpsctl_import: a plgd DPS's data into our store (control/dpsctl_import.h).
 *
 * DIR holds the reference's collections as mongoexport writes them, one
 * JSON document per line under the BSON names of its protobuf "gotags":
 * hubs.json, enrollmentGroups.json, provisionedRecords.json (any may be
 * missing). The store is written directly (store_put_sync), so dpsd must be
 * stopped: RocksDB's lock says so otherwise.
 *
 * What carries over, and how:
 * - hubs: id becomes the reference's hubId (ours are one id; group hubIds
 *   naming the reference's record id are mapped); gateways, name, owner,
 *   the authorization claims and provider name and audience. The reference
 *   gets certificates from a CA service over gRPC and device tokens from an
 *   OAuth provider; a node signs both itself, so every imported hub uses the
 *   registry keys named by --identity-key and --token-key, and the token
 *   issuer --token-issuer. The CA address and the OAuth client settings are
 *   reported as dropped.
 * - enrollment groups: id, owner, name, hubIds, the x509 attestation
 *   (certificateChain as PEM text, from PEM, "data:;base64," or a file
 *   path), and the pre-shared key when it is the 16 bytes devices take.
 * - provisioning records: the record id is kept. Both sides derive it as
 *   UUIDv5(X.500 namespace, DER SubjectPublicKeyInfo of the manufacturer
 *   leaf); when the record holds that certificate the id is checked, and a
 *   record whose id does not derive from it is reported (a device would
 *   start a new record). The device id, creation date and steps carry over,
 *   in our stored form (step_of). Each record's device id is bound to it
 *   (both binding keys), so the first identity to come after the migration
 *   cannot take a migrated device's id; a record whose device id or identity
 *   is already bound otherwise in the store is skipped, never rebound. The
 *   issuance log gets an entry for each record's identity certificate.
 *   Importing again overwrites what an earlier import wrote (records too):
 *   import once, before devices come.
 *
 * A report on stderr names everything not carried over; the exit status is
 * 0 when every document was imported, 1 when some were skipped.
 */
#include "control/dpsctl_import.h"
#include "common/base64.h"
#include "crypto/uuid.h"
#include "store/records.h"
#include "store/store.h"
#include "control/model.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define IMPORT_QUEUE_LIMIT 64

struct import {
    struct import_target target;
    char *identity_key;
    char *token_key;
    char *token_issuer;
    json_t *hub_ids; /* the reference's hub record id -> hubId */
    json_t *groups;  /* group id -> owner */
    size_t notes;
};

static const char *const COLLECTIONS[] = {"hubs", "enrollmentGroups", "provisionedRecords"};

__attribute__((format(printf, 3, 4))) static void note(struct import *import, const char *what,
                                                       const char *format, ...)
{
    va_list args;
    fprintf(import->target.report, "dpsctl import: %s: ", what);
    va_start(args, format);
    vfprintf(import->target.report, format, args);
    va_end(args);
    fputc('\n', import->target.report);
    import->notes++;
}

/* A mongoexport string, or its extended-JSON wrappers ({"$oid": ...}). */
static const char *text_of(const json_t *value)
{
    if (json_is_object(value))
        value = json_object_get(value, json_object_get(value, "$oid") != NULL ? "$oid" : "$uuid");
    return json_string_value(value);
}

/* A mongoexport int64 (a number, {"$numberLong": "..."} or a string) as decimal text. */
static int int64_text(const json_t *value, char out[24])
{
    if (json_is_object(value))
        value = json_object_get(value, "$numberLong");
    if (json_is_integer(value))
        snprintf(out, 24, "%lld", (long long)json_integer_value(value));
    else if (json_is_string(value) &&
             strspn(json_string_value(value), "0123456789") == strlen(json_string_value(value)) &&
             json_string_length(value) > 0 && json_string_length(value) < 20)
        snprintf(out, 24, "%s", json_string_value(value));
    else
        return -1;
    return 0;
}

/*
 * The bytes a reference "data:;base64,..." or PEM-or-path field holds
 * (malloc'd, NUL-terminated). Paths are read from the machine importing.
 */
static char *reference_bytes(const char *text, size_t *length)
{
    static const char data_prefix[] = "data:;base64,";
    if (text == NULL)
        return NULL;
    if (strncmp(text, data_prefix, sizeof(data_prefix) - 1) == 0)
        return (char *)base64_decode_alloc(BASE64_STANDARD, text + sizeof(data_prefix) - 1,
                                           strlen(text + sizeof(data_prefix) - 1), length);
    if (text[0] == '/') {
        FILE *file = fopen(text, "rb");
        char *content = calloc(1, 1024 * 1024 + 1);
        *length = file != NULL && content != NULL ? fread(content, 1, 1024 * 1024, file) : 0;
        if (file != NULL)
            fclose(file);
        if (*length == 0) {
            free(content);
            return NULL;
        }
        return content;
    }
    *length = strlen(text);
    return strdup(text);
}

static int put(struct import *import, enum store_family family, const char *key, size_t key_length,
               json_t *value)
{
    char *text = json_dumps(value, JSON_COMPACT);
    struct store_put entry = {family, key, key_length, text, text != NULL ? strlen(text) : 0};
    int result = text != NULL ? import->target.put(import->target.arg, &entry, 1) : -1;
    free(text);
    return result;
}

static int import_hub(struct import *import, json_t *doc, const char *what)
{
    const char *record_id = text_of(json_object_get(doc, "_id"));
    const char *hub_id = text_of(json_object_get(doc, "hubId"));
    json_t *authorization = json_object_get(doc, "authorization");
    json_t *provider = json_object_get(authorization, "provider");
    if (hub_id == NULL)
        hub_id = record_id;
    json_t *hub =
        json_pack("{s:s?, s:s?, s:O*, s:O*, s:O*}", "id", hub_id, "hubId", hub_id, "owner",
                  json_object_get(doc, "owner"), "name", json_object_get(doc, "name"), "gateways",
                  json_object_get(doc, "gateways"));
    json_t *ours = json_pack(
        "{s:O*, s:O*, s:{s:O*, s:O*}}", "ownerClaim", json_object_get(authorization, "ownerClaim"),
        "deviceIdClaim", json_object_get(authorization, "deviceIdClaim"), "provider", "name",
        json_object_get(provider, "name"), "audience", json_object_get(provider, "audience"));
    json_object_set_new(hub, "authorization", ours);
    json_object_set_new(hub, "identityCertificate",
                        json_pack("{s:s}", "keyName", import->identity_key));
    json_object_set_new(
        hub, "token",
        json_pack("{s:s, s:s}", "keyName", import->token_key, "issuer", import->token_issuer));
    struct config_hub parsed = {0};
    char err[512];
    if (model_hub_from_json(hub, &parsed, err, sizeof(err)) < 0) {
        note(import, what, "hub %s skipped: %s", hub_id != NULL ? hub_id : "(no id)", err);
        json_decref(hub);
        return -1;
    }
    json_t *stored = model_hub_to_json(&parsed);
    int result = put(import, STORE_HUBS, parsed.id, strlen(parsed.id), stored);
    json_decref(stored);
    if (result == 0 && record_id != NULL)
        json_object_set_new(import->hub_ids, record_id, json_string(parsed.id));
    if (json_object_get(doc, "certificateAuthority") != NULL)
        note(import, what,
             "hub %s: certificateAuthority (a CA service) dropped: identity certificates are "
             "signed with key \"%s\"",
             parsed.id, import->identity_key);
    if (json_object_get(provider, "clientId") != NULL ||
        json_object_get(provider, "authority") != NULL)
        note(import, what,
             "hub %s: authorization.provider's OAuth client (authority, clientId, clientSecret, "
             "scopes, http) dropped: device tokens are signed with key \"%s\", issuer %s",
             parsed.id, import->token_key, import->token_issuer);
    model_hub_clear(&parsed);
    json_decref(hub);
    return result;
}

static int import_group(struct import *import, json_t *doc, const char *what)
{
    const char *id = text_of(json_object_get(doc, "_id"));
    json_t *x509 = json_object_get(json_object_get(doc, "attestationMechanism"), "x509");
    size_t length = 0;
    char *chain =
        reference_bytes(json_string_value(json_object_get(x509, "certificateChain")), &length);
    json_t *hub_ids = json_array();
    size_t i;
    json_t *hub;
    json_array_foreach(json_object_get(doc, "hubIds"), i, hub)
    {
        json_t *mapped = json_object_get(import->hub_ids, text_of(hub) ? text_of(hub) : "");
        json_array_append(hub_ids, mapped != NULL ? mapped : hub);
    }
    json_t *group =
        json_pack("{s:s?, s:O*, s:O*, s:{s:{s:s?, s:O*, s:O*}}, s:o}", "id", id, "owner",
                  json_object_get(doc, "owner"), "name", json_object_get(doc, "name"),
                  "attestationMechanism", "x509", "certificateChain", chain, "leadCertificateName",
                  json_object_get(x509, "leadCertificateName"), "expiredCertificateEnabled",
                  json_object_get(x509, "expiredCertificateEnabled"), "hubIds", hub_ids);
    free(chain);
    size_t psk_length = 0;
    char *psk =
        reference_bytes(json_string_value(json_object_get(doc, "preSharedKey")), &psk_length);
    if (psk != NULL && psk_length == CONFIG_PSK_LENGTH && strlen(psk) == psk_length)
        json_object_set_new(group, "preSharedKey", json_stringn(psk, psk_length));
    else if (psk != NULL && psk_length > 0)
        note(import, what,
             "group %s: preSharedKey dropped: %zu bytes, devices take exactly %d printable bytes",
             id != NULL ? id : "(no id)", psk_length, CONFIG_PSK_LENGTH);
    free(psk);
    struct config_group parsed = {0};
    char err[512];
    if (model_group_from_json(group, &parsed, err, sizeof(err)) < 0) {
        note(import, what, "group %s skipped: %s", id != NULL ? id : "(no id)", err);
        json_decref(group);
        return -1;
    }
    json_t *stored = model_group_to_json(&parsed);
    int result = put(import, STORE_GROUPS, parsed.id, strlen(parsed.id), stored);
    json_decref(stored);
    if (result == 0)
        json_object_set_new(import->groups, parsed.id, json_string(parsed.owner));
    model_group_clear(&parsed);
    json_decref(group);
    return result;
}

/* The record id a manufacturer certificate (PEM) gives, as both sides derive it. */
static int record_id_of(const char *pem, char out[UUID_STRING_LENGTH + 1])
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *certificate = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    unsigned char *spki = NULL;
    int length =
        certificate != NULL ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(certificate), &spki) : -1;
    BIO_free(bio);
    X509_free(certificate);
    if (length <= 0)
        return -1;
    struct dps_uuid id;
    uuid_v5(&UUID_NAMESPACE_X500, spki, (size_t)length, &id);
    OPENSSL_free(spki);
    uuid_format(&id, out);
    return 0;
}

static void rfc3339(const ASN1_TIME *time_value, char out[32])
{
    struct tm parts;
    if (ASN1_TIME_to_tm(time_value, &parts) != 1 ||
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &parts) == 0)
        snprintf(out, 32, "%s", "");
}

/*
 * The issuance entry of the identity certificate in doc (a reference record)
 * for record (our top-level part); its serial (lower-case hex) in serial_out.
 */
static int import_issuance(struct import *import, const json_t *record, const json_t *doc,
                           const char *owner_key, const char *what, char serial_out[80])
{
    json_t *credential = json_object_get(doc, "credential");
    char issued_ns[24] = "";
    int64_text(json_object_get(json_object_get(credential, "status"), "date"), issued_ns);
    const char *pem = json_string_value(json_object_get(credential, "identityCertificate"));
    const char *id = json_string_value(json_object_get(record, "id"));
    if (pem == NULL)
        return 0;
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *certificate = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    BIGNUM *serial =
        certificate != NULL ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(certificate), NULL) : NULL;
    char *hex = serial != NULL ? BN_bn2hex(serial) : NULL;
    BN_free(serial);
    if (hex == NULL) {
        X509_free(certificate);
        note(import, what, "record %s: identityCertificate unreadable: no issuance entry", id);
        return -1;
    }
    for (char *c = hex; *c != '\0'; c++)
        *c = (char)tolower((unsigned char)*c);
    char not_before[32], not_after[32], issued_at[32] = "";
    rfc3339(X509_get0_notBefore(certificate), not_before);
    rfc3339(X509_get0_notAfter(certificate), not_after);
    X509_free(certificate);
    snprintf(serial_out, 80, "%s", hex);
    time_t seconds = (time_t)(strtoll(issued_ns, NULL, 10) / 1000000000);
    struct tm parts;
    if (seconds > 0 && gmtime_r(&seconds, &parts) != NULL)
        strftime(issued_at, sizeof(issued_at), "%Y-%m-%dT%H:%M:%SZ", &parts);
    json_t *cloud = json_object_get(doc, "cloud");
    json_t *gateway =
        json_array_get(json_object_get(cloud, "gateways"),
                       (size_t)json_integer_value(json_object_get(cloud, "selectedGateway")));
    json_t *entry = json_pack(
        "{s:s, s:O, s:O*, s:s?, s:O, s:s, s:s, s:s, s:s, s:s}", "serial", hex, "owner",
        json_object_get(record, "owner"), "deviceId", json_object_get(record, "deviceId"),
        "recordId", id, "enrollmentGroupId", json_object_get(record, "enrollmentGroupId"), "hubId",
        text_of(json_object_get(gateway, "id")) ? text_of(json_object_get(gateway, "id")) : "",
        "notBefore", not_before, "notAfter", not_after, "issuedAt",
        issued_at[0] != '\0' ? issued_at : not_before, "certificatePem", pem);
    char key[RECORDS_KEY_MAX];
    size_t key_length = records_issuance_key(owner_key, hex, key);
    int result =
        entry != NULL && key_length > 0 ? put(import, STORE_ISSUANCE, key, key_length, entry) : -1;
    json_decref(entry);
    OPENSSL_free(hex);
    return result;
}

/* A reference ProvisionStatus as ours: {"date": "<ns>", "coapCode": N, "errorMessage"?}. */
static json_t *status_of(const json_t *status)
{
    char date[24] = "";
    int64_text(json_object_get(status, "date"), date);
    json_t *ours = json_pack("{s:s, s:O*, s:O*}", "date", date, "coapCode",
                             json_object_get(status, "coapCode"), "errorMessage",
                             json_object_get(status, "errorMessage"));
    return ours;
}

/* A reference AccessControl (protobuf form, enum names) as the OCF ACE devices were sent. */
static json_t *ace_of(const json_t *reference)
{
    static const char *const permissions[] = {"CREATE", "READ", "WRITE", "DELETE", "NOTIFY"};
    static const char *const wildcards[][2] = {
        {"NONCFG_SEC_ENDPOINT", "+"}, {"NONCFG_NONSEC_ENDPOINT", "-"}, {"NONCFG_ALL", "*"}};
    json_t *device = json_object_get(reference, "deviceSubject");
    json_t *role = json_object_get(reference, "roleSubject");
    json_t *connection = json_object_get(reference, "connectionSubject");
    json_t *subject = NULL;
    if (device != NULL)
        subject = json_pack("{s:O*}", "uuid", json_object_get(device, "deviceId"));
    else if (role != NULL)
        subject = json_pack("{s:O*, s:O*}", "role", json_object_get(role, "role"), "authority",
                            json_object_get(role, "authority"));
    else {
        /* Protobuf's default (0, or absent) is ANON_CLEAR. */
        const char *type = json_string_value(json_object_get(connection, "type"));
        bool anonymous = type != NULL
                             ? strcmp(type, "ANON_CLEAR") == 0
                             : json_integer_value(json_object_get(connection, "type")) == 0;
        subject = json_pack("{s:s}", "conntype", anonymous ? "anon-clear" : "auth-crypt");
    }
    json_int_t permission = 0;
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(reference, "permissions"), i, item)
    {
        for (size_t p = 0; p < sizeof(permissions) / sizeof(*permissions); p++) {
            if ((json_is_string(item) && strcmp(json_string_value(item), permissions[p]) == 0) ||
                (json_is_integer(item) && json_integer_value(item) == (json_int_t)p))
                permission |= (json_int_t)1 << p;
        }
    }
    json_t *resources = json_array();
    json_array_foreach(json_object_get(reference, "resources"), i, item)
    {
        json_t *resource = json_object();
        const char *wildcard = json_string_value(json_object_get(item, "wildcard"));
        for (size_t w = 0; wildcard != NULL && w < 3; w++) {
            if (strcmp(wildcard, wildcards[w][0]) == 0)
                json_object_set_new(resource, "wc", json_string(wildcards[w][1]));
        }
        if (json_string_length(json_object_get(item, "href")) > 0)
            json_object_set(resource, "href", json_object_get(item, "href"));
        if (json_array_size(json_object_get(item, "resourceTypes")) > 0)
            json_object_set(resource, "rt", json_object_get(item, "resourceTypes"));
        if (json_array_size(json_object_get(item, "interfaces")) > 0)
            json_object_set(resource, "if", json_object_get(item, "interfaces"));
        json_array_append_new(resources, resource);
    }
    return json_pack("{s:o, s:o, s:I}", "subject", subject, "resources", resources, "permission",
                     permission);
}

/*
 * A step of a reference record as we store it (store/store.h): the same
 * fields under our names, its status with the date as text. The cloud's
 * selected gateway is the gateway itself, not its index; ACLs are in the
 * OCF form devices receive; the credential keeps the identity certificate
 * and its serial, not the pre-shared key (a secret we do not keep).
 */
static json_t *step_of(const char *name, const json_t *value, const char *serial)
{
    json_t *status =
        status_of(strcmp(name, "plgdTime") == 0 ? value : json_object_get(value, "status"));
    json_t *step = json_pack("{s:o}", "status", status);
    if (strcmp(name, "ownership") == 0) {
        json_object_set(step, "owner", json_object_get(value, "owner"));
    } else if (strcmp(name, "cloud") == 0) {
        json_t *gateways = json_object_get(value, "gateways");
        json_t *selected = json_array_get(
            gateways, (size_t)json_integer_value(json_object_get(value, "selectedGateway")));
        json_object_set_new(step, "gateways",
                            gateways != NULL ? json_incref(gateways) : json_array());
        json_object_set(step, "providerName", json_object_get(value, "providerName"));
        if (selected != NULL)
            json_object_set(step, "selectedGateway", selected);
    } else if (strcmp(name, "credential") == 0) {
        json_object_set(step, "identityCertificatePem",
                        json_object_get(value, "identityCertificate"));
        if (serial != NULL)
            json_object_set_new(step, "serial", json_string(serial));
    } else if (strcmp(name, "acl") == 0) {
        json_t *entries = json_array();
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(value, "accessControlList"), i, item)
            json_array_append_new(entries, ace_of(item));
        json_object_set_new(step, "accessControlList", entries);
    }
    return step;
}

/* True when key is absent or holds value (a binding written before, by a device or an import). */
static bool binding_free(struct import *import, const char *key, size_t key_length,
                         const char *value)
{
    char *held = NULL;
    size_t length = 0;
    if (import->target.get(import->target.arg, STORE_BINDINGS, key, key_length, &held, &length) < 0)
        return true;
    bool same = length == strlen(value) && memcmp(held, value, length) == 0;
    free(held);
    return same;
}

/* The two binding keys and values of device_id and record id under owner. */
struct binding {
    char device_key[RECORDS_KEY_MAX];
    char identity_key[RECORDS_KEY_MAX];
    size_t device_key_length;
    size_t identity_key_length;
    char *device_value;
    char *identity_value;
};

static int binding_init(struct binding *binding, const char *owner, const char *owner_key,
                        const char *id, const char *device_id)
{
    binding->device_value = records_device_binding_value(owner, id);
    binding->identity_value = records_identity_binding_value(owner, device_id);
    binding->device_key_length =
        records_device_binding_key(owner_key, device_id, binding->device_key);
    binding->identity_key_length =
        records_identity_binding_key(owner_key, id, binding->identity_key);
    return binding->device_value != NULL && binding->identity_value != NULL &&
                   binding->device_key_length > 0 && binding->identity_key_length > 0
               ? 0
               : -1;
}

/*
 * Neither key bound otherwise in this store: a device that provisioned here
 * before the import keeps its id, and the migrated record is not written.
 */
static bool binding_available(struct import *import, const struct binding *binding)
{
    return binding_free(import, binding->device_key, binding->device_key_length,
                        binding->device_value) &&
           binding_free(import, binding->identity_key, binding->identity_key_length,
                        binding->identity_value);
}

static int binding_write(struct import *import, const struct binding *binding)
{
    struct store_put puts[2] = {
        {STORE_BINDINGS, binding->device_key, binding->device_key_length, binding->device_value,
         strlen(binding->device_value)},
        {STORE_BINDINGS, binding->identity_key, binding->identity_key_length,
         binding->identity_value, strlen(binding->identity_value)},
    };
    return import->target.put(import->target.arg, puts, 2);
}

static int import_record(struct import *import, json_t *doc, const char *what)
{
    static const char *const steps[] = {"plgdTime",   "ownership", "cloud",
                                        "credential", "acl",       NULL};
    const char *id = text_of(json_object_get(doc, "_id"));
    const char *device_id = json_string_value(json_object_get(doc, "deviceId"));
    const char *group_id = json_string_value(json_object_get(doc, "enrollmentGroupId"));
    const char *owner = json_string_value(json_object_get(doc, "owner"));
    if (owner == NULL)
        owner = json_string_value(json_object_get(json_object_get(doc, "ownership"), "owner"));
    if (owner == NULL && group_id != NULL)
        owner = json_string_value(json_object_get(import->groups, group_id));
    struct dps_uuid parsed;
    if (id == NULL || uuid_text_parse(id, strlen(id), &parsed) != 0 || group_id == NULL ||
        owner == NULL) {
        note(import, what, "record %s skipped: needs a UUID _id, an enrollmentGroupId and an owner",
             id != NULL ? id : "(no id)");
        return -1;
    }
    if (json_object_get(import->groups, group_id) == NULL)
        note(import, what, "record %s: its group %s was not imported (the record is kept)", id,
             group_id);
    json_t *attestation = json_object_get(doc, "attestation");
    json_t *x509 = json_object_get(attestation, "x509");
    const char *leaf = json_string_value(json_object_get(x509, "certificate"));
    char derived[UUID_STRING_LENGTH + 1];
    if (leaf != NULL && record_id_of(leaf, derived) == 0 && strcasecmp(derived, id) != 0)
        note(import, what,
             "record %s: the id does not derive from its manufacturer certificate (%s): that "
             "device will start a new record",
             id, derived);
    char created[24] = "";
    char attested[24] = "";
    int64_text(json_object_get(doc, "creationDate"), created);
    int64_text(json_object_get(attestation, "date"), attested);
    json_t *top = json_pack("{s:s, s:s, s:s?, s:s, s:s, s:{s:s, s:{s:s, s:s}}}", "id", id,
                            "enrollmentGroupId", group_id, "deviceId", device_id, "owner", owner,
                            "creationDate", created, "attestation", "date",
                            attested[0] != '\0' ? attested : created, "x509", "certificatePem",
                            leaf != NULL ? leaf : "", "commonName",
                            json_string_value(json_object_get(x509, "commonName"))
                                ? json_string_value(json_object_get(x509, "commonName"))
                                : "");
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1];
    char key[RECORDS_KEY_MAX];
    records_owner_key(owner, owner_key);
    struct binding binding = {0};
    if (device_id != NULL && (binding_init(&binding, owner, owner_key, id, device_id) < 0 ||
                              !binding_available(import, &binding))) {
        note(import, what,
             "record %s skipped: device id %s or this record is already bound otherwise here "
             "(release it with dpsctl bindings release, then import again)",
             id, device_id);
        free(binding.device_value);
        free(binding.identity_value);
        json_decref(top);
        return -1;
    }
    char serial[80] = "";
    int result =
        put(import, STORE_RECORDS, key, records_part_key(owner_key, id, "record", key), top);
    if (result == 0)
        import_issuance(import, top, doc, owner_key, what, serial);
    for (size_t i = 0; result == 0 && steps[i] != NULL; i++) {
        json_t *value = json_object_get(doc, steps[i]);
        if (value == NULL)
            continue;
        json_t *step = step_of(steps[i], value, serial[0] != '\0' ? serial : NULL);
        result =
            put(import, STORE_RECORDS, key, records_part_key(owner_key, id, steps[i], key), step);
        json_decref(step);
    }
    if (result == 0 && device_id != NULL)
        result = binding_write(import, &binding);
    else if (result == 0)
        note(import, what, "record %s: no deviceId: nothing to bind", id);
    free(binding.device_value);
    free(binding.identity_value);
    json_decref(top);
    return result;
}

struct import *import_new(const struct import_target *target, const char *identity_key,
                          const char *token_key, const char *token_issuer)
{
    struct import *import = calloc(1, sizeof(*import));
    if (import == NULL)
        return NULL;
    import->target = *target;
    import->identity_key = strdup(identity_key);
    import->token_key = strdup(token_key);
    import->token_issuer = strdup(token_issuer);
    import->hub_ids = json_object();
    import->groups = json_object();
    if (import->identity_key == NULL || import->token_key == NULL || import->token_issuer == NULL ||
        import->hub_ids == NULL || import->groups == NULL) {
        import_free(import);
        return NULL;
    }
    return import;
}

void import_free(struct import *import)
{
    if (import == NULL)
        return;
    free(import->identity_key);
    free(import->token_key);
    free(import->token_issuer);
    json_decref(import->hub_ids);
    json_decref(import->groups);
    free(import);
}

size_t import_notes(const struct import *import)
{
    return import->notes;
}

int import_document(struct import *import, enum import_collection collection, const char *text,
                    size_t length, const char *what)
{
    json_error_t error;
    json_t *doc = json_loadb(text, length, 0, &error);
    int result = -1;
    if (!json_is_object(doc))
        note(import, what, "not a JSON object (%s)", doc == NULL ? error.text : "another value");
    else if (collection == IMPORT_HUBS)
        result = import_hub(import, doc, what);
    else if (collection == IMPORT_GROUPS)
        result = import_group(import, doc, what);
    else
        result = import_record(import, doc, what);
    json_decref(doc);
    return result;
}

/* The store behind an import_target. */
static int store_target_put(void *arg, const struct store_put *entries, size_t count)
{
    return store_put_sync(arg, entries, count) == STORE_OK ? 0 : -1;
}

static int store_target_get(void *arg, enum store_family family, const char *key, size_t key_length,
                            char **value, size_t *length)
{
    return store_get(arg, family, key, key_length, value, length) == STORE_OK ? 0 : -1;
}

/* The lines of DIR/<collection>.json; counts imported and skipped documents. */
static int import_collection(struct import *import, const char *dir,
                             enum import_collection collection, size_t *imported, size_t *skipped)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.json", dir, COLLECTIONS[collection]);
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        if (errno != ENOENT) {
            fprintf(stderr, "dpsctl import: %s: %s\n", path, strerror(errno));
            return -1;
        }
        return 0;
    }
    char *line = NULL;
    size_t capacity = 0;
    size_t number = 0;
    ssize_t length;
    while ((length = getline(&line, &capacity, file)) > 0) {
        number++;
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        char what[4200];
        snprintf(what, sizeof(what), "%s:%zu", path, number);
        if (import_document(import, collection, line, (size_t)length, what) == 0)
            imported[collection]++;
        else
            (*skipped)++;
    }
    free(line);
    fclose(file);
    return 0;
}

int command_import(struct client *client, struct options *options, const void *subject)
{
    const char *dir = options->argument;
    const char *data = options->value[OPT_DATA];
    const char *identity_key = options->value[OPT_IDENTITY_KEY];
    const char *token_key = options->value[OPT_TOKEN_KEY];
    const char *token_issuer = options->value[OPT_TOKEN_ISSUER];
    if (dir == NULL || data == NULL || identity_key == NULL || token_key == NULL ||
        token_issuer == NULL)
        return usage_error(options->command, "import",
                           "DIR, --data, --identity-key, --token-key and --token-issuer are "
                           "required",
                           NULL);
    char err[512] = "";
    struct store *store = store_open(data, IMPORT_QUEUE_LIMIT, 1, err, sizeof(err));
    if (store == NULL) {
        fprintf(stderr, "dpsctl import: cannot open the store in %s: %s (is dpsd stopped?)\n", data,
                err);
        return EXIT_REFUSED;
    }
    struct import_target target = {store_target_put, store_target_get, store, stderr};
    struct import *import = import_new(&target, identity_key, token_key, token_issuer);
    if (import == NULL) {
        fprintf(stderr, "dpsctl import: out of memory\n");
        store_close(store);
        return EXIT_REFUSED;
    }
    size_t imported[3] = {0};
    size_t skipped = 0;
    int failed = 0;
    for (int c = IMPORT_HUBS; c <= IMPORT_RECORDS; c++)
        failed |= import_collection(import, dir, (enum import_collection)c, imported, &skipped);
    store_close(store);
    printf("imported: %zu hubs, %zu enrollment groups, %zu provisioning records; skipped: %zu; "
           "notes: %zu\n",
           imported[IMPORT_HUBS], imported[IMPORT_GROUPS], imported[IMPORT_RECORDS], skipped,
           import_notes(import));
    import_free(import);
    return failed != 0 || skipped > 0 ? EXIT_REFUSED : EXIT_OK;
}
