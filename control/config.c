/*
 * config: reads the YAML configuration with libyaml's document API and turns
 * it into struct config in one pass, validating as it goes. The first problem
 * found stops the load and is reported as "FILE:LINE: KEY.PATH: problem".
 *
 * Every mapping is read through struct mapping, which knows the keys allowed
 * at that place: an unknown or duplicated key is an error, so a typo never
 * silently falls back to a default. A key whose value is null (empty, "~" or
 * "null") counts as absent. Hubs are read before enrollment groups, whatever
 * their order in the file, so that a group's hubIds can be checked.
 *
 * Enrollment groups and hubs are not read here: each becomes the JSON
 * document the management API accepts and goes through control/model.c, so a
 * field has one set of rules and one message wherever it comes from. The
 * file is the trusted source (model_*_from_file): it may name key and CA
 * files, relative to its folder. See "Groups and hubs" below.
 */
#include "control/config.h"
#include "control/jwks_remote.h"
#include "control/model.h"
#include "crypto/keyfile.h"
#include "common/error.h"
#include "common/log.h"
#include "dataplane/proxy.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define KEY_MAX ERROR_PATH_MAX
#define MAPPING_KEYS_MAX 24
#define ONE_YEAR_S (365L * 24 * 3600)
#define HUNDRED_YEARS_S (100 * ONE_YEAR_S)
#define JSON_DEPTH_MAX 32
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

__attribute__((format(printf, 4, 5))) static int fail(struct parser *p, const yaml_node_t *node,
                                                      const char *key, const char *fmt, ...)
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

static size_t sequence_length(const yaml_node_t *node)
{
    return (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
}

static yaml_node_t *sequence_item(struct parser *p, const yaml_node_t *node, size_t index)
{
    return node_at(p, node->data.sequence.items.start[index]);
}

/* The value node of key in a YAML mapping, or NULL. */
static yaml_node_t *mapping_lookup(struct parser *p, const yaml_node_t *node, const char *key)
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
static int mapping_open(struct parser *p, const yaml_node_t *node, const char *path,
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
        return fail(p, node, path, "has %zu known keys, more than this build's %d", key_count,
                    MAPPING_KEYS_MAX);
    }
    if (node == NULL || node_is_null(node))
        return 0;
    if (node->type != YAML_MAPPING_NODE)
        return fail(p, node, path, "must be a mapping");
    m->node = node;

    bool seen[MAPPING_KEYS_MAX] = {false};
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *key_node = node_at(p, pair->key);
        if (key_node->type != YAML_SCALAR_NODE)
            return fail(p, key_node, path, "keys must be plain names");
        const char *key = scalar_text(key_node);
        char key_path[KEY_MAX];
        error_path_child(key_path, path, key);
        size_t i = 0;
        while (keys[i] != NULL && strcmp(keys[i], key) != 0)
            i++;
        if (keys[i] == NULL)
            return fail(p, key_node, key_path, "unknown key");
        if (seen[i])
            return fail(p, key_node, key_path, "duplicate key");
        seen[i] = true;
        yaml_node_t *value = node_at(p, pair->value);
        m->values[i] = node_is_null(value) ? NULL : value;
    }
    return 0;
}

/* The value of key (NULL when absent) and its key path. */
static yaml_node_t *mapping_value(struct mapping *m, const char *key, char *path)
{
    error_path_child(path, m->path, key);
    for (size_t i = 0; m->keys[i] != NULL; i++) {
        if (strcmp(m->keys[i], key) == 0)
            return m->values[i];
    }
    return NULL;
}

static int missing(struct mapping *m, const char *path)
{
    /* Top-level keys have no useful line: the whole file is the mapping. */
    return fail(m->p, m->path[0] != '\0' ? m->node : NULL, path, "required");
}

static int scalar_string(struct parser *p, const yaml_node_t *node, const char *path, char **out)
{
    if (node->type != YAML_SCALAR_NODE)
        return fail(p, node, path, "must be a string");
    if (node->data.scalar.length == 0)
        return fail(p, node, path, "must not be empty");
    if (strlen(scalar_text(node)) != node->data.scalar.length)
        return fail(p, node, path, "must not contain NUL characters");
    *out = strdup(scalar_text(node));
    if (*out == NULL)
        return fail(p, node, path, "out of memory");
    return 0;
}

/* A string value; when absent, fallback (which may be NULL) or "required". */
static int map_string(struct mapping *m, const char *key, bool required, const char *fallback,
                      char **out)
{
    char path[KEY_MAX];
    yaml_node_t *node = mapping_value(m, key, path);
    if (node != NULL)
        return scalar_string(m->p, node, path, out);
    if (required)
        return missing(m, path);
    *out = NULL;
    if (fallback != NULL && (*out = strdup(fallback)) == NULL)
        return fail(m->p, NULL, path, "out of memory");
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
static int map_path(struct mapping *m, const char *key, bool required, const char *fallback,
                    bool must_be_readable, char **out)
{
    char path[KEY_MAX];
    char *name;
    if (map_string(m, key, required, fallback, &name) < 0)
        return -1;
    *out = NULL;
    if (name == NULL)
        return 0;
    *out = resolve_path(m->p, name);
    free(name);
    yaml_node_t *node = mapping_value(m, key, path);
    if (*out == NULL)
        return fail(m->p, node, path, "out of memory");
    if (!must_be_readable)
        return 0;
    struct stat st;
    if (access(*out, R_OK) != 0 || stat(*out, &st) != 0)
        return fail(m->p, node, path, "cannot read %s: %s", *out, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return fail(m->p, node, path, "%s is not a regular file", *out);
    return 0;
}

static int map_unsigned(struct mapping *m, const char *key, unsigned long min, unsigned long max,
                        unsigned long fallback, unsigned long *out)
{
    char path[KEY_MAX];
    yaml_node_t *node = mapping_value(m, key, path);
    *out = fallback;
    if (node == NULL)
        return 0;
    const char *text = node->type == YAML_SCALAR_NODE ? scalar_text(node) : "";
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 || value < min || value > max)
        return fail(m->p, node, path, "must be an integer from %lu to %lu", min, max);
    *out = value;
    return 0;
}

int config_duration_parse(const char *text, long *seconds)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    long unit = 1;
    char suffix = *end;
    switch (suffix) {
    case 's':
    case '\0':
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    default:
        return -1;
    }
    if (text[0] < '0' || text[0] > '9' || (suffix != '\0' && end[1] != '\0') || errno != 0 ||
        value > LONG_MAX / unit)
        return -1;
    *seconds = value * unit;
    return 0;
}

static int map_duration(struct mapping *m, const char *key, long min, long max, long fallback,
                        long *out)
{
    char path[KEY_MAX];
    yaml_node_t *node = mapping_value(m, key, path);
    *out = fallback;
    if (node == NULL)
        return 0;
    long seconds;
    if (config_duration_parse(node->type == YAML_SCALAR_NODE ? scalar_text(node) : "", &seconds) !=
            0 ||
        seconds < min || seconds > max)
        return fail(m->p, node, path, CONFIG_DURATION_PROBLEM, min, max);
    *out = seconds;
    return 0;
}

static int map_sequence(struct mapping *m, const char *key, bool required, bool may_be_empty,
                        yaml_node_t **out, char *path)
{
    *out = mapping_value(m, key, path);
    if (*out == NULL)
        return required ? missing(m, path) : 0;
    if ((*out)->type != YAML_SEQUENCE_NODE)
        return fail(m->p, *out, path, "must be a list");
    if (sequence_length(*out) == 0 && !may_be_empty)
        return fail(m->p, *out, path, "must not be empty");
    return 0;
}

