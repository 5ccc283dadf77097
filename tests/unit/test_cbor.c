/*
 * Tests for the cbor reader: DPS request bodies the way the device client
 * writes them (indefinite-length maps) and the definite form, every integer
 * width, skipping of nested items with tags and floats, the depth limit, and
 * truncated or lying input that must fail without reading past the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "dataplane/cbor.h"
#include "tests/unit/cbor_readers.h"
#include "tests/unit/two_cases.h"

/* A small CBOR builder, so test inputs are written the way a reader thinks. */
struct builder {
    uint8_t data[1024];
    size_t length;
};

static void put_byte(struct builder *b, uint8_t byte)
{
    assert_true(b->length < sizeof(b->data));
    b->data[b->length++] = byte;
}

/* Head with the shortest argument encoding, as tinycbor writes it. */
static void put_head(struct builder *b, unsigned major, uint64_t argument)
{
    uint8_t initial = (uint8_t)(major << 5);
    unsigned size;
    if (argument < 24) {
        put_byte(b, initial | (uint8_t)argument);
        return;
    } else if (argument <= UINT8_MAX) {
        put_byte(b, initial | 24);
        size = 1;
    } else if (argument <= UINT16_MAX) {
        put_byte(b, initial | 25);
        size = 2;
    } else if (argument <= UINT32_MAX) {
        put_byte(b, initial | 26);
        size = 4;
    } else {
        put_byte(b, initial | 27);
        size = 8;
    }
    for (unsigned i = size; i > 0; i--)
        put_byte(b, (uint8_t)(argument >> (8 * (i - 1))));
}

static void put_text(struct builder *b, const char *text)
{
    size_t length = strlen(text);
    put_head(b, 3, length);
    assert_true(b->length + length <= sizeof(b->data));
    memcpy(b->data + b->length, text, length);
    b->length += length;
}

static void open_map(struct builder *b, bool indefinite, size_t pairs)
{
    if (indefinite)
        put_byte(b, 0xBF);
    else
        put_head(b, 5, pairs);
}

static void close_container(struct builder *b, bool indefinite)
{
    if (indefinite)
        put_byte(b, 0xFF);
}

#define DEVICE_ID "9b5b2b4e-6a4a-4b6f-8c5e-1d2c3b4a5f60"
#define GATEWAY_URI "coaps+tcp://hub.example.com:5684"
#define HUB_ID "2a3d5a4b-8f0e-4c1d-9b7a-6e5f4d3c2b1a"
#define CSR_PEM                                                                                    \
    "-----BEGIN CERTIFICATE REQUEST-----\n"                                                        \
    "MIIBFjCBvQIBADBbMVkwVwYDVQQDDFB1dWlkOjliNWIyYjRlLTZhNGEtNGI2Zi04\n"                           \
    "-----END CERTIFICATE REQUEST-----\n"

/* {"di": DEVICE_ID, key: {inner[0]: inner[1], inner[2]: inner[3]}}: the shape of two requests. */
static void build_request(struct builder *b, bool indefinite, const char *key,
                          const char *const inner[4])
{
    memset(b, 0, sizeof(*b));
    open_map(b, indefinite, 2);
    put_text(b, "di");
    put_text(b, DEVICE_ID);
    put_text(b, key);
    open_map(b, indefinite, 2);
    for (int i = 0; i < 4; i++)
        put_text(b, inner[i]);
    close_container(b, indefinite);
    close_container(b, indefinite);
}

/* {"di": ..., "selectedGateway": {"uri": ..., "id": ...}} */
static void build_cloud_request(struct builder *b, bool indefinite)
{
    static const char *const gateway[4] = {"uri", GATEWAY_URI, "id", HUB_ID};
    build_request(b, indefinite, "selectedGateway", gateway);
}

/* {"di": ..., "csr": {"encoding": "oic.sec.encoding.pem", "data": PEM}} */
static void build_csr_request(struct builder *b, bool indefinite)
{
    static const char *const csr[4] = {"encoding", "oic.sec.encoding.pem", "data", CSR_PEM};
    build_request(b, indefinite, "csr", csr);
}

