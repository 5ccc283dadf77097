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

/* 0 on success; -1 with "FILE: KEY: problem" in err. */
int config_load(const char *path, struct config **out, char *err, size_t err_length);
void config_free(struct config *config);

/*
 * Validators shared by the YAML configuration and the management API's JSON
 * documents (control/model.c).
 */
struct json_t;

bool config_uuid_valid(const char *text);

/* NULL when text is coaps+tcp://HOST:PORT, else what is wrong. */
const char *config_gateway_problem(const char *text);

/*
 * Checks an ACL entry against the strict ACE shape devices accept
 * (PROTOCOL.md 2.5). 0, or -1 with "path.field: problem" in err.
 */
int config_check_ace(const struct json_t *ace, const char *path, char *err, size_t err_length);

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

#endif
