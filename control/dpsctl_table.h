/*
 * dpsctl_table: printing results (dpsctl_table.c) as aligned tables for
 * people or, with --json, as one {"result": ...} line each.
 */
#ifndef DPS_DPSCTL_TABLE_H
#define DPS_DPSCTL_TABLE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

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

struct sink {
    struct table table;
    bool json;
    bool quiet_when_empty; /* a lookup by id: no bare header when nothing matched */
    size_t count;
};

/* Adds a result (printed at once with --json); sink_end prints the table and frees it. */
void sink_put(struct sink *sink, json_t *result);
void sink_end(struct sink *sink);
void print_row(const struct view *view, char *const *cells, const size_t *widths);
void table_free(struct table *table);

/* A field as table text: strings as they are, numbers and booleans printed, else "-". */
char *field_text(json_t *object, const char *key);
/* The strings of an array joined with ",", or "-". */
char *joined_text(json_t *array);
/* The CoAP code of a record's step (an enum dps_step) as text ("2.05"), or "-". */
char *coap_code_text(json_t *record, size_t step);

extern const struct view RECORD_VIEW, ISSUANCE_VIEW, BINDING_VIEW, GROUP_VIEW, HUB_VIEW, BLOCK_VIEW,
    NODE_VIEW;

#endif
