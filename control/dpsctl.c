/*
 * dpsctl: the operator's command-line tool. It creates the demo PKI and
 * reads the appliance's store (read-only, so it works while dpsd runs):
 * provisioning records, the issuance log and device-id bindings, either as
 * an aligned table for people or as newline-delimited {"result": {...}}
 * objects, the reference management API's list format, for scripts.
 *
 * Exit status: 0 success, 1 runtime error (the message says what to fix),
 * 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "crypto/pki.h"
#include "crypto/uuid.h"
#include "store/store.h"

enum exit_code {
    EXIT_OK = 0,
    EXIT_RUNTIME = 1,
    EXIT_USAGE = 2,
};

#define DEFAULT_DEVICE_COUNT 10
#define MAX_DEVICE_COUNT 1000000

static const char USAGE_PKI[] =
    "usage: dpsctl pki DIR [--devices N]\n"
    "  Creates the demo PKI in DIR (manufacturer, DPS server, hub and token keys,\n"
    "  N device certificates, default 10). Existing files are kept.\n";
static const char USAGE_RECORDS[] =
    "usage: dpsctl records --data DIR [--device DEVICE_ID] [--id RECORD_ID] [--json]\n"
    "  Lists provisioning records from the store in DIR (the daemon's dataDir).\n";
static const char USAGE_ISSUANCE[] =
    "usage: dpsctl issuance --data DIR [--device DEVICE_ID] [--json]\n"
    "  Lists the identity certificates the appliance issued.\n";
static const char USAGE_TOKEN[] =
    "usage: dpsctl token --key FILE --owner OWNER [--expires-in SECONDS]\n"
    "  Prints an operator token for the management API signed with FILE (the demo\n"
    "  PKI's operator.key), for OWNER, valid SECONDS (default one year; negative\n"
    "  gives an expired token).\n";
static const char USAGE_BINDINGS[] = "usage: dpsctl bindings --data DIR [--json]\n"
                                     "  Lists which provisioning record each device id is "
                                     "bound to.\n";

static void print_usage(FILE *out)
{
    fprintf(out,
            "dpsctl: operator tool for the provisioning appliance\n\n%s%s%s%s%s"
            "usage: dpsctl --help\n",
            USAGE_PKI, USAGE_RECORDS, USAGE_ISSUANCE, USAGE_BINDINGS, USAGE_TOKEN);
}

/* Options shared by the subcommands; each accepts a subset. */
struct options {
    const char *data_dir;
    const char *positional;
    char device_id[UUID_STRING_LENGTH + 1];
    char record_id[UUID_STRING_LENGTH + 1];
    unsigned device_count;
    bool json;
};

enum option_flag {
    OPTION_DATA = 1 << 0,
    OPTION_DEVICE = 1 << 1,
    OPTION_ID = 1 << 2,
    OPTION_JSON = 1 << 3,
    OPTION_DEVICES = 1 << 4,
    OPTION_POSITIONAL = 1 << 5,
};

static int usage_error(const char *usage, const char *command, const char *message,
                       const char *detail)
{
    fprintf(stderr, "dpsctl %s: %s%s%s\n%s", command, message, detail != NULL ? ": " : "",
            detail != NULL ? detail : "", usage);
    return EXIT_USAGE;
}

/* Normalises a UUID argument to the lower-case form the store's keys use. */
static int parse_uuid_argument(const char *text, char out[UUID_STRING_LENGTH + 1])
{
    struct dps_uuid uuid;

    if (uuid_parse(text, strlen(text), &uuid) != 0)
        return -1;
    uuid_format(&uuid, out);
    return 0;
}

static int parse_count(const char *text, unsigned *out)
{
    char *end;
    unsigned long value;

    errno = 0;
    value = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value > MAX_DEVICE_COUNT)
        return -1;
    *out = (unsigned)value;
    return 0;
}

