/*
 * dpsctl_options: the vocabulary of dpsctl's command line. Every option
 * has an id (a bit in a command's allowed set) and one long name; a
 * command's usage and a usage error are printed the same way by every
 * command; the small parsers here check arguments (UUIDs, serials, hex
 * ids, counts) and read the files options name, before anything is sent.
 */
#include "control/dpsctl_options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_LIMIT (1024 * 1024)

const struct option LONG_OPTIONS[] = {
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

void print_command_help(const struct command *command, FILE *out)
{
    fprintf(out, "usage: %s", command->usage);
    if ((command->allowed & BIT(OPT_API)) != 0)
        fputs(
            "  Connection: --api URL, --token-file FILE, --cacert FILE, --json (dpsctl --help).\n",
            out);
}

int usage_error(const struct command *command, const char *name, const char *message,
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

/* Normalises a UUID argument to the lower-case form the store's keys use. */
bool parse_uuid_argument(const char *text, char out[UUID_STRING_LENGTH + 1])
{
    struct dps_uuid uuid;

    if (uuid_text_parse(text, strlen(text), &uuid) != 0)
        return false;
    uuid_format(&uuid, out);
    return true;
}

bool parse_unsigned(const char *text, unsigned long max, unsigned long *out)
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

bool is_hex(const char *text, size_t length)
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
bool is_serial(const char *text)
{
    return strlen(text) <= SERIAL_MAX_DIGITS && is_hex(text, strlen(text));
}

/* Reads a whole text file (malloc'd), or NULL with the reason in err. */
char *read_text_file(const char *path, char *err, size_t err_length)
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