struct text {
    const char *data;
    size_t length;
};

struct request {
    struct text di;
    struct text outer; /* selectedGateway.uri or csr.encoding */
    struct text inner; /* selectedGateway.id or csr.data */
};

/* Reads {inner_first: text, inner_second: text}, skipping unknown keys. */
static int parse_inner(struct dps_cbor_reader *reader, const char *first, const char *second,
                       struct request *request)
{
    struct dps_cbor_container map;
    if (dps_cbor_enter_map(reader, &map) != 0)
        return -1;
    int step;
    while ((step = dps_cbor_container_next(reader, &map)) == 1) {
        const char *key;
        size_t key_length;
        if (dps_cbor_read_text(reader, &key, &key_length) != 0)
            return -1;
        struct text *target = NULL;
        if (dps_cbor_text_equals(key, key_length, first))
            target = &request->outer;
        else if (dps_cbor_text_equals(key, key_length, second))
            target = &request->inner;
        if (target == NULL) {
            if (dps_cbor_skip(reader) != 0)
                return -1;
        } else if (dps_cbor_read_text(reader, &target->data, &target->length) != 0) {
            return -1;
        }
    }
    return step;
}

/* How a DPS handler reads a request: top-level map, known keys, nothing after. */
static int parse_request(const uint8_t *data, size_t length, const char *object, const char *first,
                         const char *second, struct request *request)
{
    memset(request, 0, sizeof(*request));
    struct dps_cbor_reader reader;
    dps_cbor_reader_init(&reader, data, length);
    struct dps_cbor_container map;
    if (dps_cbor_enter_map(&reader, &map) != 0)
        return -1;
    int step;
    while ((step = dps_cbor_container_next(&reader, &map)) == 1) {
        const char *key;
        size_t key_length;
        if (dps_cbor_read_text(&reader, &key, &key_length) != 0)
            return -1;
        if (dps_cbor_text_equals(key, key_length, "di")) {
            if (dps_cbor_read_text(&reader, &request->di.data, &request->di.length) != 0)
                return -1;
        } else if (dps_cbor_text_equals(key, key_length, object)) {
            if (parse_inner(&reader, first, second, request) != 0)
                return -1;
        } else if (dps_cbor_skip(&reader) != 0) {
            return -1;
        }
    }
    if (step != 0 || reader.depth != 0 || reader.position != reader.end)
        return -1;
    return 0;
}

static void assert_text(struct text text, const char *expected)
{
    assert_int_equal(text.length, strlen(expected));
    assert_memory_equal(text.data, expected, text.length);
}

static void check_cloud_request(bool indefinite)
{
    struct builder b;
    build_cloud_request(&b, indefinite);
    assert_int_equal(b.data[0], indefinite ? 0xBF : 0xA2);
    struct request request;
    assert_int_equal(parse_request(b.data, b.length, "selectedGateway", "uri", "id", &request), 0);
    assert_text(request.di, DEVICE_ID);
    assert_text(request.outer, GATEWAY_URI);
    assert_text(request.inner, HUB_ID);
    /* Zero copy: the text points into the input. */
    assert_true((const uint8_t *)request.di.data > b.data &&
                (const uint8_t *)request.di.data < b.data + b.length);
}

/* BOTH_LENGTHS(name, check): test cases name_indefinite and name_definite, running check(true)
 * and check(false): containers of indefinite length (as tinycbor writes them) and definite. */
#define BOTH_LENGTHS(name, check) TWO_CASES(name, check, indefinite, true, definite, false)

BOTH_LENGTHS(test_cloud_request, check_cloud_request)

static void check_csr_request(bool indefinite)
{
    struct builder b;
    build_csr_request(&b, indefinite);
    struct request request;
    assert_int_equal(parse_request(b.data, b.length, "csr", "encoding", "data", &request), 0);
    assert_text(request.di, DEVICE_ID);
    assert_text(request.outer, "oic.sec.encoding.pem");
    assert_text(request.inner, CSR_PEM);
}

BOTH_LENGTHS(test_csr_request, check_csr_request)