static int map_mapping(struct mapping *m, const char *key, bool required, const char *const *keys,
                       struct mapping *child)
{
    char path[KEY_MAX];
    yaml_node_t *node = mapping_value(m, key, path);
    if (node == NULL && required)
        return missing(m, path);
    return mapping_open(m->p, node, path, keys, child);
}

/* A list of strings; each item is handed to check (which may be NULL). */
static int map_string_list(struct mapping *m, const char *key, bool required, char ***items,
                           size_t *count,
                           int (*check)(struct parser *, const yaml_node_t *, const char *, char *))
{
    char path[KEY_MAX];
    yaml_node_t *list;
    if (map_sequence(m, key, required, false, &list, path) < 0)
        return -1;
    if (list == NULL)
        return 0;
    size_t n = sequence_length(list);
    *items = calloc(n, sizeof(**items));
    if (*items == NULL)
        return fail(m->p, list, path, "out of memory");
    *count = n;
    for (size_t i = 0; i < n; i++) {
        char item_path[KEY_MAX];
        error_path_index(item_path, path, i);
        yaml_node_t *item = sequence_item(m->p, list, i);
        if (scalar_string(m->p, item, item_path, &(*items)[i]) < 0)
            return -1;
        if (check != NULL && check(m->p, item, item_path, (*items)[i]) < 0)
            return -1;
        for (size_t j = 0; j < i; j++) {
            if (strcmp((*items)[j], (*items)[i]) == 0)
                return fail(m->p, item, item_path, "duplicate of %s[%zu]", path, j);
        }
    }
    return 0;
}

bool config_uuid_valid(const char *text)
{
    static const char hex[] = "0123456789abcdefABCDEF";
    if (strlen(text) != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? text[i] != '-' : strchr(hex, text[i]) == NULL)
            return false;
    }
    return true;
}

/*
 * Splits HOST:PORT ([v6]:PORT for IPv6). Returns NULL or what is wrong; host
 * receives the host without brackets.
 */
static const char *split_host_port(const char *text, char *host, size_t host_size, bool *is_v6)
{
    const char *colon;
    const char *host_start = text;
    size_t host_length;
    *is_v6 = text[0] == '[';
    if (*is_v6) {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return "an IPv6 address must be written [ADDRESS]:PORT";
        host_start = text + 1;
        host_length = (size_t)(close - host_start);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL)
            return "must be HOST:PORT";
        if (memchr(text, ':', (size_t)(colon - text)) != NULL)
            return "an IPv6 address must be written [ADDRESS]:PORT";
        host_length = (size_t)(colon - text);
    }
    if (host_length == 0)
        return "the host is empty";
    if (host_length >= host_size)
        return "the host is too long";
    memcpy(host, host_start, host_length);
    host[host_length] = '\0';

    const char *port = colon + 1;
    char *end;
    errno = 0;
    long number = strtol(port, &end, 10);
    if (port[0] < '0' || port[0] > '9' || *end != '\0' || errno != 0 || number < 1 ||
        number > 65535)
        return "the port must be a number from 1 to 65535";
    return NULL;
}

static int check_listen(struct parser *p, const yaml_node_t *node, const char *path, char *text)
{
    char host[256];
    bool is_v6;
    const char *problem = split_host_port(text, host, sizeof(host), &is_v6);
    if (problem != NULL)
        return fail(p, node, path, "\"%s\": %s", text, problem);
    unsigned char address[16];
    if (inet_pton(is_v6 ? AF_INET6 : AF_INET, host, address) != 1)
        return fail(p, node, path, "\"%s\": the host must be an IP address", text);
    return 0;
}

const char *config_gateway_problem(const char *text)
{
    static const char scheme[] = "coaps+tcp://";
    if (strncmp(text, scheme, sizeof(scheme) - 1) != 0)
        return "must start with coaps+tcp://";
    char host[256];
    bool is_v6;
    const char *problem = split_host_port(text + sizeof(scheme) - 1, host, sizeof(host), &is_v6);
    if (problem != NULL)
        return problem;
    unsigned char address[16];
    if (is_v6 && inet_pton(AF_INET6, host, address) != 1)
        return "not an IPv6 address";
    if (!is_v6 &&
        strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") !=
            strlen(host))
        return "the host is not a host name or address";
    return NULL;
}

const char *config_key_name_problem(const char *text)
{
    size_t length = strlen(text);
    if (length == 0 || length > 64)
        return "must have 1 to 64 characters";
    if (strspn(text, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != length)
        return "may hold only letters, digits, '.', '_' and '-'";
    return NULL;
}

const char *config_claims_problem(const char *owner_claim, const char *device_id_claim,
                                  bool *device_id_claim_wrong)
{
    static const char *const registered[] = {"iss", "sub", "aud", "exp", "nbf", "iat", "jti"};
    const char *owner = owner_claim != NULL ? owner_claim : "sub";
    *device_id_claim_wrong = false;
    for (size_t i = 0; i < sizeof(registered) / sizeof(registered[0]); i++) {
        if (strcmp(owner, registered[i]) == 0 && strcmp(owner, "sub") != 0)
            return "must not be a registered JWT claim (iss, aud, exp, nbf, iat, jti)";
    }
    if (device_id_claim == NULL)
        return NULL;
    *device_id_claim_wrong = true;
    for (size_t i = 0; i < sizeof(registered) / sizeof(registered[0]); i++) {
        if (strcmp(device_id_claim, registered[i]) == 0)
            return "must not be a registered JWT claim (iss, sub, aud, exp, nbf, iat, jti)";
    }
    if (strcmp(device_id_claim, owner) == 0)
        return "must differ from the owner claim";
    return NULL;
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
                fail(p, node, path, "integer out of range");
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
        fail(p, node, path, "not valid text");
    return json;
}

static json_t *yaml_to_json(struct parser *p, const yaml_node_t *node, const char *path, int depth,
                            bool typed)
{
    if (depth > JSON_DEPTH_MAX || p->json_nodes == 0) {
        fail(p, node, path, "nested too deeply or too large");
        return NULL;
    }
    p->json_nodes--;
    if (node->type == YAML_SCALAR_NODE)
        return scalar_to_json(p, node, path, typed);

    char child_path[KEY_MAX];
    if (node->type == YAML_SEQUENCE_NODE) {
        json_t *array = json_array();
        for (size_t i = 0; array != NULL && i < sequence_length(node); i++) {
            error_path_index(child_path, path, i);
            json_t *item = yaml_to_json(p, sequence_item(p, node, i), child_path, depth + 1, typed);
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
            fail(p, key_node, path, "keys must be plain names");
            json_decref(object);
            return NULL;
        }
        const char *key = scalar_text(key_node);
        error_path_child(child_path, path, key);
        if (json_object_get(object, key) != NULL) {
            fail(p, key_node, child_path, "duplicate key");
            json_decref(object);
            return NULL;
        }
        json_t *value = yaml_to_json(p, node_at(p, pair->value), child_path, depth + 1, typed);
        if (value == NULL || json_object_set_new(object, key, value) < 0) {
            json_decref(object);
            return NULL;
        }
    }
    return object;
}

static int check_key_name(struct parser *p, const yaml_node_t *node, const char *path, char *text)
{
    const char *problem = config_key_name_problem(text);
    return problem == NULL ? 0 : fail(p, node, path, "\"%s\": %s", text, problem);
}

/* keys: the registry of signing keys the management API's documents may name. */
static int parse_keys(struct mapping *root, struct config *config)
{
    static const char *const key_keys[] = {"name", "certificate", "key", "owners", NULL};
    struct parser *p = root->p;
    char path[KEY_MAX];
    yaml_node_t *list;
    if (map_sequence(root, "keys", false, true, &list, path) < 0)
        return -1;
    if (list == NULL || sequence_length(list) == 0)
        return 0;
    size_t n = sequence_length(list);
    if ((config->keys = calloc(n, sizeof(*config->keys))) == NULL)
        return fail(p, list, path, "out of memory");
    config->key_count = n;
    for (size_t i = 0; i < n; i++) {
        char item_path[KEY_MAX], name_path[KEY_MAX];
        struct config_key *key = &config->keys[i];
        struct mapping m;
        error_path_index(item_path, path, i);
        yaml_node_t *item = sequence_item(p, list, i);
        if (mapping_open(p, item, item_path, key_keys, &m) < 0)
            return -1;
        if (m.node == NULL)
            return fail(p, item, item_path, "must be a mapping");
        if (map_string(&m, "name", true, NULL, &key->name) < 0 ||
            check_key_name(p, mapping_value(&m, "name", name_path), name_path, key->name) < 0 ||
            map_path(&m, "certificate", false, NULL, true, &key->cert_file) < 0 ||
            map_path(&m, "key", true, NULL, true, &key->key_file) < 0 ||
            map_string_list(&m, "owners", true, &key->owners, &key->owner_count, NULL) < 0)
            return -1;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(config->keys[j].name, key->name) == 0)
                return fail(p, mapping_value(&m, "name", name_path), name_path,
                            "\"%s\" is also keys[%zu].name", key->name, j);
        }
    }
    return 0;
}

