/*
 * cbor_readers: readers the product does not need (the DPS request schemas hold text, integers,
 * maps and arrays), built for the tests and the fuzz target on dps_cbor_read_head. Like the
 * product's readers: 0 on success, -1 on a type mismatch or bad input, the reader unmoved.
 */
#ifndef DPS_TESTS_CBOR_READERS_H
#define DPS_TESTS_CBOR_READERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/cbor.h"

static inline int dps_cbor_read_uint(struct dps_cbor_reader *reader, uint64_t *value)
{
    struct dps_cbor_head head;
    if (dps_cbor_read_head(reader, DPS_CBOR_MAJOR_UINT, &head) != 0)
        return -1;
    *value = head.argument;
    return 0;
}

/* A definite-length byte string, pointed to in the input. */
static inline int dps_cbor_read_bytes(struct dps_cbor_reader *reader, const uint8_t **bytes,
                                      size_t *length)
{
    return dps_cbor_read_string(reader, DPS_CBOR_MAJOR_BYTES, bytes, length);
}

/* false (0xF4) or true (0xF5). */
static inline int dps_cbor_read_bool(struct dps_cbor_reader *reader, bool *value)
{
    if (reader->position >= reader->end || (*reader->position != 0xF4 && *reader->position != 0xF5))
        return -1;
    *value = *reader->position == 0xF5;
    reader->position++;
    return 0;
}

#endif
