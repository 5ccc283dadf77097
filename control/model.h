/*
 * model: enrollment groups and hubs as JSON documents, the one form in which
 * they are stored (RocksDB), served and accepted by the management API, and
 * the conversion to and from the structures the data plane reads.
 *
 * The JSON shapes follow the plgd reference (protojson, lowerCamelCase):
 *
 * enrollment group:
 *   {"id": UUID, "owner": text, "name": text? (from the API: the id when absent),
 *    "attestationMechanism": {"x509": {"certificateChain": PEM text, or a data:;base64 URL of
 *                                                          it (or, stored only, an absolute
 *                                                          file path),
 *                                      "leadCertificateName": text?,
 *                                      "expiredCertificateEnabled": bool?,
 *                                      "crls": [PEM CRL text (or, stored only, a path), ...]?}},
 *                                                                   (crls: our extension)
 *    "hubIds": [UUID, ...] (at least one),
 *    "preSharedKey": text? (exactly 16 bytes of UTF-8, kept as given; or a data:;base64 URL
 *                    of exactly 16 bytes, written back in that form when not UTF-8 text),
 *    "acl": {"mode": "replace"|"extend", "entries": [ACE, ...]}?   (our extension)
 *    "resources": [{"href": "/...", "content": {...}}, ...]?        (our extension)
 *    "disabled": bool? (devices of a disabled group are refused)    (our extension)}
 *
 * hub:
 *   {"id": UUID (the record id: generated for a hub the API created from a hubId,
 *          else equal to hubId), "hubId": UUID, "owner": text, "name": text?,
 *    "gateways": ["coaps+tcp://host:port", ...] (at least one),
 *    "authorization": {"ownerClaim": text?, "deviceIdClaim": text?,
 *                      "provider": {"name": text (the "apn" sent to devices),
 *                                   "audience": text?,
 *                                   "clientId", "clientSecret", "authority": text?,
 *                                   "scopes": [text]?, "http": {...}? (kept, not used)}},
 *    "certificateAuthority": {"grpc": {...}}? (the reference's CA service: kept, not used),
 *    "identityCertificate": {"keyName": text, "validity": seconds?},   (our extension)
 *    "token": {"keyName": text, "keyId": text?, "issuer": text,
 *              "lifetime": seconds?}}                               (our extension)
 *
 * keyName names a key the node's administrator registered (keys: in the
 * configuration file) for the hub's owner. Stored documents of hubs from the
 * configuration file may instead name the files: "certificate" and "key",
 * and "key" for the token. The claim names may not collide (config.h).
 *
 * Three readers, one set of rules; only what a source may name differs.
 * model_*_from_json() reads the stored form; model_*_from_api() reads a
 * document from the management API, which names no file (chains and CRLs are
 * PEM text, keys are names); model_*_from_file() reads a group or hub of the
 * configuration file, which the node's administrator wrote and may name
 * files, relative to the file's folder, and give durations as "1d" (its
 * messages say "key" and "mapping" where the JSON sources say "field" and
 * "object"). control/config_documents.c turns the file's YAML into these documents. Two writers:
 * model_*_to_json() writes the stored form; model_*_to_api() the form served to the API's callers,
 * which shows no file path (chains and CRLs as the PEM text the snapshot
 * read, hub keys by name only).
 *
 * From the API, leadCertificateName defaults to the common name of the
 * chain's first certificate and must be that of one of its certificates. A
 * hub in the reference's shape (certificateAuthority, an OAuth client in its
 * provider) is kept as it came, but needs our identityCertificate and token:
 * the node signs both itself, and the error says so.
 *
 * Validation gives the same rules as the YAML configuration, and every
 * error names the field by its JSON path (for example
 * "attestationMechanism.x509.certificateChain: not a PEM certificate chain").
 */
#ifndef DPS_MODEL_H
#define DPS_MODEL_H

#include <stddef.h>

#include <jansson.h>

#include "control/config.h"

/* Fills group from doc (all strings newly allocated). 0, or -1 with "field: problem" in err. */
int model_group_from_json(const json_t *doc, struct config_group *group, char *err,
                          size_t err_length);
int model_group_from_api(const json_t *doc, struct config_group *group, char *err,
                         size_t err_length);
int model_group_from_file(const json_t *doc, const char *folder, struct config_group *group,
                          char *err, size_t err_length);
json_t *model_group_to_json(const struct config_group *group);
json_t *model_group_to_api(const struct config_group *group);
void model_group_clear(struct config_group *group);

int model_hub_from_json(const json_t *doc, struct config_hub *hub, char *err, size_t err_length);
int model_hub_from_api(const json_t *doc, struct config_hub *hub, char *err, size_t err_length);
int model_hub_from_file(const json_t *doc, const char *folder, struct config_hub *hub, char *err,
                        size_t err_length);
json_t *model_hub_to_json(const struct config_hub *hub);
json_t *model_hub_to_api(const struct config_hub *hub);
void model_hub_clear(struct config_hub *hub);

/*
 * Removes from an API document the members the readers do not know (the
 * reference ignores them: its web UI sends "hubsData"), appending the JSON
 * path of each to the array ignored. ACL entries are left to the reader.
 */
void model_group_prune(json_t *doc, json_t *ignored);
void model_hub_prune(json_t *doc, json_t *ignored);

#endif
