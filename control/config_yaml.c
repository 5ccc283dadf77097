/*
 * config_yaml: the YAML side of the configuration reader. libyaml's document
 * API loads the whole file once (one document, no more); every mapping is
 * then read through struct mapping, which knows the keys allowed at that
 * place: an unknown or duplicated key is an error, so a typo never silently
 * falls back to a default. The config_map_* readers check a value's type and
 * range where it is read, and config_fail() names the file, the line and the
 * key path. config_yaml_to_json() gives a subtree to the code that reads JSON
 * (the groups and hubs of config_documents.c), bounded in depth and in nodes
 * so that aliases cannot blow it up.
 */
#include "control/config_internal.h"
#include "control/config.h"
#include "common/error.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define JSON_DEPTH_MAX 32

int config_fail(struct parser *p, const yaml_node_t *node, const char *key, const char *fmt, ...)
{
    if (p->err == NULL || p->err_length == 0)
        return -1;
    char problem[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(problem, sizeof(problem), fmt, args);
    va_end(args);

    char where[64] = "";
    if (node != NULL)
        snprintf(where, sizeof(where), ":%lu", (unsigned long)node->start_mark.line + 1);
    if (key != NULL && key[0] != '\0')
        snprintf(p->err, p->err_length, "%s%s: %s: %s", p->file, where, key, problem);
    else
        snprintf(p->err, p->err_length, "%s%s: %s", p->file, where, problem);
    return -1;
}

static yaml_node_t *node_at(struct parser *p, int index)
{
    return yaml_document_get_node(&p->doc, index);
}

static const char *scalar_text(const yaml_node_t *node)
{
    return (const char *)node->data.scalar.value;
}

static bool node_is_null(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *text = scalar_text(node);
    return text[0] == '\0' || strcmp(text, "~") == 0 || strcmp(text, "null") == 0 ||
           strcmp(text, "Null") == 0 || strcmp(text, "NULL") == 0;
}

size_t config_sequence_length(const yaml_node_t *node)
{
    return (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
}

yaml_node_t *config_sequence_item(struct parser *p, const yaml_node_t *node, size_t index)
{
    return node_at(p, node->data.sequence.items.start[index]);
}

/* The value node of key in a YAML mapping, or NULL. */
yaml_node_t *config_mapping_lookup(struct parser *p, const yaml_node_t *node, const char *key)
{
    if (node == NULL || node->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *key_node = node_at(p, pair->key);
        if (key_node->type == YAML_SCALAR_NODE && strcmp(scalar_text(key_node), key) == 0)
            return node_at(p, pair->value);
    }
    return NULL;
}

/*
 * Reads node as a mapping allowing only keys (NULL-terminated). A NULL or
 * null node is an absent mapping: every value is absent.
 */
int config_mapping_open(struct parser *p, const yaml_node_t *node, const char *path,
                        const char *const *keys, struct mapping *m)
{
    memset(m, 0, sizeof(*m));
    m->p = p;
    m->keys = keys;
    snprintf(m->path, sizeof(m->path), "%s", path);
    size_t key_count = 0;
    while (keys[key_count] != NULL)
        key_count++;
    if (key_count > MAPPING_KEYS_MAX) {
        /* A table in this file outgrew the mapping: every file naming it is refused, never misread.
         */
        return config_fail(p, node, path, "has %zu known keys, more than this build's %d",
                           key_count, MAPPING_KEYS_MAX);
    }
    if (node == NULL || node_is_null(node))
        return 0;
    if (node->type != YAML_MAPPING_NODE)
        return config_fail(p, node, path, "must be a mapping");
    m->node = node;

    bool seen[MAPPING_KEYS_MAX] = {false};
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *key_node = node_at(p, pair->key);
        if (key_node->type != YAML_SCALAR_NODE)
            return config_fail(p, key_node, path, "keys must be plain names");
        const char *key = scalar_text(key_node);
        char key_path[KEY_MAX];
        error_path_child(key_path, path, key);
        size_t i = 0;
        while (keys[i] != NULL && strcmp(keys[i], key) != 0)
            i++;
        if (keys[i] == NULL)
            return config_fail(p, key_node, key_path, "unknown key");
        if (seen[i])
            return config_fail(p, key_node, key_path, "duplicate key");
        seen[i] = true;
        yaml_node_t *value = node_at(p, pair->value);
        m->values[i] = node_is_null(value) ? NULL : value;
    }
    return 0;
}

/* The value of key (NULL when absent) and its key path. */
yaml_node_t *config_mapping_value(struct mapping *m, const char *key, char *path)
{
    error_path_child(path, m->path, key);
    for (size_t i = 0; m->keys[i] != NULL; i++) {
        if (strcmp(m->keys[i], key) == 0)
            return m->values[i];
    }
    return NULL;
}

int config_missing(struct mapping *m, const char *path)
{
    /* Top-level keys have no useful line: the whole file is the mapping. */
    return config_fail(m->p, m->path[0] != '\0' ? m->node : NULL, path, "required");
}

static int scalar_string(struct parser *p, const yaml_node_t *node, const char *path, char **out)
{
    if (node->type != YAML_SCALAR_NODE)
        return config_fail(p, node, path, "must be a string");
    if (node->data.scalar.length == 0)
        return config_fail(p, node, path, "must not be empty");
    if (strlen(scalar_text(node)) != node->data.scalar.length)
        return config_fail(p, node, path, "must not contain NUL characters");
    *out = strdup(scalar_text(node));
    if (*out == NULL)
        return config_fail(p, node, path, "out of memory");
    return 0;
}

/* A string value; when absent, fallback (which may be NULL) or "required". */
int config_map_string(struct mapping *m, const char *key, bool required, const char *fallback,
                      char **out)
{
    char path[KEY_MAX];
    yaml_node_t *node = config_mapping_value(m, key, path);
    if (node != NULL)
        return scalar_string(m->p, node, path, out);
    if (required)
        return config_missing(m, path);
    *out = NULL;
    if (fallback != NULL && (*out = strdup(fallback)) == NULL)
        return config_fail(m->p, NULL, path, "out of memory");
    return 0;
}

static char *resolve_path(struct parser *p, const char *name)
{
    char *resolved;
    if (name[0] == '/')
        return strdup(name);
    if (asprintf(&resolved, "%s/%s", p->dir, name) < 0)
        return NULL;
    return resolved;
}

/* A path relative to the configuration's folder; a file must be readable. */
int config_map_path(struct mapping *m, const char *key, bool required, const char *fallback,
                    bool must_be_readable, char **out)
{
    char path[KEY_MAX];
    char *name;
    if (config_map_string(m, key, required, fallback, &name) < 0)
        return -1;
    *out = NULL;
    if (name == NULL)
        return 0;
    *out = resolve_path(m->p, name);
    free(name);
    yaml_node_t *node = config_mapping_value(m, key, path);
    if (*out == NULL)
        return config_fail(m->p, node, path, "out of memory");
    if (!must_be_readable)
        return 0;
    struct stat st;
    if (access(*out, R_OK) != 0 || stat(*out, &st) != 0)
        return config_fail(m->p, node, path, "cannot read %s: %s", *out, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return config_fail(m->p, node, path, "%s is not a regular file", *out);
    return 0;
}

/*
 * A whole number; with milliseconds, also followed by "ms" or "s" (seconds,
 * counted in milliseconds). min and max bound what lands in *out.
 */
static int map_number(struct mapping *m, const char *key, unsigned long min, unsigned long max,
                      unsigned long fallback, bool milliseconds, unsigned long *out)
{
    char path[KEY_MAX];
    yaml_node_t *node = config_mapping_value(m, key, path);
    *out = fallback;
    if (node == NULL)
        return 0;
    const char *text = node->type == YAML_SCALAR_NODE ? scalar_text(node) : "";
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    unsigned long unit = 0;
    if (*end == '\0' || (milliseconds && strcmp(end, "ms") == 0))
        unit = 1;
    else if (milliseconds && strcmp(end, "s") == 0)
        unit = 1000;
    if (text[0] < '0' || text[0] > '9' || unit == 0 || errno != 0 || value > max / unit ||
        value * unit < min) {
        if (!milliseconds)
            return config_fail(m->p, node, path, "must be an integer from %lu to %lu", min, max);
        return config_fail(
            m->p, node, path,
            "must be a duration from %lums to %lums (milliseconds, or N followed by ms "
            "or s)",
            min, max);
    }
    *out = value * unit;
    return 0;
}

int config_map_unsigned(struct mapping *m, const char *key, unsigned long min, unsigned long max,
                        unsigned long fallback, unsigned long *out)
{
    return map_number(m, key, min, max, fallback, false, out);
}

int config_map_duration(struct mapping *m, const char *key, long min, long max, long fallback,
                        long *out)
{
    char path[KEY_MAX];
    yaml_node_t *node = config_mapping_value(m, key, path);
    *out = fallback;
    if (node == NULL)
        return 0;
    long seconds;
    if (config_duration_parse(node->type == YAML_SCALAR_NODE ? scalar_text(node) : "", &seconds) !=
            0 ||
        seconds < min || seconds > max)
        return config_fail(m->p, node, path, CONFIG_DURATION_PROBLEM, min, max);
    *out = seconds;
    return 0;
}

int config_map_sequence(struct mapping *m, const char *key, bool required, bool may_be_empty,
                        yaml_node_t **out, char *path)
{
    *out = config_mapping_value(m, key, path);
    if (*out == NULL)
        return required ? config_missing(m, path) : 0;
    if ((*out)->type != YAML_SEQUENCE_NODE)
        return config_fail(m->p, *out, path, "must be a list");
    if (config_sequence_length(*out) == 0 && !may_be_empty)
        return config_fail(m->p, *out, path, "must not be empty");
    return 0;
}

int config_map_mapping(struct mapping *m, const char *key, bool required, const char *const *keys,
                       struct mapping *child)
{
    char path[KEY_MAX];
    yaml_node_t *node = config_mapping_value(m, key, path);
    if (node == NULL && required)
        return config_missing(m, path);
    return config_mapping_open(m->p, node, path, keys, child);
}

/* A list of strings; each item is handed to check (which may be NULL). */
int config_map_string_list(struct mapping *m, const char *key, bool required, char ***items,
                           size_t *count,
                           int (*check)(struct parser *, const yaml_node_t *, const char *, char *))
{
    char path[KEY_MAX];
    yaml_node_t *list;
    if (config_map_sequence(m, key, required, false, &list, path) < 0)
        return -1;
    if (list == NULL)
        return 0;
    size_t n = config_sequence_length(list);
    *items = calloc(n, sizeof(**items));
    if (*items == NULL)
        return config_fail(m->p, list, path, "out of memory");
    *count = n;
    for (size_t i = 0; i < n; i++) {
        char item_path[KEY_MAX];
        error_path_index(item_path, path, i);
        yaml_node_t *item = config_sequence_item(m->p, list, i);
        if (scalar_string(m->p, item, item_path, &(*items)[i]) < 0)
            return -1;
        if (check != NULL && check(m->p, item, item_path, (*items)[i]) < 0)
            return -1;
        for (size_t j = 0; j < i; j++) {
            if (strcmp((*items)[j], (*items)[i]) == 0)
                return config_fail(m->p, item, item_path, "duplicate of %s[%zu]", path, j);
        }
    }
    return 0;
}

/*
 * YAML scalar rules: quoted is a string; plain null/bool/integer/real or else
 * a string. Untyped, every scalar but null stays text.
 */
static json_t *scalar_to_json(struct parser *p, const yaml_node_t *node, const char *path,
                              bool typed)
{
    const char *text = scalar_text(node);
    size_t length = node->data.scalar.length;
    json_t *json;
    if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (node_is_null(node))
            return json_null();
    }
    if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && typed) {
        if (strcmp(text, "true") == 0)
            return json_true();
        if (strcmp(text, "false") == 0)
            return json_false();
        const char *digits = text + (text[0] == '-' || text[0] == '+');
        if (digits[0] != '\0' && strspn(digits, "0123456789") == strlen(digits)) {
            errno = 0;
            long long integer = strtoll(text, NULL, 10);
            if (errno != 0) {
                config_fail(p, node, path, "integer out of range");
                return NULL;
            }
            return json_integer(integer);
        }
        if (strspn(digits, "0123456789.eE+-") == strlen(digits) &&
            strspn(digits, "0123456789.") > 0 && strpbrk(digits, ".eE") != NULL) {
            char *end;
            double real = strtod(text, &end);
            if (*end == '\0' && isfinite(real))
                return json_real(real);
        }
    }
    json = json_stringn(text, length);
    if (json == NULL)
        config_fail(p, node, path, "not valid text");
    return json;
}