/*
 * Each prefix is copied to its own heap block of exactly that size, so
 * AddressSanitizer catches any read past the end.
 */
static void check_truncations(const struct builder *b, const char *object, const char *first,
                              const char *second)
{
    for (size_t length = 0; length < b->length; length++) {
        uint8_t *copy = malloc(length ? length : 1);
        assert_non_null(copy);
        memcpy(copy, b->data, length);
        struct request request;
        assert_int_equal(parse_request(copy, length, object, first, second, &request), -1);
        struct dps_cbor_reader reader;
        dps_cbor_reader_init(&reader, copy, length);
        assert_int_equal(dps_cbor_skip(&reader), -1);
        assert_ptr_equal(reader.position, copy);
        free(copy);
    }
    struct dps_cbor_reader reader;
    dps_cbor_reader_init(&reader, b->data, b->length);
    assert_int_equal(dps_cbor_skip(&reader), 0);
    assert_ptr_equal(reader.position, b->data + b->length);
}

static void test_truncated_requests(void **state)
{
    (void)state;
    struct builder b;
    for (int indefinite = 0; indefinite <= 1; indefinite++) {
        build_cloud_request(&b, indefinite);
        check_truncations(&b, "selectedGateway", "uri", "id");
        build_csr_request(&b, indefinite);
        check_truncations(&b, "csr", "encoding", "data");
    }
}

static void test_unsigned_widths(void **state)
{
    (void)state;
    static const uint64_t values[] = {0,     23,         24,         255,       256,       65535,
                                      65536, UINT32_MAX, 1ULL << 32, INT64_MAX, UINT64_MAX};
    static const size_t sizes[] = {1, 1, 2, 2, 3, 3, 5, 5, 9, 9, 9};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        struct builder b = {.length = 0};
        put_head(&b, 0, values[i]);
        assert_int_equal(b.length, sizes[i]);
        struct dps_cbor_reader reader;
        dps_cbor_reader_init(&reader, b.data, b.length);
        assert_int_equal(dps_cbor_peek(&reader), DPS_CBOR_TYPE_UINT);
        uint64_t value = 0;
        assert_int_equal(dps_cbor_read_uint(&reader, &value), 0);
        assert_true(value == values[i]);
        assert_ptr_equal(reader.position, b.data + b.length);

        dps_cbor_reader_init(&reader, b.data, b.length);
        int64_t signed_value = 0;
        if (values[i] <= INT64_MAX) {
            assert_int_equal(dps_cbor_read_int(&reader, &signed_value), 0);
            assert_true((uint64_t)signed_value == values[i]);
        } else {
            assert_int_equal(dps_cbor_read_int(&reader, &signed_value), -1);
            assert_ptr_equal(reader.position, b.data);
        }
        /* Truncated arguments fail. */
        dps_cbor_reader_init(&reader, b.data, b.length - 1);
        assert_int_equal(dps_cbor_read_uint(&reader, &value), -1);
    }
}

static void test_negative_integers(void **state)
{
    (void)state;
    /* CBOR major 1 carries -1 - value. */
    static const struct {
        uint64_t argument;
        int64_t value;
    } cases[] = {{0, -1},
                 {23, -24},
                 {24, -25},
                 {255, -256},
                 {256, -257},
                 {65535, -65536},
                 {65536, -65537},
                 {UINT32_MAX, -4294967296LL},
                 {INT64_MAX, INT64_MIN}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct builder b = {.length = 0};
        put_head(&b, 1, cases[i].argument);
        struct dps_cbor_reader reader;
        dps_cbor_reader_init(&reader, b.data, b.length);
        assert_int_equal(dps_cbor_peek(&reader), DPS_CBOR_TYPE_NEGINT);
        int64_t value = 0;
        assert_int_equal(dps_cbor_read_int(&reader, &value), 0);
        assert_true(value == cases[i].value);
        dps_cbor_reader_init(&reader, b.data, b.length);
        uint64_t unsigned_value;
        assert_int_equal(dps_cbor_read_uint(&reader, &unsigned_value), -1);
    }
    /* -2^63 - 1 does not fit in int64_t. */
    struct builder b = {.length = 0};
    put_head(&b, 1, (uint64_t)INT64_MAX + 1);
    struct dps_cbor_reader reader;
    dps_cbor_reader_init(&reader, b.data, b.length);
    int64_t value;
    assert_int_equal(dps_cbor_read_int(&reader, &value), -1);
    /* Indefinite length and reserved additional information are not integers. */
    static const uint8_t reserved[] = {0x1C, 0x1F, 0x3D};
    for (size_t i = 0; i < sizeof(reserved); i++) {
        dps_cbor_reader_init(&reader, reserved + i, 1);
        assert_int_equal(dps_cbor_read_int(&reader, &value), -1);
        dps_cbor_reader_init(&reader, reserved + i, 1);
        assert_int_equal(dps_cbor_skip(&reader), -1);
    }
}

