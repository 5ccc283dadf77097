/*
 * dpsctl_commands: the handlers of dpsctl's command table (dpsctl.c),
 * implemented in dpsctl_commands.c. Each returns an exit code of
 * dpsctl_options.h; subject is the table row's.
 */
#ifndef DPS_DPSCTL_COMMANDS_H
#define DPS_DPSCTL_COMMANDS_H

#include <stddef.h>

#include <jansson.h>

#include "control/dpsctl_options.h"
#include "control/dpsctl_table.h"
#include "store/store.h"

/* Enrollment groups or hubs: the subject of the collection_* handlers. */
struct collection {
    const char *path; /* /api/v1/... */
    const char *kind; /* for messages */
    const struct view *view;
    int (*apply)(const struct options *options, json_t *doc); /* create and update's fields */
    const enum option_id *required;                           /* for create */
    size_t required_count;
};

extern const struct collection GROUPS, HUBS;

/* A list read from the API or, with --data, from the store: the subject of command_list. */
struct list_source {
    const char *api_path;
    enum store_family family;
    const struct view *view;
};

extern const struct list_source RECORDS_LIST, ISSUANCE_LIST, BINDINGS_LIST, BLOCKLIST_LIST;

int command_status(struct client *client, struct options *options, const void *subject);
int command_collection_list(struct client *client, struct options *options, const void *subject);
int command_collection_put(struct client *client, struct options *options, const void *subject);
int command_collection_delete(struct client *client, struct options *options, const void *subject);
int command_list(struct client *client, struct options *options, const void *subject);
int command_records_tail(struct client *client, struct options *options, const void *subject);
int command_block(struct client *client, struct options *options, const void *subject);
int command_unblock(struct client *client, struct options *options, const void *subject);
int command_bindings_release(struct client *client, struct options *options, const void *subject);
int command_records_delete(struct client *client, struct options *options, const void *subject);
int command_pki(struct client *client, struct options *options, const void *subject);
int command_token(struct client *client, struct options *options, const void *subject);

#endif