/* The option_flag of a getopt_long result. */
static unsigned option_flag_of(int option)
{
    switch (option) {
    case 'd':
        return OPTION_DATA;
    case 'D':
        return OPTION_DEVICE;
    case 'i':
        return OPTION_ID;
    case 'j':
        return OPTION_JSON;
    default:
        return OPTION_DEVICES;
    }
}

/*
 * Parses argv (argv[0] is the subcommand) accepting only the options in
 * allowed. Returns -1 to continue, or the exit code to end with (help, or a
 * usage error already reported).
 */
static int parse_options(int argc, char **argv, unsigned allowed, const char *usage,
                         struct options *options)
{
    static const struct option long_options[] = {
        {"data", required_argument, NULL, 'd'},
        {"device", required_argument, NULL, 'D'},
        {"id", required_argument, NULL, 'i'},
        {"json", no_argument, NULL, 'j'},
        {"devices", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *command = argv[0];
    int option;
    int index = -1;

    memset(options, 0, sizeof(*options));
    options->device_count = DEFAULT_DEVICE_COUNT;
    opterr = 0;
    optind = 1;
    while ((option = getopt_long(argc, argv, ":h", long_options, &index)) != -1) {
        if (option == ':')
            return usage_error(usage, command, "option needs a value", argv[optind - 1]);
        if (option == '?')
            return usage_error(usage, command, "unknown option", argv[optind - 1]);
        if (option != 'h' && (allowed & option_flag_of(option)) == 0) {
            char name[32];

            snprintf(name, sizeof(name), "--%s", long_options[index].name);
            return usage_error(usage, command, "option not accepted here", name);
        }
        index = -1;
        switch (option) {
        case 'h':
            fputs(usage, stdout);
            return EXIT_OK;
        case 'd':
            options->data_dir = optarg;
            break;
        case 'D':
            if (parse_uuid_argument(optarg, options->device_id) != 0)
                return usage_error(usage, command, "--device is not a UUID", optarg);
            break;
        case 'i':
            if (parse_uuid_argument(optarg, options->record_id) != 0)
                return usage_error(usage, command, "--id is not a UUID", optarg);
            break;
        case 'j':
            options->json = true;
            break;
        default:
            if (parse_count(optarg, &options->device_count) != 0)
                return usage_error(usage, command, "--devices must be a number from 0 to 1000000",
                                   optarg);
            break;
        }
    }
    if (optind < argc) {
        if ((allowed & OPTION_POSITIONAL) == 0)
            return usage_error(usage, command, "unexpected argument", argv[optind]);
        if (optind + 1 < argc)
            return usage_error(usage, command, "unexpected argument", argv[optind + 1]);
        options->positional = argv[optind];
    }
    if ((allowed & OPTION_POSITIONAL) != 0 && options->positional == NULL)
        return usage_error(usage, command, "missing DIR", NULL);
    if ((allowed & OPTION_DATA) != 0 && options->data_dir == NULL)
        return usage_error(usage, command, "missing --data DIR", NULL);
    return -1;
}

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

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static bool device_exists(const char *dir, unsigned index)
{
    char path[PATH_MAX];

    pki_device_path(dir, index, ".pem", path, sizeof(path));
    if (access(path, F_OK) != 0)
        return false;
    pki_device_path(dir, index, ".key", path, sizeof(path));
    return access(path, F_OK) == 0;
}

static int command_pki(int argc, char **argv)
{
    struct options options;
    int code = parse_options(argc, argv, OPTION_POSITIONAL | OPTION_DEVICES, USAGE_PKI, &options);
    bool existed[PKI_FILE_COUNT];
    bool *device_existed;
    unsigned created = 0;
    unsigned kept = 0;
    unsigned devices_created = 0;
    char err[512];
    const char *dir;

    if (code >= 0)
        return code;
    dir = options.positional;
    device_existed = calloc(options.device_count + 1, sizeof(*device_existed));
    if (device_existed == NULL) {
        fprintf(stderr, "dpsctl pki: out of memory\n");
        return EXIT_RUNTIME;
    }
    for (size_t i = 0; i < PKI_FILE_COUNT; i++)
        existed[i] = path_exists(dir, PKI_FILES[i]);
    for (unsigned index = 1; index <= options.device_count; index++)
        device_existed[index] = device_exists(dir, index);

    if (pki_generate(dir, options.device_count, err, sizeof(err)) != 0) {
        fprintf(stderr, "dpsctl pki: %s\n", err);
        free(device_existed);
        return EXIT_RUNTIME;
    }

    for (size_t i = 0; i < PKI_FILE_COUNT; i++) {
        printf("%-8s %s\n", existed[i] ? "kept" : "created", PKI_FILES[i]);
        if (existed[i])
            kept++;
        else
            created++;
    }
    for (unsigned index = 1; index <= options.device_count; index++)
        devices_created += device_existed[index] ? 0 : 1;
    free(device_existed);
    if (options.device_count > 0)
        printf("%-8s devices/device-%04u .. device-%04u (.pem/.key): %u created, %u kept\n",
               "devices", 1u, options.device_count, devices_created,
               options.device_count - devices_created);
    printf("PKI in %s: %u files created, %u kept; %u devices created, %u kept\n", dir, created,
           kept, devices_created, options.device_count - devices_created);
    return EXIT_OK;
}

static struct store *open_store(const char *command, const char *dir)
{
    char err[512] = "";
    struct store *store = store_open_readonly(dir, err, sizeof(err));

    if (store == NULL)
        fprintf(stderr,
                "dpsctl %s: cannot open the store in %s: %s (--data must name the daemon's "
                "dataDir)\n",
                command, dir, err);
    return store;
}

static void print_json_result(json_t *value)
{
    json_t *wrapper = json_pack("{sO}", "result", value);
    char *text = wrapper != NULL ? json_dumps(wrapper, JSON_COMPACT) : NULL;

    if (text != NULL)
        printf("%s\n", text);
    free(text);
    json_decref(wrapper);
}

/* A field as table text: strings as they are, numbers printed, anything else "-". */
static const char *field_text(json_t *object, const char *key, char *buffer, size_t length)
{
    json_t *value = json_object_get(object, key);

    if (json_is_string(value))
        return json_string_value(value)[0] != '\0' ? json_string_value(value) : "-";
    if (json_is_integer(value)) {
        snprintf(buffer, length, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        return buffer;
    }
    return "-";
}

/* Records: the store keeps one key per part; the reader merges them. */
static const char *const RECORD_STEPS[] = {"plgdTime", "ownership", "cloud", "credential", "acl"};
#define RECORD_STEP_COUNT (sizeof(RECORD_STEPS) / sizeof(*RECORD_STEPS))
static const char *const RECORD_STEP_HEADERS[RECORD_STEP_COUNT] = {"PLGDTIME", "OWNERSHIP", "CLOUD",
                                                                   "CREDENTIAL", "ACL"};

struct record_scan {
    const struct options *options;
    char record_id[128];
    json_t *parts; /* part name -> value, for record_id */
    size_t printed;
    size_t skipped_parts;
};

/* Top-level fields first, then the steps in the order devices run them, then anything else. */
static json_t *merge_record(const char *record_id, json_t *parts)
{
    static const char *const order[] = {"plgdTime",   "ownership", "cloud",
                                        "credential", "acl",       "resources"};
    json_t *record = json_object();
    json_t *top = json_object_get(parts, "record");
    const char *key;
    json_t *value;

    if (record == NULL)
        return NULL;
    json_object_set_new(record, "id", json_string(record_id));
    if (json_is_object(top))
        json_object_update(record, top);
    for (size_t i = 0; i < sizeof(order) / sizeof(*order); i++) {
        value = json_object_get(parts, order[i]);
        if (value != NULL)
            json_object_set(record, order[i], value);
    }
    json_object_foreach(parts, key, value)
    {
        if (strcmp(key, "record") != 0 && json_object_get(record, key) == NULL)
            json_object_set(record, key, value);
    }
    return record;
}

static void format_coap_code(json_t *step, char *out, size_t length)
{
    json_t *code = json_object_get(json_object_get(step, "status"), "coapCode");
    json_int_t value;

    if (!json_is_integer(code)) {
        snprintf(out, length, "-");
        return;
    }
    value = json_integer_value(code);
    snprintf(out, length, "%d.%02d", (int)((value >> 5) & 7), (int)(value & 31));
}

static void print_record_header(void)
{
    printf("%-36s  %-36s  %-36s", "RECORD ID", "DEVICE ID", "GROUP");
    for (size_t i = 0; i < RECORD_STEP_COUNT; i++)
        printf("  %-*s", i + 1 < RECORD_STEP_COUNT ? (int)strlen(RECORD_STEP_HEADERS[i]) : 0,
               RECORD_STEP_HEADERS[i]);
    printf("\n");
}

static void print_record_row(json_t *record)
{
    char buffer[32];
    char code[16];

    printf("%-36s", field_text(record, "id", buffer, sizeof(buffer)));
    printf("  %-36s", field_text(record, "deviceId", buffer, sizeof(buffer)));
    printf("  %-36s", field_text(record, "enrollmentGroupId", buffer, sizeof(buffer)));
    for (size_t i = 0; i < RECORD_STEP_COUNT; i++) {
        format_coap_code(json_object_get(record, RECORD_STEPS[i]), code, sizeof(code));
        if (i + 1 < RECORD_STEP_COUNT)
            printf("  %-*s", (int)strlen(RECORD_STEP_HEADERS[i]), code);
        else
            printf("  %s", code);
    }
    printf("\n");
}

static void flush_record(struct record_scan *scan)
{
    json_t *record;
    char buffer[32];

    if (scan->parts == NULL)
        return;
    record = merge_record(scan->record_id, scan->parts);
    json_decref(scan->parts);
    scan->parts = NULL;
    if (record == NULL)
        return;
    if (scan->options->device_id[0] == '\0' ||
        strcmp(field_text(record, "deviceId", buffer, sizeof(buffer)), scan->options->device_id) ==
            0) {
        if (scan->options->json)
            print_json_result(record);
        else
            print_record_row(record);
        scan->printed++;
    }
    json_decref(record);
}

static int record_part(void *user, const char *key, size_t key_length, const char *value,
                       size_t value_length)
{
    struct record_scan *scan = user;
    const char *slash = memchr(key, '/', key_length);
    size_t id_length = slash != NULL ? (size_t)(slash - key) : key_length;
    char part[64];
    json_t *parsed;

    if (slash == NULL || id_length >= sizeof(scan->record_id) ||
        key_length - id_length - 1 >= sizeof(part)) {
        scan->skipped_parts++;
        return 0;
    }
    if (scan->parts != NULL &&
        (strlen(scan->record_id) != id_length || memcmp(scan->record_id, key, id_length) != 0))
        flush_record(scan);
    if (scan->parts == NULL) {
        memcpy(scan->record_id, key, id_length);
        scan->record_id[id_length] = '\0';
        scan->parts = json_object();
        if (scan->parts == NULL)
            return 1;
    }
    memcpy(part, slash + 1, key_length - id_length - 1);
    part[key_length - id_length - 1] = '\0';
    parsed = json_loadb(value, value_length, 0, NULL);
    if (parsed == NULL) {
        scan->skipped_parts++;
        return 0;
    }
    json_object_set_new(scan->parts, part, parsed);
    return 0;
}

static int command_records(int argc, char **argv)
{
    struct options options;
    int code = parse_options(argc, argv, OPTION_DATA | OPTION_DEVICE | OPTION_ID | OPTION_JSON,
                             USAGE_RECORDS, &options);
    struct record_scan scan = {.options = &options};
    char prefix[UUID_STRING_LENGTH + 2] = "";
    struct store *store;
    int status;

    if (code >= 0)
        return code;
    store = open_store("records", options.data_dir);
    if (store == NULL)
        return EXIT_RUNTIME;
    if (options.record_id[0] != '\0')
        snprintf(prefix, sizeof(prefix), "%s/", options.record_id);
    if (!options.json)
        print_record_header();
    status = store_scan(store, STORE_RECORDS, prefix, strlen(prefix), record_part, &scan);
    flush_record(&scan);
    store_close(store);
    if (status != STORE_OK) {
        fprintf(stderr, "dpsctl records: reading the store in %s failed\n", options.data_dir);
        return EXIT_RUNTIME;
    }
    if (scan.skipped_parts > 0)
        fprintf(stderr, "dpsctl records: %zu unreadable record parts skipped\n",
                scan.skipped_parts);
    if (options.record_id[0] != '\0' && scan.printed == 0) {
        fprintf(stderr, "dpsctl records: no provisioning record %s%s%s\n", options.record_id,
                options.device_id[0] != '\0' ? " for device " : "", options.device_id);
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

/* Issuance log entries, one JSON document per serial. */
struct issuance_scan {
    const struct options *options;
    size_t unreadable;
};

static int issuance_entry(void *user, const char *key, size_t key_length, const char *value,
                          size_t value_length)
{
    struct issuance_scan *scan = user;
    json_t *entry = json_loadb(value, value_length, 0, NULL);
    char buffers[5][32];

    if (!json_is_object(entry)) {
        json_decref(entry);
        scan->unreadable++;
        return 0;
    }
    if (json_object_get(entry, "serial") == NULL)
        json_object_set_new(entry, "serial", json_stringn(key, key_length));
    if (scan->options->device_id[0] == '\0' ||
        strcmp(field_text(entry, "deviceId", buffers[0], sizeof(buffers[0])),
               scan->options->device_id) == 0) {
        if (scan->options->json)
            print_json_result(entry);
        else
            printf("%-40s  %-36s  %-36s  %-20s  %s\n",
                   field_text(entry, "serial", buffers[0], sizeof(buffers[0])),
                   field_text(entry, "deviceId", buffers[1], sizeof(buffers[1])),
                   field_text(entry, "recordId", buffers[2], sizeof(buffers[2])),
                   field_text(entry, "issuedAt", buffers[3], sizeof(buffers[3])),
                   field_text(entry, "notAfter", buffers[4], sizeof(buffers[4])));
    }
    json_decref(entry);
    return 0;
}

static int command_issuance(int argc, char **argv)
{
    struct options options;
    int code = parse_options(argc, argv, OPTION_DATA | OPTION_DEVICE | OPTION_JSON, USAGE_ISSUANCE,
                             &options);
    struct issuance_scan scan = {.options = &options};
    struct store *store;
    int status;

    if (code >= 0)
        return code;
    store = open_store("issuance", options.data_dir);
    if (store == NULL)
        return EXIT_RUNTIME;
    if (!options.json)
        printf("%-40s  %-36s  %-36s  %-20s  %s\n", "SERIAL", "DEVICE ID", "RECORD ID", "ISSUED AT",
               "NOT AFTER");
    status = store_scan(store, STORE_ISSUANCE, "", 0, issuance_entry, &scan);
    store_close(store);
    if (status != STORE_OK) {
        fprintf(stderr, "dpsctl issuance: reading the store in %s failed\n", options.data_dir);
        return EXIT_RUNTIME;
    }
    if (scan.unreadable > 0)
        fprintf(stderr, "dpsctl issuance: %zu unreadable entries skipped\n", scan.unreadable);
    return EXIT_OK;
}

/* Bindings: device id -> record id, the value as UUID text (or a JSON string). */
static int binding_entry(void *user, const char *key, size_t key_length, const char *value,
                         size_t value_length)
{
    const struct options *options = user;
    json_t *record_id = NULL;
    json_t *entry;

    if (value_length > 0 && value[0] == '"')
        record_id = json_loadb(value, value_length, JSON_DECODE_ANY, NULL);
    if (!json_is_string(record_id)) {
        json_decref(record_id);
        record_id = json_stringn(value, value_length);
    }
    entry = json_object();
    if (entry == NULL || record_id == NULL) {
        json_decref(entry);
        json_decref(record_id);
        return 1;
    }
    json_object_set_new(entry, "deviceId", json_stringn(key, key_length));
    json_object_set_new(entry, "recordId", record_id);
    if (options->json)
        print_json_result(entry);
    else
        printf("%-36s  %s\n", json_string_value(json_object_get(entry, "deviceId")),
               json_string_value(json_object_get(entry, "recordId")));
    json_decref(entry);
    return 0;
}

static int command_bindings(int argc, char **argv)
{
    struct options options;
    int code = parse_options(argc, argv, OPTION_DATA | OPTION_JSON, USAGE_BINDINGS, &options);
    struct store *store;
    int status;

    if (code >= 0)
        return code;
    store = open_store("bindings", options.data_dir);
    if (store == NULL)
        return EXIT_RUNTIME;
    if (!options.json)
        printf("%-36s  %s\n", "DEVICE ID", "RECORD ID");
    status = store_scan(store, STORE_BINDINGS, "", 0, binding_entry, &options);
    store_close(store);
    if (status != STORE_OK) {
        fprintf(stderr, "dpsctl bindings: reading the store in %s failed\n", options.data_dir);
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

/* The token command: an operator token for the management API. */
static int command_token(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"key", required_argument, NULL, 'k'},
        {"owner", required_argument, NULL, 'o'},
        {"expires-in", required_argument, NULL, 'e'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *key_file = NULL;
    const char *owner = NULL;
    long lifetime_s = 365L * 24 * 3600;
    char *end;
    char err[512] = "";
    int option;

    opterr = 0;
    optind = 1;
    while ((option = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
        switch (option) {
        case 'k':
            key_file = optarg;
            break;
        case 'o':
            owner = optarg;
            break;
        case 'e':
            errno = 0;
            lifetime_s = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || lifetime_s > 100L * 365 * 86400 ||
                lifetime_s < -100L * 365 * 86400)
                return usage_error(USAGE_TOKEN, "token", "--expires-in must be a number of seconds",
                                   optarg);
            break;
        case 'h':
            fputs(USAGE_TOKEN, stdout);
            return EXIT_OK;
        case ':':
            return usage_error(USAGE_TOKEN, "token", "option needs a value", argv[optind - 1]);
        default:
            return usage_error(USAGE_TOKEN, "token", "unknown option", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error(USAGE_TOKEN, "token", "unexpected argument", argv[optind]);
    if (key_file == NULL || owner == NULL || owner[0] == '\0')
        return usage_error(USAGE_TOKEN, "token", "--key and --owner are required", NULL);
    char *token = pki_operator_token(key_file, owner, lifetime_s, err, sizeof(err));
    if (token == NULL) {
        fprintf(stderr, "dpsctl token: %s\n", err);
        return EXIT_RUNTIME;
    }
    printf("%s\n", token);
    free(token);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } commands[] = {
        {"pki", command_pki},           {"records", command_records},
        {"issuance", command_issuance}, {"bindings", command_bindings},
        {"token", command_token},
    };
    int code = EXIT_USAGE;
    bool found = false;

    if (argc < 2) {
        print_usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(*commands); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            code = commands[i].run(argc - 1, argv + 1);
            found = true;
            break;
        }
    }
    if (!found) {
        fprintf(stderr, "dpsctl: unknown command '%s'\n", argv[1]);
        print_usage(stderr);
        return EXIT_USAGE;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "dpsctl: writing the output failed: %s\n", strerror(errno));
        return EXIT_RUNTIME;
    }
    return code;
}
