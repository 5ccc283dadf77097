/*
 * plane_documents: the enrollment groups and hubs changed: put and delete
 * through the management API, a change another node of the cluster made,
 * and the walk of everything in force for the cluster's sync.
 *
 * A change is a candidate made of the lists in force with one document
 * replaced or left out, built and checked (control/plane_snapshot.c), and
 * published with the document persisted between the phases
 * (control/plane.c), all under plane->lock. Quotas per owner (api.quotas)
 * are counted here, under the lock. Ids are node-wide: a taken one is
 * refused in the same words whoever holds it.
 */
#include "control/plane_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/model.h"
#include "store/store.h"

/* ---- through the management API ---- */

static bool document_exists(const struct config *config, bool is_group, const char *id)
{
    bool exists = is_group ? false : config_find_hub(config, id) != NULL;
    for (size_t i = 0; is_group && i < config->group_count; i++) {
        exists = exists || strcasecmp(config->groups[i].id, id) == 0;
    }
    return exists;
}

/*
 * Replaces (group or hub set, taken over) or deletes (both NULL) the group
 * or hub id in a candidate made of the lists in force, and publishes it with
 * the document persisted; from_api: a change through this node's API (the
 * caller is told only what is theirs, and the cluster is told). Lock held.
 */
static int change_lists(struct plane *plane, bool is_group, const char *id, const char *owner,
                        struct config_group *group, struct config_hub *hub, bool from_api,
                        const struct store_put *extra, size_t extra_count, char *err,
                        size_t err_length)
{
    struct config_group *groups = NULL;
    struct config_hub *hubs = NULL;
    size_t group_count = 0, hub_count = 0;
    if (plane_copy_lists(&plane->current->config, is_group ? id : NULL, is_group ? NULL : id,
                         &groups, &group_count, &hubs, &hub_count) != 0) {
        if (group != NULL) {
            config_group_clear(group);
        }
        if (hub != NULL) {
            config_hub_clear(hub);
        }
        snprintf(err, err_length, "out of memory");
        return PLANE_FAILED;
    }
    json_t *stored = NULL;
    if (group != NULL) {
        groups[group_count++] = *group;
        stored = model_group_to_json(&groups[group_count - 1]);
    } else if (hub != NULL) {
        hubs[hub_count++] = *hub;
        stored = model_hub_to_json(&hubs[hub_count - 1]);
    }
    struct plane_candidate candidate = {groups,           group_count,     hubs,  hub_count,
                                        plane->blocklist, plane->settings, false, from_api};
    int status;
    struct plane_snapshot *snapshot =
        plane_snapshot_build(plane, &candidate, plane->current, &status, err, err_length);
    if (snapshot != NULL) {
        struct plane_document_change change = {
            is_group ? STORE_GROUPS : STORE_HUBS,
            stored != NULL ? json_string_value(json_object_get(stored, "id")) : id,
            stored,
            owner,
            from_api,
            extra,
            extra_count};
        if (change.id == NULL) {
            snprintf(err, err_length, "out of memory");
            snapshot_release(&snapshot->base);
            status = PLANE_FAILED;
        } else {
            status =
                plane_publish(plane, snapshot, plane_persist_document, &change, err, err_length);
            plane_shared_change_done(plane, &change, status);
        }
    }
    json_decref(stored);
    return status;
}

/* How many of owner's documents the configuration holds. */
size_t plane_owned_count(const struct config *config, bool is_group, const char *owner)
{
    size_t count = 0;
    size_t total = is_group ? config->group_count : config->hub_count;
    for (size_t i = 0; i < total; i++) {
        const char *holder = is_group ? config->groups[i].owner : config->hubs[i].owner;
        count += holder != NULL && owner != NULL && strcmp(holder, owner) == 0;
    }
    return count;
}

