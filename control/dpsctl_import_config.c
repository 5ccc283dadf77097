/*
 * dpsctl_import_config: `dpsctl import-config FILE` turns a plgd DPS
 * configuration file (the reference's config.yaml: log, apis.coap,
 * apis.http with its authorization, clients) into a dpsd configuration on
 * stdout, and names on stderr every setting it could not carry
 * (import_config_convert, which the fuzz target fuzz_import_config runs).
 *
 * The mapping: apis.coap.address and its TLS files become listen and tls;
 * apis.http (when enabled) becomes api, its TLS files certificate and key,
 * a required client certificate's caPool clientCA; the authorization's
 * ownerClaim and audience carry over, its first endpoint's authority
 * becomes api.authority (OIDC discovery, as the reference) and its CA pool
 * api.jwksCA; the reference has no issuer setting, so api.issuer is the
 * authority, which is what OIDC providers put in "iss". MongoDB gives way to
 * dataDir (the data itself comes through `dpsctl import`), log.level to
 * logLevel. The output has no hubs and no key registry: the reference keeps
 * those in MongoDB, and a node signs with keys it holds, which the operator
 * registers under keys:.
 */
#include "control/dpsctl_import.h"
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

struct reference {
    yaml_document_t document;
    FILE *out;    /* our configuration */
    FILE *report; /* what is not carried */
    size_t notes;
};

/* The node at a dotted path of mapping keys ("apis.http.address"), or NULL. */
static yaml_node_t *lookup(yaml_document_t *document, yaml_node_t *node, const char *path)
{
    while (node != NULL && path != NULL && path[0] != '\0') {
        const char *dot = strchr(path, '.');
        size_t length = dot != NULL ? (size_t)(dot - path) : strlen(path);
        yaml_node_t *found = NULL;
        if (node->type == YAML_MAPPING_NODE) {
            for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
                 pair < node->data.mapping.pairs.top && found == NULL; pair++) {
                yaml_node_t *key = yaml_document_get_node(document, pair->key);
                if (key != NULL && key->type == YAML_SCALAR_NODE &&
                    key->data.scalar.length == length &&
                    memcmp(key->data.scalar.value, path, length) == 0)
                    found = yaml_document_get_node(document, pair->value);
            }
        }
        node = found;
        path = dot != NULL ? dot + 1 : NULL;
    }
    return node;
}

/* A non-empty scalar at path, or NULL. */
static const char *scalar(struct reference *reference, const char *path)
{
    yaml_node_t *node =
        lookup(&reference->document, yaml_document_get_root_node(&reference->document), path);
    if (node == NULL || node->type != YAML_SCALAR_NODE || node->data.scalar.length == 0)
        return NULL;
    return (const char *)node->data.scalar.value;
}

static yaml_node_t *node_at(struct reference *reference, const char *path)
{
    return lookup(&reference->document, yaml_document_get_root_node(&reference->document), path);
}

__attribute__((format(printf, 2, 3))) static void dropped(struct reference *reference,
                                                          const char *format, ...)
{
    va_list args;
    fputs("dpsctl import-config: not carried: ", reference->report);
    va_start(args, format);
    vfprintf(reference->report, format, args);
    va_end(args);
    fputc('\n', reference->report);
    reference->notes++;
}

/*
 * A YAML double-quoted scalar. The text is UTF-8 as libyaml read it, where
 * escapes may have made characters a YAML stream may not hold raw (C0 and
 * C1 controls, DEL, U+FFFE, U+FFFF): those are escaped again.
 */
static void quoted(FILE *out, const char *text)
{
    fputc('"', out);
    for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(out, "\\%c", *c);
        else if (*c < 0x20 || *c == 0x7f)
            fprintf(out, "\\x%02x", *c);
        else if (c[0] == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f && c[1] != 0x85)
            fprintf(out, "\\x%02x", *++c);
        else if (c[0] == 0xef && c[1] == 0xbf && (c[2] == 0xbe || c[2] == 0xbf)) {
            fprintf(out, "\\u%04X", 0xffc0u | (c[2] & 0x3fu));
            c += 2;
        } else
            fputc(*c, out);
    }
    fputc('"', out);
}

