/*
 * Tests for payload: byte-exact CBOR of a DPS response, the same nested
 * response in CBOR (read back with the cbor reader) and JSON (read back with
 * jansson), overflow at every buffer size, misuse detection, JSON string
 * escaping and number forms, and payload_json in both formats.
 */
#include <stdarg.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/cbor.h"
#include "tests/unit/cbor_readers.h"
#include "tests/unit/two_cases.h"
#include "dataplane/payload.h"
#include "dataplane/record_text.h"

#define OWNER "b80c8fef-a677-5340-85fb-2c162d75df03"

/* BOTH_FORMATS(name, check): test cases name_cbor and name_json, running check on each format. */
#define BOTH_FORMATS(name, check) TWO_CASES(name, check, cbor, PAYLOAD_CBOR, json, PAYLOAD_JSON)

/*
 * {"devowneruuid": OWNER}: map of 1 pair (0xA1), text of 12 bytes (0x6C)
 * "devowneruuid", text of 36 bytes (36 > 23, so 0x78 0x24) then the UUID.
 */

static void test_ownership_cbor_bytes(void **state)
{
    (void)state;
    uint8_t expected[52];
    expected[0] = 0xA1;
    expected[1] = 0x6C;
    memcpy(expected + 2, "devowneruuid", 12);
    expected[14] = 0x78;
    expected[15] = 0x24;
    memcpy(expected + 16, OWNER, 36);

    uint8_t buffer[128];
    struct payload_writer writer;
    payload_init(&writer, PAYLOAD_CBOR, buffer, sizeof(buffer));
    payload_map(&writer, 1);
    payload_text(&writer, "devowneruuid");
    payload_text(&writer, OWNER);
    payload_end(&writer);
    assert_int_equal(payload_finish(&writer), sizeof(expected));
    assert_memory_equal(buffer, expected, sizeof(expected));

    payload_init(&writer, PAYLOAD_JSON, buffer, sizeof(buffer));
    payload_map(&writer, 1);
    payload_text(&writer, "devowneruuid");
    payload_text(&writer, OWNER);
    payload_end(&writer);
    static const char json[] = "{\"devowneruuid\":\"" OWNER "\"}";
    assert_int_equal(payload_finish(&writer), strlen(json));
    assert_memory_equal(buffer, json, strlen(json));
}

/*
 * A cloud-configuration-like response with nested containers and every kind
 * of value: {"apn": "plgd", "cis": ..., "sid": ..., "at": ..., "extra":
 * {"n": -5, "big": 2^40, "ok": true, "none": null, "ratio": 3.25,
 * "list": [1, "two", false, []]}}
 */
static void write_nested_response(struct payload_writer *writer)
{
    payload_map(writer, 5);
    payload_text(writer, "apn");
    payload_text(writer, "plgd");
    payload_text(writer, "cis");
    payload_text(writer, "coaps+tcp://hub.example.com:5684");
    payload_text(writer, "sid");
    payload_text(writer, OWNER);
    payload_text(writer, "at");
    payload_textn(writer, "token-and-more", 5);
    payload_text(writer, "extra");
    payload_map(writer, 6);
    payload_text(writer, "n");
    payload_int(writer, -5);
    payload_text(writer, "big");
    payload_int(writer, 1LL << 40);
    payload_text(writer, "ok");
    payload_bool(writer, true);
    payload_text(writer, "none");
    payload_null(writer);
    payload_text(writer, "ratio");
    payload_double(writer, 3.25);
    payload_text(writer, "list");
    payload_array(writer, 4);
    payload_int(writer, 1);
    payload_text(writer, "two");
    payload_bool(writer, false);
    payload_array(writer, 0);
    payload_end(writer);
    payload_end(writer);
    payload_end(writer);
    payload_end(writer);
}

/* The nested response written whole in format into buffer (512 bytes): its length, above 0. */
static long nested_response(enum payload_format format, void *buffer)
{
    struct payload_writer writer;
    payload_init(&writer, format, buffer, 512);
    write_nested_response(&writer);
    long length = payload_finish(&writer);
    assert_true(length > 0);
    return length;
}

/* A JSON payload_finish() gave length for: exactly expected. */
static void assert_json(const char *buffer, long length, const char *expected)
{
    assert_int_equal(length, strlen(expected));
    assert_memory_equal(buffer, expected, strlen(expected));
}