static void test_strings(void **state)
{
    (void)state;
    struct dps_cbor_reader reader;
    const char *text;
    const uint8_t *bytes;
    size_t length;

    static const uint8_t byte_string[] = {0x43, 0x01, 0x02, 0x03, 0x60};
    dps_cbor_reader_init(&reader, byte_string, sizeof(byte_string));
    assert_int_equal(dps_cbor_peek(&reader), DPS_CBOR_TYPE_BYTES);
    assert_int_equal(dps_cbor_read_text(&reader, &text, &length), -1);
    assert_int_equal(dps_cbor_read_bytes(&reader, &bytes, &length), 0);
    assert_int_equal(length, 3);
    assert_ptr_equal(bytes, byte_string + 1);
    assert_int_equal(dps_cbor_peek(&reader), DPS_CBOR_TYPE_TEXT);
    assert_int_equal(dps_cbor_read_text(&reader, &text, &length), 0);
    assert_int_equal(length, 0);
    assert_int_equal(dps_cbor_peek(&reader), DPS_CBOR_TYPE_INVALID);

    /* Chunked (indefinite) strings are refused, by reads and by skip. */
    static const uint8_t chunked[] = {0x7F, 0x61, 'a', 0x61, 'b', 0xFF};
    dps_cbor_reader_init(&reader, chunked, sizeof(chunked));
    assert_int_equal(dps_cbor_read_text(&reader, &text, &length), -1);
    assert_int_equal(dps_cbor_skip(&reader), -1);
    static const uint8_t chunked_bytes[] = {0x5F, 0x41, 0x00, 0xFF};
    dps_cbor_reader_init(&reader, chunked_bytes, sizeof(chunked_bytes));
    assert_int_equal(dps_cbor_read_bytes(&reader, &bytes, &length), -1);

    /* Lengths beyond the input, including one that would wrap a pointer. */
    static const uint8_t short_text[] = {0x65, 'a', 'b'};
    dps_cbor_reader_init(&reader, short_text, sizeof(short_text));
    assert_int_equal(dps_cbor_read_text(&reader, &text, &length), -1);
    assert_int_equal(dps_cbor_skip(&reader), -1);
    static const uint8_t huge_text[] = {0x7B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xF0, 'a'};
    dps_cbor_reader_init(&reader, huge_text, sizeof(huge_text));
    assert_int_equal(dps_cbor_read_text(&reader, &text, &length), -1);
    assert_int_equal(dps_cbor_skip(&reader), -1);
    assert_ptr_equal(reader.position, huge_text);
}