/*
 * Groups and hubs: the file's YAML becomes the JSON document the management
 * API reads (control/model.h), and model_*_from_file() reads it with the
 * same rules. Scalars stay text (the model reads "1d" and "true" from the
 * file), except in ACL entries and resource contents, free-form JSON where
 * YAML's scalar rules make numbers and booleans. The file speaks the API's
 * vocabulary, the reference plgd DPS's (attestationMechanism.x509,
 * authorization.provider.name...). It used to spell a few fields flatter:
 * those spellings are still read, as deprecated aliases moved into place
 * with a warning that names the key to write instead, and the model's
 * messages about what they became name them as the file wrote them, at
 * their line. What needs the whole file (hubs a group names, keys a hub
 * names, ids given twice) is checked here.
 */
struct spelling {
    const char *file; /* the key path as the file may write it */
    const char *json; /* where the document has it */
    bool moves;       /* a deprecated alias; false: only messages about json are renamed */
};

static const struct spelling hub_spellings[] = {
    {"authorizationProvider", "authorization.provider.name", true},
    {"token.audience", "authorization.provider.audience", true},
    {"token.ownerClaim", "authorization.ownerClaim", true},
    {"token.deviceIdClaim", "authorization.deviceIdClaim", true},
    {"id", "hubId", false},
    {NULL, NULL, false},
};

static const struct spelling group_spellings[] = {
    {"attestation", "attestationMechanism.x509", true},
    {NULL, NULL, false},
};

/* The node at a relative key path ("a.b[2].c"), or the deepest one on the way (for its line). */
static const yaml_node_t *node_at_path(struct parser *p, const yaml_node_t *node, const char *path)
{
    char key[KEY_MAX];
    while (*path != '\0' && node != NULL) {
        const yaml_node_t *next = NULL;
        if (*path == '[') {
            char *end;
            unsigned long index = strtoul(path + 1, &end, 10);
            if (node->type == YAML_SEQUENCE_NODE && *end == ']' && index < sequence_length(node))
                next = sequence_item(p, node, index);
            path = *end == ']' ? end + 1 : end;
        } else {
            path += *path == '.';
            size_t length = strcspn(path, ".[");
            snprintf(key, sizeof(key), "%.*s", (int)length, path);
            next = mapping_lookup(p, node, key);
            path += length;
        }
        if (next == NULL)
            break;
        node = next;
    }
    return node;
}

/* The value at a dotted path of object keys, or NULL. */
static json_t *json_at(json_t *doc, const char *path)
{
    char key[KEY_MAX];
    while (doc != NULL && *path != '\0') {
        size_t length = strcspn(path, ".");
        snprintf(key, sizeof(key), "%.*s", (int)length, path);
        doc = json_is_object(doc) ? json_object_get(doc, key) : NULL;
        path += length + (path[length] == '.');
    }
    return doc;
}

/* A value the file gives: null counts as absent, as everywhere in the file. */
static bool json_given(json_t *value)
{
    return value != NULL && !json_is_null(value);
}

/* Removes the value at a dotted path of object keys, when there is one. */
static void json_delete_at(json_t *doc, const char *path)
{
    char parent[KEY_MAX];
    const char *last_dot = strrchr(path, '.');
    snprintf(parent, sizeof(parent), "%.*s", last_dot != NULL ? (int)(last_dot - path) : 0, path);
    json_t *object = parent[0] != '\0' ? json_at(doc, parent) : doc;
    if (json_is_object(object))
        json_object_del(object, last_dot != NULL ? last_dot + 1 : path);
}

/* The object at key of object, made when absent; NULL when something else is there. */
static json_t *json_child_object(json_t *object, const char *key)
{
    json_t *child = json_object_get(object, key);
    if (child != NULL && !json_is_null(child))
        return json_is_object(child) ? child : NULL;
    child = json_object();
    return child != NULL && json_object_set_new(object, key, child) == 0 ? child : NULL;
}

/*
 * Moves the deprecated aliases the item writes into the document's places,
 * each with a warning. Bit i of *renamed is set when messages about
 * spellings[i].json are to name the file's key: the item wrote that key, not
 * the document's. 0, or -1 when an alias and what it stands for are both given.
 */
static int respell(struct parser *p, const yaml_node_t *item, const char *item_path, json_t *doc,
                   const struct spelling *spellings, unsigned *renamed)
{
    *renamed = 0;
    if (!json_is_object(doc))
        return 0;
    for (unsigned i = 0; spellings[i].file != NULL; i++) {
        const struct spelling *s = &spellings[i];
        char file_path[KEY_MAX], json_path[KEY_MAX], top[KEY_MAX];
        json_t *value = json_at(doc, s->file);
        if (s->moves && value != NULL && json_is_null(value)) {
            json_delete_at(doc, s->file);
            value = NULL;
        }
        if (!json_given(value) || json_given(json_at(doc, s->json))) {
            if (s->moves && json_given(value)) {
                error_path_child(file_path, item_path, s->file);
                return fail(p, node_at_path(p, item, s->file), file_path,
                            "deprecated name of %s, which is also given", s->json);
            }
            continue;
        }
        *renamed |= 1u << i;
        if (!s->moves)
            continue;
        error_path_child(file_path, item_path, s->file);
        error_path_child(json_path, item_path, s->json);
        log_msg(LOG_WARN, "deprecated configuration key", "file=\"%s\" line=%lu key=%s use=%s",
                p->file, (unsigned long)node_at_path(p, item, s->file)->start_mark.line + 1,
                file_path, json_path);
        json_incref(value);
        json_delete_at(doc, s->file);
        json_t *object = doc;
        const char *path = s->json;
        for (size_t length; (length = strcspn(path, ".")), path[length] == '.' && object != NULL;
             path += length + 1) {
            char key[KEY_MAX];
            snprintf(key, sizeof(key), "%.*s", (int)length, path);
            object = json_child_object(object, key);
        }
        if (object == NULL) {
            json_decref(value);
            snprintf(top, sizeof(top), "%.*s", (int)strcspn(s->json, "."), s->json);
            return fail(p, node_at_path(p, item, s->file), file_path,
                        "deprecated name of %s, which cannot go in the %s given", s->json, top);
        }
        if (json_object_set_new(object, path, value) < 0)
            return fail(p, item, item_path, "out of memory");
    }
    return 0;
}

