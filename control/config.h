/*
 * config: the daemon's YAML configuration, parsed once (libyaml) into an
 * immutable structure that shards and workers only read.
 *
 * Relative file paths are resolved against the configuration file's folder.
 * config_load() validates everything it can without the network: required
 * keys, types, UUIDs, URIs, ranges, hub references, that the files named
 * exist and are readable. Every error names the file, the key path (for
 * example "enrollmentGroups[1].hubIds[0]") and what is wrong.
 *
 * The file format is documented in README.md ("Configuration").
 */
#ifndef DPS_CONFIG_H
#define DPS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/domain.h"

#include <stdio.h>

/* 0 on success; -1 with "FILE: KEY: problem" in err. */
int config_load(const char *path, struct config **out, char *err, size_t err_length);

/*
 * config_load() of a file the caller opened, read from where it stands: a caller that needs
 * two configurations of one version of the file (dpsd's SIGHUP: the data plane's and the
 * management API's) opens it once and rewinds, so a file replaced in between cannot give them
 * different versions. path names it in errors and resolves its relative paths.
 */
int config_load_from(const char *path, FILE *file, struct config **out, char *err,
                     size_t err_length);
void config_free(struct config *config);

/* The registered key with name, or NULL. */
const struct config_key *config_find_key(const struct config *config, const char *name);

/* True when owner is one of the key's owners. */
bool config_key_allows(const struct config_key *key, const char *owner);

/*
 * Validators shared by the YAML configuration and the management API's JSON
 * documents (control/model.c).
 */

bool config_uuid_valid(const char *text);

/*
 * A duration as the configuration file writes it: Ns, Nm, Nh, Nd, or a plain
 * number of seconds. 0 with *seconds, or -1 when text is none of those.
 * CONFIG_DURATION_PROBLEM (with the lowest and highest seconds) says what is
 * expected.
 */
int config_duration_parse(const char *text, long *seconds);
#define CONFIG_DURATION_PROBLEM                                                                    \
    "must be a duration from %lds to %lds (a number of seconds, or N followed by s, m, h or d)"

/* NULL when text is coaps+tcp://HOST:PORT, else what is wrong. */
const char *config_gateway_problem(const char *text);

/* NULL when text can name a registered key, else what is wrong. */
const char *config_key_name_problem(const char *text);

/*
 * The claim names of a hub's tokens must not collide: the owner claim may
 * be "sub" (its default) but no other registered claim (iss, aud, exp, nbf,
 * iat, jti); the device-id claim (may be NULL) may be none of them, "sub"
 * included, nor the owner claim. NULL when they fit, else what is wrong,
 * with *device_id_claim telling which claim it is about.
 */
const char *config_claims_problem(const char *owner_claim, const char *device_id_claim,
                                  bool *device_id_claim_wrong);

/*
 * Sets group's pre-shared key from the length bytes of text (a configuration
 * or JSON string, so UTF-8: a character outside ASCII counts its 2 to 4
 * bytes). A key that is not exactly CONFIG_PSK_LENGTH bytes is refused, never
 * cut or padded. 0, or -1 with the problem (without a path) in err.
 */
int config_psk_set(struct config_group *group, const char *text, size_t length, char *err,
                   size_t err_length);

/* Free what a hub or group holds (the structure itself is the caller's). */
void config_hub_clear(struct config_hub *hub);
void config_group_clear(struct config_group *group);

/* Deep copies (what a snapshot read from files included). 0, or -1 with *to cleared. */
int config_hub_copy(const struct config_hub *from, struct config_hub *to);
int config_group_copy(const struct config_group *from, struct config_group *to);

#endif
