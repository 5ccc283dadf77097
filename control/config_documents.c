/*
 * config_documents: the configuration file's enrollment groups and hubs.
 * Each item becomes the JSON document the management API accepts and goes
 * through control/model.c, so a field has one set of rules and one message
 * wherever it comes from; the file is the trusted source
 * (model_*_from_file): it may name key and CA files, relative to its folder.
 * Also what a group or a hub holds: cleared and copied here, whoever read it.
 */
#include "control/config_internal.h"
#include "control/config.h"
#include "control/model.h"
#include "common/error.h"
#include "common/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

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
            if (node->type == YAML_SEQUENCE_NODE && *end == ']' &&
                index < config_sequence_length(node))
                next = config_sequence_item(p, node, index);
            path = *end == ']' ? end + 1 : end;
        } else {
            path += *path == '.';
            size_t length = strcspn(path, ".[");
            snprintf(key, sizeof(key), "%.*s", (int)length, path);
            next = config_mapping_lookup(p, node, key);
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
                return config_fail(p, node_at_path(p, item, s->file), file_path,
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
            return config_fail(p, node_at_path(p, item, s->file), file_path,
                               "deprecated name of %s, which cannot go in the %s given", s->json,
                               top);
        }
        if (json_object_set_new(object, path, value) < 0)
            return config_fail(p, item, item_path, "out of memory");
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
        return config_fail(p, item, item_path, "%s", err);
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
    return config_fail(p, node_at_path(p, item, file_path), path, "%s", separator + 2);
}

/* The item as the model's document: text scalars, typed free-form parts, document spellings. */
static json_t *item_document(struct parser *p, const yaml_node_t *item, const char *item_path,
                             const struct spelling *spellings, unsigned *renamed)
{
    json_t *doc = config_yaml_to_json(p, item, item_path, 0, false);
    if (doc == NULL)
        return NULL;
    char path[KEY_MAX], content_path[KEY_MAX];
    const yaml_node_t *acl = config_mapping_lookup(p, item, "acl");
    const yaml_node_t *entries = config_mapping_lookup(p, acl, "entries");
    json_t *json_acl = json_is_object(doc) ? json_object_get(doc, "acl") : NULL;
    json_t *typed;
    if (entries != NULL && json_is_object(json_acl)) {
        error_path_child(path, item_path, "acl.entries");
        if ((typed = config_yaml_to_json(p, entries, path, 0, true)) == NULL) {
            json_decref(doc);
            return NULL;
        }
        json_object_set_new(json_acl, "entries", typed);
    }
    const yaml_node_t *resources = config_mapping_lookup(p, item, "resources");
    json_t *json_resources = json_is_object(doc) ? json_object_get(doc, "resources") : NULL;
    for (size_t i = 0; resources != NULL && resources->type == YAML_SEQUENCE_NODE &&
                       i < config_sequence_length(resources);
         i++) {
        const yaml_node_t *content =
            config_mapping_lookup(p, config_sequence_item(p, resources, i), "content");
        json_t *json_resource = json_array_get(json_resources, i);
        if (content == NULL || !json_is_object(json_resource))
            continue;
        error_path_child(path, item_path, "resources");
        error_path_index(content_path, path, i);
        error_path_child(path, content_path, "content");
        if ((typed = config_yaml_to_json(p, content, path, 0, true)) == NULL) {
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
        return config_fail(p, node, path, "no key \"%s\" in keys", name);
    if (hub->owner == NULL || !config_key_allows(key, hub->owner))
        return config_fail(p, node, path,
                           "the hub's owner%s%s%s is not one of the owners of key \"%s\"",
                           hub->owner != NULL ? " \"" : "", hub->owner != NULL ? hub->owner : "",
                           hub->owner != NULL ? "\"" : "", name);
    if (certificate && key->cert_file == NULL)
        return config_fail(p, node, path, "key \"%s\" has no certificate", name);
    return 0;
}

/* Reads the list at key of root as groups (is_group) or hubs, each through the model. */
int config_parse_items(struct mapping *root, const char *key, bool is_group, struct config *config)
{
    struct parser *p = root->p;
    const struct spelling *spellings = is_group ? group_spellings : hub_spellings;
    char path[KEY_MAX];
    yaml_node_t *list;
    if (config_map_sequence(root, key, false, true, &list, path) < 0)
        return -1;
    if (list == NULL || config_sequence_length(list) == 0)
        return 0;
    size_t n = config_sequence_length(list);
    void *items = calloc(n, is_group ? sizeof(*config->groups) : sizeof(*config->hubs));
    if (items == NULL)
        return config_fail(p, list, path, "out of memory");
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
        yaml_node_t *item = config_sequence_item(p, list, i);
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
                return config_fail(p, node_at_path(p, item, id_path), path, "unknown hub \"%s\"",
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
                return config_fail(p, node_at_path(p, item, "id"), id_path,
                                   "\"%s\" is also %s[%zu].id", id, key, j);
            }
        }
    }
    return 0;
}

void config_free_strings(char **strings, size_t count)
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
    config_free_strings(hub->gateways, hub->gateway_count);
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
    config_free_strings(group->hub_ids, group->hub_count);
    explicit_bzero(group->psk, sizeof(group->psk));
    free(group->acl_json);
    free(group->resources_json);
    config_free_strings(group->crl_pems, group->crl_pems != NULL ? group->crl_count : 0);
    config_free_strings(group->crls, group->crl_count);
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