/*
 * Fails with the model's "json.path: problem", named as the file spells it
 * (renamed: respell's bits), at its line.
 */
static int model_fail(struct parser *p, const yaml_node_t *item, const char *item_path,
                      const struct spelling *spellings, unsigned renamed, const char *err)
{
    const char *separator = strstr(err, ": ");
    if (separator == NULL)
        return fail(p, item, item_path, "%s", err);
    char json_path[KEY_MAX], file_path[KEY_MAX], path[KEY_MAX];
    snprintf(json_path, sizeof(json_path), "%.*s", (int)(separator - err), err);
    const char *file = "";
    const char *rest = strcmp(json_path, "(document)") == 0 ? "" : json_path;
    for (unsigned i = 0; spellings[i].file != NULL; i++) {
        const struct spelling *s = &spellings[i];
        size_t length = strlen(s->json);
        if ((renamed & (1u << i)) != 0 && strncmp(json_path, s->json, length) == 0 &&
            (json_path[length] == '\0' || json_path[length] == '.' || json_path[length] == '[')) {
            file = s->file;
            rest = json_path + length;
            break;
        }
    }
    if (snprintf(file_path, sizeof(file_path), "%s%s", file, rest) >= (int)sizeof(file_path))
        memcpy(file_path + sizeof(file_path) - 4, "...", 4);
    if (file_path[0] == '\0')
        snprintf(path, sizeof(path), "%s", item_path);
    else
        error_path_child(path, item_path, file_path);
    return fail(p, node_at_path(p, item, file_path), path, "%s", separator + 2);
}

/* The item as the model's document: text scalars, typed free-form parts, document spellings. */
static json_t *item_document(struct parser *p, const yaml_node_t *item, const char *item_path,
                             const struct spelling *spellings, unsigned *renamed)
{
    json_t *doc = yaml_to_json(p, item, item_path, 0, false);
    if (doc == NULL)
        return NULL;
    char path[KEY_MAX], content_path[KEY_MAX];
    const yaml_node_t *acl = mapping_lookup(p, item, "acl");
    const yaml_node_t *entries = mapping_lookup(p, acl, "entries");
    json_t *json_acl = json_is_object(doc) ? json_object_get(doc, "acl") : NULL;
    json_t *typed;
    if (entries != NULL && json_is_object(json_acl)) {
        error_path_child(path, item_path, "acl.entries");
        if ((typed = yaml_to_json(p, entries, path, 0, true)) == NULL) {
            json_decref(doc);
            return NULL;
        }
        json_object_set_new(json_acl, "entries", typed);
    }
    const yaml_node_t *resources = mapping_lookup(p, item, "resources");
    json_t *json_resources = json_is_object(doc) ? json_object_get(doc, "resources") : NULL;
    for (size_t i = 0; resources != NULL && resources->type == YAML_SEQUENCE_NODE &&
                       i < sequence_length(resources);
         i++) {
        const yaml_node_t *content = mapping_lookup(p, sequence_item(p, resources, i), "content");
        json_t *json_resource = json_array_get(json_resources, i);
        if (content == NULL || !json_is_object(json_resource))
            continue;
        error_path_child(path, item_path, "resources");
        error_path_index(content_path, path, i);
        error_path_child(path, content_path, "content");
        if ((typed = yaml_to_json(p, content, path, 0, true)) == NULL) {
            json_decref(doc);
            return NULL;
        }
        json_object_set_new(json_resource, "content", typed);
    }
    if (respell(p, item, item_path, doc, spellings, renamed) < 0) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

/* A registered key named by a hub: it exists, the hub's owner may use it, it can sign certificates.
 */
static int check_hub_key(struct parser *p, const yaml_node_t *item, const char *item_path,
                         const struct config *config, const struct config_hub *hub,
                         bool certificate)
{
    const char *name = certificate ? hub->ca_key_name : hub->token_key_name;
    const char *field = certificate ? "identityCertificate.keyName" : "token.keyName";
    char path[KEY_MAX];
    if (name == NULL)
        return 0;
    error_path_child(path, item_path, field);
    const yaml_node_t *node = node_at_path(p, item, field);
    const struct config_key *key = config_find_key(config, name);
    if (key == NULL)
        return fail(p, node, path, "no key \"%s\" in keys", name);
    if (hub->owner == NULL || !config_key_allows(key, hub->owner))
        return fail(p, node, path, "the hub's owner%s%s%s is not one of the owners of key \"%s\"",
                    hub->owner != NULL ? " \"" : "", hub->owner != NULL ? hub->owner : "",
                    hub->owner != NULL ? "\"" : "", name);
    if (certificate && key->cert_file == NULL)
        return fail(p, node, path, "key \"%s\" has no certificate", name);
    return 0;
}

/* Reads the list at key of root as groups (is_group) or hubs, each through the model. */
static int parse_items(struct mapping *root, const char *key, bool is_group, struct config *config)
{
    struct parser *p = root->p;
    const struct spelling *spellings = is_group ? group_spellings : hub_spellings;
    char path[KEY_MAX];
    yaml_node_t *list;
    if (map_sequence(root, key, false, true, &list, path) < 0)
        return -1;
    if (list == NULL || sequence_length(list) == 0)
        return 0;
    size_t n = sequence_length(list);
    void *items = calloc(n, is_group ? sizeof(*config->groups) : sizeof(*config->hubs));
    if (items == NULL)
        return fail(p, list, path, "out of memory");
    if (is_group) {
        config->groups = items;
        config->group_count = n;
    } else {
        config->hubs = items;
        config->hub_count = n;
    }
    for (size_t i = 0; i < n; i++) {
        char item_path[KEY_MAX], id_path[KEY_MAX], problem[512];
        error_path_index(item_path, path, i);
        yaml_node_t *item = sequence_item(p, list, i);
        unsigned renamed = 0;
        json_t *doc = item_document(p, item, item_path, spellings, &renamed);
        if (doc == NULL)
            return -1;
        struct config_group *group = is_group ? &config->groups[i] : NULL;
        struct config_hub *hub = is_group ? NULL : &config->hubs[i];
        int read = is_group ? model_group_from_file(doc, p->dir, group, problem, sizeof(problem))
                            : model_hub_from_file(doc, p->dir, hub, problem, sizeof(problem));
        json_decref(doc);
        if (read < 0)
            return model_fail(p, item, item_path, spellings, renamed, problem);
        for (size_t h = 0; is_group && h < group->hub_count; h++) {
            if (config_find_hub(config, group->hub_ids[h]) == NULL) {
                error_path_child(id_path, item_path, "hubIds");
                error_path_index(path, id_path, h);
                snprintf(id_path, sizeof(id_path), "hubIds[%zu]", h);
                return fail(p, node_at_path(p, item, id_path), path, "unknown hub \"%s\"",
                            group->hub_ids[h]);
            }
        }
        if (!is_group && (check_hub_key(p, item, item_path, config, hub, true) < 0 ||
                          check_hub_key(p, item, item_path, config, hub, false) < 0))
            return -1;
        const char *id = is_group ? group->id : hub->id;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(is_group ? config->groups[j].id : config->hubs[j].id, id) == 0) {
                error_path_child(id_path, item_path, "id");
                return fail(p, node_at_path(p, item, "id"), id_path, "\"%s\" is also %s[%zu].id",
                            id, key, j);
            }
        }
    }
    return 0;
}

