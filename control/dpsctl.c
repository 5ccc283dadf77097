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
 *
 * This file is the command line: the command table, the help, and parsing
 * words and options into one row to run. The commands themselves are
 * dpsctl_commands.c; the API client dpsctl_client.c; tables and --json
 * lines dpsctl_table.c; the --data store reader dpsctl_offline.c; options,
 * usage errors and argument checks dpsctl_options.c.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "control/dpsctl_client.h"
#include "control/dpsctl_commands.h"
#include "control/dpsctl_import.h"
#include "control/dpsctl_options.h"

/*
 * The commands: one row each, in the order --help lists them. A noun with
 * verbs lists when given alone; commands sharing a handler differ by the
 * subject of their row (enrollment groups or hubs, one list or another).
 */
static const struct command COMMANDS[] = {
    {"status", NULL, CONNECTION, NULL, COMMAND_API, command_status, NULL,
     "dpsctl status\n"
     "  Ready or not; the token owner's enrollment groups, hubs, blocklist entries\n"
     "  and quotas; for an administrator (api.admins) also the node: shards, I/O\n"
     "  backend, connections, configuration generation and node-wide counts.\n"},
    {"groups", "list", CONNECTION | BIT(OPT_ID), NULL, COMMAND_API, command_collection_list,
     &GROUPS,
     "dpsctl groups list [--id GROUP_ID]\n"
     "  The enrollment groups of the token's owner.\n"},
    {"groups", "create", CONNECTION | GROUP_FIELDS | BIT(OPT_ID), NULL, COMMAND_API,
     command_collection_put, &GROUPS,
     "dpsctl groups create --chain PEM_FILE --hub HUB_ID [--hub HUB_ID...] [--name NAME]\n"
     "                     [--psk TEXT] [--expired-ok] [--lead-name CN] [--id GROUP_ID]\n"
     "  Enrolls a manufacturer: devices whose certificate chains up to the CA\n"
     "  certificates in PEM_FILE are provisioned for the hubs named, at once.\n"},
    {"groups", "update", CONNECTION | GROUP_FIELDS, "GROUP_ID", COMMAND_API, command_collection_put,
     &GROUPS,
     "dpsctl groups update GROUP_ID [--chain PEM_FILE] [--hub HUB_ID...] [--name NAME]\n"
     "                     [--psk TEXT] [--expired-ok[=no]] [--lead-name CN]\n"
     "  Replaces the group with the given fields changed (--hub replaces the list;\n"
     "  --psk '' removes the key).\n"},
    {"groups", "delete", CONNECTION, "GROUP_ID", COMMAND_API, command_collection_delete, &GROUPS,
     "dpsctl groups delete GROUP_ID\n"},
    {"hubs", "list", CONNECTION | BIT(OPT_ID), NULL, COMMAND_API, command_collection_list, &HUBS,
     "dpsctl hubs list [--id HUB_ID]\n"},
    {"hubs", "create", CONNECTION | HUB_FIELDS | BIT(OPT_HUB_ID), NULL, COMMAND_API,
     command_collection_put, &HUBS,
     "dpsctl hubs create --hub-id UUID --gateway coaps+tcp://HOST:PORT [--gateway ...]\n"
     "                   --provider NAME --identity-key NAME --token-key NAME\n"
     "                   --token-issuer ISSUER [--name NAME] [--owner-claim CLAIM]\n"
     "                   [--device-id-claim CLAIM]\n"
     "  Adds a hub. Its identity CA and token signing keys are named, not sent:\n"
     "  keys the node's administrator registered for your owner (keys: in dpsd's\n"
     "  configuration).\n"},
    {"hubs", "update", CONNECTION | HUB_FIELDS, "HUB_ID", COMMAND_API, command_collection_put,
     &HUBS,
     "dpsctl hubs update HUB_ID [hubs create's options]\n"
     "  Replaces the hub with the given fields changed (--gateway replaces the list).\n"},
    {"hubs", "delete", CONNECTION, "HUB_ID", COMMAND_API, command_collection_delete, &HUBS,
     "dpsctl hubs delete HUB_ID\n"},
    {"records", "list",
     CONNECTION | BIT(OPT_DEVICE) | BIT(OPT_GROUP) | BIT(OPT_ID) | BIT(OPT_DATA) | BIT(OPT_OWNER),
     NULL, COMMAND_LOCAL, command_list, &RECORDS_LIST,
     "dpsctl records list [--device DEVICE_ID] [--group GROUP_ID] [--id RECORD_ID]\n"
     "                    [--data DIR [--owner OWNER]]\n"
     "  Provisioning records with the CoAP code of each step. The same manufacturer\n"
     "  certificate under two owners is two records.\n"},
    {"records", "tail",
     CONNECTION | BIT(OPT_DEVICE) | BIT(OPT_GROUP) | BIT(OPT_INTERVAL) | BIT(OPT_COUNT), NULL,
     COMMAND_API, command_records_tail, NULL,
     "dpsctl records tail [--device DEVICE_ID] [--group GROUP_ID] [--interval SECONDS]\n"
     "                    [--count N]\n"
     "  From now on, a line for each step a device is answered: record, device id\n"
     "  (once the device has named itself), group, step and CoAP code; polls every\n"
     "  SECONDS (default 2) until interrupted or N lines printed. With --json, one\n"
     "  {\"step\", \"result\"} line each, the result being the whole record.\n"},
    {"records", "delete", CONNECTION, "RECORD_ID", COMMAND_API, command_records_delete, NULL,
     "dpsctl records delete RECORD_ID\n"
     "  Deletes a provisioning record (on every node of a cluster). The device keeps\n"
     "  its device id (`bindings release` frees it) and its certificates stay in the\n"
     "  issuance log; when it comes back, the record starts again under the same id.\n"},
    {"block", NULL,
     CONNECTION | BIT(OPT_DEVICE) | BIT(OPT_SERIAL) | BIT(OPT_ISSUER) | BIT(OPT_PUBLIC_KEY) |
         BIT(OPT_CERT) | BIT(OPT_REASON),
     NULL, COMMAND_API, command_block, NULL,
     "dpsctl block (--device DEVICE_ID | --serial HEX --issuer DN | --public-key-sha256 HEX\n"
     "              | --cert PEM_FILE) [--reason TEXT]\n"
     "  Refuses a device from its next handshake on, also after restarts. --issuer is\n"
     "  the manufacturer certificate's issuer as `openssl x509 -issuer -nameopt RFC2253`\n"
     "  prints it; --cert blocks the public key of a device certificate file.\n"},
    {"unblock", NULL, CONNECTION, "ENTRY_ID", COMMAND_API, command_unblock, NULL,
     "dpsctl unblock ENTRY_ID\n"
     "  Lifts a block (ENTRY_ID from `dpsctl blocklist list`).\n"},
    {"blocklist", "list", CONNECTION | BIT(OPT_DATA), NULL, COMMAND_LOCAL, command_list,
     &BLOCKLIST_LIST, "dpsctl blocklist list [--data DIR]\n"},
    {"issuance", "list",
     CONNECTION | BIT(OPT_DEVICE) | BIT(OPT_SERIAL) | BIT(OPT_SINCE) | BIT(OPT_UNTIL) |
         BIT(OPT_DATA) | BIT(OPT_OWNER),
     NULL, COMMAND_LOCAL, command_list, &ISSUANCE_LIST,
     "dpsctl issuance list [--device DEVICE_ID] [--serial HEX] [--since TIME] [--until TIME]\n"
     "                     [--data DIR [--owner OWNER]]\n"
     "  The identity certificates issued; TIME is YYYY-MM-DDTHH:MM:SSZ.\n"},
    {"bindings", "list", CONNECTION | BIT(OPT_DEVICE) | BIT(OPT_DATA) | BIT(OPT_OWNER), NULL,
     COMMAND_LOCAL, command_list, &BINDINGS_LIST,
     "dpsctl bindings list [--device DEVICE_ID] [--data DIR [--owner OWNER]]\n"
     "  Which provisioning record each device id is bound to, per owner.\n"},
    {"bindings", "release", CONNECTION, "DEVICE_ID", COMMAND_API, command_bindings_release, NULL,
     "dpsctl bindings release DEVICE_ID\n"
     "  Frees a device id, so another manufacturer identity may claim it, and lets the\n"
     "  identity that held it bind one device id again.\n"},
    {"pki", NULL, BIT(OPT_DEVICES), "DIR", COMMAND_LOCAL, command_pki, NULL,
     "dpsctl pki DIR [--devices N]\n"
     "  Creates the demo PKI in DIR (manufacturer, DPS server, hub and token keys,\n"
     "  N device certificates, default 10). Existing files are kept.\n"},
    {"import", NULL,
     BIT(OPT_DATA) | BIT(OPT_IDENTITY_KEY) | BIT(OPT_TOKEN_KEY) | BIT(OPT_TOKEN_ISSUER), "DIR",
     COMMAND_LOCAL, command_import, NULL,
     "dpsctl import DIR --data DATADIR --identity-key NAME --token-key NAME --token-issuer ISSUER\n"
     "  Imports a plgd DPS's MongoDB collections, exported with mongoexport into DIR\n"
     "  (hubs.json, enrollmentGroups.json, provisionedRecords.json), into the store of\n"
     "  a stopped dpsd: record ids, device ids and their bindings, the issuance log.\n"
     "  Imported hubs sign with the registry keys named. Prints what was not carried.\n"},
    {"import-config", NULL, 0, "FILE", COMMAND_LOCAL, command_import_config, NULL,
     "dpsctl import-config FILE\n"
     "  Prints a dpsd configuration converted from a plgd DPS configuration file\n"
     "  (listeners, TLS files, the API's authority, audience and owner claim); names\n"
     "  on stderr every setting it could not carry.\n"},
    {"token", NULL, BIT(OPT_KEY) | BIT(OPT_OWNER) | BIT(OPT_EXPIRES_IN), NULL, COMMAND_LOCAL,
     command_token, NULL,
     "dpsctl token --key FILE --owner OWNER [--expires-in SECONDS]\n"
     "  Prints an operator token for the management API signed with FILE (the demo\n"
     "  PKI's operator.key), for OWNER, valid SECONDS (default one year; negative\n"
     "  gives an expired token).\n"},
};
#define COMMAND_COUNT (sizeof(COMMANDS) / sizeof(*COMMANDS))
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

/* Runs a command; a command of the API gets its client opened first and closed after. */
static int command_run(const struct command *command, struct options *options)
{
    struct client client;
    int code;

    if (command->access == COMMAND_LOCAL)
        return command->run(NULL, options, command->subject);
    code = client_open(&client, options);
    if (code == EXIT_OK)
        code = command->run(&client, options, command->subject);
    client_close(&client);
    return code;
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
        options.command = command;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        code = command_run(command, &options);
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