json_t *config_yaml_to_json(struct parser *p, const yaml_node_t *node, const char *path, int depth,
                            bool typed)
{
    if (depth > JSON_DEPTH_MAX || p->json_nodes == 0) {
        config_fail(p, node, path, "nested too deeply or too large");
        return NULL;
    }
    p->json_nodes--;
    if (node->type == YAML_SCALAR_NODE)
        return scalar_to_json(p, node, path, typed);

    char child_path[KEY_MAX];
    if (node->type == YAML_SEQUENCE_NODE) {
        json_t *array = json_array();
        for (size_t i = 0; array != NULL && i < config_sequence_length(node); i++) {
            error_path_index(child_path, path, i);
            json_t *item = config_yaml_to_json(p, config_sequence_item(p, node, i), child_path,
                                               depth + 1, typed);
            if (item == NULL || json_array_append_new(array, item) < 0) {
                json_decref(array);
                return NULL;
            }
        }
        return array;
    }

    json_t *object = json_object();
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         object != NULL && pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *key_node = node_at(p, pair->key);
        if (key_node->type != YAML_SCALAR_NODE) {
            config_fail(p, key_node, path, "keys must be plain names");
            json_decref(object);
            return NULL;
        }
        const char *key = scalar_text(key_node);
        error_path_child(child_path, path, key);
        if (json_object_get(object, key) != NULL) {
            config_fail(p, key_node, child_path, "duplicate key");
            json_decref(object);
            return NULL;
        }
        json_t *value =
            config_yaml_to_json(p, node_at(p, pair->value), child_path, depth + 1, typed);
        if (value == NULL || json_object_set_new(object, key, value) < 0) {
            json_decref(object);
            return NULL;
        }
    }
    return object;
}

