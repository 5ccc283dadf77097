/*
 * ace: the strict shape of an access-control entry (PROTOCOL.md 2.5): the
 * device client rejects any key it does not know, so an entry is checked
 * before a group holding it is accepted, from the file or from the API.
 */
#include "control/ace.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "control/config.h"

#define KEY_MAX ERROR_PATH_MAX

/* Checks that object has only the allowed keys (NULL-terminated). */
static int check_json_keys(const json_t *object, const char *path, const char *const *allowed,
                           const char *shape, char *err, size_t err_length)
{
    if (!json_is_object(object))
        return error_set(err, err_length, "%s: must be a mapping", path);
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value)
    {
        size_t i = 0;
        while (allowed[i] != NULL && strcmp(allowed[i], key) != 0)
            i++;
        if (allowed[i] == NULL) {
            char key_path[KEY_MAX];
            error_path_child(key_path, path, key);
            return error_set(err, err_length, "%s: unknown key (%s)", key_path, shape);
        }
    }
    return 0;
}

static int check_ace_subject(const json_t *subject, const char *path, char *err, size_t err_length)
{
    static const char *const keys[] = {"uuid", "role", "authority", "conntype", NULL};
    if (check_json_keys(subject, path, keys,
                        "a subject has one of uuid, role (with authority) or conntype", err,
                        err_length) < 0)
        return -1;
    json_t *uuid = json_object_get(subject, "uuid");
    json_t *role = json_object_get(subject, "role");
    json_t *conntype = json_object_get(subject, "conntype");
    if ((uuid != NULL) + (role != NULL) + (conntype != NULL) != 1)
        return error_set(err, err_length, "%s: must have exactly one of uuid, role or conntype",
                         path);
    char key_path[KEY_MAX];
    if (json_object_get(subject, "authority") != NULL) {
        error_path_child(key_path, path, "authority");
        if (role == NULL)
            return error_set(err, err_length, "%s: only allowed with role", key_path);
        if (!json_is_string(json_object_get(subject, "authority")))
            return error_set(err, err_length, "%s: must be a string", key_path);
    }
    if (uuid != NULL) {
        error_path_child(key_path, path, "uuid");
        if (!json_is_string(uuid) || (strcmp(json_string_value(uuid), "*") != 0 &&
                                      !config_uuid_valid(json_string_value(uuid))))
            return error_set(err, err_length, "%s: must be a UUID or \"*\"", key_path);
    }
    if (role != NULL) {
        error_path_child(key_path, path, "role");
        if (!json_is_string(role) || json_string_length(role) == 0)
            return error_set(err, err_length, "%s: must be a non-empty string", key_path);
    }
    if (conntype != NULL) {
        error_path_child(key_path, path, "conntype");
        const char *text = json_is_string(conntype) ? json_string_value(conntype) : "";
        if (strcmp(text, "auth-crypt") != 0 && strcmp(text, "anon-clear") != 0)
            return error_set(err, err_length, "%s: must be auth-crypt or anon-clear", key_path);
    }
    return 0;
}

static int check_ace_resource(const json_t *resource, const char *path, char *err,
                              size_t err_length)
{
    static const char *const keys[] = {"href", "wc", "if", NULL};
    if (check_json_keys(resource, path, keys, "a resource has only href, wc, if", err, err_length) <
        0)
        return -1;
    char key_path[KEY_MAX];
    json_t *href = json_object_get(resource, "href");
    json_t *wc = json_object_get(resource, "wc");
    json_t *interfaces = json_object_get(resource, "if");
    if (href == NULL && wc == NULL)
        return error_set(err, err_length, "%s: needs href or wc", path);
    if (href != NULL && (!json_is_string(href) || json_string_value(href)[0] != '/')) {
        error_path_child(key_path, path, "href");
        return error_set(err, err_length, "%s: must be a path starting with /", key_path);
    }
    if (wc != NULL) {
        const char *text = json_is_string(wc) ? json_string_value(wc) : "";
        error_path_child(key_path, path, "wc");
        if (strcmp(text, "*") != 0 && strcmp(text, "+") != 0 && strcmp(text, "-") != 0)
            return error_set(err, err_length, "%s: must be \"*\", \"+\" or \"-\"", key_path);
    }
    if (interfaces != NULL) {
        error_path_child(key_path, path, "if");
        bool valid = json_is_array(interfaces) && json_array_size(interfaces) > 0;
        size_t i;
        json_t *item;
        json_array_foreach(interfaces, i, item)
        {
            valid = valid && json_is_string(item) && json_string_length(item) > 0;
        }
        if (!valid)
            return error_set(err, err_length, "%s: must be a non-empty list of interface names",
                             key_path);
    }
    return 0;
}

int ace_check(const json_t *ace, const char *path, char *err, size_t err_length)
{
    static const char *const keys[] = {"aceid", "subject", "resources", "permission", "tag", NULL};
    if (check_json_keys(ace, path, keys,
                        "an ACE has only aceid, subject, resources, permission, tag", err,
                        err_length) < 0)
        return -1;
    char key_path[KEY_MAX];
    json_t *aceid = json_object_get(ace, "aceid");
    error_path_child(key_path, path, "aceid");
    if (aceid != NULL && (!json_is_integer(aceid) || json_integer_value(aceid) < 1 ||
                          json_integer_value(aceid) > INT32_MAX))
        return error_set(err, err_length, "%s: must be a positive integer", key_path);

    json_t *tag = json_object_get(ace, "tag");
    error_path_child(key_path, path, "tag");
    if (tag != NULL && !json_is_string(tag))
        return error_set(err, err_length, "%s: must be a string", key_path);

    json_t *permission = json_object_get(ace, "permission");
    error_path_child(key_path, path, "permission");
    if (permission == NULL)
        return error_set(err, err_length, "%s: required", key_path);
    if (!json_is_integer(permission) || json_integer_value(permission) < 0 ||
        json_integer_value(permission) > 31)
        return error_set(err, err_length,
                         "%s: must be an integer from 0 to 31 (C=1 R=2 U=4 D=8 N=16)", key_path);

    json_t *subject = json_object_get(ace, "subject");
    error_path_child(key_path, path, "subject");
    if (subject == NULL)
        return error_set(err, err_length, "%s: required", key_path);
    if (check_ace_subject(subject, key_path, err, err_length) < 0)
        return -1;

    json_t *resources = json_object_get(ace, "resources");
    error_path_child(key_path, path, "resources");
    if (resources == NULL)
        return error_set(err, err_length, "%s: required", key_path);
    if (!json_is_array(resources) || json_array_size(resources) == 0)
        return error_set(err, err_length, "%s: must be a non-empty list", key_path);
    for (size_t i = 0; i < json_array_size(resources); i++) {
        char item_path[KEY_MAX];
        error_path_index(item_path, key_path, i);
        if (check_ace_resource(json_array_get(resources, i), item_path, err, err_length) < 0)
            return -1;
    }
    return 0;
}
