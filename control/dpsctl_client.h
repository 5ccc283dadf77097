/*
 * dpsctl_client: the HTTP client of the management API (dpsctl_client.c).
 * Every call returns an exit code of dpsctl_options.h, the failure already
 * printed.
 */
#ifndef DPS_DPSCTL_CLIENT_H
#define DPS_DPSCTL_CLIENT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>
#include <jansson.h>

#include "control/dpsctl_options.h"
#include "control/dpsctl_table.h"

#define DEFAULT_API_URL "http://127.0.0.1:9100"

struct client {
    const char *name; /* the command, for messages */
    char url[1024];   /* without a trailing slash */
    const char *url_source;
    char *token;
    char token_source[PATH_MAX + 64];
    const char *cacert;
    CURL *curl;
};

/* Finds the URL, token and CA file and makes the handle; client_close even after a failure. */
int client_open(struct client *client, const struct options *options);
void client_close(struct client *client);
/* Appends ?name=value (or &name=value), escaped; false when it does not fit. */
bool query_add(CURL *curl, char *path, size_t length, const char *name, const char *value);
/* GET path as a list: each result goes to sink. */
int client_list(struct client *client, const char *path, struct sink *sink);
/* One JSON document from method path (body may be NULL), or NULL with *code set. */
json_t *client_document(struct client *client, const char *method, const char *path, json_t *body,
                        int *code);
/* A list read result by result: on_result returns false to stop. */
int client_stream(struct client *client, const char *path,
                  bool (*on_result)(void *user, json_t *result), void *user);

#endif