static int parse_limits(struct mapping *root, struct config *config)
{
    static const char *const keys[] = {"maxMessageSize",
                                       "inactivityTimeout",
                                       "handshakeTimeout",
                                       "maxConnections",
                                       "maxPending",
                                       "signingRate",
                                       "signingBurst",
                                       "signingRatePerGroup",
                                       "signingBurstPerGroup",
                                       "signingRatePerSource",
                                       "signingBurstPerSource",
                                       "maxConnectionsPerSource",
                                       "connectionRatePerSource",
                                       "connectionBurstPerSource",
                                       NULL};
    struct mapping limits;
    unsigned long value;
    long seconds;
    if (map_mapping(root, "limits", false, keys, &limits) < 0)
        return -1;
    if (map_unsigned(&limits, "maxMessageSize", 1024, 1048576, 16384, &value) < 0)
        return -1;
    config->max_message_size = value;
    if (map_duration(&limits, "inactivityTimeout", 1, 86400, 20, &seconds) < 0)
        return -1;
    config->inactivity_timeout_s = (unsigned)seconds;
    if (map_duration(&limits, "handshakeTimeout", 1, 3600, 10, &seconds) < 0)
        return -1;
    config->handshake_timeout_s = (unsigned)seconds;
    if (map_unsigned(&limits, "maxConnections", 1, 10000000, 10000, &value) < 0)
        return -1;
    config->max_connections = (unsigned)value;
    if (map_unsigned(&limits, "maxPending", 1, 10000000, 4096, &value) < 0)
        return -1;
    config->max_pending = (unsigned)value;
    if (map_unsigned(&limits, "signingRate", 0, 10000000, 0, &value) < 0)
        return -1;
    config->signing_rate = (unsigned)value;
    if (map_unsigned(&limits, "signingBurst", 1, 10000000, 100, &value) < 0)
        return -1;
    config->signing_burst = (unsigned)value;
    if (map_unsigned(&limits, "signingRatePerGroup", 0, 10000000, 0, &value) < 0)
        return -1;
    config->signing_rate_per_group = (unsigned)value;
    if (map_unsigned(&limits, "signingBurstPerGroup", 1, 10000000, 100, &value) < 0)
        return -1;
    config->signing_burst_per_group = (unsigned)value;
    if (map_unsigned(&limits, "signingRatePerSource", 0, 10000000, 0, &value) < 0)
        return -1;
    config->signing_rate_per_source = (unsigned)value;
    if (map_unsigned(&limits, "signingBurstPerSource", 1, 10000000, 100, &value) < 0)
        return -1;
    config->signing_burst_per_source = (unsigned)value;
    if (map_unsigned(&limits, "maxConnectionsPerSource", 0, 10000000, 0, &value) < 0)
        return -1;
    config->max_connections_per_source = (unsigned)value;
    if (map_unsigned(&limits, "connectionRatePerSource", 0, 10000000, 0, &value) < 0)
        return -1;
    config->connection_rate_per_source = (unsigned)value;
    if (map_unsigned(&limits, "connectionBurstPerSource", 1, 10000000, 100, &value) < 0)
        return -1;
    config->connection_burst_per_source = (unsigned)value;
    return 0;
}

/* The management API's connection budget and the per-owner quotas (api.quotas). */
static int parse_api_limits(struct mapping *m, struct config_api *api)
{
    static const char *const quota_keys[] = {
        "enrollmentGroups", "hubs", "blocklistEntries", "requestsPerSecond", "requestBurst", NULL};
    struct mapping quotas;
    unsigned long value;
    long seconds;
    if (map_string_list(m, "admins", false, &api->admins, &api->admin_count, NULL) < 0 ||
        map_unsigned(m, "maxConnections", 1, 65536, 256, &value) < 0)
        return -1;
    api->max_connections = (unsigned)value;
    if (map_unsigned(m, "maxConnectionsPerSource", 1, 65536, 32, &value) < 0)
        return -1;
    api->max_connections_per_source = (unsigned)value;
    if (map_duration(m, "requestTimeout", 1, 3600, 10, &seconds) < 0)
        return -1;
    api->request_timeout_s = (unsigned)seconds;
    if (map_mapping(m, "quotas", false, quota_keys, &quotas) < 0 ||
        map_unsigned(&quotas, "enrollmentGroups", 0, 10000000, 1000, &value) < 0)
        return -1;
    api->quota_groups = (unsigned)value;
    if (map_unsigned(&quotas, "hubs", 0, 10000000, 100, &value) < 0)
        return -1;
    api->quota_hubs = (unsigned)value;
    if (map_unsigned(&quotas, "blocklistEntries", 0, 10000000, 10000, &value) < 0)
        return -1;
    api->quota_blocks = (unsigned)value;
    if (map_unsigned(&quotas, "requestsPerSecond", 1, 1000000, 20, &value) < 0)
        return -1;
    api->quota_requests_per_second = (unsigned)value;
    if (map_unsigned(&quotas, "requestBurst", 1, 1000000, 100, &value) < 0)
        return -1;
    api->quota_request_burst = (unsigned)value;
    return 0;
}

/* Where operator token keys come from: exactly one of jwks, jwksUrl and authority. */
static int parse_api_keys(struct mapping *m, struct config_api *api)
{
    static const char *const sources[] = {"jwks", "jwksUrl", "authority"};
    char path[KEY_MAX];
    long seconds;
    if (map_path(m, "jwks", false, NULL, true, &api->jwks_file) < 0 ||
        map_string(m, "jwksUrl", false, NULL, &api->jwks_url) < 0 ||
        map_string(m, "authority", false, NULL, &api->authority) < 0 ||
        map_path(m, "jwksCA", false, NULL, true, &api->jwks_ca_file) < 0)
        return -1;
    const char *values[] = {api->jwks_file, api->jwks_url, api->authority};
    size_t named = 0;
    for (size_t i = 0; i < 3; i++)
        named += values[i] != NULL;
    if (named != 1) {
        error_path_child(path, m->path, "jwks");
        return fail(m->p, m->node, path,
                    "name exactly one of jwks (a file), jwksUrl and authority");
    }
    for (size_t i = 1; i < 3; i++) {
        const char *problem = values[i] != NULL ? jwks_remote_url_problem(values[i]) : NULL;
        if (problem != NULL)
            return fail(m->p, mapping_value(m, sources[i], path), path, "%s", problem);
    }
    if (map_duration(m, "jwksRefresh", 10, 7 * 86400, 3600, &seconds) < 0)
        return -1;
    api->jwks_refresh_s = (unsigned)seconds;
    if (map_duration(m, "jwksMinRefresh", 1, 3600, 30, &seconds) < 0)
        return -1;
    api->jwks_min_refresh_s = (unsigned)seconds;
    if (map_duration(m, "jwksTimeout", 1, 60, 5, &seconds) < 0)
        return -1;
    api->jwks_timeout_s = (unsigned)seconds;
    return 0;
}