static void test_bool_and_peek(void **state)
{
    (void)state;
    static const uint8_t input[] = {0xF5, 0xF4, 0xF6, 0xC1, 0x00, 0x80, 0xA0, 0xFF};
    struct dps_cbor_reader reader;
    dps_cbor_reader_init(&reader, input, sizeof(input));
    bool value = false;
    assert_int_equal(dps_cbor_peek(&reader), DPS_CBOR_TYPE_SIMPLE);
    assert_int_equal(dps_cbor_read_bool(&reader, &value), 0);
    assert_true(value);
    assert_int_equal(dps_cbor_read_bool(&reader, &value), 0);
    assert_false(value);
    assert_int_equal(dps_cbor_peek(&reader), DPS_CBOR_TYPE_SIMPLE);
    assert_int_equal(dps_cbor_read_bool(&reader, &value), -1); /* null */
    assert_int_equal(dps_cbor_skip(&reader), 0);
    assert_int_equal(dps_cbor_peek(&reader), DPS_CBOR_TYPE_TAG);
    assert_int_equal(dps_cbor_skip(&reader), 0);
    assert_int_equal(dps_cbor_peek(&reader), DPS_CBOR_TYPE_ARRAY);
    assert_int_equal(dps_cbor_skip(&reader), 0);
    assert_int_equal(dps_cbor_peek(&reader), DPS_CBOR_TYPE_MAP);
    assert_int_equal(dps_cbor_skip(&reader), 0);
    assert_int_equal(dps_cbor_peek(&reader), DPS_CBOR_TYPE_BREAK);
    /* A break outside an indefinite container is not an item. */
    assert_int_equal(dps_cbor_skip(&reader), -1);
    reader.position++;
    assert_int_equal(dps_cbor_peek(&reader), DPS_CBOR_TYPE_INVALID);
    assert_int_equal(dps_cbor_read_bool(&reader, &value), -1);
}

/*
 * {"a": tag 1 (half 1.5), "b": [single, double, null, undefined, true,
 * simple(32), [], {}], "c": {_ h'00': tag 32 "x", "n": -1000}, "z": 7}:
 * every kind of item skip must step over, then "z" is read.
 */
static void test_skip_nested(void **state)
{
    (void)state;
    struct builder b = {.length = 0};
    open_map(&b, false, 4);
    put_text(&b, "a");
    put_head(&b, 6, 1);
    static const uint8_t half[] = {0xF9, 0x3E, 0x00};
    for (size_t i = 0; i < sizeof(half); i++)
        put_byte(&b, half[i]);
    put_text(&b, "b");
    put_head(&b, 4, 8);
    static const uint8_t simple[] = {0xFA, 0x47, 0xC3, 0x50, 0x00, 0xFB, 0x40, 0x09, 0x21, 0xFB,
                                     0x54, 0x44, 0x2D, 0x18, 0xF6, 0xF7, 0xF5, 0xF8, 0x20};
    for (size_t i = 0; i < sizeof(simple); i++)
        put_byte(&b, simple[i]);
    put_head(&b, 4, 0);
    put_head(&b, 5, 0);
    put_text(&b, "c");
    open_map(&b, true, 0);
    put_head(&b, 2, 1);
    put_byte(&b, 0x00);
    put_head(&b, 6, 32);
    put_text(&b, "x");
    put_text(&b, "n");
    put_head(&b, 1, 999);
    close_container(&b, true);
    put_text(&b, "z");
    put_head(&b, 0, 7);

    struct dps_cbor_reader reader;
    dps_cbor_reader_init(&reader, b.data, b.length);
    struct dps_cbor_container map;
    assert_int_equal(dps_cbor_enter_map(&reader, &map), 0);
    assert_int_equal(reader.depth, 1);
    int skipped = 0;
    uint64_t z = 0;
    while (dps_cbor_container_next(&reader, &map) == 1) {
        const char *key;
        size_t length;
        assert_int_equal(dps_cbor_read_text(&reader, &key, &length), 0);
        if (dps_cbor_text_equals(key, length, "z")) {
            assert_int_equal(dps_cbor_read_uint(&reader, &z), 0);
        } else {
            assert_int_equal(dps_cbor_skip(&reader), 0);
            skipped++;
        }
    }
    assert_int_equal(reader.depth, 0);
    assert_int_equal(skipped, 3);
    assert_int_equal(z, 7);
    assert_ptr_equal(reader.position, b.data + b.length);

    /* The whole document skips in one call, and no prefix of it does. */
    dps_cbor_reader_init(&reader, b.data, b.length);
    assert_int_equal(dps_cbor_skip(&reader), 0);
    assert_ptr_equal(reader.position, b.data + b.length);
    for (size_t length = 0; length < b.length; length++) {
        uint8_t *copy = malloc(length ? length : 1);
        assert_non_null(copy);
        memcpy(copy, b.data, length);
        dps_cbor_reader_init(&reader, copy, length);
        assert_int_equal(dps_cbor_skip(&reader), -1);
        free(copy);
    }
}

