/*
 * cbor: a small zero-copy CBOR (RFC 8949) reader for the fixed request
 * schemas of the DPS protocol, and for the load generator's response checks.
 *
 * The device client (tinycbor through iotivity-lite) writes maps and arrays
 * with indefinite length, so containers of both kinds are read. Strings must
 * be definite-length (tinycbor never chunks them); a chunked string is
 * reported as an error. Nesting is bounded by DPS_CBOR_MAX_DEPTH so hostile input
 * cannot exhaust the stack. Text is returned as pointer and length into the
 * input buffer, without copying and without NUL termination.
 *
 * Writing responses goes through payload.h, which emits CBOR or JSON.
 */
#ifndef DPS_CBOR_H
#define DPS_CBOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DPS_CBOR_MAX_DEPTH 16

enum dps_cbor_item_type {
    DPS_CBOR_TYPE_UINT,
    DPS_CBOR_TYPE_NEGINT,
    DPS_CBOR_TYPE_BYTES,
    DPS_CBOR_TYPE_TEXT,
    DPS_CBOR_TYPE_ARRAY,
    DPS_CBOR_TYPE_MAP,
    DPS_CBOR_TYPE_TAG,
    DPS_CBOR_TYPE_SIMPLE, /* false, true, null, undefined, floats */
    DPS_CBOR_TYPE_BREAK,  /* the 0xFF stop code of an indefinite container */
    DPS_CBOR_TYPE_INVALID,
};

struct dps_cbor_reader {
    const uint8_t *position;
    const uint8_t *end;
    unsigned depth;
};

/* State of one open map or array. For maps, one step is one key/value pair. */
struct dps_cbor_container {
    uint64_t remaining; /* definite: items (pairs for maps) left */
    bool indefinite;
};

/* Major types: the top three bits of an item's first byte. */
#define DPS_CBOR_MAJOR_UINT 0
#define DPS_CBOR_MAJOR_NEGINT 1
#define DPS_CBOR_MAJOR_BYTES 2
#define DPS_CBOR_MAJOR_TEXT 3
#define DPS_CBOR_MAJOR_ARRAY 4
#define DPS_CBOR_MAJOR_MAP 5
#define DPS_CBOR_MAJOR_TAG 6
#define DPS_CBOR_MAJOR_SIMPLE 7

/* An item's head: its major type, and its argument (a value, a length or a count). */
struct dps_cbor_head {
    unsigned major;
    unsigned info; /* the additional information, the low five bits of the first byte */
    uint64_t argument;
    bool indefinite; /* a string or container of indefinite length */
};

void dps_cbor_reader_init(struct dps_cbor_reader *reader, const uint8_t *data, size_t length);

/* Type of the next item without consuming it (DPS_CBOR_TYPE_INVALID at end of input). */
enum dps_cbor_item_type dps_cbor_peek(const struct dps_cbor_reader *reader);

/* All read functions return 0 on success and -1 on a type mismatch or bad input. */
int dps_cbor_enter_map(struct dps_cbor_reader *reader, struct dps_cbor_container *container);
int dps_cbor_enter_array(struct dps_cbor_reader *reader, struct dps_cbor_container *container);

/*
 * Returns 1 when another item (for a map: another key, followed by its value)
 * follows, 0 when the container ended (its break code is consumed and the
 * nesting level closed), -1 on error.
 */
int dps_cbor_container_next(struct dps_cbor_reader *reader, struct dps_cbor_container *container);

/*
 * The next key of a map whose keys are text (the DPS schemas): 1 with the
 * key (its value is next), 0 when the map ended, -1 on error or a key that is
 * not text.
 */
int dps_cbor_map_next_key(struct dps_cbor_reader *reader, struct dps_cbor_container *map,
                          const char **key, size_t *key_length);

/*
 * The head of the next item when its major type is major, the reader moved past the head only
 * (a string's bytes or a container's items follow). The typed readers below are built on it.
 */
int dps_cbor_read_head(struct dps_cbor_reader *reader, unsigned major, struct dps_cbor_head *head);

/* A definite-length string (text or bytes) of the given major type, pointed to in the input. */
int dps_cbor_read_string(struct dps_cbor_reader *reader, unsigned major, const uint8_t **data,
                         size_t *length);

int dps_cbor_read_text(struct dps_cbor_reader *reader, const char **text, size_t *length);
int dps_cbor_read_int(struct dps_cbor_reader *reader,
                      int64_t *value); /* major 0 or 1, range-checked */

/* Skips one whole item (containers and tags included). */
int dps_cbor_skip(struct dps_cbor_reader *reader);

/* True when text of the given length equals the NUL-terminated literal. */
bool dps_cbor_text_equals(const char *text, size_t length, const char *literal);

#endif