static void setting(FILE *out, const char *indent, const char *key, const char *value)
{
    if (value == NULL)
        return;
    fprintf(out, "%s%s: ", indent, key);
    quoted(out, value);
    fputc('\n', out);
}

static bool is_true(struct reference *reference, const char *path)
{
    const char *value = scalar(reference, path);
    return value != NULL && strcmp(value, "true") == 0;
}

static void convert_coap(struct reference *reference)
{
    const char *address = scalar(reference, "apis.coap.address");
    yaml_node_t *protocols = node_at(reference, "apis.coap.protocols");
    fprintf(reference->out, "listen: [");
    quoted(reference->out, address != NULL ? address : "0.0.0.0:15684");
    fprintf(reference->out, "]\ntls:\n");
    setting(reference->out, "  ", "certificate", scalar(reference, "apis.coap.tls.certFile"));
    setting(reference->out, "  ", "key", scalar(reference, "apis.coap.tls.keyFile"));
    if (protocols != NULL && protocols->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *item = protocols->data.sequence.items.start;
             item < protocols->data.sequence.items.top; item++) {
            yaml_node_t *protocol = yaml_document_get_node(&reference->document, *item);
            if (protocol != NULL && protocol->type == YAML_SCALAR_NODE &&
                strcmp((const char *)protocol->data.scalar.value, "tcp") != 0)
                dropped(reference, "apis.coap.protocols: %s (devices speak CoAP over TCP here)",
                        protocol->data.scalar.value);
        }
    }
    static const char *const unused[] = {"apis.coap.maxMessageSize", "apis.coap.messagePoolSize",
                                         "apis.coap.inactivityMonitor",
                                         "apis.coap.blockwiseTransfer", NULL};
    for (size_t i = 0; unused[i] != NULL; i++) {
        if (node_at(reference, unused[i]) != NULL)
            dropped(reference, "%s (the node sizes its connections itself: limits:)", unused[i]);
    }
}

static void convert_http(struct reference *reference)
{
    if (!is_true(reference, "apis.http.enabled")) {
        if (node_at(reference, "apis.http") != NULL)
            dropped(reference, "apis.http (disabled there: no api: here)");
        return;
    }
    const char *authority = NULL;
    yaml_node_t *endpoints = node_at(reference, "apis.http.authorization.endpoints");
    yaml_node_t *first = NULL;
    if (endpoints != NULL && endpoints->type == YAML_SEQUENCE_NODE &&
        endpoints->data.sequence.items.top > endpoints->data.sequence.items.start) {
        first =
            yaml_document_get_node(&reference->document, endpoints->data.sequence.items.start[0]);
        if (endpoints->data.sequence.items.top - endpoints->data.sequence.items.start > 1)
            dropped(reference, "apis.http.authorization.endpoints[1...] (one authority here)");
    }
    yaml_node_t *authority_node = lookup(&reference->document, first, "authority");
    if (authority_node != NULL && authority_node->type == YAML_SCALAR_NODE &&
        authority_node->data.scalar.length > 0)
        authority = (const char *)authority_node->data.scalar.value;
    yaml_node_t *ca = lookup(&reference->document, first, "http.tls.caPool");
    fprintf(reference->out, "api:\n");
    setting(reference->out, "  ", "listen", scalar(reference, "apis.http.address"));
    setting(reference->out, "  ", "certificate", scalar(reference, "apis.http.tls.certFile"));
    setting(reference->out, "  ", "key", scalar(reference, "apis.http.tls.keyFile"));
    if (is_true(reference, "apis.http.tls.clientCertificateRequired"))
        setting(reference->out, "  ", "clientCA", scalar(reference, "apis.http.tls.caPool"));
    if (authority == NULL) {
        dropped(reference, "apis.http.authorization: no authority: set api.jwks or api.authority "
                           "and api.issuer");
    } else {
        setting(reference->out, "  ", "authority", authority);
        setting(reference->out, "  ", "issuer", authority);
        if (ca != NULL && ca->type == YAML_SCALAR_NODE && ca->data.scalar.length > 0)
            setting(reference->out, "  ", "jwksCA", (const char *)ca->data.scalar.value);
        fprintf(reference->report,
                "dpsctl import-config: api.issuer set to the authority %s: check it is the "
                "\"iss\" of the provider's tokens\n",
                authority);
    }
    setting(reference->out, "  ", "audience",
            scalar(reference, "apis.http.authorization.audience"));
    setting(reference->out, "  ", "ownerClaim",
            scalar(reference, "apis.http.authorization.ownerClaim"));
    if (lookup(&reference->document, first, "http.tls.keyFile") != NULL)
        dropped(reference, "the authority endpoint's client certificate (keys are fetched "
                           "without one)");
}