static void test_skip_malformed(void **state)
{
    (void)state;
    struct dps_cbor_reader reader;
    /* Indefinite map broken after a key, without its value. */
    static const uint8_t odd_map[] = {0xBF, 0x61, 'k', 0xFF};
    dps_cbor_reader_init(&reader, odd_map, sizeof(odd_map));
    assert_int_equal(dps_cbor_skip(&reader), -1);
    /* A tag directly followed by a break. */
    static const uint8_t tagged_break[] = {0x9F, 0xC1, 0xFF};
    dps_cbor_reader_init(&reader, tagged_break, sizeof(tagged_break));
    assert_int_equal(dps_cbor_skip(&reader), -1);
    /* A break inside a definite array. */
    static const uint8_t definite_break[] = {0x82, 0x01, 0xFF};
    dps_cbor_reader_init(&reader, definite_break, sizeof(definite_break));
    assert_int_equal(dps_cbor_skip(&reader), -1);
    /* Indefinite tag and integer heads. */
    static const uint8_t indefinite_tag[] = {0xDF, 0x00};
    dps_cbor_reader_init(&reader, indefinite_tag, sizeof(indefinite_tag));
    assert_int_equal(dps_cbor_skip(&reader), -1);
    /* A float whose bytes are missing. */
    static const uint8_t short_double[] = {0xFB, 0x40, 0x09};
    dps_cbor_reader_init(&reader, short_double, sizeof(short_double));
    assert_int_equal(dps_cbor_skip(&reader), -1);
    /* Only tags. */
    uint8_t tags[64];
    memset(tags, 0xC1, sizeof(tags));
    dps_cbor_reader_init(&reader, tags, sizeof(tags));
    assert_int_equal(dps_cbor_skip(&reader), -1);
}

