/*
 * dpsctl_table: how dpsctl prints what the API or the store returns. A
 * view turns one result object into the cells of a table row; a sink takes
 * results one by one and prints them at the end as an aligned table, or at
 * once as {"result": ...} lines with --json. The views of every list
 * (groups, hubs, records, issuance, bindings, blocklist) are here.
 */
#include "control/dpsctl_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/steps.h"

/* A field as table text: strings as they are, numbers and booleans printed, else "-". */
char *field_text(json_t *object, const char *key)
{
    json_t *value = json_object_get(object, key);
    char buffer[32];

    if (json_is_string(value) && json_string_value(value)[0] != '\0')
        return strdup(json_string_value(value));
    if (json_is_integer(value)) {
        snprintf(buffer, sizeof(buffer), "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        return strdup(buffer);
    }
    if (json_is_real(value)) {
        snprintf(buffer, sizeof(buffer), "%g", json_real_value(value));
        return strdup(buffer);
    }
    if (json_is_boolean(value))
        return strdup(json_is_true(value) ? "yes" : "no");
    return strdup("-");
}

/* The strings of an array joined with ",", or "-". */
char *joined_text(json_t *array)
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

void print_row(const struct view *view, char *const *cells, const size_t *widths)
{
    for (size_t column = 0; column < view->columns; column++) {
        const char *text = cells[column] != NULL ? cells[column] : "-";
        if (column + 1 < view->columns)
            printf("%-*s  ", (int)widths[column], text);
        else
            printf("%s\n", text);
    }
}

void table_free(struct table *table)
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

static void print_json_line(const char *key, json_t *value)
{
    json_t *wrapper = json_pack("{sO}", key, value);
    char *text = wrapper != NULL ? json_dumps(wrapper, JSON_COMPACT) : NULL;

    if (text != NULL)
        printf("%s\n", text);
    free(text);
    json_decref(wrapper);
}

void sink_put(struct sink *sink, json_t *result)
{
    sink->count++;
    if (sink->json)
        print_json_line("result", result);
    else
        table_add(&sink->table, result);
}

void sink_end(struct sink *sink)
{
    if (sink->json)
        return;
    if (sink->quiet_when_empty && sink->count == 0)
        table_free(&sink->table);
    else
        table_print(&sink->table);
}

/* The views. */
char *coap_code_text(json_t *record, size_t step)
{
    json_t *part = json_object_get(record, dps_step_routes[step].record_part);
    json_t *status = dps_step_routes[step].flat_status ? part : json_object_get(part, "status");
    json_t *code = json_object_get(status, "coapCode");
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
    for (size_t i = 0; i < STEP_COUNT; i++)
        cells[3 + i] = coap_code_text(record, i);
}

const struct view RECORD_VIEW = {
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

const struct view ISSUANCE_VIEW = {
    5, {"SERIAL", "DEVICE ID", "RECORD ID", "ISSUED AT", "NOT AFTER"}, {0}, issuance_cells};

static void binding_cells(json_t *binding, char **cells)
{
    cells[0] = field_text(binding, "deviceId");
    cells[1] = field_text(binding, "recordId");
    cells[2] = field_text(binding, "owner");
}

const struct view BINDING_VIEW = {3, {"DEVICE ID", "RECORD ID", "OWNER"}, {0}, binding_cells};

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

const struct view GROUP_VIEW = {
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

const struct view HUB_VIEW = {
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

const struct view BLOCK_VIEW = {
    5, {"ENTRY ID", "BLOCKS", "MATCH", "REASON", "CREATED AT"}, {0}, block_cells};

static void node_cells(json_t *node, char **cells)
{
    static const char *const fields[] = {"name",
                                         "state",
                                         "apiUrl",
                                         "deviceAddress",
                                         "connections",
                                         "provisioningsPerSecond",
                                         "configurationGeneration",
                                         "reason"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        cells[i] = field_text(node, fields[i]);
}

const struct view NODE_VIEW = {
    8,
    {"NODE", "STATE", "API", "DEVICES AT", "CONNECTIONS", "PROV/S", "GENERATION", "REASON"},
    {0},
    node_cells};
