/*
 * config_internal: what the three files of the configuration reader share,
 * and nothing outside them includes. config_yaml.c reads the YAML document
 * and its mappings (struct parser, struct mapping, the config_map_*
 * readers); config_documents.c turns the file's groups and hubs into the
 * model's JSON documents and owns what a group or hub holds (clear, copy);
 * config.c reads the sections (listen, tls, limits, api, cluster, keys) and
 * holds the public API of control/config.h.
 *
 * Every reader returns 0, or -1 with "FILE:LINE: KEY.PATH: problem" in the
 * parser's message buffer (config_fail writes it). A key whose value is null
 * counts as absent.
 */
#ifndef DPS_CONFIG_INTERNAL_H
#define DPS_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>
#include <yaml.h>

#include "common/domain.h"
#include "common/error.h"

#define KEY_MAX ERROR_PATH_MAX
#define MAPPING_KEYS_MAX 24
#define JSON_NODES_MAX 100000

struct parser {
    const char *file; /* as given, for messages */
    char *dir;        /* absolute folder of the file, for relative paths */
    yaml_document_t doc;
    char *err;
    size_t err_length;
    size_t json_nodes; /* left to convert: bounds alias expansion */
};

/* A YAML mapping and the keys allowed in it; values[i] belongs to keys[i]. */
struct mapping {
    struct parser *p;
    const yaml_node_t *node; /* NULL when the mapping is absent */
    char path[KEY_MAX];
    const char *const *keys;
    yaml_node_t *values[MAPPING_KEYS_MAX];
};

/* ---- config_yaml.c: the document and its mappings ---- */

/* Always -1, with the message "FILE[:LINE]: [KEY: ]problem" (node and key may be NULL). */
__attribute__((format(printf, 4, 5))) int config_fail(struct parser *p, const yaml_node_t *node,
                                                      const char *key, const char *fmt, ...);

/* The whole file as p->doc; p->dir is the file's folder (config_folder_of). */
int config_load_document(struct parser *p, FILE *file);
char *config_folder_of(const char *path);

size_t config_sequence_length(const yaml_node_t *node);
yaml_node_t *config_sequence_item(struct parser *p, const yaml_node_t *node, size_t index);
/* The value node of key in a YAML mapping (node may be NULL), or NULL. */
yaml_node_t *config_mapping_lookup(struct parser *p, const yaml_node_t *node, const char *key);

/*
 * Reads node as a mapping allowing only keys (NULL-terminated, at most
 * MAPPING_KEYS_MAX). A NULL or null node is an absent mapping: every value is absent.
 */
int config_mapping_open(struct parser *p, const yaml_node_t *node, const char *path,
                        const char *const *keys, struct mapping *m);
/* The value of key (NULL when absent) and its key path. */
yaml_node_t *config_mapping_value(struct mapping *m, const char *key, char *path);
/* Fails with "required" at path. */
int config_missing(struct mapping *m, const char *path);

/* A string value; when absent, fallback (which may be NULL) or "required". */
int config_map_string(struct mapping *m, const char *key, bool required, const char *fallback,
                      char **out);
/* A path relative to the configuration's folder; a file must be readable. */
int config_map_path(struct mapping *m, const char *key, bool required, const char *fallback,
                    bool must_be_readable, char **out);
int config_map_unsigned(struct mapping *m, const char *key, unsigned long min, unsigned long max,
                        unsigned long fallback, unsigned long *out);
/* Seconds, as config_duration_parse() reads them. */
int config_map_duration(struct mapping *m, const char *key, long min, long max, long fallback,
                        long *out);
/* Milliseconds: N (milliseconds), Nms or Ns. */
int config_map_milliseconds(struct mapping *m, const char *key, unsigned long min,
                            unsigned long max, unsigned long fallback, unsigned *out);
/* A list at key (*out NULL when absent), its key path in path (KEY_MAX bytes). */
int config_map_sequence(struct mapping *m, const char *key, bool required, bool may_be_empty,
                        yaml_node_t **out, char *path);
int config_map_mapping(struct mapping *m, const char *key, bool required, const char *const *keys,
                       struct mapping *child);
/* A list of distinct strings; each item is handed to check (which may be NULL). */
int config_map_string_list(struct mapping *m, const char *key, bool required, char ***items,
                           size_t *count,
                           int (*check)(struct parser *, const yaml_node_t *, const char *,
                                        char *));

/*
 * The node as JSON: typed, YAML's scalar rules (null, booleans, numbers);
 * untyped, every scalar but null stays text. NULL after config_fail().
 */
json_t *config_yaml_to_json(struct parser *p, const yaml_node_t *node, const char *path, int depth,
                            bool typed);

/* ---- config_documents.c: groups and hubs ---- */

/* Reads the list at key of root as groups (is_group) or hubs, each through the model. */
int config_parse_items(struct mapping *root, const char *key, bool is_group, struct config *config);
void config_free_strings(char **strings, size_t count);

#endif
