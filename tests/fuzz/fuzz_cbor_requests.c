/*
 * fuzz_cbor_requests: the DPS request parsers (dps_requests.h) and the CBOR
 * reader (cbor.h) under them. The parsers are called on every input (what
 * they point at lies inside it, a device id they accept is a UUID's text),
 * and the reader's public calls are driven two ways:
 *
 *  - a generic walker that enters every map and array, steps with
 *    dps_cbor_container_next() and reads each scalar with its typed read call,
 *    falling back to dps_cbor_skip() only where the API has no read call (tags,
 *    floats, null, out-of-range negative integers);
 *  - the request shape: a map of text keys, "di" and nested maps read by key
 *    with dps_cbor_text_equals(), everything else skipped.
 *
 * Invariants: the walker and dps_cbor_skip() agree on every item (both fail, or
 * both succeed and end at the same byte); a failed read leaves the reader
 * where it was; nesting never exceeds DPS_CBOR_MAX_DEPTH; text points inside the
 * input; after a whole item the reader is back at depth 0.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <string.h>

#include "dataplane/cbor.h"
#include "dataplane/dps_requests.h"
#include "tests/unit/cbor_readers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int condition)
{
    if (!condition)
        abort();
}

static const uint8_t *input_start;
static const uint8_t *input_end;

static void check_inside(const void *pointer, size_t length)
{
    const uint8_t *p = pointer;
    check(length == 0 || (p >= input_start && p <= input_end && length <= (size_t)(input_end - p)));
}

/* A read that fails must not move the reader. */
static int checked_read(struct dps_cbor_reader *reader, int result,
                        const struct dps_cbor_reader *before)
{
    if (result != 0)
        check(reader->position == before->position && reader->depth == before->depth);
    return result;
}

static int walk_item(struct dps_cbor_reader *reader);

static int walk_container(struct dps_cbor_reader *reader, bool map)
{
    struct dps_cbor_reader before = *reader;
    struct dps_cbor_container container;
    int result =
        map ? dps_cbor_enter_map(reader, &container) : dps_cbor_enter_array(reader, &container);
    if (checked_read(reader, result, &before) != 0)
        return -1;
    check(reader->depth == before.depth + 1 && reader->depth <= DPS_CBOR_MAX_DEPTH);
    int more;
    while ((more = dps_cbor_container_next(reader, &container)) == 1) {
        if (walk_item(reader) != 0 || (map && walk_item(reader) != 0))
            return -1;
    }
    if (more != 0)
        return -1;
    check(reader->depth == before.depth);
    return 0;
}

static int walk_scalar(struct dps_cbor_reader *reader, enum dps_cbor_item_type type)
{
    struct dps_cbor_reader before = *reader;
    const char *text;
    const uint8_t *bytes;
    size_t length;
    uint64_t unsigned_value;
    int64_t signed_value;
    bool flag;

    switch (type) {
    case DPS_CBOR_TYPE_UINT:
        return checked_read(reader, dps_cbor_read_uint(reader, &unsigned_value), &before);
    case DPS_CBOR_TYPE_NEGINT:
        if (dps_cbor_read_int(reader, &signed_value) == 0) {
            check(signed_value < 0);
            return 0;
        }
        check(reader->position == before.position);
        return dps_cbor_skip(reader);
    case DPS_CBOR_TYPE_TEXT:
        if (checked_read(reader, dps_cbor_read_text(reader, &text, &length), &before) != 0)
            return -1;
        check_inside(text, length);
        check(dps_cbor_text_equals(text, length, "di") ==
              (length == 2 && text[0] == 'd' && text[1] == 'i'));
        return 0;
    case DPS_CBOR_TYPE_BYTES:
        if (checked_read(reader, dps_cbor_read_bytes(reader, &bytes, &length), &before) != 0)
            return -1;
        check_inside(bytes, length);
        return 0;
    case DPS_CBOR_TYPE_SIMPLE:
        if (dps_cbor_read_bool(reader, &flag) == 0)
            return 0;
        check(reader->position == before.position);
        return dps_cbor_skip(reader);
    default:
        return dps_cbor_skip(reader);
    }
}