static void expect_key(struct dps_cbor_reader *reader, struct dps_cbor_container *map,
                       const char *key)
{
    const char *text;
    size_t length;
    assert_int_equal(dps_cbor_container_next(reader, map), 1);
    assert_int_equal(dps_cbor_read_text(reader, &text, &length), 0);
    assert_true(dps_cbor_text_equals(text, length, key));
}

static void expect_text(struct dps_cbor_reader *reader, const char *expected)
{
    const char *text;
    size_t length;
    assert_int_equal(dps_cbor_read_text(reader, &text, &length), 0);
    assert_true(dps_cbor_text_equals(text, length, expected));
}

static void test_nested_cbor(void **state)
{
    (void)state;
    uint8_t buffer[512];
    long length = nested_response(PAYLOAD_CBOR, buffer);

    struct dps_cbor_reader reader;
    dps_cbor_reader_init(&reader, buffer, (size_t)length);
    struct dps_cbor_container outer, extra, list, empty;
    assert_int_equal(dps_cbor_enter_map(&reader, &outer), 0);
    assert_int_equal(outer.remaining, 5);
    expect_key(&reader, &outer, "apn");
    expect_text(&reader, "plgd");
    expect_key(&reader, &outer, "cis");
    expect_text(&reader, "coaps+tcp://hub.example.com:5684");
    expect_key(&reader, &outer, "sid");
    expect_text(&reader, OWNER);
    expect_key(&reader, &outer, "at");
    expect_text(&reader, "token");
    expect_key(&reader, &outer, "extra");
    assert_int_equal(dps_cbor_enter_map(&reader, &extra), 0);
    assert_int_equal(extra.remaining, 6);
    int64_t integer;
    expect_key(&reader, &extra, "n");
    assert_int_equal(dps_cbor_read_int(&reader, &integer), 0);
    assert_int_equal(integer, -5);
    expect_key(&reader, &extra, "big");
    assert_int_equal(dps_cbor_read_int(&reader, &integer), 0);
    assert_true(integer == 1LL << 40);
    bool flag = false;
    expect_key(&reader, &extra, "ok");
    assert_int_equal(dps_cbor_read_bool(&reader, &flag), 0);
    assert_true(flag);
    expect_key(&reader, &extra, "none");
    assert_int_equal(*reader.position, 0xF6);
    assert_int_equal(dps_cbor_skip(&reader), 0);
    expect_key(&reader, &extra, "ratio");
    /* A double: 0xFB then 3.25 in IEEE 754 binary64, 0x400A000000000000. */
    static const uint8_t ratio[] = {0xFB, 0x40, 0x0A, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(reader.position, ratio, sizeof(ratio));
    assert_int_equal(dps_cbor_skip(&reader), 0);
    expect_key(&reader, &extra, "list");
    assert_int_equal(dps_cbor_enter_array(&reader, &list), 0);
    assert_int_equal(list.remaining, 4);
    assert_int_equal(dps_cbor_container_next(&reader, &list), 1);
    assert_int_equal(dps_cbor_read_int(&reader, &integer), 0);
    assert_int_equal(integer, 1);
    assert_int_equal(dps_cbor_container_next(&reader, &list), 1);
    expect_text(&reader, "two");
    assert_int_equal(dps_cbor_container_next(&reader, &list), 1);
    assert_int_equal(dps_cbor_read_bool(&reader, &flag), 0);
    assert_false(flag);
    assert_int_equal(dps_cbor_container_next(&reader, &list), 1);
    assert_int_equal(dps_cbor_enter_array(&reader, &empty), 0);
    assert_int_equal(dps_cbor_container_next(&reader, &empty), 0);
    assert_int_equal(dps_cbor_container_next(&reader, &list), 0);
    assert_int_equal(dps_cbor_container_next(&reader, &extra), 0);
    assert_int_equal(dps_cbor_container_next(&reader, &outer), 0);
    assert_int_equal(reader.depth, 0);
    assert_ptr_equal(reader.position, buffer + length);
}

static void test_nested_json(void **state)
{
    (void)state;
    char buffer[512];
    long length = nested_response(PAYLOAD_JSON, buffer);

    static const char expected[] =
        "{\"apn\":\"plgd\",\"cis\":\"coaps+tcp://hub.example.com:5684\",\"sid\":\"" OWNER
        "\",\"at\":\"token\",\"extra\":{\"n\":-5,\"big\":1099511627776,\"ok\":true,"
        "\"none\":null,\"ratio\":3.25,\"list\":[1,\"two\",false,[]]}}";
    assert_int_equal(length, strlen(expected));
    assert_memory_equal(buffer, expected, strlen(expected));

    json_error_t error;
    json_t *document = json_loadb(buffer, (size_t)length, 0, &error);
    assert_non_null(document);
    assert_string_equal(json_string_value(json_object_get(document, "sid")), OWNER);
    json_t *extra = json_object_get(document, "extra");
    assert_true(json_is_object(extra));
    assert_int_equal(json_integer_value(json_object_get(extra, "n")), -5);
    assert_true(json_integer_value(json_object_get(extra, "big")) == 1LL << 40);
    assert_true(json_is_true(json_object_get(extra, "ok")));
    assert_true(json_is_null(json_object_get(extra, "none")));
    assert_true(json_real_value(json_object_get(extra, "ratio")) == 3.25);
    json_t *list = json_object_get(extra, "list");
    assert_int_equal(json_array_size(list), 4);
    assert_string_equal(json_string_value(json_array_get(list, 1)), "two");
    assert_true(json_is_false(json_array_get(list, 2)));
    json_decref(document);
}

/*
 * Every buffer smaller than the response fails, and nothing is written past
 * the capacity (the guard bytes after it stay untouched).
 */
static void check_overflow(enum payload_format format)
{
    uint8_t full[512];
    struct payload_writer writer;
    long needed = nested_response(format, full);

    for (size_t capacity = 0; capacity < (size_t)needed; capacity++) {
        uint8_t buffer[512];
        memset(buffer, 0xA5, sizeof(buffer));
        payload_init(&writer, format, buffer, capacity);
        write_nested_response(&writer);
        assert_int_equal(payload_finish(&writer), -1);
        assert_true(writer.length <= capacity);
        for (size_t i = capacity; i < sizeof(buffer); i++)
            assert_int_equal(buffer[i], 0xA5);
    }
    payload_init(&writer, format, full, (size_t)needed);
    write_nested_response(&writer);
    assert_int_equal(payload_finish(&writer), needed);
}

BOTH_FORMATS(test_overflow, check_overflow)

static void check_misuse(enum payload_format format)
{
    uint8_t buffer[256];
    struct payload_writer writer;

    /* A value where a key is expected. */
    payload_init(&writer, format, buffer, sizeof(buffer));
    payload_map(&writer, 1);
    payload_int(&writer, 1);
    assert_true(writer.failed);
    /* Errors are sticky: later calls write nothing. */
    size_t length = writer.length;
    payload_text(&writer, "value");
    payload_end(&writer);
    assert_int_equal(writer.length, length);
    assert_int_equal(payload_finish(&writer), -1);

    /* A container as a key. */
    payload_init(&writer, format, buffer, sizeof(buffer));
    payload_map(&writer, 1);
    payload_map(&writer, 0);
    assert_int_equal(payload_finish(&writer), -1);

    /* End without an open container. */
    payload_init(&writer, format, buffer, sizeof(buffer));
    payload_end(&writer);
    assert_int_equal(payload_finish(&writer), -1);
    payload_init(&writer, format, buffer, sizeof(buffer));
    payload_array(&writer, 0);
    payload_end(&writer);
    payload_end(&writer);
    assert_int_equal(payload_finish(&writer), -1);

    /* A map ended after a key without its value. */
    payload_init(&writer, format, buffer, sizeof(buffer));
    payload_map(&writer, 1);
    payload_text(&writer, "key");
    payload_end(&writer);
    assert_int_equal(payload_finish(&writer), -1);

    /* Fewer and more items than declared. */
    payload_init(&writer, format, buffer, sizeof(buffer));
    payload_array(&writer, 2);
    payload_int(&writer, 1);
    payload_end(&writer);
    assert_int_equal(payload_finish(&writer), -1);
    payload_init(&writer, format, buffer, sizeof(buffer));
    payload_array(&writer, 1);
    payload_int(&writer, 1);
    payload_int(&writer, 2);
    assert_true(writer.failed);
    payload_end(&writer);
    assert_int_equal(payload_finish(&writer), -1);
    payload_init(&writer, format, buffer, sizeof(buffer));
    payload_map(&writer, 1);
    payload_text(&writer, "a");
    payload_int(&writer, 1);
    payload_text(&writer, "b");
    assert_true(writer.failed);

    /* An unclosed container, and two documents in one body. */
    payload_init(&writer, format, buffer, sizeof(buffer));
    payload_array(&writer, 1);
    payload_int(&writer, 1);
    assert_int_equal(payload_finish(&writer), -1);
    payload_init(&writer, format, buffer, sizeof(buffer));
    payload_int(&writer, 1);
    payload_int(&writer, 2);
    assert_int_equal(payload_finish(&writer), -1);

    /* Text that is not UTF-8: a stray continuation, an overlong '/', a surrogate. */
    static const char *const invalid[] = {"a\x80", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80",
                                          "\xE2\x82"};
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        payload_init(&writer, format, buffer, sizeof(buffer));
        payload_text(&writer, invalid[i]);
        assert_int_equal(payload_finish(&writer), -1);
    }

    /* Nesting deeper than the writer tracks. */
    payload_init(&writer, format, buffer, sizeof(buffer));
    for (int i = 0; i < PAYLOAD_MAX_DEPTH; i++)
        payload_array(&writer, 1);
    assert_true(writer.failed);

    /* A complete, correct document after all that still works. */
    payload_init(&writer, format, buffer, sizeof(buffer));
    payload_array(&writer, 1);
    payload_map(&writer, 0);
    payload_end(&writer);
    payload_end(&writer);
    assert_true(payload_finish(&writer) > 0);
}