/* Puts a group or hub: build, check, prepare on every shard, persist, switch. */
static int put_document(struct plane *plane, const json_t *doc, bool create, bool is_group,
                        char *err, size_t err_length)
{
    struct config_group group = {0};
    struct config_hub hub = {0};
    int rc = is_group ? model_group_from_api(doc, &group, err, err_length)
                      : model_hub_from_api(doc, &hub, err, err_length);
    if (rc != 0) {
        if (is_group) {
            model_group_clear(&group);
        } else {
            model_hub_clear(&hub);
        }
        return PLANE_INVALID;
    }
    const char *id = is_group ? group.id : hub.id;
    const char *owner = is_group ? group.owner : hub.owner;
    const char *kind = is_group ? "enrollment group" : "hub";
    pthread_mutex_lock(&plane->lock);
    const struct config *current = &plane->current->config;
    bool exists = document_exists(current, is_group, id);
    unsigned quota = is_group ? plane->settings->api.quota_groups : plane->settings->api.quota_hubs;
    int status = PLANE_OK;
    if (create && exists) {
        /*
         * Ids are node-wide (a hub's is the id its devices are given): a taken
         * one is refused in the same words whoever holds it, and not echoed.
         */
        snprintf(err, err_length,
                 "id: already in use on this node (PUT replaces a %s of yours; leave the id "
                 "out to get a new one)",
                 kind);
        status = PLANE_CONFLICT;
    } else if (!create && !exists) {
        snprintf(err, err_length, "id: no %s %s", kind, id);
        status = PLANE_NOT_FOUND;
    } else if (create && quota > 0 && plane_owned_count(current, is_group, owner) >= quota) {
        snprintf(err, err_length, "%s: the quota of %u per owner is reached (api.quotas.%s)",
                 is_group ? "enrollmentGroups" : "hubs", quota,
                 is_group ? "enrollmentGroups" : "hubs");
        status = PLANE_EXHAUSTED;
    }
    if (status != PLANE_OK) {
        pthread_mutex_unlock(&plane->lock);
        if (is_group) {
            model_group_clear(&group);
        } else {
            model_hub_clear(&hub);
        }
        return status;
    }
    char *owner_copy = owner != NULL ? strdup(owner) : NULL; /* the document moves */
    status = change_lists(plane, is_group, id, owner_copy, is_group ? &group : NULL,
                          is_group ? NULL : &hub, true, NULL, 0, err, err_length);
    free(owner_copy);
    pthread_mutex_unlock(&plane->lock);
    return status;
}

int plane_put_group(struct plane *plane, const json_t *doc, bool create, char *err,
                    size_t err_length)
{
    return put_document(plane, doc, create, true, err, err_length);
}

int plane_put_hub(struct plane *plane, const json_t *doc, bool create, char *err, size_t err_length)
{
    return put_document(plane, doc, create, false, err, err_length);
}

static int delete_document(struct plane *plane, const char *id, bool is_group, char *err,
                           size_t err_length)
{
    pthread_mutex_lock(&plane->lock);
    const struct config *current = &plane->current->config;
    bool exists = document_exists(current, is_group, id);
    int status = PLANE_OK;
    const char *owner = NULL;
    for (size_t i = 0; is_group && i < current->group_count; i++) {
        owner = strcasecmp(current->groups[i].id, id) == 0 ? current->groups[i].owner : owner;
    }
    if (!is_group) {
        const struct config_hub *found = config_find_hub(current, id);
        owner = found != NULL ? found->owner : NULL;
        for (size_t i = 0; exists && i < current->group_count; i++) {
            for (size_t h = 0; h < current->groups[i].hub_count; h++) {
                if (strcasecmp(current->groups[i].hub_ids[h], id) == 0) {
                    snprintf(err, err_length, "hub %s is linked to enrollment group %s", id,
                             current->groups[i].id);
                    status = PLANE_CONFLICT;
                }
            }
        }
    }
    if (!exists) {
        snprintf(err, err_length, "no %s %s", is_group ? "enrollment group" : "hub", id);
        status = PLANE_NOT_FOUND;
    }
    if (status == PLANE_OK) {
        char *owner_copy = owner != NULL ? strdup(owner) : NULL; /* the snapshot goes */
        status = change_lists(plane, is_group, id, owner_copy, NULL, NULL, true, NULL, 0, err,
                              err_length);
        free(owner_copy);
    }
    pthread_mutex_unlock(&plane->lock);
    return status;
}