/* Walks one item and checks that dps_cbor_skip() on the same bytes agrees. */
static int walk_item(struct dps_cbor_reader *reader)
{
    struct dps_cbor_reader skipper = *reader;
    int skipped = dps_cbor_skip(&skipper);
    if (skipped != 0)
        check(skipper.position == reader->position);

    enum dps_cbor_item_type type = dps_cbor_peek(reader);
    int walked;
    if (type == DPS_CBOR_TYPE_MAP || type == DPS_CBOR_TYPE_ARRAY)
        walked = walk_container(reader, type == DPS_CBOR_TYPE_MAP);
    else if (type == DPS_CBOR_TYPE_BREAK || type == DPS_CBOR_TYPE_INVALID)
        walked = -1;
    else
        walked = walk_scalar(reader, type);

    check(walked == skipped);
    if (walked == 0)
        check(reader->position == skipper.position && reader->depth == skipper.depth);
    return walked;
}

/* The DPS request shape: text keys, known ones read by type, the rest skipped. */
static void parse_request_shape(const uint8_t *data, size_t size)
{
    struct dps_cbor_reader reader;
    struct dps_cbor_container map;
    dps_cbor_reader_init(&reader, data, size);
    if (dps_cbor_enter_map(&reader, &map) != 0)
        return;
    int more;
    while ((more = dps_cbor_container_next(&reader, &map)) == 1) {
        const char *key;
        size_t key_length;
        if (dps_cbor_read_text(&reader, &key, &key_length) != 0)
            return;
        if (dps_cbor_text_equals(key, key_length, "di") &&
            dps_cbor_peek(&reader) == DPS_CBOR_TYPE_TEXT) {
            const char *value;
            size_t value_length;
            if (dps_cbor_read_text(&reader, &value, &value_length) != 0)
                return;
            check_inside(value, value_length);
        } else if ((dps_cbor_text_equals(key, key_length, "csr") ||
                    dps_cbor_text_equals(key, key_length, "selectedGateway")) &&
                   dps_cbor_peek(&reader) == DPS_CBOR_TYPE_MAP) {
            struct dps_cbor_container inner;
            if (dps_cbor_enter_map(&reader, &inner) != 0)
                return;
            int inner_more;
            while ((inner_more = dps_cbor_container_next(&reader, &inner)) == 1) {
                if (dps_cbor_read_text(&reader, &key, &key_length) != 0 ||
                    dps_cbor_skip(&reader) != 0)
                    return;
            }
            if (inner_more != 0)
                return;
        } else if (dps_cbor_skip(&reader) != 0) {
            return;
        }
    }
    if (more == 0)
        check(reader.depth == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input_start = data;
    input_end = data + size;

    struct dps_cbor_reader reader;
    dps_cbor_reader_init(&reader, data, size);
    while (dps_cbor_peek(&reader) != DPS_CBOR_TYPE_INVALID) {
        if (walk_item(&reader) != 0)
            break;
        check(reader.depth == 0);
    }
    parse_request_shape(data, size);

    struct cloud_request cloud = {0};
    if (dps_parse_cloud_request(data, size, &cloud) == 0) {
        check(strlen(cloud.device_id) == 36);
        check_inside(cloud.gateway_uri, cloud.gateway_uri_length);
    }
    char device_id[37] = "";
    const char *pem = NULL, *problem = NULL;
    size_t pem_length = 0;
    if (dps_parse_credentials_request(data, size, device_id, &pem, &pem_length, &problem) == 0)
        check_inside(pem, pem_length);
    else
        check(problem != NULL);
    check(device_id[0] == '\0' || strlen(device_id) == 36);
    return 0;
}