BOTH_FORMATS(test_misuse, check_misuse)

static void test_json_escaping(void **state)
{
    (void)state;
    static const char text[] = "q\"b\\s/n\nt\tc\x01\x1f\x7f é ✓ 😀";
    static const char expected[] = "\"q\\\"b\\\\s/n\\u000at\\u0009c\\u0001\\u001f\x7f é ✓ 😀\"";
    char buffer[128];
    struct payload_writer writer;
    payload_init(&writer, PAYLOAD_JSON, (uint8_t *)buffer, sizeof(buffer));
    payload_text(&writer, text);
    long length = payload_finish(&writer);
    assert_json(buffer, length, expected);

    json_error_t error;
    json_t *value = json_loadb(buffer, (size_t)length, JSON_DECODE_ANY, &error);
    assert_non_null(value);
    assert_string_equal(json_string_value(value), text);
    json_decref(value);

    /* An embedded NUL is escaped too. */
    payload_init(&writer, PAYLOAD_JSON, (uint8_t *)buffer, sizeof(buffer));
    payload_textn(&writer, "a\0b", 3);
    assert_json(buffer, payload_finish(&writer), "\"a\\u0000b\"");
}

static void expect_json_double(double value, const char *expected)
{
    char buffer[64];
    struct payload_writer writer;
    payload_init(&writer, PAYLOAD_JSON, (uint8_t *)buffer, sizeof(buffer));
    payload_double(&writer, value);
    assert_json(buffer, payload_finish(&writer), expected);
}