/* The management API: absent means off. A certificate needs its key and the other way round. */
static int parse_api(struct mapping *root, struct config_api *api, enum keyfile_policy policy)
{
    static const char *const keys[] = {
        "listen",         "certificate",    "key",
        "clientCA",       "jwks",           "issuer",
        "audience",       "ownerClaim",     "healthListen",
        "admins",         "maxConnections", "maxConnectionsPerSource",
        "requestTimeout", "quotas",         "jwksUrl",
        "authority",      "jwksCA",         "jwksRefresh",
        "jwksMinRefresh", "jwksTimeout",    NULL};
    struct parser *p = root->p;
    struct mapping m;
    char path[KEY_MAX];
    if (map_mapping(root, "api", false, keys, &m) < 0)
        return -1;
    if (m.node == NULL)
        return 0;
    yaml_node_t *listen = mapping_value(&m, "listen", path);
    if (listen == NULL)
        return missing(&m, path);
    if (map_string(&m, "listen", true, NULL, &api->listen) < 0 ||
        check_listen(p, listen, path, api->listen) < 0)
        return -1;
    if (map_path(&m, "certificate", false, NULL, true, &api->cert_file) < 0 ||
        map_path(&m, "key", false, NULL, true, &api->key_file) < 0 ||
        map_path(&m, "clientCA", false, NULL, true, &api->client_ca_file) < 0 ||
        parse_api_keys(&m, api) < 0 || map_string(&m, "issuer", true, NULL, &api->issuer) < 0 ||
        map_string(&m, "audience", false, NULL, &api->audience) < 0 ||
        map_string(&m, "ownerClaim", false, "sub", &api->owner_claim) < 0 ||
        parse_api_limits(&m, api) < 0)
        return -1;
    yaml_node_t *health = mapping_value(&m, "healthListen", path);
    if (health != NULL && (map_string(&m, "healthListen", true, NULL, &api->health_listen) < 0 ||
                           check_listen(p, health, path, api->health_listen) < 0))
        return -1;
    if ((api->cert_file == NULL) != (api->key_file == NULL)) {
        const char *absent = api->cert_file == NULL ? "certificate" : "key";
        error_path_child(path, m.path, absent);
        return fail(p, m.node, path, "required with %s",
                    api->cert_file == NULL ? "key" : "certificate");
    }
    if (api->client_ca_file != NULL && api->cert_file == NULL)
        return fail(p, mapping_value(&m, "clientCA", path), path,
                    "needs HTTPS (certificate and key)");
    /* The API reads its key itself: the permission policy is applied here. */
    char problem[512];
    if (api->key_file != NULL && keyfile_check(api->key_file, policy, problem, sizeof(problem)) < 0)
        return fail(p, mapping_value(&m, "key", path), path, "%s", problem);
    return 0;
}

static int parse_key_policy(struct mapping *m, struct config *config)
{
    char path[KEY_MAX];
    char *policy;
    if (map_string(m, "keyFilePermissions", false, "refuse", &policy) < 0)
        return -1;
    bool refuse = strcmp(policy, "refuse") == 0;
    bool warn = strcmp(policy, "warn") == 0;
    free(policy);
    if (!refuse && !warn)
        return fail(m->p, mapping_value(m, "keyFilePermissions", path), path,
                    "must be refuse or warn");
    config->key_file_permissions = refuse ? KEYFILE_REFUSE : KEYFILE_WARN;
    return 0;
}

/* The user to run as must exist now, so a typo fails at start rather than after binding. */
static int parse_user(struct mapping *m, struct config *config)
{
    char path[KEY_MAX];
    if (map_string(m, "user", false, NULL, &config->user) < 0)
        return -1;
    if (config->user == NULL)
        return 0;
    char buffer[4096];
    struct passwd entry;
    struct passwd *found = NULL;
    int rc = getpwnam_r(config->user, &entry, buffer, sizeof(buffer), &found);
    if (found == NULL)
        return fail(m->p, mapping_value(m, "user", path), path, "no user \"%s\"%s%s", config->user,
                    rc != 0 ? ": " : "", rc != 0 ? strerror(rc) : "");
    return 0;
}

static int check_cidr(struct parser *p, const yaml_node_t *node, const char *path, char *text)
{
    struct proxy_cidr cidr;
    if (proxy_cidr_parse(text, &cidr) != 0)
        return fail(p, node, path, "\"%s\" is not an address or CIDR range (10.0.0.0/8, fd00::/8)",
                    text);
    return 0;
}

/* A Redis address: numeric HOST:PORT, or (for redis only) an absolute unix socket path. */
static int check_redis_address(struct parser *p, const yaml_node_t *node, const char *path,
                               char *text)
{
    if (text[0] == '/')
        return 0;
    return check_listen(p, node, path, text);
}

/* Milliseconds: N (milliseconds), Nms or Ns. */
static int map_milliseconds(struct mapping *m, const char *key, unsigned long min,
                            unsigned long max, unsigned long fallback, unsigned *out)
{
    char path[KEY_MAX];
    yaml_node_t *node = mapping_value(m, key, path);
    *out = (unsigned)fallback;
    if (node == NULL)
        return 0;
    const char *text = node->type == YAML_SCALAR_NODE ? scalar_text(node) : "";
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    unsigned long unit = 0;
    if (*end == '\0' || strcmp(end, "ms") == 0)
        unit = 1;
    else if (strcmp(end, "s") == 0)
        unit = 1000;
    if (text[0] < '0' || text[0] > '9' || unit == 0 || errno != 0 || value > max / unit ||
        value * unit < min)
        return fail(m->p, node, path,
                    "must be a duration from %lums to %lums (milliseconds, or N followed by ms "
                    "or s)",
                    min, max);
    *out = (unsigned)(value * unit);
    return 0;
}

/* passwordFile: its first line, the only secret that may come from a file. */
static int read_password_file(struct mapping *m, struct config_cluster *cluster)
{
    char path[KEY_MAX];
    char *file = NULL;
    if (map_path(m, "passwordFile", false, NULL, true, &file) < 0) {
        free(file);
        return -1;
    }
    if (file == NULL)
        return 0;
    yaml_node_t *node = mapping_value(m, "passwordFile", path);
    if (cluster->password != NULL) {
        free(file);
        return fail(m->p, node, path, "give password or passwordFile, not both");
    }
    FILE *stream = fopen(file, "r");
    char line[1024];
    bool read = stream != NULL && fgets(line, sizeof(line), stream) != NULL;
    if (stream != NULL)
        fclose(stream);
    free(file);
    if (!read)
        return fail(m->p, node, path, "cannot read the password");
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '\0')
        return fail(m->p, node, path, "the password is empty");
    cluster->password = strdup(line);
    explicit_bzero(line, sizeof(line));
    if (cluster->password == NULL)
        return fail(m->p, node, path, "out of memory");
    return 0;
}

/* Names that go into Redis keys and log lines: letters, digits, '.', '_', '-', ':'. */
static bool cluster_name_valid(const char *text, size_t max)
{
    size_t length = strlen(text);
    if (length == 0 || length > max)
        return false;
    for (const char *c = text; *c != '\0'; c++) {
        if (!isalnum((unsigned char)*c) && strchr("._-:", *c) == NULL)
            return false;
    }
    return true;
}

static int parse_cluster_names(struct mapping *m, struct config_cluster *cluster)
{
    char path[KEY_MAX];
    char *policy;
    if (map_string(m, "keyPrefix", false, "dps:", &cluster->key_prefix) < 0 ||
        map_string(m, "node", false, NULL, &cluster->node) < 0 ||
        map_string(m, "bindingsWhenRedisDown", false, "closed", &policy) < 0)
        return -1;
    bool closed = strcmp(policy, "closed") == 0;
    bool local = strcmp(policy, "local") == 0;
    free(policy);
    if (!closed && !local)
        return fail(m->p, mapping_value(m, "bindingsWhenRedisDown", path), path,
                    "must be closed or local");
    cluster->bindings_when_redis_down = closed ? CONFIG_BINDINGS_CLOSED : CONFIG_BINDINGS_LOCAL;
    if (!cluster_name_valid(cluster->key_prefix, 64))
        return fail(m->p, mapping_value(m, "keyPrefix", path), path,
                    "at most 64 letters, digits, '.', '_', '-' or ':'");
    if (cluster->node == NULL) {
        char host[256];
        if (gethostname(host, sizeof(host)) != 0 || !cluster_name_valid(host, 64))
            snprintf(host, sizeof(host), "node");
        host[sizeof(host) - 1] = '\0';
        if ((cluster->node = strdup(host)) == NULL)
            return fail(m->p, NULL, "cluster.node", "out of memory");
    } else if (!cluster_name_valid(cluster->node, 64)) {
        return fail(m->p, mapping_value(m, "node", path), path,
                    "at most 64 letters, digits, '.', '_', '-' or ':'");
    }
    return 0;
}