/* Milliseconds: N (milliseconds), Nms or Ns. */
int config_map_milliseconds(struct mapping *m, const char *key, unsigned long min,
                            unsigned long max, unsigned long fallback, unsigned *out)
{
    unsigned long value;
    int result = map_number(m, key, min, max, fallback, true, &value);
    *out = (unsigned)value;
    return result;
}

/* passwordFile: its first line, the only secret that may come from a file. */

static int yaml_error(struct parser *p, const yaml_parser_t *yaml)
{
    if (yaml->error == YAML_READER_ERROR)
        return config_fail(p, NULL, NULL, "YAML error at byte %zu: %s", yaml->problem_offset,
                           yaml->problem != NULL ? yaml->problem : "unreadable");
    if (p->err == NULL || p->err_length == 0)
        return -1;
    const char *problem = yaml->problem != NULL ? yaml->problem : "invalid YAML";
    int n = snprintf(p->err, p->err_length, "%s:%lu:%lu: YAML syntax error: %s", p->file,
                     (unsigned long)yaml->problem_mark.line + 1,
                     (unsigned long)yaml->problem_mark.column + 1, problem);
    if (yaml->context != NULL && n > 0 && (size_t)n < p->err_length)
        snprintf(p->err + n, p->err_length - (size_t)n, " (%s at line %lu)", yaml->context,
                 (unsigned long)yaml->context_mark.line + 1);
    return -1;
}