int import_config_convert(FILE *in, const char *name, FILE *out, FILE *report)
{
    struct reference reference = {.out = out, .report = report};
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, in);
    int loaded = yaml_parser_load(&parser, &reference.document);
    yaml_parser_delete(&parser);
    yaml_node_t *root = loaded ? yaml_document_get_root_node(&reference.document) : NULL;
    if (root == NULL || root->type != YAML_MAPPING_NODE) {
        fprintf(report, "dpsctl import-config: %s: not a YAML mapping\n", name);
        if (loaded)
            yaml_document_delete(&reference.document);
        return -1;
    }
    /* The name goes in a comment: a line break in it must not end the comment. */
    fputs("# Converted by dpsctl import-config from ", out);
    for (const unsigned char *c = (const unsigned char *)name; *c != '\0'; c++)
        fputc(*c < 0x20 || *c == 0x7f ? '?' : *c, out);
    fputs(" (a plgd DPS configuration).\n"
          "# Hubs and enrollment groups come from its MongoDB through `dpsctl import`;\n"
          "# register the keys those hubs sign with under keys: (README).\n",
          out);
    convert_coap(&reference);
    fputs("dataDir: data\n", out);
    const char *level = scalar(&reference, "log.level");
    enum log_level parsed_level;
    if (level != NULL && log_parse_level(level, &parsed_level) == 0)
        setting(out, "", "logLevel", level);
    else if (level != NULL)
        dropped(&reference, "log.level %s (debug, info, warn or error here)", level);
    convert_http(&reference);
    if (node_at(&reference, "clients.storage.mongoDB") != NULL)
        dropped(&reference, "clients.storage.mongoDB (the store is dataDir: import its "
                            "collections with dpsctl import)");
    if (node_at(&reference, "clients.openTelemetryCollector") != NULL)
        dropped(&reference, "clients.openTelemetryCollector (metrics are served on /metrics)");
    static const char *const known[] = {"log", "apis", "clients", NULL};
    for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = yaml_document_get_node(&reference.document, pair->key);
        size_t i = 0;
        while (known[i] != NULL && key != NULL && key->type == YAML_SCALAR_NODE &&
               strcmp(known[i], (const char *)key->data.scalar.value) != 0)
            i++;
        if (known[i] == NULL && key != NULL && key->type == YAML_SCALAR_NODE)
            dropped(&reference, "%s (unknown here)", key->data.scalar.value);
    }
    yaml_document_delete(&reference.document);
    fprintf(report, "dpsctl import-config: %zu settings not carried\n", reference.notes);
    return 0;
}

int command_import_config(struct client *client, struct options *options, const void *subject)
{
    FILE *file = fopen(options->argument, "r");
    if (file == NULL) {
        fprintf(stderr, "dpsctl import-config: %s: cannot read\n", options->argument);
        return EXIT_REFUSED;
    }
    int converted = import_config_convert(file, options->argument, stdout, stderr);
    fclose(file);
    return converted == 0 ? EXIT_OK : EXIT_REFUSED;
}