static int parse_cluster(struct mapping *root, struct config_cluster *cluster)
{
    static const char *const keys[] = {"trustedProxies",
                                       "redis",
                                       "sentinels",
                                       "masterName",
                                       "username",
                                       "password",
                                       "passwordFile",
                                       "database",
                                       "keyPrefix",
                                       "commandTimeout",
                                       "connectTimeout",
                                       "node",
                                       "bindingsWhenRedisDown",
                                       NULL};
    struct mapping m;
    char path[KEY_MAX];
    unsigned long database;
    cluster->command_timeout_ms = 250;
    cluster->connect_timeout_ms = 1000;
    if (map_mapping(root, "cluster", false, keys, &m) < 0)
        return -1;
    if (m.node == NULL)
        return 0;
    if (map_string_list(&m, "trustedProxies", false, &cluster->trusted_proxies,
                        &cluster->trusted_proxy_count, check_cidr) < 0 ||
        map_string(&m, "redis", false, NULL, &cluster->redis) < 0 ||
        (cluster->redis != NULL &&
         check_redis_address(m.p, mapping_value(&m, "redis", path), path, cluster->redis) < 0) ||
        map_string_list(&m, "sentinels", false, &cluster->sentinels, &cluster->sentinel_count,
                        check_listen) < 0 ||
        map_string(&m, "masterName", false, NULL, &cluster->master_name) < 0 ||
        map_string(&m, "username", false, NULL, &cluster->username) < 0 ||
        map_string(&m, "password", false, NULL, &cluster->password) < 0 ||
        read_password_file(&m, cluster) < 0 ||
        map_unsigned(&m, "database", 0, 65535, 0, &database) < 0 ||
        map_milliseconds(&m, "commandTimeout", 1, 60000, 250, &cluster->command_timeout_ms) < 0 ||
        map_milliseconds(&m, "connectTimeout", 1, 60000, 1000, &cluster->connect_timeout_ms) < 0 ||
        parse_cluster_names(&m, cluster) < 0)
        return -1;
    cluster->database = (unsigned)database;
    if (cluster->redis != NULL && cluster->sentinels != NULL)
        return fail(m.p, mapping_value(&m, "sentinels", path), path,
                    "give redis or sentinels, not both");
    if (cluster->sentinels != NULL && cluster->master_name == NULL)
        return fail(m.p, m.node, "cluster.masterName", "required with sentinels");
    if (cluster->master_name != NULL && cluster->sentinels == NULL)
        return fail(m.p, mapping_value(&m, "masterName", path), path, "needs sentinels");
    return 0;
}

static int parse_root(struct parser *p, const yaml_node_t *root, struct config *config)
{
    static const char *const keys[] = {
        "listen",  "shards",           "ioBackend", "tls",
        "dataDir", "signerThreads",    "limits",    "logLevel",
        "hubs",    "enrollmentGroups", "api",       "keyFilePermissions",
        "user",    "cluster",          "keys",      "store",
        NULL};
    static const char *const tls_keys[] = {"certificate", "key", NULL};
    struct mapping m, tls;
    char path[KEY_MAX];
    unsigned long value;
    if (mapping_open(p, root, "", keys, &m) < 0 || parse_key_policy(&m, config) < 0 ||
        parse_user(&m, config) < 0)
        return -1;

    if (mapping_value(&m, "listen", path) != NULL) {
        if (map_string_list(&m, "listen", true, &config->listen, &config->listen_count,
                            check_listen) < 0)
            return -1;
    } else {
        config->listen = calloc(1, sizeof(*config->listen));
        if (config->listen == NULL || (config->listen[0] = strdup("0.0.0.0:15684")) == NULL)
            return fail(p, NULL, path, "out of memory");
        config->listen_count = 1;
    }

    if (map_unsigned(&m, "shards", 0, 256, 0, &value) < 0)
        return -1;
    config->shards = (unsigned)value;

    char *backend;
    if (map_string(&m, "ioBackend", false, "io_uring", &backend) < 0)
        return -1;
    bool uring = strcmp(backend, "io_uring") == 0;
    bool epoll = strcmp(backend, "epoll") == 0;
    free(backend);
    if (!uring && !epoll)
        return fail(p, mapping_value(&m, "ioBackend", path), path, "must be io_uring or epoll");
    config->io_backend = uring ? CONFIG_IO_URING : CONFIG_IO_EPOLL;

    if (map_mapping(&m, "tls", true, tls_keys, &tls) < 0 ||
        map_path(&tls, "certificate", true, NULL, true, &config->tls_cert_file) < 0 ||
        map_path(&tls, "key", true, NULL, true, &config->tls_key_file) < 0 ||
        map_path(&m, "dataDir", false, "data", false, &config->data_dir) < 0)
        return -1;

    if (map_unsigned(&m, "signerThreads", 1, 256, 1, &value) < 0)
        return -1;
    config->signer_threads = (unsigned)value;

    static const char *const store_keys[] = {"writers", NULL};
    struct mapping store;
    if (map_mapping(&m, "store", false, store_keys, &store) < 0 ||
        map_unsigned(&store, "writers", 1, STORE_MAX_WRITERS, STORE_DEFAULT_WRITERS, &value) < 0)
        return -1;
    config->store_writers = (unsigned)value;

    if (parse_limits(&m, config) < 0)
        return -1;

    enum log_level level;
    if (map_string(&m, "logLevel", false, "info", &config->log_level) < 0)
        return -1;
    if (log_parse_level(config->log_level, &level) < 0)
        return fail(p, mapping_value(&m, "logLevel", path), path,
                    "must be debug, info, warn or error");

    if (parse_keys(&m, config) < 0 || parse_items(&m, "hubs", false, config) < 0 ||
        parse_items(&m, "enrollmentGroups", true, config) < 0 ||
        parse_api(&m, &config->api, config->key_file_permissions) < 0 ||
        parse_cluster(&m, &config->cluster) < 0)
        return -1;
    return 0;
}

static int yaml_error(struct parser *p, const yaml_parser_t *yaml)
{
    if (yaml->error == YAML_READER_ERROR)
        return fail(p, NULL, NULL, "YAML error at byte %zu: %s", yaml->problem_offset,
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
static char *folder_of(const char *path)
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

static int load_document(struct parser *p, FILE *file)
{
    yaml_parser_t yaml;
    if (!yaml_parser_initialize(&yaml))
        return fail(p, NULL, NULL, "out of memory");
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
                result = fail(p, NULL, NULL, "more than one YAML document");
            yaml_document_delete(&extra);
        }
        if (result < 0)
            yaml_document_delete(&p->doc);
    }
    yaml_parser_delete(&yaml);
    return result;
}

int config_load(const char *path, struct config **out, char *err, size_t err_length)
{
    struct parser p = {
        .file = path, .err = err, .err_length = err_length, .json_nodes = JSON_NODES_MAX};
    *out = NULL;
    if (err != NULL && err_length > 0)
        err[0] = '\0';

    FILE *file = fopen(path, "rb");
    if (file == NULL)
        return fail(&p, NULL, NULL, "cannot open: %s", strerror(errno));
    p.dir = folder_of(path);
    if (p.dir == NULL) {
        fclose(file);
        return fail(&p, NULL, NULL, "cannot resolve the folder: %s", strerror(errno));
    }
    int result = load_document(&p, file);
    fclose(file);
    if (result < 0) {
        free(p.dir);
        return -1;
    }

    struct config *config = calloc(1, sizeof(*config));
    if (config == NULL || (config->path = strdup(path)) == NULL) {
        result = fail(&p, NULL, NULL, "out of memory");
    } else {
        result = parse_root(&p, yaml_document_get_root_node(&p.doc), config);
    }
    yaml_document_delete(&p.doc);
    free(p.dir);
    if (result < 0) {
        config_free(config);
        return -1;
    }
    keyfile_set_policy(config->key_file_permissions);
    *out = config;
    return 0;
}

