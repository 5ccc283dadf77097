/*
 * dpsctl: the operator's command-line tool.
 *
 * Most commands talk to the management API of a running dpsd (control/api.c)
 * over HTTP(S) with an operator bearer token: enrollment groups and hubs,
 * provisioning records (listed or followed), the blocklist, the issuance log,
 * device-id bindings and the node's status. The list commands also read the
 * store directly with --data DIR (read-only, so they work while dpsd runs and
 * when it is down). `pki` creates the demo PKI and `token` signs operator
 * tokens; neither needs the daemon.
 *
 * Output is an aligned table for people, or with --json the server's JSON:
 * one document, or one {"result": {...}} line per item for lists.
 *
 * Exit status: 0 success; 1 the server refused or failed (its message is
 * printed with what to change); 2 usage error; 3 not found; 4 authentication
 * failed; 5 the API cannot be reached.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "crypto/pki.h"
#include "crypto/uuid.h"
#include "store/records.h"
#include "store/store.h"

enum exit_code {
    EXIT_OK = 0,
    EXIT_REFUSED = 1,
    EXIT_USAGE = 2,
    EXIT_NOT_FOUND = 3,
    EXIT_AUTH = 4,
    EXIT_UNREACHABLE = 5,
};

#define DEFAULT_API_URL "http://127.0.0.1:9100"
#define DEFAULT_DEVICE_COUNT 10
#define MAX_DEVICE_COUNT 1000000
#define FILE_LIMIT (1024 * 1024)
#define ERROR_BODY_LIMIT 65536
#define CONNECT_TIMEOUT_S 10L
#define STALL_TIMEOUT_S 60L
#define SERIAL_MAX_DIGITS 40
#define ENTRY_ID_DIGITS 32
#define API_TIME_LENGTH 20 /* YYYY-MM-DDTHH:MM:SSZ */

/* ---- options ---- */

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

static const struct option LONG_OPTIONS[] = {
    {"api", required_argument, NULL, 256 + OPT_API},
    {"token-file", required_argument, NULL, 256 + OPT_TOKEN_FILE},
    {"cacert", required_argument, NULL, 256 + OPT_CACERT},
    {"json", no_argument, NULL, 256 + OPT_JSON},
    {"data", required_argument, NULL, 256 + OPT_DATA},
    {"device", required_argument, NULL, 256 + OPT_DEVICE},
    {"group", required_argument, NULL, 256 + OPT_GROUP},
    {"id", required_argument, NULL, 256 + OPT_ID},
    {"name", required_argument, NULL, 256 + OPT_NAME},
    {"chain", required_argument, NULL, 256 + OPT_CHAIN},
    {"hub", required_argument, NULL, 256 + OPT_HUB},
    {"psk", required_argument, NULL, 256 + OPT_PSK},
    {"expired-ok", optional_argument, NULL, 256 + OPT_EXPIRED_OK},
    {"lead-name", required_argument, NULL, 256 + OPT_LEAD_NAME},
    {"hub-id", required_argument, NULL, 256 + OPT_HUB_ID},
    {"gateway", required_argument, NULL, 256 + OPT_GATEWAY},
    {"provider", required_argument, NULL, 256 + OPT_PROVIDER},
    {"identity-key", required_argument, NULL, 256 + OPT_IDENTITY_KEY},
    {"token-key", required_argument, NULL, 256 + OPT_TOKEN_KEY},
    {"token-issuer", required_argument, NULL, 256 + OPT_TOKEN_ISSUER},
    {"owner-claim", required_argument, NULL, 256 + OPT_OWNER_CLAIM},
    {"device-id-claim", required_argument, NULL, 256 + OPT_DEVICE_ID_CLAIM},
    {"serial", required_argument, NULL, 256 + OPT_SERIAL},
    {"issuer", required_argument, NULL, 256 + OPT_ISSUER},
    {"public-key-sha256", required_argument, NULL, 256 + OPT_PUBLIC_KEY},
    {"cert", required_argument, NULL, 256 + OPT_CERT},
    {"reason", required_argument, NULL, 256 + OPT_REASON},
    {"since", required_argument, NULL, 256 + OPT_SINCE},
    {"until", required_argument, NULL, 256 + OPT_UNTIL},
    {"interval", required_argument, NULL, 256 + OPT_INTERVAL},
    {"count", required_argument, NULL, 256 + OPT_COUNT},
    {"devices", required_argument, NULL, 256 + OPT_DEVICES},
    {"key", required_argument, NULL, 256 + OPT_KEY},
    {"owner", required_argument, NULL, 256 + OPT_OWNER},
    {"expires-in", required_argument, NULL, 256 + OPT_EXPIRES_IN},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

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
};

/* ---- commands and their usage ---- */

struct command {
    const char *noun;
    const char *verb; /* NULL: the noun alone */
    uint64_t allowed;
    const char *argument; /* name of the positional argument, or NULL */
    int (*run)(struct options *options);
    const char *usage;
};

static int command_pki(struct options *options);
static int command_token(struct options *options);
static int command_status(struct options *options);
static int command_groups_list(struct options *options);
static int command_groups_put(struct options *options);
static int command_groups_delete(struct options *options);
static int command_hubs_list(struct options *options);
static int command_hubs_put(struct options *options);
static int command_hubs_delete(struct options *options);
static int command_records_list(struct options *options);
static int command_records_tail(struct options *options);
static int command_block(struct options *options);
static int command_unblock(struct options *options);
static int command_blocklist_list(struct options *options);
static int command_issuance_list(struct options *options);
static int command_bindings_list(struct options *options);
static int command_bindings_release(struct options *options);

static const struct command COMMANDS[] = {
    {"status", NULL, CONNECTION, NULL, command_status,
     "dpsctl status\n"
     "  Ready or not; the token owner's enrollment groups, hubs, blocklist entries\n"
     "  and quotas; for an administrator (api.admins) also the node: shards, I/O\n"
     "  backend, connections, configuration generation and node-wide counts.\n"},
    {"groups", "list", CONNECTION | BIT(OPT_ID), NULL, command_groups_list,
     "dpsctl groups list [--id GROUP_ID]\n"
     "  The enrollment groups of the token's owner.\n"},
    {"groups", "create", CONNECTION | GROUP_FIELDS | BIT(OPT_ID), NULL, command_groups_put,
     "dpsctl groups create --chain PEM_FILE --hub HUB_ID [--hub HUB_ID...] [--name NAME]\n"
     "                     [--psk TEXT] [--expired-ok] [--lead-name CN] [--id GROUP_ID]\n"
     "  Enrolls a manufacturer: devices whose certificate chains up to the CA\n"
     "  certificates in PEM_FILE are provisioned for the hubs named, at once.\n"},
    {"groups", "update", CONNECTION | GROUP_FIELDS, "GROUP_ID", command_groups_put,
     "dpsctl groups update GROUP_ID [--chain PEM_FILE] [--hub HUB_ID...] [--name NAME]\n"
     "                     [--psk TEXT] [--expired-ok[=no]] [--lead-name CN]\n"
     "  Replaces the group with the given fields changed (--hub replaces the list;\n"
     "  --psk '' removes the key).\n"},
    {"groups", "delete", CONNECTION, "GROUP_ID", command_groups_delete,
     "dpsctl groups delete GROUP_ID\n"},
    {"hubs", "list", CONNECTION | BIT(OPT_ID), NULL, command_hubs_list,
     "dpsctl hubs list [--id HUB_ID]\n"},
    {"hubs", "create", CONNECTION | HUB_FIELDS | BIT(OPT_HUB_ID), NULL, command_hubs_put,
     "dpsctl hubs create --hub-id UUID --gateway coaps+tcp://HOST:PORT [--gateway ...]\n"
     "                   --provider NAME --identity-key NAME --token-key NAME\n"
     "                   --token-issuer ISSUER [--name NAME] [--owner-claim CLAIM]\n"
     "                   [--device-id-claim CLAIM]\n"
     "  Adds a hub. Its identity CA and token signing keys are named, not sent:\n"
     "  keys the node's administrator registered for your owner (keys: in dpsd's\n"
     "  configuration).\n"},
    {"hubs", "update", CONNECTION | HUB_FIELDS, "HUB_ID", command_hubs_put,
     "dpsctl hubs update HUB_ID [hubs create's options]\n"
     "  Replaces the hub with the given fields changed (--gateway replaces the list).\n"},
    {"hubs", "delete", CONNECTION, "HUB_ID", command_hubs_delete, "dpsctl hubs delete HUB_ID\n"},
    {"records", "list",
     CONNECTION | BIT(OPT_DEVICE) | BIT(OPT_GROUP) | BIT(OPT_ID) | BIT(OPT_DATA) | BIT(OPT_OWNER),
     NULL, command_records_list,
     "dpsctl records list [--device DEVICE_ID] [--group GROUP_ID] [--id RECORD_ID]\n"
     "                    [--data DIR [--owner OWNER]]\n"
     "  Provisioning records with the CoAP code of each step. The same manufacturer\n"
     "  certificate under two owners is two records.\n"},
    {"records", "tail",
     CONNECTION | BIT(OPT_DEVICE) | BIT(OPT_GROUP) | BIT(OPT_INTERVAL) | BIT(OPT_COUNT), NULL,
     command_records_tail,
     "dpsctl records tail [--device DEVICE_ID] [--group GROUP_ID] [--interval SECONDS]\n"
     "                    [--count N]\n"
     "  From now on, a line for each step a device is answered: record, device id\n"
     "  (once the device has named itself), group, step and CoAP code; polls every\n"
     "  SECONDS (default 2) until interrupted or N lines printed. With --json, one\n"
     "  {\"step\", \"result\"} line each, the result being the whole record.\n"},
    {"block", NULL,
     CONNECTION | BIT(OPT_DEVICE) | BIT(OPT_SERIAL) | BIT(OPT_ISSUER) | BIT(OPT_PUBLIC_KEY) |
         BIT(OPT_CERT) | BIT(OPT_REASON),
     NULL, command_block,
     "dpsctl block (--device DEVICE_ID | --serial HEX --issuer DN | --public-key-sha256 HEX\n"
     "              | --cert PEM_FILE) [--reason TEXT]\n"
     "  Refuses a device from its next handshake on, also after restarts. --issuer is\n"
     "  the manufacturer certificate's issuer as `openssl x509 -issuer -nameopt RFC2253`\n"
     "  prints it; --cert blocks the public key of a device certificate file.\n"},
    {"unblock", NULL, CONNECTION, "ENTRY_ID", command_unblock,
     "dpsctl unblock ENTRY_ID\n"
     "  Lifts a block (ENTRY_ID from `dpsctl blocklist list`).\n"},
    {"blocklist", "list", CONNECTION | BIT(OPT_DATA), NULL, command_blocklist_list,
     "dpsctl blocklist list [--data DIR]\n"},
    {"issuance", "list",
     CONNECTION | BIT(OPT_DEVICE) | BIT(OPT_SERIAL) | BIT(OPT_SINCE) | BIT(OPT_UNTIL) |
         BIT(OPT_DATA) | BIT(OPT_OWNER),
     NULL, command_issuance_list,
     "dpsctl issuance list [--device DEVICE_ID] [--serial HEX] [--since TIME] [--until TIME]\n"
     "                     [--data DIR [--owner OWNER]]\n"
     "  The identity certificates issued; TIME is YYYY-MM-DDTHH:MM:SSZ.\n"},
    {"bindings", "list", CONNECTION | BIT(OPT_DEVICE) | BIT(OPT_DATA) | BIT(OPT_OWNER), NULL,
     command_bindings_list,
     "dpsctl bindings list [--device DEVICE_ID] [--data DIR [--owner OWNER]]\n"
     "  Which provisioning record each device id is bound to, per owner.\n"},
    {"bindings", "release", CONNECTION, "DEVICE_ID", command_bindings_release,
     "dpsctl bindings release DEVICE_ID\n"
     "  Frees a device id, so another manufacturer identity may claim it, and lets the\n"
     "  identity that held it bind one device id again.\n"},
    {"pki", NULL, BIT(OPT_DEVICES), "DIR", command_pki,
     "dpsctl pki DIR [--devices N]\n"
     "  Creates the demo PKI in DIR (manufacturer, DPS server, hub and token keys,\n"
     "  N device certificates, default 10). Existing files are kept.\n"},
    {"token", NULL, BIT(OPT_KEY) | BIT(OPT_OWNER) | BIT(OPT_EXPIRES_IN), NULL, command_token,
     "dpsctl token --key FILE --owner OWNER [--expires-in SECONDS]\n"
     "  Prints an operator token for the management API signed with FILE (the demo\n"
     "  PKI's operator.key), for OWNER, valid SECONDS (default one year; negative\n"
     "  gives an expired token).\n"},
};
#define COMMAND_COUNT (sizeof(COMMANDS) / sizeof(*COMMANDS))