static void test_json_numbers(void **state)
{
    (void)state;
    expect_json_double(0.5, "0.5");
    expect_json_double(0.1, "0.1");
    expect_json_double(100.0, "100.0");
    expect_json_double(-2.0, "-2.0");
    expect_json_double(1e300, "1e+300");
    expect_json_double(1.0 / 3.0, "0.3333333333333333");

    char buffer[64];
    struct payload_writer writer;
    payload_init(&writer, PAYLOAD_JSON, (uint8_t *)buffer, sizeof(buffer));
    payload_array(&writer, 3);
    payload_int(&writer, INT64_MIN);
    payload_int(&writer, INT64_MAX);
    payload_int(&writer, 0);
    payload_end(&writer);
    static const char integers[] = "[-9223372036854775808,9223372036854775807,0]";
    assert_int_equal(payload_finish(&writer), strlen(integers));
    assert_memory_equal(buffer, integers, strlen(integers));

    /* JSON cannot carry NaN or infinity. */
    payload_init(&writer, PAYLOAD_JSON, (uint8_t *)buffer, sizeof(buffer));
    payload_double(&writer, NAN);
    assert_int_equal(payload_finish(&writer), -1);
    payload_init(&writer, PAYLOAD_JSON, (uint8_t *)buffer, sizeof(buffer));
    payload_double(&writer, INFINITY);
    assert_int_equal(payload_finish(&writer), -1);

    /* CBOR integers take the shortest form; INT64_MIN is major 1 with 2^63 - 1. */
    payload_init(&writer, PAYLOAD_CBOR, (uint8_t *)buffer, sizeof(buffer));
    payload_array(&writer, 4);
    payload_int(&writer, 23);
    payload_int(&writer, 24);
    payload_int(&writer, -24);
    payload_int(&writer, INT64_MIN);
    payload_end(&writer);
    static const uint8_t cbor[] = {0x84, 0x17, 0x18, 0x18, 0x37, 0x3B, 0x7F,
                                   0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    assert_int_equal(payload_finish(&writer), sizeof(cbor));
    assert_memory_equal(buffer, cbor, sizeof(cbor));
}

static const char document_text[] =
    "{\"name\":\"dev\",\"count\":3,\"neg\":-7,\"ratio\":0.5,\"huge\":1e+300,"
    "\"flags\":[true,false,null],\"nested\":{\"a\":{\"b\":[1,2.5,\"x\",{}]}},\"empty\":[]}";

static void test_payload_json_to_json(void **state)
{
    (void)state;
    char buffer[512];
    struct payload_writer writer;
    payload_init(&writer, PAYLOAD_JSON, (uint8_t *)buffer, sizeof(buffer));
    assert_int_equal(payload_json(&writer, document_text), 0);
    long length = payload_finish(&writer);
    /* Compact input, keys in document order: the output is the input. */
    assert_int_equal(length, strlen(document_text));
    assert_memory_equal(buffer, document_text, strlen(document_text));

    json_error_t error;
    json_t *in = json_loads(document_text, 0, &error);
    json_t *out = json_loadb(buffer, (size_t)length, 0, &error);
    assert_non_null(in);
    assert_non_null(out);
    assert_true(json_equal(in, out));
    json_decref(in);
    json_decref(out);
}

/* The same document as CBOR, inside a map, as configured content is served. */
static void test_payload_json_to_cbor(void **state)
{
    (void)state;
    uint8_t buffer[512];
    struct payload_writer writer;
    payload_init(&writer, PAYLOAD_CBOR, buffer, sizeof(buffer));
    payload_map(&writer, 2);
    payload_text(&writer, "href");
    payload_text(&writer, "/oic/d");
    payload_text(&writer, "content");
    assert_int_equal(payload_json(&writer, document_text), 0);
    payload_end(&writer);
    long length = payload_finish(&writer);
    assert_true(length > 0);

    struct dps_cbor_reader reader;
    dps_cbor_reader_init(&reader, buffer, (size_t)length);
    struct dps_cbor_container top, content, flags, nested, a, b;
    int64_t integer;
    bool flag;
    assert_int_equal(dps_cbor_enter_map(&reader, &top), 0);
    expect_key(&reader, &top, "href");
    expect_text(&reader, "/oic/d");
    expect_key(&reader, &top, "content");
    assert_int_equal(dps_cbor_enter_map(&reader, &content), 0);
    assert_int_equal(content.remaining, 8);
    expect_key(&reader, &content, "name");
    expect_text(&reader, "dev");
    expect_key(&reader, &content, "count");
    assert_int_equal(dps_cbor_read_int(&reader, &integer), 0);
    assert_int_equal(integer, 3);
    expect_key(&reader, &content, "neg");
    assert_int_equal(dps_cbor_read_int(&reader, &integer), 0);
    assert_int_equal(integer, -7);
    expect_key(&reader, &content, "ratio");
    static const uint8_t ratio[] = {0xFB, 0x3F, 0xE0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(reader.position, ratio, sizeof(ratio));
    assert_int_equal(dps_cbor_skip(&reader), 0);
    expect_key(&reader, &content, "huge");
    assert_int_equal(dps_cbor_peek(&reader), DPS_CBOR_TYPE_SIMPLE);
    assert_int_equal(dps_cbor_skip(&reader), 0);
    expect_key(&reader, &content, "flags");
    assert_int_equal(dps_cbor_enter_array(&reader, &flags), 0);
    assert_int_equal(flags.remaining, 3);
    assert_int_equal(dps_cbor_container_next(&reader, &flags), 1);
    assert_int_equal(dps_cbor_read_bool(&reader, &flag), 0);
    assert_true(flag);
    assert_int_equal(dps_cbor_container_next(&reader, &flags), 1);
    assert_int_equal(dps_cbor_read_bool(&reader, &flag), 0);
    assert_false(flag);
    assert_int_equal(dps_cbor_container_next(&reader, &flags), 1);
    assert_int_equal(*reader.position, 0xF6);
    assert_int_equal(dps_cbor_skip(&reader), 0);
    assert_int_equal(dps_cbor_container_next(&reader, &flags), 0);
    expect_key(&reader, &content, "nested");
    assert_int_equal(dps_cbor_enter_map(&reader, &nested), 0);
    expect_key(&reader, &nested, "a");
    assert_int_equal(dps_cbor_enter_map(&reader, &a), 0);
    expect_key(&reader, &a, "b");
    assert_int_equal(dps_cbor_enter_array(&reader, &b), 0);
    assert_int_equal(b.remaining, 4);
    int items = 0;
    while (dps_cbor_container_next(&reader, &b) == 1) {
        assert_int_equal(dps_cbor_skip(&reader), 0);
        items++;
    }
    assert_int_equal(items, 4);
    assert_int_equal(dps_cbor_container_next(&reader, &a), 0);
    assert_int_equal(dps_cbor_container_next(&reader, &nested), 0);
    expect_key(&reader, &content, "empty");
    assert_int_equal(*reader.position, 0x80);
    assert_int_equal(dps_cbor_skip(&reader), 0);
    assert_int_equal(dps_cbor_container_next(&reader, &content), 0);
    assert_int_equal(dps_cbor_container_next(&reader, &top), 0);
    assert_ptr_equal(reader.position, buffer + length);
}

/*
 * A document written again comes from the thread's cache of encodings: the
 * same bytes as the first time, with JSON's separators where the value lands,
 * in either format.
 */
/* Record lines: dps_json_compact writes exactly what json_dumps(JSON_COMPACT) writes. */
static void test_json_compact_is_jansson(void **state)
{
    (void)state;
    static const char *const DOCUMENTS[] = {
        "{}",
        "[]",
        "{\"a\":\"\",\"b\":[],\"c\":{},\"d\":[1,-2,9223372036854775807,true,false,null]}",
        "{\"pem\":\"-----BEGIN CERTIFICATE-----\\nMIIB\\/+==\\n-----END CERTIFICATE-----\\n\","
        "\"z\":1,\"a\":2}",
        "{\"esc\":\"q\\\" b\\\\ \\b\\f\\n\\r\\t \\u0001\\u001f\\u007f /\",\"k\\n\":[[{\"x\":0}]]}",
        "{\"nul\":\"a\\u0000b\",\"key\":1}",
        "{\"utf8\":\"caf\\u00e9 \\u2603\",\"real\":1.5}",
        "[0.1,{\"s\":\"t\"}]",
    };
    for (size_t i = 0; i < sizeof(DOCUMENTS) / sizeof(DOCUMENTS[0]); i++) {
        json_error_t error;
        json_t *value = json_loads(DOCUMENTS[i], JSON_ALLOW_NUL, &error);
        assert_non_null(value);
        char *expected = json_dumps(value, JSON_COMPACT);
        char *written = dps_json_compact(value);
        assert_non_null(expected);
        assert_non_null(written);
        assert_string_equal(written, expected);
        free(expected);
        free(written);
        json_decref(value);
    }
    /* Each special byte at each offset of strings longer than a word. */
    static const char SPECIALS[] = {'"', '\\', '\n', '\x01', '\x1f', ' ', '~', '\x7f', (char)0xc3};
    for (size_t special = 0; special < sizeof(SPECIALS); special++)
        for (size_t length = 1; length <= 40; length++)
            for (size_t at = 0; at < length; at++) {
                char string[48];
                memset(string, 'a' + (int)(length % 26), length);
                string[at] = SPECIALS[special];
                if (SPECIALS[special] == (char)0xc3) {
                    if (at + 1 == length)
                        continue;
                    string[at + 1] = (char)0xa9; /* U+00E9 */
                }
                json_t *value = json_pack("{s:s%}", "k", string, length);
                assert_non_null(value);
                char *expected = json_dumps(value, JSON_COMPACT);
                char *written = dps_json_compact(value);
                assert_string_equal(written, expected);
                free(expected);
                free(written);
                json_decref(value);
            }
}

/* When dps_record_scan reads a stored record, json_loadb reads it too, with the same members. */
static void expect_scan_as_jansson(const char *text, size_t length)
{
    char created[RECORD_SCAN_TEXT], device[RECORD_SCAN_TEXT];
    if (!dps_record_scan(text, length, created, device))
        return;
    json_t *record = json_loadb(text, length, 0, NULL);
    assert_non_null(record);
    const char *expected_created = json_string_value(json_object_get(record, "creationDate"));
    const char *expected_device = json_string_value(json_object_get(record, "deviceId"));
    assert_string_equal(created, expected_created != NULL ? expected_created : "");
    assert_string_equal(device, expected_device != NULL ? expected_device : "");
    json_decref(record);
}

static void test_record_scan_is_jansson(void **state)
{
    (void)state;
    static const char RECORD[] =
        "{\"id\":\"6a1f8a4e-8f3c-5d5e-9c1a-2b3c4d5e6f70\",\"enrollmentGroupId\":\"g\","
        "\"deviceId\":\"0f8ab3c2-7d6e-4a51-9b2c-3e4f5a6b7c8d\",\"owner\":\"o\","
        "\"creationDate\":\"1764691200123456789\",\"attestation\":{\"date\":\"1\",\"x509\":"
        "{\"certificatePem\":\"-----BEGIN CERTIFICATE-----\\nMIIB\\/+==\\n-----END "
        "CERTIFICATE-----\\n\",\"commonName\":\"dev\",\"creationDate\":\"nested\"}},"
        "\"remoteAddress\":\"127.0.0.1:4000\"}";
    static const char *const DOCUMENTS[] = {
        RECORD,
        "{}",
        " {\"creationDate\" : \"1\" , \"deviceId\":\"x\"}\r\n\t",
        "{\"creationDate\":\"1\",\"creationDate\":\"2\"}",
        "{\"creationDate\":\"1\",\"creationDate\":{}}",
        "{\"creationDate\":\"a\\\"b\\\\c\\/d\\n\"}",
        "{\"creation\\u0044ate\":\"1\"}",
        "{\"creationDate\":1}",
        "{\"deviceId\":null}",
        "{\"a\":[]}",
        "{\"a\":{\"b\":{\"c\":{}}}}",
        "{\"a\":\"b\"}x",
        "{\"a\":\"b\",}",
        "{\"a\" \"b\"}",
        "{\"a\":\"\xc3\xa9\"}",
        "{\"a\":\"b",
        "{\"averyveryverylongkeyname\":\"b\",\"deviceId\":\"d\"}",
        "[]",
        "",
    };
    for (size_t i = 0; i < sizeof(DOCUMENTS) / sizeof(DOCUMENTS[0]); i++)
        expect_scan_as_jansson(DOCUMENTS[i], strlen(DOCUMENTS[i]));
    char created[RECORD_SCAN_TEXT], device[RECORD_SCAN_TEXT];
    assert_true(dps_record_scan(RECORD, strlen(RECORD), created, device));
    assert_string_equal(created, "1764691200123456789");
    assert_string_equal(device, "0f8ab3c2-7d6e-4a51-9b2c-3e4f5a6b7c8d");

    /* Every byte of the record replaced by each of these, and every length cut. */
    static const char REPLACEMENTS[] = {'"',  '\\', '{', '}', ':', ',',    ' ',       '\n',
                                        '\0', '1',  'u', '/', '[', '\x01', (char)0xff};
    char mutated[sizeof(RECORD)];
    for (size_t at = 0; at < sizeof(RECORD) - 1; at++) {
        for (size_t r = 0; r < sizeof(REPLACEMENTS); r++) {
            memcpy(mutated, RECORD, sizeof(RECORD));
            mutated[at] = REPLACEMENTS[r];
            expect_scan_as_jansson(mutated, sizeof(RECORD) - 1);
        }
        expect_scan_as_jansson(RECORD, at);
    }
}

static void test_payload_json_again_is_the_same(void **state)
{
    (void)state;
    const char *document = "[1,{\"x\":\"y\"},true]";
    uint8_t first[128];
    uint8_t again[128];
    for (int format = 0; format < 2; format++) {
        uint8_t *buffers[2] = {first, again};
        long lengths[2];
        for (int round = 0; round < 2; round++) {
            struct payload_writer writer;
            payload_init(&writer, format == 0 ? PAYLOAD_JSON : PAYLOAD_CBOR, buffers[round], 128);
            payload_map(&writer, 2);
            payload_text(&writer, "a");
            assert_int_equal(payload_json(&writer, document), 0);
            payload_text(&writer, "b");
            assert_int_equal(payload_json(&writer, document), 0);
            payload_end(&writer);
            lengths[round] = payload_finish(&writer);
            assert_true(lengths[round] > 0);
        }
        assert_int_equal(lengths[0], lengths[1]);
        assert_memory_equal(first, again, (size_t)lengths[0]);
        if (format == 0) {
            const char *expected = "{\"a\":[1,{\"x\":\"y\"},true],\"b\":[1,{\"x\":\"y\"},true]}";
            assert_int_equal(lengths[0], strlen(expected));
            assert_memory_equal(first, expected, strlen(expected));
        }
    }
    /* A cached value still counts as an item: one too many fails as before. */
    struct payload_writer writer;
    payload_init(&writer, PAYLOAD_JSON, first, sizeof(first));
    payload_array(&writer, 1);
    assert_int_equal(payload_json(&writer, document), 0);
    assert_int_equal(payload_json(&writer, document), -1);
}

static void test_payload_json_errors(void **state)
{
    (void)state;
    uint8_t buffer[64];
    struct payload_writer writer;
    payload_init(&writer, PAYLOAD_CBOR, buffer, sizeof(buffer));
    assert_int_equal(payload_json(&writer, "{\"a\": "), -1);
    assert_int_equal(payload_finish(&writer), -1);

    /* A bare scalar is a document too. */
    payload_init(&writer, PAYLOAD_CBOR, buffer, sizeof(buffer));
    assert_int_equal(payload_json(&writer, "42"), 0);
    assert_int_equal(payload_finish(&writer), 2);
    assert_int_equal(buffer[0], 0x18);
    assert_int_equal(buffer[1], 42);

    /* Too large for the buffer, and nesting deeper than the writer allows. */
    payload_init(&writer, PAYLOAD_JSON, buffer, 8);
    assert_int_equal(payload_json(&writer, "[1,2,3,4,5,6,7,8]"), -1);
    assert_int_equal(payload_finish(&writer), -1);
    char deep[2 * 40 + 1];
    memset(deep, '[', 40);
    memset(deep + 40, ']', 40);
    deep[80] = '\0';
    payload_init(&writer, PAYLOAD_JSON, buffer, sizeof(buffer));
    assert_int_equal(payload_json(&writer, deep), -1);
    assert_int_equal(payload_finish(&writer), -1);
}

/* On a thread whose document cache is still unused: "" is no JSON, in either format. */
static void *empty_text(void *unused)
{
    (void)unused;
    uint8_t buffer[64];
    struct payload_writer writer;
    long results = 0;
    enum payload_format formats[] = {PAYLOAD_CBOR, PAYLOAD_JSON};
    for (size_t i = 0; i < 2; i++) {
        payload_init(&writer, formats[i], buffer, sizeof(buffer));
        results += payload_json(&writer, "") == -1 && payload_finish(&writer) == -1;
    }
    return (void *)results;
}

static void test_payload_json_empty_text_fails(void **state)
{
    (void)state;
    pthread_t thread;
    void *results = NULL;
    assert_int_equal(pthread_create(&thread, NULL, empty_text, NULL), 0);
    assert_int_equal(pthread_join(thread, &results), 0);
    assert_int_equal((long)results, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ownership_cbor_bytes),
        cmocka_unit_test(test_nested_cbor),
        cmocka_unit_test(test_nested_json),
        cmocka_unit_test(test_overflow_cbor),
        cmocka_unit_test(test_overflow_json),
        cmocka_unit_test(test_misuse_cbor),
        cmocka_unit_test(test_misuse_json),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_json_numbers),
        cmocka_unit_test(test_payload_json_to_json),
        cmocka_unit_test(test_payload_json_to_cbor),
        cmocka_unit_test(test_payload_json_errors),
        cmocka_unit_test(test_payload_json_empty_text_fails),
        cmocka_unit_test(test_payload_json_again_is_the_same),
        cmocka_unit_test(test_json_compact_is_jansson),
        cmocka_unit_test(test_record_scan_is_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
