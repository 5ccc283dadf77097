/*
 * fuzz_import_config: `dpsctl import-config`'s conversion of a plgd DPS
 * configuration file (control/dpsctl_import_config.c), on arbitrary YAML.
 *
 * Invariants: a refusal is reported; an accepted file gives one YAML
 * document whose root maps only the keys the conversion writes (listen, tls,
 * dataDir, logLevel, api), each section a mapping of scalars (listen a list
 * of one scalar): whatever the reference's values hold, quoting keeps them
 * values and never makes them keys or documents of ours.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "control/dpsctl_import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int condition)
{
    if (!condition)
        abort();
}

static bool is_key(const yaml_node_t *key, const char *name)
{
    return key->type == YAML_SCALAR_NODE && strlen(name) == key->data.scalar.length &&
           memcmp(key->data.scalar.value, name, key->data.scalar.length) == 0;
}

/* node is a sequence (listen) or a mapping (tls, api) of scalars, or a scalar. */
static void check_section(yaml_document_t *document, const yaml_node_t *key,
                          const yaml_node_t *node)
{
    if (is_key(key, "listen")) {
        check(node->type == YAML_SEQUENCE_NODE);
        check(node->data.sequence.items.top - node->data.sequence.items.start == 1);
        check(yaml_document_get_node(document, node->data.sequence.items.start[0])->type ==
              YAML_SCALAR_NODE);
    } else if (is_key(key, "tls") || is_key(key, "api")) {
        check(node->type == YAML_MAPPING_NODE || node->type == YAML_SCALAR_NODE);
        for (yaml_node_pair_t *pair =
                 node->type == YAML_MAPPING_NODE ? node->data.mapping.pairs.start : NULL;
             pair != NULL && pair < node->data.mapping.pairs.top; pair++) {
            check(yaml_document_get_node(document, pair->key)->type == YAML_SCALAR_NODE);
            check(yaml_document_get_node(document, pair->value)->type == YAML_SCALAR_NODE);
        }
    } else {
        check(is_key(key, "dataDir") || is_key(key, "logLevel"));
        check(node->type == YAML_SCALAR_NODE);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *report;
    if (report == NULL)
        report = fopen("/dev/null", "w");
    check(report != NULL);
    if (size == 0)
        return 0;
    FILE *in = fmemopen((void *)data, size, "r");
    check(in != NULL);
    char *text = NULL;
    size_t length = 0;
    FILE *out = open_memstream(&text, &length);
    check(out != NULL);
    int converted = import_config_convert(in, "fuzz\nname: x", out, report);
    fclose(in);
    check(fclose(out) == 0);
    check(converted == 0 || converted == -1);
    if (converted == 0) {
        yaml_parser_t parser;
        yaml_document_t document;
        check(yaml_parser_initialize(&parser) == 1);
        yaml_parser_set_input_string(&parser, (const unsigned char *)text, length);
        check(yaml_parser_load(&parser, &document) == 1);
        yaml_node_t *root = yaml_document_get_root_node(&document);
        check(root != NULL && root->type == YAML_MAPPING_NODE);
        for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
             pair < root->data.mapping.pairs.top; pair++)
            check_section(&document, yaml_document_get_node(&document, pair->key),
                          yaml_document_get_node(&document, pair->value));
        yaml_document_delete(&document);
        /* One document only. */
        check(yaml_parser_load(&parser, &document) == 1);
        check(yaml_document_get_root_node(&document) == NULL);
        yaml_document_delete(&document);
        yaml_parser_delete(&parser);
    } else {
        check(length == 0);
    }
    free(text);
    return 0;
}