static const struct command *find_command(const char *noun, const char *verb);

static const char HELP_TRAILER[] =
    "\nConnection (every command but pki, token and --data lists):\n"
    "  --api URL          the management API (env DPS_API; default " DEFAULT_API_URL ")\n"
    "  --token-file FILE  the operator token (env DPS_TOKEN holds one, DPS_TOKEN_FILE names\n"
    "                     a file; `dpsd --demo DIR` writes DIR/pki/operator.token)\n"
    "  --cacert FILE      CA certificates for an https API (env DPS_CACERT)\n"
    "  --json             the server's JSON: lists as one {\"result\": ...} line per item\n"
    "  --data DIR         list commands: read dpsd's dataDir directly (works while it is down);\n"
    "                     every owner's records, issuance and bindings, or --owner OWNER's\n"
    "A noun alone lists (`dpsctl groups` = `dpsctl groups list`).\n"
    "\nExit status:\n"
    "  0  success\n"
    "  1  the server refused or failed the request (its message says what to fix)\n"
    "  2  usage error\n"
    "  3  not found (no such group, hub, record, blocklist entry or binding)\n"
    "  4  authentication failed (missing, expired or wrongly signed token)\n"
    "  5  the API cannot be reached (wrong --api URL, dpsd down, TLS trust)\n";

static void print_help(FILE *out)
{
    fputs("dpsctl: operator tool for the provisioning appliance\n\n", out);
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        fputs(COMMANDS[i].usage, out);
    fputs(HELP_TRAILER, out);
}

static void print_command_help(const struct command *command, FILE *out)
{
    fprintf(out, "usage: %s", command->usage);
    if ((command->allowed & BIT(OPT_API)) != 0)
        fputs(
            "  Connection: --api URL, --token-file FILE, --cacert FILE, --json (dpsctl --help).\n",
            out);
}

static int usage_error(const struct command *command, const char *name, const char *message,
                       const char *detail)
{
    fprintf(stderr, "dpsctl %s: %s%s%s\n", name, message, detail != NULL ? ": " : "",
            detail != NULL ? detail : "");
    if (command != NULL)
        print_command_help(command, stderr);
    else
        fputs("Run `dpsctl --help` for the commands.\n", stderr);
    return EXIT_USAGE;
}

/* ---- small helpers ---- */

/* Normalises a UUID argument to the lower-case form the store's keys use. */
static bool parse_uuid_argument(const char *text, char out[UUID_STRING_LENGTH + 1])
{
    struct dps_uuid uuid;

    if (uuid_parse(text, strlen(text), &uuid) != 0)
        return false;
    uuid_format(&uuid, out);
    return true;
}

static bool parse_unsigned(const char *text, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long value;

    errno = 0;
    value = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value > max)
        return false;
    *out = value;
    return true;
}

