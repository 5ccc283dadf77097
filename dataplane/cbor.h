/*
 * cbor: a small zero-copy CBOR (RFC 8949) reader for the fixed request
 * schemas of the DPS protocol, and for the load generator's response checks.
 *
 * The device client (tinycbor through iotivity-lite) writes maps and arrays
 * with indefinite length, so containers of both kinds are read. Strings must
 * be definite-length (tinycbor never chunks them); a chunked string is
 * reported as an error. Nesting is bounded by CBOR_MAX_DEPTH so hostile input
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

#define CBOR_MAX_DEPTH 16

enum cbor_item_type {
    CBOR_TYPE_UINT,
    CBOR_TYPE_NEGINT,
    CBOR_TYPE_BYTES,
    CBOR_TYPE_TEXT,
    CBOR_TYPE_ARRAY,
    CBOR_TYPE_MAP,
    CBOR_TYPE_TAG,
    CBOR_TYPE_SIMPLE, /* false, true, null, undefined, floats */
    CBOR_TYPE_BREAK,  /* the 0xFF stop code of an indefinite container */
    CBOR_TYPE_INVALID,
};

struct cbor_reader {
    const uint8_t *position;
    const uint8_t *end;
    unsigned depth;
};

/* State of one open map or array. For maps, one step is one key/value pair. */
struct cbor_container {
    uint64_t remaining; /* definite: items (pairs for maps) left */
    bool indefinite;
};

void cbor_reader_init(struct cbor_reader *reader, const uint8_t *data, size_t length);

/* Type of the next item without consuming it (CBOR_TYPE_INVALID at end of input). */
enum cbor_item_type cbor_peek(const struct cbor_reader *reader);

/* All read functions return 0 on success and -1 on a type mismatch or bad input. */
int cbor_enter_map(struct cbor_reader *reader, struct cbor_container *container);
int cbor_enter_array(struct cbor_reader *reader, struct cbor_container *container);

/*
 * Returns 1 when another item (for a map: another key, followed by its value)
 * follows, 0 when the container ended (its break code is consumed and the
 * nesting level closed), -1 on error.
 */
int cbor_container_next(struct cbor_reader *reader, struct cbor_container *container);

int cbor_read_text(struct cbor_reader *reader, const char **text, size_t *length);
int cbor_read_bytes(struct cbor_reader *reader, const uint8_t **bytes, size_t *length);
int cbor_read_uint(struct cbor_reader *reader, uint64_t *value);
int cbor_read_int(struct cbor_reader *reader, int64_t *value); /* major 0 or 1, range-checked */
int cbor_read_bool(struct cbor_reader *reader, bool *value);

/* Skips one whole item (containers and tags included). */
int cbor_skip(struct cbor_reader *reader);

/* True when text of the given length equals the NUL-terminated literal. */
bool cbor_text_equals(const char *text, size_t length, const char *literal);

#endif
