/*
 * payload: writes response bodies as CBOR or JSON through one API, so DPS
 * handlers describe a response once and the Accept option picks the format.
 *
 * Containers are written with a definite item count (for maps, the number of
 * key/value pairs) which CBOR needs up front and JSON ignores; every map or
 * array must be closed with payload_end(). Inside a map, keys and values
 * alternate: payload_text() for a key, then any value call. CBOR is written
 * with libcbor's low-level encoders (no allocation). Errors are sticky: after
 * an overflow or misuse every call is a no-op and payload_finish() says so.
 */
#ifndef DPS_PAYLOAD_H
#define DPS_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PAYLOAD_MAX_DEPTH 16

enum payload_format {
    PAYLOAD_CBOR,
    PAYLOAD_JSON,
};

struct payload_writer {
    enum payload_format format;
    uint8_t *buffer;
    size_t capacity;
    size_t length;
    bool failed;
    unsigned depth;
    uint32_t written[PAYLOAD_MAX_DEPTH];  /* items written at each open level */
    uint32_t declared[PAYLOAD_MAX_DEPTH]; /* items announced at each level (2 per map pair) */
    bool in_map[PAYLOAD_MAX_DEPTH];
};

void payload_init(struct payload_writer *writer, enum payload_format format, uint8_t *buffer,
                  size_t capacity);
void payload_map(struct payload_writer *writer, size_t pairs);
void payload_array(struct payload_writer *writer, size_t items);
void payload_end(struct payload_writer *writer);
void payload_text(struct payload_writer *writer, const char *text); /* NUL-terminated */
void payload_textn(struct payload_writer *writer, const char *text, size_t length);
void payload_int(struct payload_writer *writer, int64_t value);
void payload_bool(struct payload_writer *writer, bool value);
void payload_null(struct payload_writer *writer);
void payload_double(struct payload_writer *writer, double value);

/*
 * Writes a JSON document (text) as one value: objects become maps, arrays
 * arrays, integers integers, reals doubles. Used to serve configured content
 * (initial resources, ACL overrides) in the negotiated format. 0 or -1.
 */
int payload_json(struct payload_writer *writer, const char *json_text);

/* Returns the encoded length, or -1 after overflow, misuse or unclosed containers. */
long payload_finish(struct payload_writer *writer);

#endif
