/*
 * dps_catalog: what the DPS handlers derive once per configuration
 * snapshot (dps_handlers.h, struct dps_catalog): per group its owner, its
 * complete ACL list and initial resources as JSON text, the identities its
 * ACLs name; and every owner's UUID and hub id, reserved.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "crypto/uuid.h"
#include "dataplane/dps_handlers.h"
#include "store/records.h"

static const char *const hub_resources[] = {"/oc/con", "/oc/swu", "/oic/mnt", "/x.plgd.dev/time"};

static json_t *ace_new(json_int_t id, json_t *subject, json_t *resources, int permission)
{
    return json_pack("{s:I, s:o, s:o, s:i, s:s}", "aceid", id, "subject", subject, "resources",
                     resources, "permission", permission, "tag", "dps");
}

static json_t *href_list(const char *const *hrefs, size_t count, bool wildcard)
{
    json_t *list = json_array();
    for (size_t i = 0; i < count; i++) {
        json_array_append_new(list, json_pack("{s:s}", "href", hrefs[i]));
    }
    if (wildcard) {
        json_array_append_new(list, json_pack("{s:s}", "wc", "*"));
    }
    return list;
}

/*
 * The reference's default list: the owner with all rights on the cloud
 * configuration, security profile, time and hub resources and everything
 * else by wildcard; anonymous read of discovery and device information; and
 * each linked hub with all rights on the hub resources.
 */
static void default_acl(const struct config *config, const struct config_group *group,
                        const char *owner_uuid, json_t *list)
{
    static const char *const owner_resources[] = {"/CoapCloudConfResURI",
                                                  "/oic/sec/sp",
                                                  "/x.plgd.dev/time",
                                                  "/oc/con",
                                                  "/oc/swu",
                                                  "/oic/mnt"};
    static const char *const anonymous_resources[] = {"/oic/d", "/oic/p", "/oic/res",
                                                      "/oic/sec/sdi", "/oic/sec/doxm"};
    json_int_t id = 1;
    json_array_append_new(list, ace_new(id++, json_pack("{s:s}", "uuid", owner_uuid),
                                        href_list(owner_resources, 6, true), 31));
    json_array_append_new(list, ace_new(id++, json_pack("{s:s}", "conntype", "anon-clear"),
                                        href_list(anonymous_resources, 5, false), 2));
    for (size_t i = 0; i < group->hub_count; i++) {
        json_array_append_new(list, ace_new(id++, json_pack("{s:s}", "uuid", group->hub_ids[i]),
                                            href_list(hub_resources, 4, true), 31));
    }
    (void)config;
}

/* Collects the "subject": {"uuid"} of every entry: those identities get rights on the device. */
static int collect_acl_subjects(json_t *list, struct dps_catalog_group *out)
{
    out->acl_subjects = calloc(json_array_size(list) + 1, sizeof(*out->acl_subjects));
    if (out->acl_subjects == NULL) {
        return -1;
    }
    size_t index;
    json_t *entry;
    json_array_foreach(list, index, entry)
    {
        const char *text =
            json_string_value(json_object_get(json_object_get(entry, "subject"), "uuid"));
        struct dps_uuid uuid;
        if (text != NULL && uuid_text_parse(text, strlen(text), &uuid) == 0) {
            out->acl_subjects[out->acl_subject_count++] = uuid;
        }
    }
    return 0;
}

static int catalog_group(const struct config *config, const struct config_group *group,
                         struct dps_catalog_group *out, char *err, size_t err_length)
{
    struct dps_uuid owner;
    uuid_from_owner(group->owner, &owner);
    uuid_format(&owner, out->owner_uuid);
    records_owner_key(group->owner, out->owner_key);

    json_t *list = json_array();
    if (group->acl_mode != CONFIG_ACL_REPLACE) {
        default_acl(config, group, out->owner_uuid, list);
    }
    if (group->acl_json != NULL) {
        json_error_t jerr;
        json_t *own = json_loads(group->acl_json, 0, &jerr);
        if (!json_is_array(own)) {
            snprintf(err, err_length, "enrollment group %s: acl is not a JSON array", group->id);
            json_decref(own);
            json_decref(list);
            return -1;
        }
        size_t index;
        json_t *entry;
        json_array_foreach(own, index, entry)
        {
            json_t *copy = json_deep_copy(entry);
            if (json_object_get(copy, "aceid") == NULL) {
                json_object_set_new(copy, "aceid",
                                    json_integer((json_int_t)json_array_size(list) + 1));
            }
            json_object_set_new(copy, "tag", json_string("dps"));
            json_array_append_new(list, copy);
        }
        json_decref(own);
    }
    out->acl_json = json_dumps(list, JSON_COMPACT);
    int collected = collect_acl_subjects(list, out);
    json_decref(list);
    out->resources_json = strdup(group->resources_json != NULL ? group->resources_json : "[]");
    if (out->acl_json == NULL || out->resources_json == NULL || collected != 0) {
        snprintf(err, err_length, "out of memory");
        return -1;
    }
    return 0;
}

static int compare_reserved(const void *a, const void *b)
{
    return memcmp(&((const struct dps_reserved_id *)a)->uuid,
                  &((const struct dps_reserved_id *)b)->uuid, sizeof(struct dps_uuid));
}

static void reserve(struct dps_catalog *catalog, const struct dps_uuid *uuid,
                    enum dps_reserved_kind kind)
{
    catalog->reserved[catalog->reserved_count++] = (struct dps_reserved_id){*uuid, kind};
}

