/*
 * cluster_envelope: see cluster_envelope.h. Pure functions over jansson.
 */
#include "control/cluster_envelope.h"

#include <stdio.h>
#include <string.h>

static const char *const kind_names[] = {
    [PLANE_KIND_GROUP] = "group",
    [PLANE_KIND_HUB] = "hub",
    [PLANE_KIND_BLOCK] = "block",
};

const char *cluster_kind_name(enum plane_kind kind)
{
    return (unsigned)kind < sizeof(kind_names) / sizeof(*kind_names) ? kind_names[kind] : "?";
}

int cluster_field(enum plane_kind kind, const char *id, char out[CLUSTER_FIELD_MAX])
{
    int length = snprintf(out, CLUSTER_FIELD_MAX, "%s/%s", cluster_kind_name(kind), id);
    return length > 0 && length < CLUSTER_FIELD_MAX ? 0 : -1;
}

char *cluster_envelope_encode(const struct plane_change *change, const char *node)
{
    json_t *root = json_pack("{s:s, s:s, s:b, s:O?, s:s}", "kind", cluster_kind_name(change->kind),
                             "id", change->id, "deleted", change->doc == NULL, "doc", change->doc,
                             "node", node != NULL ? node : "");
    if (root != NULL && change->owner != NULL) {
        json_object_set_new(root, "owner", json_string(change->owner));
    }
    char *text = root != NULL ? json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    return text;
}

int cluster_envelope_decode(const char *text, size_t length, struct cluster_envelope *envelope)
{
    memset(envelope, 0, sizeof(*envelope));
    envelope->root = json_loadb(text, length, 0, NULL);
    json_t *root = envelope->root;
    const char *kind = json_string_value(json_object_get(root, "kind"));
    const json_t *generation = json_object_get(root, "generation");
    const json_t *doc = json_object_get(root, "doc");
    bool deleted = json_is_true(json_object_get(root, "deleted"));
    envelope->id = json_string_value(json_object_get(root, "id"));
    envelope->owner = json_string_value(json_object_get(root, "owner"));
    envelope->node = json_string_value(json_object_get(root, "node"));
    if (envelope->node == NULL) {
        envelope->node = "";
    }
    size_t kinds = sizeof(kind_names) / sizeof(*kind_names), k = 0;
    while (kind != NULL && k < kinds && strcmp(kind, kind_names[k]) != 0) {
        k++;
    }
    bool valid = json_is_object(root) && kind != NULL && k < kinds && envelope->id != NULL &&
                 envelope->id[0] != '\0' &&
                 (generation == NULL ||
                  (json_is_integer(generation) && json_integer_value(generation) > 0)) &&
                 (deleted ? doc == NULL || json_is_null(doc) : json_is_object(doc));
    if (valid) {
        envelope->kind = (enum plane_kind)k;
        envelope->generation = generation != NULL ? (uint64_t)json_integer_value(generation) : 0;
        envelope->doc = deleted ? NULL : doc;
        valid = cluster_field(envelope->kind, envelope->id, envelope->field) == 0;
    }
    if (!valid) {
        cluster_envelope_clear(envelope);
        return -1;
    }
    return 0;
}

void cluster_envelope_clear(struct cluster_envelope *envelope)
{
    json_decref(envelope->root);
    memset(envelope, 0, sizeof(*envelope));
}