static bool is_hex(const char *text, size_t length)
{
    if (length == 0 || strlen(text) != length)
        return false;
    for (size_t i = 0; i < length; i++) {
        char c = text[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

/* A certificate serial as the API takes it: 1 to 40 hex digits (20 bytes, RFC 5280). */
static bool is_serial(const char *text)
{
    return strlen(text) <= SERIAL_MAX_DIGITS && is_hex(text, strlen(text));
}

/* Reads a whole text file (malloc'd), or NULL with the reason in err. */
static char *read_text_file(const char *path, char *err, size_t err_length)
{
    FILE *file = fopen(path, "rb");
    char *text;
    size_t length;

    if (file == NULL) {
        snprintf(err, err_length, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    text = malloc(FILE_LIMIT + 1);
    length = text != NULL ? fread(text, 1, FILE_LIMIT + 1, file) : 0;
    fclose(file);
    if (text == NULL || length > FILE_LIMIT) {
        snprintf(err, err_length, "%s: larger than 1 MiB", path);
        free(text);
        return NULL;
    }
    text[length] = '\0';
    return text;
}

/* A field as table text: strings as they are, numbers and booleans printed, else "-". */
static char *field_text(json_t *object, const char *key)
{
    json_t *value = json_object_get(object, key);
    char buffer[32];

    if (json_is_string(value) && json_string_value(value)[0] != '\0')
        return strdup(json_string_value(value));
    if (json_is_integer(value)) {
        snprintf(buffer, sizeof(buffer), "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        return strdup(buffer);
    }
    if (json_is_boolean(value))
        return strdup(json_is_true(value) ? "yes" : "no");
    return strdup("-");
}

/* The strings of an array joined with ",", or "-". */
static char *joined_text(json_t *array)
{
    size_t length = 1;
    size_t i;
    json_t *value;
    char *text;

    json_array_foreach(array, i, value) length += strlen(json_string_value(value) ?: "") + 1;
    if (json_array_size(array) == 0 || (text = calloc(1, length)) == NULL)
        return strdup("-");
    json_array_foreach(array, i, value)
    {
        if (i > 0)
            strcat(text, ",");
        strcat(text, json_string_value(value) ?: "");
    }
    return text;
}

/* ---- tables ---- */

/*
 * A view turns one result object into the cells of a table row. Lists are
 * collected and printed with each column as wide as its widest cell;
 * `records tail` prints a row per step as it comes, with the minimum widths.
 */
#define MAX_COLUMNS 12

struct view {
    size_t columns;
    const char *headers[MAX_COLUMNS];
    int min_widths[MAX_COLUMNS];
    void (*cells)(json_t *object, char **cells);
};

struct table {
    const struct view *view;
    char **cells; /* rows * view->columns */
    size_t rows;
    size_t capacity;
};

static void table_add(struct table *table, json_t *object)
{
    size_t columns = table->view->columns;

    if (table->rows == table->capacity) {
        size_t capacity = table->capacity > 0 ? table->capacity * 2 : 64;
        char **grown = realloc(table->cells, capacity * columns * sizeof(*grown));
        if (grown == NULL)
            return;
        table->cells = grown;
        table->capacity = capacity;
    }
    table->view->cells(object, table->cells + table->rows * columns);
    table->rows++;
}

static void print_row(const struct view *view, char *const *cells, const size_t *widths)
{
    for (size_t column = 0; column < view->columns; column++) {
        const char *text = cells[column] != NULL ? cells[column] : "-";
        if (column + 1 < view->columns)
            printf("%-*s  ", (int)widths[column], text);
        else
            printf("%s\n", text);
    }
}

static void table_free(struct table *table)
{
    for (size_t i = 0; table->view != NULL && i < table->rows * table->view->columns; i++)
        free(table->cells[i]);
    free(table->cells);
    table->cells = NULL;
    table->rows = table->capacity = 0;
}

static void table_print(struct table *table)
{
    const struct view *view = table->view;
    size_t widths[MAX_COLUMNS];

    for (size_t column = 0; column < view->columns; column++) {
        widths[column] = strlen(view->headers[column]);
        for (size_t row = 0; row < table->rows; row++) {
            const char *text = table->cells[row * view->columns + column];
            size_t length = strlen(text != NULL ? text : "-");
            if (length > widths[column])
                widths[column] = length;
        }
    }
    print_row(view, (char *const *)view->headers, widths);
    for (size_t row = 0; row < table->rows; row++)
        print_row(view, table->cells + row * view->columns, widths);
    table_free(table);
}

/* Where results go: a table, or --json lines. */
struct sink {
    struct table table;
    bool json;
    bool quiet_when_empty; /* a lookup by id: no bare header when nothing matched */
    size_t count;
};

static void print_json_line(const char *key, json_t *value)
{
    json_t *wrapper = json_pack("{sO}", key, value);
    char *text = wrapper != NULL ? json_dumps(wrapper, JSON_COMPACT) : NULL;

    if (text != NULL)
        printf("%s\n", text);
    free(text);
    json_decref(wrapper);
}

static void sink_put(struct sink *sink, json_t *result)
{
    sink->count++;
    if (sink->json)
        print_json_line("result", result);
    else
        table_add(&sink->table, result);
}

static void sink_end(struct sink *sink)
{
    if (sink->json)
        return;
    if (sink->quiet_when_empty && sink->count == 0)
        table_free(&sink->table);
    else
        table_print(&sink->table);
}

/* The views. */
static const char *const RECORD_STEPS[] = {"plgdTime",   "ownership", "cloud",
                                           "credential", "acl",       "resources"};
#define RECORD_STEP_COUNT (sizeof(RECORD_STEPS) / sizeof(*RECORD_STEPS))

static char *coap_code_text(json_t *step)
{
    json_t *code = json_object_get(json_object_get(step, "status"), "coapCode");
    char text[16];

    if (!json_is_integer(code))
        return strdup("-");
    snprintf(text, sizeof(text), "%d.%02d", (int)((json_integer_value(code) >> 5) & 7),
             (int)(json_integer_value(code) & 31));
    return strdup(text);
}

static void record_cells(json_t *record, char **cells)
{
    cells[0] = field_text(record, "id");
    cells[1] = field_text(record, "deviceId");
    cells[2] = field_text(record, "enrollmentGroupId");
    for (size_t i = 0; i < RECORD_STEP_COUNT; i++)
        cells[3 + i] = coap_code_text(json_object_get(record, RECORD_STEPS[i]));
}

static const struct view RECORD_VIEW = {
    9,
    {"RECORD ID", "DEVICE ID", "GROUP", "PLGDTIME", "OWNERSHIP", "CLOUD", "CREDENTIAL", "ACL",
     "RESOURCES"},
    {36, 36, 36, 8, 9, 5, 10, 4, 9},
    record_cells,
};

static void issuance_cells(json_t *entry, char **cells)
{
    cells[0] = field_text(entry, "serial");
    cells[1] = field_text(entry, "deviceId");
    cells[2] = field_text(entry, "recordId");
    cells[3] = field_text(entry, "issuedAt");
    cells[4] = field_text(entry, "notAfter");
}

static const struct view ISSUANCE_VIEW = {
    5, {"SERIAL", "DEVICE ID", "RECORD ID", "ISSUED AT", "NOT AFTER"}, {0}, issuance_cells};

static void binding_cells(json_t *binding, char **cells)
{
    cells[0] = field_text(binding, "deviceId");
    cells[1] = field_text(binding, "recordId");
    cells[2] = field_text(binding, "owner");
}

static const struct view BINDING_VIEW = {
    3, {"DEVICE ID", "RECORD ID", "OWNER"}, {0}, binding_cells};

static void group_cells(json_t *group, char **cells)
{
    json_t *x509 = json_object_get(json_object_get(group, "attestationMechanism"), "x509");

    cells[0] = field_text(group, "id");
    cells[1] = field_text(group, "name");
    cells[2] = joined_text(json_object_get(group, "hubIds"));
    cells[3] = field_text(x509, "leadCertificateName");
    cells[4] =
        strdup(json_is_true(json_object_get(x509, "expiredCertificateEnabled")) ? "yes" : "no");
    cells[5] = strdup(json_string_length(json_object_get(group, "preSharedKey")) > 0 ? "set" : "-");
}

static const struct view GROUP_VIEW = {
    6, {"ID", "NAME", "HUBS", "LEAD CERTIFICATE", "EXPIRED OK", "PSK"}, {0}, group_cells};

static void hub_cells(json_t *hub, char **cells)
{
    json_t *authorization = json_object_get(hub, "authorization");

    cells[0] = field_text(hub, "id");
    cells[1] = field_text(hub, "name");
    cells[2] = field_text(json_object_get(authorization, "provider"), "name");
    cells[3] = field_text(json_object_get(hub, "token"), "issuer");
    cells[4] = joined_text(json_object_get(hub, "gateways"));
}

static const struct view HUB_VIEW = {
    5, {"ID", "NAME", "PROVIDER", "TOKEN ISSUER", "GATEWAYS"}, {0}, hub_cells};

static void block_cells(json_t *entry, char **cells)
{
    const char *device = json_string_value(json_object_get(entry, "deviceId"));
    const char *key = json_string_value(json_object_get(entry, "publicKeySha256"));
    const char *serial = json_string_value(json_object_get(entry, "serial"));
    const char *issuer = json_string_value(json_object_get(entry, "issuer"));
    char *match = NULL;

    cells[0] = field_text(entry, "id");
    if (device != NULL)
        match = strdup(device);
    else if (key != NULL)
        match = strdup(key);
    else if (serial != NULL && asprintf(&match, "%s %s", serial, issuer ?: "-") < 0)
        match = NULL;
    cells[1] = strdup(device != NULL ? "device" : key != NULL ? "public key" : "serial+issuer");
    cells[2] = match != NULL ? match : strdup("-");
    cells[3] = field_text(entry, "reason");
    cells[4] = field_text(entry, "createdAt");
}

static const struct view BLOCK_VIEW = {
    5, {"ENTRY ID", "BLOCKS", "MATCH", "REASON", "CREATED AT"}, {0}, block_cells};

/* ---- the API client ---- */

struct client {
    const char *name; /* the command, for messages */
    char url[1024];   /* without a trailing slash */
    const char *url_source;
    char *token;
    char token_source[PATH_MAX + 64];
    const char *cacert;
    CURL *curl;
};

/* One HTTP exchange: the status and either the body or, for a 200 list, each result line. */
struct exchange {
    CURL *curl;
    long status;
    char *body;
    size_t length;
    bool (*on_result)(void *user, json_t *result);
    void *user;
    char *line;
    size_t line_length;
    json_t *stream_error; /* an {"error": ...} line, or a line that is not a result */
    bool stopped;
};

static char *environment(const char *name)
{
    char *value = getenv(name);
    return value != NULL && value[0] != '\0' ? value : NULL;
}

/* Trims surrounding whitespace in place. */
static char *trim(char *text)
{
    size_t length = strlen(text);

    while (length > 0 && strchr(" \t\r\n", text[length - 1]) != NULL)
        text[--length] = '\0';
    while (*text != '\0' && strchr(" \t\r\n", *text) != NULL)
        text++;
    return text;
}

static void client_close(struct client *client)
{
    if (client->curl != NULL)
        curl_easy_cleanup(client->curl);
    if (client->token != NULL) {
        explicit_bzero(client->token, strlen(client->token));
        free(client->token);
    }
}

/* Reads the connection settings. EXIT_OK, or the exit code after saying what is wrong. */
static int client_open(struct client *client, const struct options *options)
{
    const char *url = options->value[OPT_API];
    const char *token_file = options->value[OPT_TOKEN_FILE];
    char err[PATH_MAX + 128];
    size_t length;

    memset(client, 0, sizeof(*client));
    client->name = options->name;
    client->url_source = "--api";
    if (url == NULL && (url = environment("DPS_API")) != NULL)
        client->url_source = "DPS_API";
    if (url == NULL) {
        url = DEFAULT_API_URL;
        client->url_source = "the default";
    }
    length = strlen(url);
    while (length > 0 && url[length - 1] == '/')
        length--;
    if ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
        length >= sizeof(client->url)) {
        fprintf(stderr,
                "dpsctl %s: the API URL \"%s\" (from %s) must start with http:// or https://, "
                "for example " DEFAULT_API_URL "\n",
                client->name, url, client->url_source);
        return EXIT_USAGE;
    }
    memcpy(client->url, url, length);
    client->url[length] = '\0';
    client->cacert = options->value[OPT_CACERT] ?: environment("DPS_CACERT");

    if (token_file != NULL) {
        snprintf(client->token_source, sizeof(client->token_source), "--token-file %s", token_file);
    } else if (environment("DPS_TOKEN") != NULL) {
        snprintf(client->token_source, sizeof(client->token_source), "DPS_TOKEN");
        client->token = strdup(trim(environment("DPS_TOKEN")));
    } else if ((token_file = environment("DPS_TOKEN_FILE")) != NULL) {
        snprintf(client->token_source, sizeof(client->token_source), "DPS_TOKEN_FILE=%s",
                 token_file);
    } else {
        fprintf(stderr,
                "dpsctl %s: no operator token: pass --token-file FILE or set DPS_TOKEN_FILE=FILE "
                "or DPS_TOKEN (`dpsd --demo DIR` writes DIR/pki/operator.token; `dpsctl token "
                "--key operator.key --owner OWNER` signs one)\n",
                client->name);
        return EXIT_AUTH;
    }
    if (token_file != NULL) {
        char *text = read_text_file(token_file, err, sizeof(err));
        if (text == NULL) {
            fprintf(stderr, "dpsctl %s: the token file (%s): %s\n", client->name,
                    client->token_source, err);
            return EXIT_USAGE;
        }
        client->token = strdup(trim(text));
        explicit_bzero(text, strlen(text));
        free(text);
    }
    if (client->token == NULL || (client->curl = curl_easy_init()) == NULL) {
        fprintf(stderr, "dpsctl %s: out of memory\n", client->name);
        return EXIT_REFUSED;
    }
    if (client->token[0] == '\0') {
        fprintf(stderr, "dpsctl %s: the token from %s is empty\n", client->name,
                client->token_source);
        return EXIT_AUTH;
    }
    /* Sent whole in a header line: nothing but a JWT's characters may go there. */
    if (strspn(client->token,
               "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") !=
        strlen(client->token)) {
        fprintf(stderr,
                "dpsctl %s: the token from %s is not a JWT (only base64url letters and dots, "
                "on one line)\n",
                client->name, client->token_source);
        return EXIT_AUTH;
    }
    return EXIT_OK;
}

static bool append(char **buffer, size_t *length, const char *data, size_t size)
{
    char *grown = realloc(*buffer, *length + size + 1);

    if (grown == NULL)
        return false;
    memcpy(grown + *length, data, size);
    *length += size;
    grown[*length] = '\0';
    *buffer = grown;
    return true;
}

/* One complete NDJSON line of a list. */
static void exchange_line(struct exchange *exchange, const char *text, size_t length)
{
    json_t *line;
    json_t *result;

    if (length == 0 || exchange->stream_error != NULL || exchange->stopped)
        return;
    line = json_loadb(text, length, 0, NULL);
    result = json_object_get(line, "result");
    if (result != NULL) {
        if (!exchange->on_result(exchange->user, result))
            exchange->stopped = true;
    } else if (json_is_object(json_object_get(line, "error"))) {
        exchange->stream_error = json_incref(json_object_get(line, "error"));
    } else {
        exchange->stream_error = json_pack("{s:s%}", "message", text, length);
    }
    json_decref(line);
}

static size_t exchange_write(char *data, size_t size, size_t count, void *user)
{
    struct exchange *exchange = user;
    size_t total = size * count;
    long status = 0;

    curl_easy_getinfo(exchange->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200 || exchange->on_result == NULL) {
        if (exchange->length < ERROR_BODY_LIMIT &&
            !append(&exchange->body, &exchange->length, data, total))
            return 0;
        return total;
    }
    if (!append(&exchange->line, &exchange->line_length, data, total))
        return 0;
    char *start = exchange->line;
    char *newline;
    while ((newline = memchr(start, '\n',
                             exchange->line_length - (size_t)(start - exchange->line))) != NULL) {
        exchange_line(exchange, start, (size_t)(newline - start));
        start = newline + 1;
    }
    exchange->line_length -= (size_t)(start - exchange->line);
    memmove(exchange->line, start, exchange->line_length + 1);
    return exchange->stopped ? 0 : total; /* a stopped list needs no more */
}

/* The "message" of an error body, or its first line. */
static const char *error_message(json_t *parsed, const char *body, char *buffer, size_t length)
{
    const char *message = json_string_value(json_object_get(parsed, "message"));

    if (message != NULL)
        return message;
    if (body == NULL || body[0] == '\0')
        return "(no message)";
    snprintf(buffer, length, "%.*s", (int)strcspn(body, "\r\n"), body);
    return buffer;
}

/* The dpsctl option that sets the field an API message names first ("field: problem"). */
static const char *field_hint(const char *message)
{
    static const struct {
        const char *field;
        const char *hint;
    } hints[] = {
        {"attestationMechanism.x509.certificateChain",
         "--chain FILE must hold the manufacturer's CA certificates in PEM"},
        {"attestationMechanism.x509.leadCertificateName",
         "--lead-name must be the common name of a certificate in --chain"},
        {"attestationMechanism", "--chain FILE must hold the manufacturer's CA chain in PEM"},
        {"hubIds", "--hub must name an existing hub of yours (see `dpsctl hubs list`)"},
        {"preSharedKey", "--psk must be exactly 16 bytes (a character outside ASCII takes 2 to 4)"},
        {"hubId", "--hub-id must be a UUID"},
        {"gateways", "--gateway must be coaps+tcp://HOST:PORT"},
        {"authorization.provider", "--provider must name the hub's authorization provider"},
        {"authorization.ownerClaim", "check --owner-claim"},
        {"authorization.deviceIdClaim", "check --device-id-claim"},
        {"identityCertificate.keyName",
         "--identity-key must name a key with a certificate registered for your owner"},
        {"identityCertificate", "check --identity-key"},
        {"token.keyName", "--token-key must name a key registered for your owner"},
        {"token.issuer", "check --token-issuer"},
        {"token", "check --token-key and --token-issuer"},
        {"requests", "wait and retry: the owner's request rate is limited"},
        {"name", "check --name"},
        {"deviceIdFilter", "--device must be a UUID"},
        {"deviceId", "--device must be a device id (a UUID)"},
        {"publicKeySha256", "--public-key-sha256 must be 64 hex digits"},
        {"serialFilter", "--serial must be 1 to 40 hex digits"},
        {"serial", "--serial must be 1 to 40 hex digits"},
        {"issuer", "--issuer must be the issuer DN in RFC 2253 form, at most 256 bytes"},
        {"reason", "--reason must be text of at most 256 bytes"},
        {"since", "--since must be YYYY-MM-DDTHH:MM:SSZ"},
        {"until", "--until must be YYYY-MM-DDTHH:MM:SSZ"},
        {"enrollmentGroupIdFilter", "--group must be a UUID"},
        {"idFilter", "the id must be a UUID"},
        {"id", "the id must be a UUID"},
    };
    size_t field_length = strcspn(message, ": ");

    for (size_t i = 0; i < sizeof(hints) / sizeof(*hints); i++) {
        size_t length = strlen(hints[i].field);
        if (length <= field_length && strncmp(message, hints[i].field, length) == 0 &&
            (length == field_length || message[length] == '.' || message[length] == '['))
            return hints[i].hint;
    }
    return NULL;
}

/* Says why the request failed and what to do; returns the exit code. */
static int report_failure(const struct client *client, const struct exchange *exchange)
{
    char buffer[512];
    json_t *parsed = exchange->body != NULL ? json_loads(exchange->body, 0, NULL) : NULL;
    const char *message = exchange->stream_error != NULL
                              ? error_message(exchange->stream_error, NULL, buffer, sizeof(buffer))
                              : error_message(parsed, exchange->body, buffer, sizeof(buffer));
    const char *hint = field_hint(message);
    int code;

    if (exchange->status == 401 || exchange->status == 403) {
        fprintf(stderr, "dpsctl %s: %s (HTTP %ld): %s\n", client->name,
                exchange->status == 401 ? "authentication failed" : "permission denied",
                exchange->status, message);
        fprintf(stderr,
                "dpsctl %s: the token came from %s; use one signed by a key in the API's jwks "
                "for your owner: `dpsctl token --key operator.key --owner OWNER`, or the demo's "
                "DIR/pki/operator.token, with --token-file FILE or DPS_TOKEN_FILE\n",
                client->name, client->token_source);
        code = EXIT_AUTH;
    } else if (exchange->status == 404) {
        fprintf(stderr, "dpsctl %s: not found: %s\n", client->name, message);
        if (strncmp(message, "no route", 8) == 0)
            fprintf(stderr, "dpsctl %s: is %s (from %s) the management API of a current dpsd?\n",
                    client->name, client->url, client->url_source);
        code = EXIT_NOT_FOUND;
    } else if (exchange->status >= 500 || exchange->stream_error != NULL) {
        fprintf(stderr, "dpsctl %s: the server failed (HTTP %ld): %s\n", client->name,
                exchange->status, message);
        fprintf(stderr, "dpsctl %s: dpsd's log says more; retry once it is resolved\n",
                client->name);
        code = EXIT_REFUSED;
    } else {
        fprintf(stderr, "dpsctl %s: the server refused the request (HTTP %ld): %s\n", client->name,
                exchange->status, message);
        if (hint != NULL)
            fprintf(stderr, "dpsctl %s: fix: %s\n", client->name, hint);
        code = EXIT_REFUSED;
    }
    json_decref(parsed);
    return code;
}

static int report_transport(const struct client *client, CURLcode result, const char *detail)
{
    const char *problem = detail[0] != '\0' ? detail : curl_easy_strerror(result);

    fprintf(stderr, "dpsctl %s: cannot reach the management API at %s (from %s): %s\n",
            client->name, client->url, client->url_source, problem);
    if (result == CURLE_PEER_FAILED_VERIFICATION || result == CURLE_SSL_CACERT_BADFILE)
        fprintf(stderr,
                "dpsctl %s: the server's certificate is not trusted: pass the CA that signed "
                "api.certificate with --cacert FILE (or DPS_CACERT)\n",
                client->name);
    else if (result == CURLE_SSL_CONNECT_ERROR)
        fprintf(stderr,
                "dpsctl %s: the TLS handshake failed: use http:// when api.certificate is not "
                "set, and check --cacert\n",
                client->name);
    else
        fprintf(stderr,
                "dpsctl %s: check that dpsd runs with an api section and point dpsctl at its "
                "api.listen address with --api URL or DPS_API=URL (default " DEFAULT_API_URL ")\n",
                client->name);
    return EXIT_UNREACHABLE;
}

/*
 * Sends METHOD path (with its query) and a JSON body. A 2xx answer returns
 * EXIT_OK, its body in exchange->body or, when on_result is set, each result
 * handed to it; anything else is reported and its exit code returned.
 */
static int client_call(struct client *client, const char *method, const char *path, json_t *body,
                       struct exchange *exchange)
{
    char *url = NULL;
    char *authorization = NULL;
    char detail[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = NULL;
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    CURL *curl = client->curl;
    CURLcode result;
    int code = EXIT_OK;

    if ((body != NULL && text == NULL) || asprintf(&url, "%s%s", client->url, path) < 0 ||
        asprintf(&authorization, "Authorization: Bearer %s", client->token) < 0) {
        fprintf(stderr, "dpsctl %s: out of memory\n", client->name);
        free(url);
        free(text);
        return EXIT_REFUSED;
    }
    headers = curl_slist_append(headers, authorization);
    headers = curl_slist_append(headers, "Accept: application/json, application/x-ndjson");
    if (text != NULL)
        headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, detail);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, STALL_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    if (client->cacert != NULL)
        curl_easy_setopt(curl, CURLOPT_CAINFO, client->cacert);
    if (text != NULL) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
    }
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, exchange_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, exchange);
    exchange->curl = curl;
    result = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &exchange->status);
    if (result == CURLE_WRITE_ERROR && exchange->stopped)
        result = CURLE_OK;
    if (result == CURLE_OK && exchange->on_result != NULL && exchange->status == 200 &&
        exchange->line_length > 0)
        exchange_line(exchange, exchange->line, exchange->line_length);
    if (result != CURLE_OK && exchange->status == 0)
        code = report_transport(client, result, detail);
    else if (result != CURLE_OK) {
        fprintf(stderr, "dpsctl %s: the answer from %s broke off: %s\n", client->name, client->url,
                detail[0] != '\0' ? detail : curl_easy_strerror(result));
        code = EXIT_REFUSED;
    } else if (exchange->status < 200 || exchange->status > 299 || exchange->stream_error != NULL)
        code = report_failure(client, exchange);
    curl_slist_free_all(headers);
    explicit_bzero(authorization, strlen(authorization));
    free(authorization);
    free(url);
    free(text);
    return code;
}

static void exchange_clear(struct exchange *exchange)
{
    free(exchange->body);
    free(exchange->line);
    json_decref(exchange->stream_error);
    memset(exchange, 0, sizeof(*exchange));
}

/*
 * Appends "&name=value" (the first one "?name=value"), value escaped. False
 * when it does not fit in path (left as it was): a filter is never cut.
 */
static bool query_add(CURL *curl, char *path, size_t length, const char *name, const char *value)
{
    size_t used = strlen(path);
    char *escaped;
    int written;

    if (value == NULL)
        return true;
    if ((escaped = curl_easy_escape(curl, value, 0)) == NULL)
        return false;
    written = snprintf(path + used, length - used, "%c%s=%s", strchr(path, '?') != NULL ? '&' : '?',
                       name, escaped);
    curl_free(escaped);
    if (written < 0 || (size_t)written >= length - used) {
        path[used] = '\0';
        return false;
    }
    return true;
}

static bool sink_result(void *user, json_t *result)
{
    sink_put(user, result);
    return true;
}

/* GETs a list into a sink. */
static int client_list(struct client *client, const char *path, struct sink *sink)
{
    struct exchange exchange = {.on_result = sink_result, .user = sink};
    int code = client_call(client, "GET", path, NULL, &exchange);

    exchange_clear(&exchange);
    if (code == EXIT_OK)
        sink_end(sink);
    else
        table_free(&sink->table);
    return code;
}

/* A single JSON document answer (new reference), or NULL with *code set. */
static json_t *client_document(struct client *client, const char *method, const char *path,
                               json_t *body, int *code)
{
    struct exchange exchange = {0};
    json_t *document = NULL;

    *code = client_call(client, method, path, body, &exchange);
    if (*code == EXIT_OK) {
        document = json_loadb(exchange.body != NULL ? exchange.body : "", exchange.length, 0, NULL);
        if (document == NULL) {
            fprintf(stderr, "dpsctl %s: the answer from %s is not JSON\n", client->name,
                    client->url);
            *code = EXIT_REFUSED;
        }
    }
    exchange_clear(&exchange);
    return document;
}

/* Runs a command that needs the API: opens the client, runs fn, closes. */
static int with_client(struct options *options, int (*fn)(struct client *, struct options *))
{
    struct client client;
    int code = client_open(&client, options);

    if (code == EXIT_OK)
        code = fn(&client, options);
    client_close(&client);
    return code;
}

/* ---- status ---- */

static int status_run(struct client *client, struct options *options)
{
    int code;
    json_t *status = client_document(client, "GET", "/api/v1/status", NULL, &code);
    const char *key;
    json_t *value;
    size_t width = strlen("api");

    if (status == NULL)
        return code;
    if (options->given[OPT_JSON]) {
        char *text = json_dumps(status, JSON_COMPACT);
        if (text != NULL)
            printf("%s\n", text);
        free(text);
        json_decref(status);
        return EXIT_OK;
    }
    json_object_foreach(status, key, value) width = strlen(key) > width ? strlen(key) : width;
    printf("%-*s  %s\n", (int)width, "api", client->url);
    json_object_foreach(status, key, value)
    {
        char *text = json_is_string(value) || json_is_integer(value) || json_is_boolean(value)
                         ? field_text(status, key)
                         : json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        printf("%-*s  %s\n", (int)width, key, text != NULL ? text : "-");
        free(text);
    }
    json_decref(status);
    return EXIT_OK;
}

static int command_status(struct options *options)
{
    return with_client(options, status_run);
}

/* ---- enrollment groups and hubs ---- */

struct collection {
    const char *path; /* /api/v1/... */
    const char *kind; /* for messages */
    const struct view *view;
};

static const struct collection GROUPS = {"/api/v1/enrollment-groups", "enrollment group",
                                         &GROUP_VIEW};
static const struct collection HUBS = {"/api/v1/hubs", "hub", &HUB_VIEW};

/* A request whose path would not fit: refused rather than sent with a filter cut off. */
static int request_too_long(const struct options *options)
{
    fprintf(stderr, "dpsctl %s: the filters make the request longer than dpsctl sends\n",
            options->name);
    return EXIT_USAGE;
}

static int check_uuid_option(const struct options *options, enum option_id id, const char *flag,
                             char out[UUID_STRING_LENGTH + 1])
{
    if (options->value[id] == NULL) {
        out[0] = '\0';
        return EXIT_OK;
    }
    if (!parse_uuid_argument(options->value[id], out)) {
        fprintf(stderr, "dpsctl %s: %s \"%s\" is not a UUID\n", options->name, flag,
                options->value[id]);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static int list_collection(struct client *client, struct options *options,
                           const struct collection *collection)
{
    char id[UUID_STRING_LENGTH + 1];
    char path[512];
    struct sink sink = {.table = {.view = collection->view},
                        .json = options->given[OPT_JSON],
                        .quiet_when_empty = options->value[OPT_ID] != NULL};
    int code = check_uuid_option(options, OPT_ID, "--id", id);

    if (code != EXIT_OK)
        return code;
    snprintf(path, sizeof(path), "%s", collection->path);
    if (id[0] != '\0' && !query_add(client->curl, path, sizeof(path), "idFilter", id))
        return request_too_long(options);
    code = client_list(client, path, &sink);
    if (code == EXIT_OK && id[0] != '\0' && sink.count == 0) {
        fprintf(stderr, "dpsctl %s: no %s %s (among the token owner's)\n", options->name,
                collection->kind, id);
        return EXIT_NOT_FOUND;
    }
    return code;
}

static int groups_list_run(struct client *client, struct options *options)
{
    return list_collection(client, options, &GROUPS);
}

static int command_groups_list(struct options *options)
{
    return with_client(options, groups_list_run);
}

static int hubs_list_run(struct client *client, struct options *options)
{
    return list_collection(client, options, &HUBS);
}

static int command_hubs_list(struct options *options)
{
    return with_client(options, hubs_list_run);
}

/* Sets doc[path...] = value (consumed), creating the objects on the way. */
static void set_path(json_t *doc, const char *const *path, size_t depth, json_t *value)
{
    for (size_t i = 0; i + 1 < depth; i++) {
        json_t *next = json_object_get(doc, path[i]);
        if (!json_is_object(next)) {
            next = json_object();
            json_object_set_new(doc, path[i], next);
        }
        doc = next;
    }
    json_object_set_new(doc, path[depth - 1], value);
}

/*
 * Options that go into a JSON document must be UTF-8 text: JSON has no other
 * strings, and a value that does not convert must stop the command rather
 * than leave the field out. The JSON string, or NULL after saying so.
 */
static json_t *option_text(const struct options *options, const char *flag, const char *value)
{
    json_t *text = json_string(value);

    if (text == NULL)
        fprintf(stderr, "dpsctl %s: %s must be UTF-8 text\n", options->name, flag);
    return text;
}

/* Sets doc[path...] to the option's text; false (said) when it is not text. */
static bool set_option(const struct options *options, enum option_id id, json_t *doc,
                       const char *const *path, size_t depth)
{
    char flag[40];
    json_t *text;

    if (options->value[id] == NULL)
        return true;
    snprintf(flag, sizeof(flag), "--%s", LONG_OPTIONS[id].name);
    if ((text = option_text(options, flag, options->value[id])) == NULL)
        return false;
    set_path(doc, path, depth, text);
    return true;
}

/* A repeated option's values as a JSON array, or NULL (said) when one is not text. */
static json_t *option_array(const struct options *options, const char *flag, const char **values,
                            size_t count)
{
    json_t *array = json_array();

    for (size_t i = 0; array != NULL && i < count; i++) {
        json_t *text = option_text(options, flag, values[i]);
        if (text == NULL || json_array_append_new(array, text) != 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

/* Fills the group fields given on the command line into doc. EXIT_OK or EXIT_USAGE. */
static int apply_group_options(const struct options *options, json_t *doc)
{
    static const char *const name_path[] = {"name"};
    static const char *const chain_path[] = {"attestationMechanism", "x509", "certificateChain"};
    static const char *const lead_path[] = {"attestationMechanism", "x509", "leadCertificateName"};
    static const char *const expired_path[] = {"attestationMechanism", "x509",
                                               "expiredCertificateEnabled"};
    static const char *const psk_path[] = {"preSharedKey"};
    char err[PATH_MAX + 64];

    if (!set_option(options, OPT_NAME, doc, name_path, 1))
        return EXIT_USAGE;
    if (options->value[OPT_CHAIN] != NULL) {
        char *chain = read_text_file(options->value[OPT_CHAIN], err, sizeof(err));
        if (chain == NULL) {
            fprintf(stderr, "dpsctl %s: --chain: %s\n", options->name, err);
            return EXIT_USAGE;
        }
        json_t *text = json_string(chain);
        free(chain);
        if (text == NULL) {
            fprintf(stderr, "dpsctl %s: --chain: %s is not UTF-8 text (a PEM file is)\n",
                    options->name, options->value[OPT_CHAIN]);
            return EXIT_USAGE;
        }
        set_path(doc, chain_path, 3, text);
    }
    if (!set_option(options, OPT_LEAD_NAME, doc, lead_path, 3))
        return EXIT_USAGE;
    if (options->given[OPT_EXPIRED_OK]) {
        const char *value = options->value[OPT_EXPIRED_OK];
        bool enabled = value == NULL || strcmp(value, "yes") == 0;
        if (value != NULL && strcmp(value, "yes") != 0 && strcmp(value, "no") != 0) {
            fprintf(stderr, "dpsctl %s: --expired-ok takes =yes or =no, not \"%s\"\n",
                    options->name, value);
            return EXIT_USAGE;
        }
        set_path(doc, expired_path, 3, json_boolean(enabled));
    }
    if (options->hub_count > 0) {
        json_t *hubs = option_array(options, "--hub", options->hubs, options->hub_count);
        if (hubs == NULL)
            return EXIT_USAGE;
        json_object_set_new(doc, "hubIds", hubs);
    }
    if (options->value[OPT_PSK] != NULL && options->value[OPT_PSK][0] == '\0')
        json_object_del(doc, "preSharedKey");
    else if (!set_option(options, OPT_PSK, doc, psk_path, 1))
        return EXIT_USAGE;
    return EXIT_OK;
}

static int apply_hub_options(const struct options *options, json_t *doc)
{
    static const char *const name_path[] = {"name"};
    static const char *const provider_path[] = {"authorization", "provider", "name"};
    static const char *const owner_claim_path[] = {"authorization", "ownerClaim"};
    static const char *const device_claim_path[] = {"authorization", "deviceIdClaim"};
    static const char *const identity_key_path[] = {"identityCertificate", "keyName"};
    static const char *const token_key_path[] = {"token", "keyName"};
    static const char *const token_issuer_path[] = {"token", "issuer"};

    if (options->value[OPT_HUB_ID] != NULL) {
        char id[UUID_STRING_LENGTH + 1];
        if (check_uuid_option(options, OPT_HUB_ID, "--hub-id", id) != EXIT_OK)
            return EXIT_USAGE;
        json_object_set_new(doc, "id", json_string(id));
        json_object_set_new(doc, "hubId", json_string(id));
    }
    if (options->gateway_count > 0) {
        json_t *gateways =
            option_array(options, "--gateway", options->gateways, options->gateway_count);
        if (gateways == NULL)
            return EXIT_USAGE;
        json_object_set_new(doc, "gateways", gateways);
    }
    if (!set_option(options, OPT_NAME, doc, name_path, 1) ||
        !set_option(options, OPT_PROVIDER, doc, provider_path, 3) ||
        !set_option(options, OPT_OWNER_CLAIM, doc, owner_claim_path, 2) ||
        !set_option(options, OPT_DEVICE_ID_CLAIM, doc, device_claim_path, 2) ||
        !set_option(options, OPT_IDENTITY_KEY, doc, identity_key_path, 2) ||
        !set_option(options, OPT_TOKEN_KEY, doc, token_key_path, 2) ||
        !set_option(options, OPT_TOKEN_ISSUER, doc, token_issuer_path, 2))
        return EXIT_USAGE;
    return EXIT_OK;
}

/* The options create requires, as "--a, --b" text of those missing; "" when none is. */
static void missing_options(const struct options *options, const enum option_id *required,
                            size_t count, char *out, size_t length)
{
    out[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        bool given = required[i] == OPT_HUB       ? options->hub_count > 0
                     : required[i] == OPT_GATEWAY ? options->gateway_count > 0
                                                  : options->value[required[i]] != NULL;
        if (!given)
            snprintf(out + strlen(out), length - strlen(out), "%s--%s", out[0] != '\0' ? ", " : "",
                     LONG_OPTIONS[required[i]].name);
    }
}

/* Keeps the first result of a list (a new reference in *(json_t **)user). */
static bool keep_first(void *user, json_t *result)
{
    json_t **first = user;

    if (*first == NULL)
        *first = json_incref(result);
    return true;
}

/* Creates (argument NULL) or changes a group or hub; prints what the node now holds. */
static int put_document(struct client *client, struct options *options,
                        const struct collection *collection,
                        int (*apply)(const struct options *, json_t *),
                        const enum option_id *required, size_t required_count)
{
    char id[UUID_STRING_LENGTH + 1] = "";
    char path[512];
    char missing[256];
    json_t *doc = NULL;
    json_t *stored;
    int code = EXIT_OK;
    bool create = options->argument == NULL;

    if (create) {
        missing_options(options, required, required_count, missing, sizeof(missing));
        if (missing[0] != '\0') {
            fprintf(stderr, "dpsctl %s: missing %s (see dpsctl %s --help)\n", options->name,
                    missing, options->name);
            return EXIT_USAGE;
        }
        if ((code = check_uuid_option(options, OPT_ID, "--id", id)) != EXIT_OK)
            return code;
        doc = json_object();
        if (id[0] != '\0')
            json_object_set_new(doc, "id", json_string(id));
        snprintf(path, sizeof(path), "%s", collection->path);
    } else {
        if (!parse_uuid_argument(options->argument, id)) {
            fprintf(stderr, "dpsctl %s: \"%s\" is not a %s id (a UUID)\n", options->name,
                    options->argument, collection->kind);
            return EXIT_USAGE;
        }
        snprintf(path, sizeof(path), "%s", collection->path);
        if (!query_add(client->curl, path, sizeof(path), "idFilter", id))
            return request_too_long(options);
        struct exchange exchange = {.on_result = keep_first, .user = &doc};
        code = client_call(client, "GET", path, NULL, &exchange);
        exchange_clear(&exchange);
        if (code == EXIT_OK && doc == NULL) {
            fprintf(stderr, "dpsctl %s: no %s %s (among the token owner's)\n", options->name,
                    collection->kind, id);
            code = EXIT_NOT_FOUND;
        }
        if (code != EXIT_OK) {
            json_decref(doc);
            return code;
        }
        snprintf(path, sizeof(path), "%s/%s", collection->path, id);
    }
    if (doc == NULL || (code = apply(options, doc)) != EXIT_OK) {
        json_decref(doc);
        return code != EXIT_OK ? code : EXIT_REFUSED;
    }
    stored = client_document(client, create ? "POST" : "PUT", path, doc, &code);
    json_decref(doc);
    if (stored == NULL)
        return code;
    if (options->given[OPT_JSON]) {
        char *text = json_dumps(stored, JSON_COMPACT);
        if (text != NULL)
            printf("%s\n", text);
        free(text);
    } else {
        struct sink sink = {.table = {.view = collection->view}};
        printf("%s %s %s\n", create ? "created" : "updated", collection->kind,
               json_string_value(json_object_get(stored, "id")) ?: "");
        sink_put(&sink, stored);
        sink_end(&sink);
    }
    json_decref(stored);
    return EXIT_OK;
}

static int groups_put_run(struct client *client, struct options *options)
{
    static const enum option_id required[] = {OPT_CHAIN, OPT_HUB};
    return put_document(client, options, &GROUPS, apply_group_options, required, 2);
}

static int command_groups_put(struct options *options)
{
    return with_client(options, groups_put_run);
}

static int hubs_put_run(struct client *client, struct options *options)
{
    static const enum option_id required[] = {OPT_HUB_ID,       OPT_GATEWAY,   OPT_PROVIDER,
                                              OPT_IDENTITY_KEY, OPT_TOKEN_KEY, OPT_TOKEN_ISSUER};
    return put_document(client, options, &HUBS, apply_hub_options, required,
                        sizeof(required) / sizeof(*required));
}

static int command_hubs_put(struct options *options)
{
    return with_client(options, hubs_put_run);
}

/* DELETE path?filter=id; a count of 0 is "not found". */
static int delete_by_filter(struct client *client, struct options *options, const char *path,
                            const char *filter, const char *id, const char *kind)
{
    char url[512];
    int code;
    json_t *answer;
    json_int_t count;

    snprintf(url, sizeof(url), "%s", path);
    if (!query_add(client->curl, url, sizeof(url), filter, id))
        return request_too_long(options);
    answer = client_document(client, "DELETE", url, NULL, &code);
    if (answer == NULL)
        return code;
    count = json_integer_value(json_object_get(answer, "count"));
    if (options->given[OPT_JSON]) {
        char *text = json_dumps(answer, JSON_COMPACT);
        if (text != NULL)
            printf("%s\n", text);
        free(text);
    }
    json_decref(answer);
    if (count == 0) {
        fprintf(stderr, "dpsctl %s: no %s %s (among the token owner's)\n", options->name, kind, id);
        return EXIT_NOT_FOUND;
    }
    if (!options->given[OPT_JSON])
        printf("%s %s\n",
               strcmp(kind, "binding of device") == 0 ? "released"
               : strcmp(kind, "blocklist entry") == 0 ? "removed"
                                                      : "deleted",
               id);
    return EXIT_OK;
}

static int delete_collection(struct client *client, struct options *options,
                             const struct collection *collection)
{
    char id[UUID_STRING_LENGTH + 1];

    if (!parse_uuid_argument(options->argument, id)) {
        fprintf(stderr, "dpsctl %s: \"%s\" is not a %s id (a UUID)\n", options->name,
                options->argument, collection->kind);
        return EXIT_USAGE;
    }
    return delete_by_filter(client, options, collection->path, "idFilter", id, collection->kind);
}

static int groups_delete_run(struct client *client, struct options *options)
{
    return delete_collection(client, options, &GROUPS);
}

static int command_groups_delete(struct options *options)
{
    return with_client(options, groups_delete_run);
}

static int hubs_delete_run(struct client *client, struct options *options)
{
    return delete_collection(client, options, &HUBS);
}

static int command_hubs_delete(struct options *options)
{
    return with_client(options, hubs_delete_run);
}

/* ---- the store read directly (--data DIR) ---- */

/* Client-side filters of the offline lists, the same the API applies. */
struct filters {
    char device_id[UUID_STRING_LENGTH + 1];
    char group_id[UUID_STRING_LENGTH + 1];
    char record_id[UUID_STRING_LENGTH + 1];
    const char *serial;
    const char *since;
    const char *until;
};

static bool filter_matches(const char *wanted, json_t *object, const char *key)
{
    const char *value = json_string_value(json_object_get(object, key));
    return wanted == NULL || wanted[0] == '\0' || (value != NULL && strcasecmp(value, wanted) == 0);
}

static bool within_window(const struct filters *filters, json_t *entry)
{
    const char *issued_at = json_string_value(json_object_get(entry, "issuedAt"));

    if (issued_at == NULL)
        return filters->since == NULL && filters->until == NULL;
    return (filters->since == NULL || strcmp(issued_at, filters->since) >= 0) &&
           (filters->until == NULL || strcmp(issued_at, filters->until) < 0);
}

struct offline_scan {
    struct sink *sink;
    const struct filters *filters;
    size_t unreadable;
};

static struct store *open_store(const char *name, const char *dir)
{
    char err[512] = "";
    struct store *store = store_open_readonly(dir, err, sizeof(err));

    if (store == NULL)
        fprintf(stderr,
                "dpsctl %s: cannot open the store in %s: %s (--data must name the daemon's "
                "dataDir)\n",
                name, dir, err);
    return store;
}

/* One merged record, printed when it matches the filters. */
static int record_result(void *user, json_t *record)
{
    struct offline_scan *scan = user;
    if (filter_matches(scan->filters->device_id, record, "deviceId") &&
        filter_matches(scan->filters->group_id, record, "enrollmentGroupId"))
        sink_put(scan->sink, record);
    return 0;
}

static int issuance_result(void *user, json_t *entry)
{
    struct offline_scan *scan = user;
    if (filter_matches(scan->filters->device_id, entry, "deviceId") &&
        filter_matches(scan->filters->serial, entry, "serial") &&
        within_window(scan->filters, entry))
        sink_put(scan->sink, entry);
    return 0;
}

static int binding_result(void *user, json_t *binding)
{
    struct offline_scan *scan = user;
    if (filter_matches(scan->filters->device_id, binding, "deviceId"))
        sink_put(scan->sink, binding);
    return 0;
}

static int block_entry(void *user, const char *key, size_t key_length, const char *value,
                       size_t value_length)
{
    struct offline_scan *scan = user;
    json_t *entry = json_loadb(value, value_length, 0, NULL);

    if (!json_is_object(entry)) {
        json_decref(entry);
        scan->unreadable++;
        return 0;
    }
    if (json_object_get(entry, "id") == NULL)
        json_object_set_new(entry, "id", json_stringn(key, key_length));
    sink_put(scan->sink, entry);
    json_decref(entry);
    return 0;
}

/*
 * Reads the store itself: records, issuance and bindings of every owner (or
 * of --owner's), the blocklist whole.
 */
static int offline_list(const struct options *options, enum store_family family,
                        const struct filters *filters, struct sink *sink)
{
    struct offline_scan scan = {.sink = sink, .filters = filters};
    const char *dir = options->value[OPT_DATA];
    const char *owner = options->value[OPT_OWNER];
    struct store *store = open_store(options->name, dir);
    int status;

    if (store == NULL)
        return EXIT_REFUSED;
    if (family == STORE_RECORDS)
        status =
            records_scan(store, owner, filters->record_id[0] != '\0' ? filters->record_id : NULL,
                         record_result, &scan, &scan.unreadable);
    else if (family == STORE_ISSUANCE)
        status = records_issuance_scan(store, owner, issuance_result, &scan, &scan.unreadable);
    else if (family == STORE_BINDINGS)
        status = records_bindings_scan(store, owner, binding_result, &scan, &scan.unreadable);
    else
        status = store_scan(store, family, "", 0, block_entry, &scan);
    store_close(store);
    sink_end(sink);
    if (status != STORE_OK) {
        fprintf(stderr, "dpsctl %s: reading the store in %s failed\n", options->name, dir);
        return EXIT_REFUSED;
    }
    if (scan.unreadable > 0)
        fprintf(stderr, "dpsctl %s: %zu unreadable entries skipped\n", options->name,
                scan.unreadable);
    return EXIT_OK;
}

/* ---- records, issuance, bindings, blocklist ---- */

/* An RFC 3339 UTC time to the second, the only form the API compares. */
static bool is_api_time(const char *text)
{
    struct tm tm;
    const char *end = strptime(text, "%Y-%m-%dT%H:%M:%SZ", &tm);

    return strlen(text) == API_TIME_LENGTH && end != NULL && *end == '\0';
}

static int read_filters(const struct options *options, struct filters *filters)
{
    static const enum option_id times[] = {OPT_SINCE, OPT_UNTIL};

    memset(filters, 0, sizeof(*filters));
    if (check_uuid_option(options, OPT_DEVICE, "--device", filters->device_id) != EXIT_OK ||
        check_uuid_option(options, OPT_GROUP, "--group", filters->group_id) != EXIT_OK ||
        check_uuid_option(options, OPT_ID, "--id", filters->record_id) != EXIT_OK)
        return EXIT_USAGE;
    filters->serial = options->value[OPT_SERIAL];
    filters->since = options->value[OPT_SINCE];
    filters->until = options->value[OPT_UNTIL];
    if (filters->serial != NULL && !is_serial(filters->serial)) {
        fprintf(stderr, "dpsctl %s: --serial must be 1 to %d hex digits, not \"%s\"\n",
                options->name, SERIAL_MAX_DIGITS, filters->serial);
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof(times) / sizeof(*times); i++) {
        const char *text = options->value[times[i]];
        if (text != NULL && !is_api_time(text)) {
            fprintf(stderr, "dpsctl %s: --%s must be YYYY-MM-DDTHH:MM:SSZ, not \"%s\"\n",
                    options->name, LONG_OPTIONS[times[i]].name, text);
            return EXIT_USAGE;
        }
    }
    return EXIT_OK;
}

/* The API path of a list with the filters as query parameters; false when it does not fit. */
static bool filtered_path(CURL *curl, const char *base, const struct filters *filters, char *path,
                          size_t length)
{
    snprintf(path, length, "%s", base);
    return (filters->record_id[0] == '\0' ||
            query_add(curl, path, length, "idFilter", filters->record_id)) &&
           (filters->device_id[0] == '\0' ||
            query_add(curl, path, length, "deviceIdFilter", filters->device_id)) &&
           (filters->group_id[0] == '\0' ||
            query_add(curl, path, length, "enrollmentGroupIdFilter", filters->group_id)) &&
           query_add(curl, path, length, "serialFilter", filters->serial) &&
           query_add(curl, path, length, "since", filters->since) &&
           query_add(curl, path, length, "until", filters->until);
}

/* A list from the API, or from the store with --data. */
static int run_list(struct options *options, const char *api_path, enum store_family family,
                    const struct view *view)
{
    struct filters filters;
    struct sink sink = {.table = {.view = view},
                        .json = options->given[OPT_JSON],
                        .quiet_when_empty = options->value[OPT_ID] != NULL};
    struct client client;
    char path[2048];
    int code;

    if (read_filters(options, &filters) != EXIT_OK)
        return EXIT_USAGE;
    if (options->value[OPT_DATA] == NULL && options->given[OPT_OWNER])
        return usage_error(NULL, options->name,
                           "--owner goes with --data (the API shows the token owner's)", NULL);
    if (options->value[OPT_DATA] != NULL) {
        if ((options->given[OPT_API] || options->given[OPT_TOKEN_FILE] ||
             options->given[OPT_CACERT]))
            return usage_error(NULL, options->name, "--data reads the store; it takes no --api",
                               NULL);
        code = offline_list(options, family, &filters, &sink);
    } else if ((code = client_open(&client, options)) == EXIT_OK) {
        if (filtered_path(client.curl, api_path, &filters, path, sizeof(path)))
            code = client_list(&client, path, &sink);
        else
            code = request_too_long(options);
        client_close(&client);
    } else {
        client_close(&client);
    }
    if (code == EXIT_OK && filters.record_id[0] != '\0' && sink.count == 0) {
        fprintf(stderr, "dpsctl %s: no provisioning record %s\n", options->name, filters.record_id);
        return EXIT_NOT_FOUND;
    }
    return code;
}

static int command_records_list(struct options *options)
{
    return run_list(options, "/api/v1/provisioning-records", STORE_RECORDS, &RECORD_VIEW);
}

static int command_issuance_list(struct options *options)
{
    return run_list(options, "/api/v1/issuance", STORE_ISSUANCE, &ISSUANCE_VIEW);
}

static int command_bindings_list(struct options *options)
{
    return run_list(options, "/api/v1/bindings", STORE_BINDINGS, &BINDING_VIEW);
}

static int command_blocklist_list(struct options *options)
{
    return run_list(options, "/api/v1/blocklist", STORE_BLOCKLIST, &BLOCK_VIEW);
}

/*
 * records tail: a line for each step a device is answered, as it happens.
 * Each poll compares every step part of every record (plgdTime ... resources)
 * with what the last poll saw; a step that appears or changes (a device ran
 * it, or ran it again) prints a line naming the record, the device id once
 * the device has named itself ("-" before: it does so at cloud
 * configuration, stored in the same batch as that step's part), the group,
 * the step and its CoAP code. Other changes to a record print nothing. The
 * records there are when tail starts are its baseline, not printed (`records
 * list` shows them); the header is printed once the baseline is read, so
 * every step answered after the header appears. --count N stops after N
 * lines.
 */
struct tail {
    json_t *seen; /* record id -> {step -> its part as compact JSON} */
    bool baseline;
    bool json;
    unsigned long lines;
    unsigned long limit; /* 0: no limit */
};

static const struct view STEP_VIEW = {
    5, {"RECORD ID", "DEVICE ID", "GROUP", "STEP", "CODE"}, {36, 36, 36, 10, 4}, NULL};

static void print_step_view_row(char *const *cells)
{
    size_t widths[MAX_COLUMNS];

    for (size_t i = 0; i < STEP_VIEW.columns; i++)
        widths[i] = (size_t)STEP_VIEW.min_widths[i];
    print_row(&STEP_VIEW, cells, widths);
}

static void print_step_line(json_t *record, const char *step, bool json)
{
    if (json) {
        json_t *line = json_pack("{s:s, s:O}", "step", step, "result", record);
        char *text = line != NULL ? json_dumps(line, JSON_COMPACT) : NULL;
        if (text != NULL)
            printf("%s\n", text);
        free(text);
        json_decref(line);
        return;
    }
    char *cells[] = {field_text(record, "id"), field_text(record, "deviceId"),
                     field_text(record, "enrollmentGroupId"), strdup(step),
                     coap_code_text(json_object_get(record, step))};
    print_step_view_row(cells);
    for (size_t i = 0; i < STEP_VIEW.columns; i++)
        free(cells[i]);
}

static bool tail_result(void *user, json_t *record)
{
    struct tail *tail = user;
    const char *id = json_string_value(json_object_get(record, "id"));
    json_t *seen = id != NULL ? json_object_get(tail->seen, id) : NULL;

    if (id == NULL)
        return true;
    if (seen == NULL) {
        seen = json_object();
        if (seen == NULL || json_object_set_new(tail->seen, id, seen) != 0)
            return true;
    }
    for (size_t i = 0; i < RECORD_STEP_COUNT; i++) {
        json_t *part = json_object_get(record, RECORD_STEPS[i]);
        char *text = part != NULL ? json_dumps(part, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        const char *before = json_string_value(json_object_get(seen, RECORD_STEPS[i]));
        bool changed = text != NULL && (before == NULL || strcmp(before, text) != 0);
        if (changed)
            json_object_set_new(seen, RECORD_STEPS[i], json_string(text));
        free(text);
        if (!changed || tail->baseline)
            continue;
        print_step_line(record, RECORD_STEPS[i], tail->json);
        tail->lines++;
        if (tail->limit > 0 && tail->lines >= tail->limit)
            return false;
    }
    return true;
}

static int records_tail_run(struct client *client, struct options *options)
{
    struct filters filters;
    struct tail tail = {.seen = json_object(), .baseline = true, .json = options->given[OPT_JSON]};
    double interval = 2;
    char path[2048];
    char *end;
    int code = EXIT_OK;

    if (read_filters(options, &filters) != EXIT_OK)
        return EXIT_USAGE;
    if (options->value[OPT_INTERVAL] != NULL) {
        errno = 0;
        interval = strtod(options->value[OPT_INTERVAL], &end);
        if (errno != 0 || end == options->value[OPT_INTERVAL] || *end != '\0' || interval < 0.1 ||
            interval > 3600) {
            json_decref(tail.seen);
            fprintf(stderr, "dpsctl %s: --interval must be seconds from 0.1 to 3600, not \"%s\"\n",
                    options->name, options->value[OPT_INTERVAL]);
            return EXIT_USAGE;
        }
    }
    if (options->value[OPT_COUNT] != NULL &&
        (!parse_unsigned(options->value[OPT_COUNT], ULONG_MAX, &tail.limit) || tail.limit == 0)) {
        json_decref(tail.seen);
        fprintf(stderr, "dpsctl %s: --count must be a positive number, not \"%s\"\n", options->name,
                options->value[OPT_COUNT]);
        return EXIT_USAGE;
    }
    if (!filtered_path(client->curl, "/api/v1/provisioning-records", &filters, path,
                       sizeof(path))) {
        json_decref(tail.seen);
        return request_too_long(options);
    }
    for (;;) {
        struct exchange exchange = {.on_result = tail_result, .user = &tail};
        code = client_call(client, "GET", path, NULL, &exchange);
        exchange_clear(&exchange);
        if (code == EXIT_OK && tail.baseline && !tail.json)
            print_step_view_row((char *const *)STEP_VIEW.headers);
        fflush(stdout);
        tail.baseline = false;
        if (code != EXIT_OK || (tail.limit > 0 && tail.lines >= tail.limit))
            break;
        struct timespec pause = {(time_t)interval,
                                 (long)((interval - (double)(time_t)interval) * 1e9)};
        while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
            ;
    }
    json_decref(tail.seen);
    return code;
}

static int command_records_tail(struct options *options)
{
    return with_client(options, records_tail_run);
}

/* SHA-256 of a certificate file's DER SubjectPublicKeyInfo, as 64 hex digits. */
static bool public_key_sha256(const char *path, char out[65], char *err, size_t err_length)
{
    FILE *file = fopen(path, "rb");
    X509 *cert = file != NULL ? PEM_read_X509(file, NULL, NULL, NULL) : NULL;
    unsigned char *der = NULL;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned digest_length = 0;
    int length = cert != NULL ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der) : -1;
    bool ok = length > 0 &&
              EVP_Digest(der, (size_t)length, digest, &digest_length, EVP_sha256(), NULL) == 1;

    if (file == NULL)
        snprintf(err, err_length, "cannot read %s: %s", path, strerror(errno));
    else if (!ok)
        snprintf(err, err_length, "%s: not a PEM certificate", path);
    for (unsigned i = 0; ok && i < digest_length; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    OPENSSL_free(der);
    X509_free(cert);
    if (file != NULL)
        fclose(file);
    return ok;
}

static int block_run(struct client *client, struct options *options)
{
    const char *serial = options->value[OPT_SERIAL];
    const char *issuer = options->value[OPT_ISSUER];
    const char *key = options->value[OPT_PUBLIC_KEY];
    const char *cert = options->value[OPT_CERT];
    int forms = (options->value[OPT_DEVICE] != NULL) + (serial != NULL || issuer != NULL) +
                (key != NULL) + (cert != NULL);
    char device[UUID_STRING_LENGTH + 1];
    char digest[65];
    char err[PATH_MAX + 64];
    json_t *request = json_object();
    json_t *entry;
    int code;

    if (forms != 1 || (serial != NULL) != (issuer != NULL)) {
        json_decref(request);
        fprintf(stderr,
                "dpsctl %s: name one device: --device ID, or --serial HEX with --issuer DN, or "
                "--public-key-sha256 HEX, or --cert FILE\n",
                options->name);
        return EXIT_USAGE;
    }
    if (options->value[OPT_DEVICE] != NULL) {
        if (check_uuid_option(options, OPT_DEVICE, "--device", device) != EXIT_OK) {
            json_decref(request);
            return EXIT_USAGE;
        }
        json_object_set_new(request, "deviceId", json_string(device));
    } else if (serial != NULL) {
        if (!is_serial(serial) || issuer[0] == '\0') {
            json_decref(request);
            fprintf(stderr,
                    "dpsctl %s: --serial must be 1 to 40 hex digits (as `openssl x509 -serial` "
                    "prints them) and --issuer the issuer DN, not empty\n",
                    options->name);
            return EXIT_USAGE;
        }
        json_t *issuer_text = option_text(options, "--issuer", issuer);
        if (issuer_text == NULL) {
            json_decref(request);
            return EXIT_USAGE;
        }
        json_object_set_new(request, "serial", json_string(serial));
        json_object_set_new(request, "issuer", issuer_text);
    } else if (key != NULL) {
        if (!is_hex(key, 64)) {
            json_decref(request);
            fprintf(stderr, "dpsctl %s: --public-key-sha256 must be 64 hex digits, not \"%s\"\n",
                    options->name, key);
            return EXIT_USAGE;
        }
        json_object_set_new(request, "publicKeySha256", json_string(key));
    } else {
        if (!public_key_sha256(cert, digest, err, sizeof(err))) {
            json_decref(request);
            fprintf(stderr, "dpsctl %s: --cert: %s\n", options->name, err);
            return EXIT_USAGE;
        }
        json_object_set_new(request, "publicKeySha256", json_string(digest));
    }
    if (options->value[OPT_REASON] != NULL) {
        json_t *reason = option_text(options, "--reason", options->value[OPT_REASON]);
        if (reason == NULL) {
            json_decref(request);
            return EXIT_USAGE;
        }
        json_object_set_new(request, "reason", reason);
    }
    entry = client_document(client, "POST", "/api/v1/blocklist", request, &code);
    json_decref(request);
    if (entry == NULL)
        return code;
    if (options->given[OPT_JSON]) {
        char *text = json_dumps(entry, JSON_COMPACT);
        if (text != NULL)
            printf("%s\n", text);
        free(text);
    } else {
        struct sink sink = {.table = {.view = &BLOCK_VIEW}};
        printf("blocked; lift it with: dpsctl unblock %s\n",
               json_string_value(json_object_get(entry, "id")) ?: "?");
        sink_put(&sink, entry);
        sink_end(&sink);
    }
    json_decref(entry);
    return EXIT_OK;
}

static int command_block(struct options *options)
{
    return with_client(options, block_run);
}

static int unblock_run(struct client *client, struct options *options)
{
    char id[ENTRY_ID_DIGITS + 1];

    if (!is_hex(options->argument, ENTRY_ID_DIGITS)) {
        fprintf(stderr,
                "dpsctl %s: \"%s\" is not a blocklist entry id (the %d hex digits `dpsctl "
                "blocklist list` shows)\n",
                options->name, options->argument, ENTRY_ID_DIGITS);
        return EXIT_USAGE;
    }
    for (size_t i = 0; i <= ENTRY_ID_DIGITS; i++)
        id[i] = (char)tolower((unsigned char)options->argument[i]);
    return delete_by_filter(client, options, "/api/v1/blocklist", "idFilter", id,
                            "blocklist entry");
}

static int command_unblock(struct options *options)
{
    return with_client(options, unblock_run);
}

static int bindings_release_run(struct client *client, struct options *options)
{
    char device[UUID_STRING_LENGTH + 1];

    if (!parse_uuid_argument(options->argument, device)) {
        fprintf(stderr, "dpsctl %s: \"%s\" is not a device id (a UUID)\n", options->name,
                options->argument);
        return EXIT_USAGE;
    }
    return delete_by_filter(client, options, "/api/v1/bindings", "deviceIdFilter", device,
                            "binding of device");
}

static int command_bindings_release(struct options *options)
{
    return with_client(options, bindings_release_run);
}

/* ---- pki and token ---- */

/* The pki command: which files existed before, to say what was created and what kept. */
static const char *const PKI_FILES[] = {
    "mfg-root.pem",
    "mfg-root.key",
    "mfg-intermediate.pem",
    "mfg-intermediate.key",
    "mfg-chain.pem",
    "dps-root.pem",
    "dps-root.key",
    "dps-server.pem",
    "dps-server.key",
    "hub-root.pem",
    "hub-root.key",
    "hub-ca.pem",
    "hub-ca.key",
    "token.key",
    "token.pub.pem",
    "operator.key",
    "operator.pub.pem",
    "operator.jwks.json",
    "operator.token",
    "rogue-root.pem",
    "rogue-root.key",
    "rogue-device.pem",
    "rogue-device.key",
    "noclientauth-device.pem",
    "noclientauth-device.key",
};
#define PKI_FILE_COUNT (sizeof(PKI_FILES) / sizeof(*PKI_FILES))

static bool path_exists(const char *dir, const char *name)
{
    char path[PATH_MAX];

    return snprintf(path, sizeof(path), "%s/%s", dir, name) < (int)sizeof(path) &&
           access(path, F_OK) == 0;
}

static bool device_exists(const char *dir, unsigned index)
{
    char path[PATH_MAX];

    return pki_device_path(dir, index, ".pem", path, sizeof(path)) == 0 &&
           access(path, F_OK) == 0 &&
           pki_device_path(dir, index, ".key", path, sizeof(path)) == 0 && access(path, F_OK) == 0;
}

static int command_pki(struct options *options)
{
    bool existed[PKI_FILE_COUNT];
    bool *device_existed;
    unsigned long count = DEFAULT_DEVICE_COUNT;
    unsigned created = 0;
    unsigned kept = 0;
    unsigned devices_created = 0;
    char err[512];
    const char *dir = options->argument;

    if (options->value[OPT_DEVICES] != NULL &&
        !parse_unsigned(options->value[OPT_DEVICES], MAX_DEVICE_COUNT, &count))
        return usage_error(find_command("pki", NULL), "pki",
                           "--devices must be a number from 0 to 1000000",
                           options->value[OPT_DEVICES]);
    /* Other files' paths are checked by pki_generate, which says which does not fit. */
    char longest[PATH_MAX];
    if (pki_device_path(dir, count > 0 ? (unsigned)count : 1, ".pem", longest, sizeof(longest)) !=
        0)
        return usage_error(find_command("pki", NULL), "pki",
                           "DIR is too long for the paths of its files", NULL);
    device_existed = calloc(count + 1, sizeof(*device_existed));
    if (device_existed == NULL) {
        fprintf(stderr, "dpsctl pki: out of memory\n");
        return EXIT_REFUSED;
    }
    for (size_t i = 0; i < PKI_FILE_COUNT; i++)
        existed[i] = path_exists(dir, PKI_FILES[i]);
    for (unsigned index = 1; index <= count; index++)
        device_existed[index] = device_exists(dir, index);

    if (pki_generate(dir, (unsigned)count, err, sizeof(err)) != 0) {
        fprintf(stderr, "dpsctl pki: %s\n", err);
        free(device_existed);
        return EXIT_REFUSED;
    }

    for (size_t i = 0; i < PKI_FILE_COUNT; i++) {
        printf("%-8s %s\n", existed[i] ? "kept" : "created", PKI_FILES[i]);
        if (existed[i])
            kept++;
        else
            created++;
    }
    for (unsigned index = 1; index <= count; index++)
        devices_created += device_existed[index] ? 0 : 1;
    free(device_existed);
    if (count > 0)
        printf("%-8s devices/device-%04u .. device-%04lu (.pem/.key): %u created, %lu kept\n",
               "devices", 1u, count, devices_created, count - devices_created);
    printf("PKI in %s: %u files created, %u kept; %u devices created, %lu kept\n", dir, created,
           kept, devices_created, count - devices_created);
    return EXIT_OK;
}

/* The token command: an operator token for the management API. */
static int command_token(struct options *options)
{
    const char *key_file = options->value[OPT_KEY];
    const char *owner = options->value[OPT_OWNER];
    const char *lifetime = options->value[OPT_EXPIRES_IN];
    long lifetime_s = 365L * 24 * 3600;
    char *end;
    char err[512] = "";
    char *token;

    if (lifetime != NULL) {
        errno = 0;
        lifetime_s = strtol(lifetime, &end, 10);
        if (errno != 0 || end == lifetime || *end != '\0' || lifetime_s > 100L * 365 * 86400 ||
            lifetime_s < -100L * 365 * 86400)
            return usage_error(find_command("token", NULL), "token",
                               "--expires-in must be a number of seconds", lifetime);
    }
    if (key_file == NULL || owner == NULL || owner[0] == '\0')
        return usage_error(find_command("token", NULL), "token", "--key and --owner are required",
                           NULL);
    json_t *owner_text = json_string(owner);
    json_decref(owner_text);
    if (owner_text == NULL)
        return usage_error(find_command("token", NULL), "token", "--owner must be UTF-8 text",
                           NULL);
    token = pki_operator_token(key_file, owner, lifetime_s, err, sizeof(err));
    if (token == NULL) {
        fprintf(stderr, "dpsctl token: %s\n", err);
        return EXIT_REFUSED;
    }
    printf("%s\n", token);
    free(token);
    return EXIT_OK;
}

/* ---- the command line ---- */

static bool noun_has_verbs(const char *noun)
{
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        if (strcmp(COMMANDS[i].noun, noun) == 0 && COMMANDS[i].verb != NULL)
            return true;
    }
    return false;
}

static const struct command *find_command(const char *noun, const char *verb)
{
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        if (strcmp(COMMANDS[i].noun, noun) == 0 &&
            (COMMANDS[i].verb == NULL ? verb == NULL
                                      : verb != NULL && strcmp(COMMANDS[i].verb, verb) == 0))
            return &COMMANDS[i];
    }
    return NULL;
}

/* Prints the usage of every command of a noun. */
static void print_noun_help(const char *noun, FILE *out)
{
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        if (strcmp(COMMANDS[i].noun, noun) == 0)
            fputs(COMMANDS[i].usage, out);
    }
}

/*
 * Parses the whole command line: the options (anywhere), then the command
 * from the words left. Returns -1 to run *command, or the exit code.
 */
static int parse_command_line(int argc, char **argv, struct options *options,
                              const struct command **command)
{
    char error[256] = "";
    char name[64];
    const char *words[8];
    size_t word_count = 0;
    bool help = false;
    int option;
    int index;

    opterr = 0;
    optind = 1;
    while ((option = getopt_long(argc, argv, ":h", LONG_OPTIONS, &index)) != -1) {
        if (option == 'h') {
            help = true;
        } else if (option == ':' || option == '?') {
            if (error[0] == '\0')
                snprintf(error, sizeof(error), "%s: %s", argv[optind - 1],
                         option == ':' ? "needs a value" : "unknown option");
        } else {
            enum option_id id = (enum option_id)(option - 256);
            options->given[id] = true;
            options->value[id] = optarg;
            if (id == OPT_HUB)
                options->hubs[options->hub_count++] = optarg;
            if (id == OPT_GATEWAY)
                options->gateways[options->gateway_count++] = optarg;
        }
    }
    for (int i = optind; i < argc && word_count < sizeof(words) / sizeof(*words); i++)
        words[word_count++] = argv[i];
    if (word_count == 0) {
        if (help) {
            print_help(stdout);
            return EXIT_OK;
        }
        print_help(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(words[0], "help") == 0) {
        print_help(stdout);
        return EXIT_OK;
    }

    /* The noun, the verb (list when a noun with verbs has none), the argument. */
    const char *verb = NULL;
    size_t used = 1;
    if (noun_has_verbs(words[0])) {
        if (word_count > 1 && find_command(words[0], words[1]) != NULL) {
            verb = words[1];
            used = 2;
        } else if (word_count == 1 || words[1][0] == '\0') {
            verb = "list";
        } else {
            fprintf(stderr, "dpsctl %s: unknown command '%s'; the %s commands are:\n", words[0],
                    words[1], words[0]);
            print_noun_help(words[0], stderr);
            return EXIT_USAGE;
        }
    }
    *command = find_command(words[0], verb);
    if (*command == NULL) {
        fprintf(stderr, "dpsctl: unknown command '%s'; `dpsctl --help` lists them\n", words[0]);
        return EXIT_USAGE;
    }
    snprintf(name, sizeof(name), "%s%s%s", words[0], verb != NULL ? " " : "",
             verb != NULL ? verb : "");
    if (help) {
        print_command_help(*command, stdout);
        return EXIT_OK;
    }
    if (error[0] != '\0')
        return usage_error(*command, name, error, NULL);
    for (size_t id = 0; id < OPTION_COUNT; id++) {
        if (options->given[id] && ((*command)->allowed & BIT(id)) == 0) {
            char flag[40];
            snprintf(flag, sizeof(flag), "--%s", LONG_OPTIONS[id].name);
            return usage_error(*command, name, "option not accepted here", flag);
        }
    }
    if ((*command)->argument != NULL) {
        if (word_count <= used) {
            char missing[64];
            snprintf(missing, sizeof(missing), "missing %s", (*command)->argument);
            return usage_error(*command, name, missing, NULL);
        }
        options->argument = words[used++];
    }
    if (word_count > used)
        return usage_error(*command, name, "unexpected argument", words[used]);
    return -1;
}

int main(int argc, char **argv)
{
    struct options options = {0};
    const struct command *command = NULL;
    char name[64];
    int code;

    options.hubs = calloc((size_t)argc + 1, sizeof(*options.hubs));
    options.gateways = calloc((size_t)argc + 1, sizeof(*options.gateways));
    if (options.hubs == NULL || options.gateways == NULL) {
        fprintf(stderr, "dpsctl: out of memory\n");
        return EXIT_REFUSED;
    }
    code = parse_command_line(argc, argv, &options, &command);
    if (code < 0) {
        snprintf(name, sizeof(name), "%s%s%s", command->noun, command->verb != NULL ? " " : "",
                 command->verb != NULL ? command->verb : "");
        options.name = name;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        code = command->run(&options);
        curl_global_cleanup();
    }
    free(options.hubs);
    free(options.gateways);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "dpsctl: writing the output failed: %s\n", strerror(errno));
        return EXIT_REFUSED;
    }
    return code;
}
