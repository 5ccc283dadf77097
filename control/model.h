/*
 * model: enrollment groups and hubs as JSON documents, the one form in which
 * they are stored (RocksDB), served and accepted by the management API, and
 * the conversion to and from the structures the data plane reads.
 *
 * The JSON shapes follow the plgd reference (protojson, lowerCamelCase):
 *
 * enrollment group:
 *   {"id": UUID, "owner": text, "name": text?,
 *    "attestationMechanism": {"x509": {"certificateChain": PEM text or absolute file path,
 *                                      "leadCertificateName": text?,
 *                                      "expiredCertificateEnabled": bool?,
 *                                      "crls": [PEM CRL text or absolute file path, ...]?}},
 *                                                                   (crls: our extension)
 *    "hubIds": [UUID, ...] (at least one),
 *    "preSharedKey": text? (exactly 16 bytes of UTF-8, kept as given),
 *    "acl": {"mode": "replace"|"extend", "entries": [ACE, ...]}?   (our extension)
 *    "resources": [{"href": "/...", "content": {...}}, ...]?        (our extension)
 *    "disabled": bool? (devices of a disabled group are refused)    (our extension)}
 *
 * hub:
 *   {"id": UUID (the record id; equals hubId), "hubId": UUID, "owner": text, "name": text?,
 *    "gateways": ["coaps+tcp://host:port", ...] (at least one),
 *    "authorization": {"ownerClaim": text?, "deviceIdClaim": text?,
 *                      "provider": {"name": text (the "apn" sent to devices),
 *                                   "audience": text?}},
 *    "identityCertificate": {"certificate": file path, "key": file path,
 *                            "validity": seconds?},                (our extension)
 *    "token": {"key": file path, "keyId": text?, "issuer": text,
 *              "lifetime": seconds?}}                               (our extension)
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
json_t *model_group_to_json(const struct config_group *group);
void model_group_clear(struct config_group *group);

int model_hub_from_json(const json_t *doc, struct config_hub *hub, char *err, size_t err_length);
json_t *model_hub_to_json(const struct config_hub *hub);
void model_hub_clear(struct config_hub *hub);

#endif