int plane_delete_group(struct plane *plane, const char *id, char *err, size_t err_length)
{
    return delete_document(plane, id, true, err, err_length);
}

int plane_delete_hub(struct plane *plane, const char *id, char *err, size_t err_length)
{
    return delete_document(plane, id, false, err, err_length);
}

/* ---- the cluster's changes (control/cluster_sync.c) ---- */

int plane_apply(struct plane *plane, const struct plane_change *change,
                const struct store_put *extra, size_t extra_count, char *err, size_t err_length)
{
    int status = PLANE_OK;
    if (change->kind == PLANE_KIND_BLOCK) {
        pthread_mutex_lock(&plane->lock);
        status = plane_blocklist_apply(plane, change, extra, extra_count, err, err_length);
        pthread_mutex_unlock(&plane->lock);
        return status;
    }
    bool is_group = change->kind == PLANE_KIND_GROUP;
    struct config_group group = {0};
    struct config_hub hub = {0};
    if (change->doc != NULL) {
        status = (is_group ? model_group_from_json(change->doc, &group, err, err_length)
                           : model_hub_from_json(change->doc, &hub, err, err_length)) == 0
                     ? PLANE_OK
                     : PLANE_INVALID;
        const char *id = is_group ? group.id : hub.id;
        if (status == PLANE_OK && (id == NULL || strcasecmp(id, change->id) != 0)) {
            snprintf(err, err_length, "the document's id is not %s", change->id);
            status = PLANE_INVALID;
        }
        if (status != PLANE_OK) {
            config_group_clear(&group);
            config_hub_clear(&hub);
            return status;
        }
    }
    pthread_mutex_lock(&plane->lock);
    if (change->doc == NULL && !document_exists(&plane->current->config, is_group, change->id)) {
        status = extra_count == 0 || store_put_sync(plane->store, extra, extra_count) == STORE_OK
                     ? PLANE_OK
                     : PLANE_FAILED;
    } else {
        bool put = change->doc != NULL;
        status = change_lists(plane, is_group, change->id, change->owner,
                              put && is_group ? &group : NULL, put && !is_group ? &hub : NULL,
                              false, extra, extra_count, err, err_length);
    }
    pthread_mutex_unlock(&plane->lock);
    return status;
}

void plane_documents(struct plane *plane, void (*fn)(void *user, const struct plane_change *change),
                     void *user)
{
    pthread_mutex_lock(&plane->lock);
    const struct config *config = &plane->current->config;
    for (size_t i = 0; i < config->group_count + config->hub_count; i++) {
        bool is_group = i < config->group_count;
        const struct config_group *group = is_group ? &config->groups[i] : NULL;
        const struct config_hub *hub = is_group ? NULL : &config->hubs[i - config->group_count];
        json_t *doc = is_group ? model_group_to_json(group) : model_hub_to_json(hub);
        struct plane_change change = {is_group ? PLANE_KIND_GROUP : PLANE_KIND_HUB,
                                      is_group ? group->id : hub->id,
                                      is_group ? group->owner : hub->owner, doc};
        if (doc != NULL) {
            fn(user, &change);
        }
        json_decref(doc);
    }
    size_t index;
    json_t *entry;
    json_array_foreach(plane->blocklist, index, entry)
    {
        struct plane_change change = {PLANE_KIND_BLOCK,
                                      json_string_value(json_object_get(entry, "id")),
                                      json_string_value(json_object_get(entry, "owner")), entry};
        fn(user, &change);
    }
    pthread_mutex_unlock(&plane->lock);
}