/* Every owner's UUID and every hub id in the configuration, sorted for lookups. */
static int catalog_reserved(const struct config *config, struct dps_catalog *catalog)
{
    catalog->reserved =
        calloc(config->group_count + 2 * config->hub_count + 1, sizeof(*catalog->reserved));
    if (catalog->reserved == NULL) {
        return -1;
    }
    struct dps_uuid uuid;
    for (size_t i = 0; i < config->group_count; i++) {
        uuid_from_owner(config->groups[i].owner, &uuid);
        reserve(catalog, &uuid, DPS_RESERVED_OWNER);
    }
    for (size_t i = 0; i < config->hub_count; i++) {
        if (config->hubs[i].owner != NULL) {
            uuid_from_owner(config->hubs[i].owner, &uuid);
            reserve(catalog, &uuid, DPS_RESERVED_OWNER);
        }
        if (uuid_text_parse(config->hubs[i].id, strlen(config->hubs[i].id), &uuid) == 0) {
            reserve(catalog, &uuid, DPS_RESERVED_HUB);
        }
    }
    qsort(catalog->reserved, catalog->reserved_count, sizeof(*catalog->reserved), compare_reserved);
    return 0;
}

static bool same_text(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/*
 * What a group's catalog entry is derived from: its owner, ACL and
 * resources, and the hubs it names. Should the catalog come to read more of
 * a group, compare that here too.
 */
static bool catalog_inputs_equal(const struct config_group *a, const struct config_group *b)
{
    if (strcmp(a->id, b->id) != 0 || !same_text(a->owner, b->owner) || a->acl_mode != b->acl_mode ||
        !same_text(a->acl_json, b->acl_json) || !same_text(a->resources_json, b->resources_json) ||
        a->hub_count != b->hub_count) {
        return false;
    }
    for (size_t h = 0; h < a->hub_count; h++) {
        if (strcmp(a->hub_ids[h], b->hub_ids[h]) != 0) {
            return false;
        }
    }
    return true;
}

static int catalog_group_copy(const struct dps_catalog_group *from, struct dps_catalog_group *to)
{
    memcpy(to->owner_uuid, from->owner_uuid, sizeof(to->owner_uuid));
    memcpy(to->owner_key, from->owner_key, sizeof(to->owner_key));
    to->acl_json = strdup(from->acl_json);
    to->resources_json = strdup(from->resources_json);
    to->acl_subject_count = from->acl_subject_count;
    to->acl_subjects = calloc(from->acl_subject_count + 1, sizeof(*to->acl_subjects));
    if (to->acl_json == NULL || to->resources_json == NULL || to->acl_subjects == NULL) {
        return -1;
    }
    memcpy(to->acl_subjects, from->acl_subjects,
           from->acl_subject_count * sizeof(*to->acl_subjects));
    return 0;
}

/* The entry of previous for a group with the same inputs, or NULL. */
static const struct dps_catalog_group *catalog_known(const struct config_group *group, size_t index,
                                                     const struct config *previous_config,
                                                     const struct dps_catalog *previous)
{
    for (size_t k = 0; previous != NULL && k < previous_config->group_count; k++) {
        size_t j = (index + k) % previous_config->group_count;
        if (catalog_inputs_equal(group, &previous_config->groups[j])) {
            return &previous->groups[j];
        }
    }
    return NULL;
}

int dps_catalog_build(const struct config *config, const struct config *previous_config,
                      const struct dps_catalog *previous, struct dps_catalog *catalog, char *err,
                      size_t err_length)
{
    memset(catalog, 0, sizeof(*catalog));
    catalog->groups = calloc(config->group_count + 1, sizeof(*catalog->groups));
    if (catalog->groups == NULL || catalog_reserved(config, catalog) != 0) {
        snprintf(err, err_length, "out of memory");
        dps_catalog_free(config, catalog);
        return -1;
    }
    for (size_t i = 0; i < config->group_count; i++) {
        const struct dps_catalog_group *known =
            catalog_known(&config->groups[i], i, previous_config, previous);
        if (known != NULL) {
            if (catalog_group_copy(known, &catalog->groups[i]) != 0) {
                snprintf(err, err_length, "out of memory");
                dps_catalog_free(config, catalog);
                return -1;
            }
            continue;
        }
        if (catalog_group(config, &config->groups[i], &catalog->groups[i], err, err_length) != 0) {
            dps_catalog_free(config, catalog);
            return -1;
        }
    }
    return 0;
}

void dps_catalog_free(const struct config *config, struct dps_catalog *catalog)
{
    free(catalog->reserved);
    catalog->reserved = NULL;
    catalog->reserved_count = 0;
    if (catalog->groups == NULL) {
        return;
    }
    for (size_t i = 0; i < config->group_count; i++) {
        free(catalog->groups[i].acl_json);
        free(catalog->groups[i].resources_json);
        free(catalog->groups[i].acl_subjects);
    }
    free(catalog->groups);
    catalog->groups = NULL;
}

const struct dps_reserved_id *dps_catalog_reserved(const struct dps_catalog *catalog,
                                                   const struct dps_uuid *uuid)
{
    struct dps_reserved_id key = {.uuid = *uuid};
    return bsearch(&key, catalog->reserved, catalog->reserved_count, sizeof(key), compare_reserved);
}