static void free_strings(char **strings, size_t count)
{
    for (size_t i = 0; strings != NULL && i < count; i++)
        free(strings[i]);
    free(strings);
}

void config_hub_clear(struct config_hub *hub)
{
    free(hub->id);
    free(hub->owner);
    free(hub->name);
    free_strings(hub->gateways, hub->gateway_count);
    free(hub->authorization_provider);
    free(hub->ca_cert_file);
    free(hub->ca_key_file);
    free(hub->ca_key_name);
    free(hub->token_key_name);
    free(hub->token_key_file);
    free(hub->token_key_id);
    free(hub->token_issuer);
    free(hub->token_audience);
    free(hub->token_owner_claim);
    free(hub->token_device_id_claim);
    free(hub->record_id);
    free(hub->reference_json);
}

int config_psk_set(struct config_group *group, const char *text, size_t length, char *err,
                   size_t err_length)
{
    if (length != sizeof(group->psk)) {
        snprintf(err, err_length,
                 "must be exactly %zu bytes, not %zu (a character outside ASCII takes 2 to 4)",
                 sizeof(group->psk), length);
        return -1;
    }
    memcpy(group->psk, text, sizeof(group->psk));
    group->has_psk = true;
    return 0;
}

void config_group_clear(struct config_group *group)
{
    free(group->id);
    free(group->owner);
    free(group->name);
    free(group->ca_chain_file);
    free(group->ca_chain_pem);
    free(group->lead_certificate_name);
    free_strings(group->hub_ids, group->hub_count);
    explicit_bzero(group->psk, sizeof(group->psk));
    free(group->acl_json);
    free(group->resources_json);
    free_strings(group->crl_pems, group->crl_pems != NULL ? group->crl_count : 0);
    free_strings(group->crls, group->crl_count);
}

/* Copies text (NULL stays NULL) into *out; false when out of memory. */
static bool copy_text(const char *text, char **out)
{
    *out = text != NULL ? strdup(text) : NULL;
    return text == NULL || *out != NULL;
}

static bool copy_texts(char *const *texts, size_t count, char ***out)
{
    *out = NULL;
    if (texts == NULL)
        return true;
    if ((*out = calloc(count + 1, sizeof(**out))) == NULL)
        return false;
    for (size_t i = 0; i < count; i++) {
        if (!copy_text(texts[i], &(*out)[i]))
            return false;
    }
    return true;
}

/*
 * Copies keep every scalar (the structure is copied whole) and duplicate
 * every string, so a copy and its original are freed independently.
 */
int config_hub_copy(const struct config_hub *from, struct config_hub *to)
{
    *to = *from;
    /* Every field is replaced, also after a failure, so to never shares from's strings. */
    bool ok = copy_text(from->id, &to->id);
    ok = copy_text(from->owner, &to->owner) && ok;
    ok = copy_text(from->name, &to->name) && ok;
    ok = copy_texts(from->gateways, from->gateway_count, &to->gateways) && ok;
    ok = copy_text(from->authorization_provider, &to->authorization_provider) && ok;
    ok = copy_text(from->ca_cert_file, &to->ca_cert_file) && ok;
    ok = copy_text(from->ca_key_file, &to->ca_key_file) && ok;
    ok = copy_text(from->ca_key_name, &to->ca_key_name) && ok;
    ok = copy_text(from->token_key_name, &to->token_key_name) && ok;
    ok = copy_text(from->token_key_file, &to->token_key_file) && ok;
    ok = copy_text(from->token_key_id, &to->token_key_id) && ok;
    ok = copy_text(from->token_issuer, &to->token_issuer) && ok;
    ok = copy_text(from->token_audience, &to->token_audience) && ok;
    ok = copy_text(from->token_owner_claim, &to->token_owner_claim) && ok;
    ok = copy_text(from->token_device_id_claim, &to->token_device_id_claim) && ok;
    ok = copy_text(from->record_id, &to->record_id) && ok;
    ok = copy_text(from->reference_json, &to->reference_json) && ok;
    if (!ok) {
        config_hub_clear(to);
        memset(to, 0, sizeof(*to));
    }
    return ok ? 0 : -1;
}

int config_group_copy(const struct config_group *from, struct config_group *to)
{
    *to = *from;
    bool ok = copy_text(from->id, &to->id);
    ok = copy_text(from->owner, &to->owner) && ok;
    ok = copy_text(from->name, &to->name) && ok;
    ok = copy_text(from->ca_chain_file, &to->ca_chain_file) && ok;
    ok = copy_text(from->ca_chain_pem, &to->ca_chain_pem) && ok;
    ok = copy_text(from->lead_certificate_name, &to->lead_certificate_name) && ok;
    ok = copy_texts(from->hub_ids, from->hub_count, &to->hub_ids) && ok;
    ok = copy_text(from->acl_json, &to->acl_json) && ok;
    ok = copy_text(from->resources_json, &to->resources_json) && ok;
    ok = copy_texts(from->crls, from->crl_count, &to->crls) && ok;
    ok = copy_texts(from->crl_pems, from->crl_count, &to->crl_pems) && ok;
    if (!ok) {
        config_group_clear(to);
        memset(to, 0, sizeof(*to));
    }
    return ok ? 0 : -1;
}

void config_free(struct config *config)
{
    if (config == NULL)
        return;
    free(config->path);
    free_strings(config->listen, config->listen_count);
    free(config->tls_cert_file);
    free(config->tls_key_file);
    free(config->data_dir);
    free(config->log_level);
    free(config->user);
    free(config->api.listen);
    free(config->api.cert_file);
    free(config->api.key_file);
    free(config->api.client_ca_file);
    free(config->api.jwks_file);
    free(config->api.jwks_url);
    free(config->api.authority);
    free(config->api.jwks_ca_file);
    free(config->api.issuer);
    free(config->api.audience);
    free(config->api.owner_claim);
    free_strings(config->cluster.trusted_proxies, config->cluster.trusted_proxy_count);
    free(config->cluster.redis);
    free_strings(config->cluster.sentinels, config->cluster.sentinel_count);
    free(config->cluster.master_name);
    free(config->cluster.username);
    if (config->cluster.password != NULL)
        explicit_bzero(config->cluster.password, strlen(config->cluster.password));
    free(config->cluster.password);
    free(config->cluster.key_prefix);
    free(config->cluster.node);
    free(config->api.health_listen);
    free_strings(config->api.admins, config->api.admin_count);
    for (size_t i = 0; config->keys != NULL && i < config->key_count; i++) {
        free(config->keys[i].name);
        free(config->keys[i].cert_file);
        free(config->keys[i].key_file);
        free_strings(config->keys[i].owners, config->keys[i].owner_count);
    }
    free(config->keys);
    for (size_t i = 0; config->hubs != NULL && i < config->hub_count; i++)
        config_hub_clear(&config->hubs[i]);
    free(config->hubs);
    for (size_t i = 0; config->groups != NULL && i < config->group_count; i++)
        config_group_clear(&config->groups[i]);
    free(config->groups);
    free(config);
}

const struct config_key *config_find_key(const struct config *config, const char *name)
{
    for (size_t i = 0; name != NULL && i < config->key_count; i++) {
        if (strcmp(config->keys[i].name, name) == 0)
            return &config->keys[i];
    }
    return NULL;
}

bool config_key_allows(const struct config_key *key, const char *owner)
{
    for (size_t i = 0; owner != NULL && i < key->owner_count; i++) {
        if (strcmp(key->owners[i], owner) == 0)
            return true;
    }
    return false;
}
