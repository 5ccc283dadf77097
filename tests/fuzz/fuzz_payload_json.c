/*
 * fuzz_payload_json: payload_json(), which turns configured JSON (initial
 * resources, ACL overrides) into a response body in the negotiated format.
 * The input is the JSON text. It is written both as CBOR and as JSON, into a
 * roomy buffer and into a small one (to exercise the overflow path).
 * Invariants: success and failure agree with payload_finish(); the length
 * stays within the buffer; CBOR that was written is one well-formed item the
 * cbor.h reader skips exactly to the end; JSON output parses back as JSON.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dataplane/cbor.h"
#include "dataplane/payload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int condition)
{
    if (!condition)
        abort();
}

static long write_json(enum payload_format format, const char *text, uint8_t *buffer,
                       size_t capacity)
{
    struct payload_writer writer;
    payload_init(&writer, format, buffer, capacity);
    int result = payload_json(&writer, text);
    long length = payload_finish(&writer);
    check((result == 0) == (length >= 0));
    check(length <= (long)capacity);
    return length;
}

static void check_cbor(const uint8_t *buffer, long length)
{
    struct dps_cbor_reader reader;
    dps_cbor_reader_init(&reader, buffer, (size_t)length);
    /*
     * Nesting deeper than the reader allows is the only reason a document
     * the writer produced may be refused (PAYLOAD_MAX_DEPTH equals it).
     */
    check(dps_cbor_skip(&reader) == 0);
    check(reader.position == buffer + length);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    check(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';

    size_t capacity = 4 * size + 64;
    uint8_t *buffer = malloc(capacity);
    check(buffer != NULL);

    long length = write_json(PAYLOAD_CBOR, text, buffer, capacity);
    if (length >= 0)
        check_cbor(buffer, length);

    length = write_json(PAYLOAD_JSON, text, buffer, capacity);
    if (length >= 0) {
        json_t *parsed = json_loadb((const char *)buffer, (size_t)length,
                                    JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        check(parsed != NULL);
        json_decref(parsed);
    }

    uint8_t small[16];
    length = write_json(PAYLOAD_CBOR, text, small, sizeof(small));
    if (length >= 0)
        check_cbor(small, length);
    write_json(PAYLOAD_JSON, text, small, sizeof(small));

    free(buffer);
    free(text);
    return 0;
}