/* The file's folder as an absolute path. */
char *config_folder_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *folder;
    if (slash == NULL)
        return realpath(".", NULL);
    if (slash == path)
        return strdup("/");
    folder = strndup(path, (size_t)(slash - path));
    if (folder == NULL)
        return NULL;
    char *absolute = realpath(folder, NULL);
    free(folder);
    return absolute;
}

int config_load_document(struct parser *p, FILE *file)
{
    yaml_parser_t yaml;
    if (!yaml_parser_initialize(&yaml))
        return config_fail(p, NULL, NULL, "out of memory");
    yaml_parser_set_input_file(&yaml, file);
    int result = 0;
    if (!yaml_parser_load(&yaml, &p->doc)) {
        memset(&p->doc, 0, sizeof(p->doc));
        result = yaml_error(p, &yaml);
    } else {
        yaml_document_t extra;
        if (!yaml_parser_load(&yaml, &extra)) {
            result = yaml_error(p, &yaml);
        } else {
            if (yaml_document_get_root_node(&extra) != NULL)
                result = config_fail(p, NULL, NULL, "more than one YAML document");
            yaml_document_delete(&extra);
        }
        if (result < 0)
            yaml_document_delete(&p->doc);
    }
    yaml_parser_delete(&yaml);
    return result;
}