/*
 * dpsctl_options: the vocabulary of dpsctl's command line
 * (dpsctl_options.c): exit codes, option ids and what the command line
 * said, the row type of the command table (dpsctl.c), and the checks of
 * arguments every command shares.
 */
#ifndef DPS_DPSCTL_OPTIONS_H
#define DPS_DPSCTL_OPTIONS_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "crypto/uuid.h"

enum exit_code {
    EXIT_OK = 0,
    EXIT_REFUSED = 1,
    EXIT_USAGE = 2,
    EXIT_NOT_FOUND = 3,
    EXIT_AUTH = 4,
    EXIT_UNREACHABLE = 5,
};

enum option_id {
    OPT_API,
    OPT_TOKEN_FILE,
    OPT_CACERT,
    OPT_JSON,
    OPT_DATA,
    OPT_DEVICE,
    OPT_GROUP,
    OPT_ID,
    OPT_NAME,
    OPT_CHAIN,
    OPT_HUB,
    OPT_PSK,
    OPT_EXPIRED_OK,
    OPT_LEAD_NAME,
    OPT_HUB_ID,
    OPT_GATEWAY,
    OPT_PROVIDER,
    OPT_IDENTITY_KEY,
    OPT_TOKEN_KEY,
    OPT_TOKEN_ISSUER,
    OPT_OWNER_CLAIM,
    OPT_DEVICE_ID_CLAIM,
    OPT_SERIAL,
    OPT_ISSUER,
    OPT_PUBLIC_KEY,
    OPT_CERT,
    OPT_REASON,
    OPT_SINCE,
    OPT_UNTIL,
    OPT_INTERVAL,
    OPT_COUNT,
    OPT_DEVICES,
    OPT_KEY,
    OPT_OWNER,
    OPT_EXPIRES_IN,
    OPTION_COUNT,
};

#define BIT(id) (UINT64_C(1) << (id))
#define CONNECTION (BIT(OPT_API) | BIT(OPT_TOKEN_FILE) | BIT(OPT_CACERT) | BIT(OPT_JSON))
#define GROUP_FIELDS                                                                               \
    (BIT(OPT_NAME) | BIT(OPT_CHAIN) | BIT(OPT_HUB) | BIT(OPT_PSK) | BIT(OPT_EXPIRED_OK) |          \
     BIT(OPT_LEAD_NAME))
#define HUB_FIELDS                                                                                 \
    (BIT(OPT_NAME) | BIT(OPT_GATEWAY) | BIT(OPT_PROVIDER) | BIT(OPT_IDENTITY_KEY) |                \
     BIT(OPT_TOKEN_KEY) | BIT(OPT_TOKEN_ISSUER) | BIT(OPT_OWNER_CLAIM) | BIT(OPT_DEVICE_ID_CLAIM))

/* The long options, indexed by option id (then --help). */
extern const struct option LONG_OPTIONS[];

struct command;

/* What the command line said. Repeatable options (--hub, --gateway) keep every value. */
struct options {
    const char *value[OPTION_COUNT];
    bool given[OPTION_COUNT];
    const char **hubs;
    size_t hub_count;
    const char **gateways;
    size_t gateway_count;
    const char *argument; /* the command's one positional argument (ID, DIR), or NULL */
    const char *name;     /* "groups create", for messages */
    const struct command *command;
};

struct client;

/*
 * One row of the command table. A command of the API (access COMMAND_API)
 * runs with a client already open; the others get client NULL. subject
 * tells commands that share a handler apart (a collection, a list).
 */
enum command_access {
    COMMAND_LOCAL,
    COMMAND_API,
};

struct command {
    const char *noun;
    const char *verb; /* NULL: the noun alone */
    uint64_t allowed;
    const char *argument; /* name of the positional argument, or NULL */
    enum command_access access;
    int (*run)(struct client *client, struct options *options, const void *subject);
    const void *subject;
    const char *usage;
};

void print_command_help(const struct command *command, FILE *out);
/* Prints "dpsctl NAME: MESSAGE: DETAIL" and the command's usage; returns EXIT_USAGE. */
int usage_error(const struct command *command, const char *name, const char *message,
                const char *detail);

/* Normalises a UUID argument to the lower-case form the store's keys use. */
bool parse_uuid_argument(const char *text, char out[UUID_STRING_LENGTH + 1]);
bool parse_unsigned(const char *text, unsigned long max, unsigned long *out);
bool is_hex(const char *text, size_t length);
#define SERIAL_MAX_DIGITS 40
/* A certificate serial: 1 to SERIAL_MAX_DIGITS hex digits. */
bool is_serial(const char *text);
/* A whole small text file, or NULL with err set. */
char *read_text_file(const char *path, char *err, size_t err_length);

#endif