static void test_container_counts(void **state)
{
    (void)state;
    struct dps_cbor_reader reader;
    struct dps_cbor_container container;
    /* Counts the remaining input cannot hold are refused at once. */
    static const uint8_t big_array[] = {0x9B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    dps_cbor_reader_init(&reader, big_array, sizeof(big_array));
    assert_int_equal(dps_cbor_enter_array(&reader, &container), -1);
    assert_int_equal(dps_cbor_skip(&reader), -1);
    assert_int_equal(reader.depth, 0);
    static const uint8_t big_map[] = {0xA2, 0x01, 0x02, 0x03};
    dps_cbor_reader_init(&reader, big_map, sizeof(big_map));
    assert_int_equal(dps_cbor_enter_map(&reader, &container), -1);
    assert_int_equal(dps_cbor_skip(&reader), -1);

    /* Type mismatches. */
    static const uint8_t array[] = {0x83, 0x01, 0x02, 0x03};
    dps_cbor_reader_init(&reader, array, sizeof(array));
    assert_int_equal(dps_cbor_enter_map(&reader, &container), -1);
    assert_int_equal(dps_cbor_enter_array(&reader, &container), 0);
    assert_false(container.indefinite);
    assert_int_equal(container.remaining, 3);
    uint64_t value = 0, sum = 0;
    while (dps_cbor_container_next(&reader, &container) == 1) {
        assert_int_equal(dps_cbor_read_uint(&reader, &value), 0);
        sum += value;
    }
    assert_int_equal(sum, 6);
    assert_int_equal(reader.depth, 0);

    /* An indefinite array whose break never comes. */
    static const uint8_t unterminated[] = {0x9F, 0x01, 0x02};
    dps_cbor_reader_init(&reader, unterminated, sizeof(unterminated));
    assert_int_equal(dps_cbor_enter_array(&reader, &container), 0);
    assert_true(container.indefinite);
    assert_int_equal(dps_cbor_container_next(&reader, &container), 1);
    assert_int_equal(dps_cbor_read_uint(&reader, &value), 0);
    assert_int_equal(dps_cbor_container_next(&reader, &container), 1);
    assert_int_equal(dps_cbor_read_uint(&reader, &value), 0);
    assert_int_equal(dps_cbor_container_next(&reader, &container), -1);
}

static void test_depth_limit(void **state)
{
    (void)state;
    /* DPS_CBOR_MAX_DEPTH nested indefinite arrays open; one more does not. */
    uint8_t nested[2 * (DPS_CBOR_MAX_DEPTH + 1)];
    memset(nested, 0x9F, DPS_CBOR_MAX_DEPTH + 1);
    memset(nested + DPS_CBOR_MAX_DEPTH + 1, 0xFF, DPS_CBOR_MAX_DEPTH + 1);
    struct dps_cbor_reader reader;
    struct dps_cbor_container containers[DPS_CBOR_MAX_DEPTH + 1];
    dps_cbor_reader_init(&reader, nested, sizeof(nested));
    for (unsigned i = 0; i < DPS_CBOR_MAX_DEPTH; i++) {
        assert_int_equal(dps_cbor_enter_array(&reader, &containers[i]), 0);
        assert_int_equal(dps_cbor_container_next(&reader, &containers[i]), 1);
    }
    assert_int_equal(reader.depth, DPS_CBOR_MAX_DEPTH);
    assert_int_equal(dps_cbor_enter_array(&reader, &containers[DPS_CBOR_MAX_DEPTH]), -1);
    assert_int_equal(dps_cbor_skip(&reader), -1);

    /* Skip obeys the same limit, counting levels the caller already opened. */
    dps_cbor_reader_init(&reader, nested + 1, sizeof(nested) - 2);
    assert_int_equal(dps_cbor_skip(&reader), 0);
    assert_ptr_equal(reader.position, nested + sizeof(nested) - 1);
    dps_cbor_reader_init(&reader, nested, sizeof(nested));
    assert_int_equal(dps_cbor_skip(&reader), -1);
    dps_cbor_reader_init(&reader, nested, sizeof(nested));
    assert_int_equal(dps_cbor_enter_array(&reader, &containers[0]), 0);
    assert_int_equal(dps_cbor_container_next(&reader, &containers[0]), 1);
    const uint8_t *before = reader.position;
    assert_int_equal(dps_cbor_skip(&reader), -1);
    assert_ptr_equal(reader.position, before);

    /* Deep hostile nesting of definite maps fails without recursion. */
    size_t deep = 100000;
    uint8_t *hostile = malloc(deep);
    assert_non_null(hostile);
    for (size_t i = 0; i < deep; i++)
        hostile[i] = i % 2 ? 0x81 : 0xA1;
    dps_cbor_reader_init(&reader, hostile, deep);
    assert_int_equal(dps_cbor_skip(&reader), -1);
    free(hostile);
}

static void test_text_equals(void **state)
{
    (void)state;
    static const char input[] = "selectedGatewayX";
    static const struct {
        const char *text;
        size_t length;
        const char *literal;
        bool equal;
    } cases[] = {
        {input, 15, "selectedGateway", true},
        {input, 16, "selectedGateway", false},
        {input, 14, "selectedGateway", false},
        {input, 2, "di", false},
        {input, 0, "", true},
        {NULL, 0, "", true},
        {NULL, 0, "di", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(dps_cbor_text_equals(cases[i].text, cases[i].length, cases[i].literal),
                         cases[i].equal);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cloud_request_indefinite),
        cmocka_unit_test(test_cloud_request_definite),
        cmocka_unit_test(test_csr_request_indefinite),
        cmocka_unit_test(test_csr_request_definite),
        cmocka_unit_test(test_truncated_requests),
        cmocka_unit_test(test_unsigned_widths),
        cmocka_unit_test(test_negative_integers),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_bool_and_peek),
        cmocka_unit_test(test_skip_nested),
        cmocka_unit_test(test_skip_malformed),
        cmocka_unit_test(test_container_counts),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_text_equals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
