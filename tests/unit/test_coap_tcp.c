/*
 * Tests for coap_tcp: RFC 8323 framing and RFC 7252 options, as a plgd
 * device sends them, at every length-encoding boundary, and against
 * truncated, malformed and oversized input.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "dataplane/coap_tcp.h"

static const uint8_t request_token[8] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};

/*
 * GET /x.plgd.dev/time, token 0102..08, Accept 10000, option 2049 = 2048.
 * Options: Uri-Path delta 11 len 10 -> 0xBA + 10 bytes; Uri-Path delta 0
 * len 4 -> 0x04 + 4; Accept delta 6 len 2 -> 0x62 27 10; option 2049 delta
 * 2032 (nibble 14, 2032 - 269 = 0x06E3) len 2 -> 0xE2 06 E3 08 00. That is
 * 11 + 5 + 3 + 5 = 24 bytes of options: Len nibble 13 with 24 - 13 = 0x0B.
 */
static const uint8_t time_request[] = {
    0xD8, 0x0B, 0x01, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xBA,
    'x',  '.',  'p',  'l',  'g',  'd',  '.',  'd',  'e',  'v',  0x04, 't',
    'i',  'm',  'e',  0x62, 0x27, 0x10, 0xE2, 0x06, 0xE3, 0x08, 0x00,
};

static struct coap_option text_option(uint16_t number, const char *text)
{
    return (struct coap_option){
        .number = number, .length = (uint16_t)strlen(text), .value = (const uint8_t *)text};
}

/* The four options of time_request; accept and version hold their values. */
static void time_request_options(struct coap_option options[4], uint8_t accept[4],
                                 uint8_t version[4])
{
    options[0] = text_option(COAP_OPTION_URI_PATH, "x.plgd.dev");
    options[1] = text_option(COAP_OPTION_URI_PATH, "time");
    coap_option_make_uint(&options[2], COAP_OPTION_ACCEPT, COAP_FORMAT_OCF_CBOR, accept);
    coap_option_make_uint(&options[3], COAP_OPTION_OCF_ACCEPT_VERSION, 2048, version);
}

static void test_encode_known_request(void **state)
{
    (void)state;
    uint8_t accept[4], version[4];
    struct coap_option options[4];
    time_request_options(options, accept, version);

    uint8_t out[64];
    long length =
        coap_tcp_encode(out, sizeof(out), COAP_GET, request_token, 8, options, 4, NULL, 0);
    assert_int_equal(length, sizeof(time_request));
    assert_memory_equal(out, time_request, sizeof(time_request));
}

static void test_decode_known_request(void **state)
{
    (void)state;
    size_t frame_length = 0;
    assert_int_equal(coap_tcp_frame_length(time_request, sizeof(time_request), 8192, &frame_length),
                     COAP_OK);
    assert_int_equal(frame_length, sizeof(time_request));

    struct coap_message message;
    assert_int_equal(coap_tcp_decode(time_request, frame_length, &message), COAP_OK);
    assert_int_equal(message.code, COAP_GET);
    assert_int_equal(message.token_length, 8);
    assert_memory_equal(message.token, request_token, 8);
    assert_int_equal(message.option_count, 4);
    assert_null(message.payload);
    assert_int_equal(message.payload_length, 0);

    char path[64];
    assert_int_equal(coap_message_uri_path(&message, path, sizeof(path)), 0);
    assert_string_equal(path, "/x.plgd.dev/time");

    uint32_t value = 0;
    const struct coap_option *accept = coap_message_option(&message, COAP_OPTION_ACCEPT);
    assert_non_null(accept);
    assert_int_equal(coap_option_uint(accept, &value), 0);
    assert_int_equal(value, COAP_FORMAT_OCF_CBOR);

    const struct coap_option *version =
        coap_message_option(&message, COAP_OPTION_OCF_ACCEPT_VERSION);
    assert_non_null(version);
    assert_int_equal(coap_option_uint(version, &value), 0);
    assert_int_equal(value, 2048);
    assert_null(coap_message_option(&message, COAP_OPTION_CONTENT_FORMAT));
}

/* A POST with both OCF version options and a CBOR payload, as the client sends. */
static void test_ocf_options_round_trip(void **state)
{
    (void)state;
    uint8_t storage[4][4];
    struct coap_option options[5];
    options[0] = text_option(COAP_OPTION_URI_PATH, "api");
    coap_option_make_uint(&options[1], COAP_OPTION_CONTENT_FORMAT, COAP_FORMAT_OCF_CBOR,
                          storage[0]);
    coap_option_make_uint(&options[2], COAP_OPTION_ACCEPT, COAP_FORMAT_OCF_CBOR, storage[1]);
    coap_option_make_uint(&options[3], COAP_OPTION_OCF_ACCEPT_VERSION, 2048, storage[2]);
    coap_option_make_uint(&options[4], COAP_OPTION_OCF_CONTENT_VERSION, 2048, storage[3]);
    static const uint8_t body[] = {0xBF, 0x62, 'd', 'i', 0x61, 'x', 0xFF};

    uint8_t out[128];
    long length = coap_tcp_encode(out, sizeof(out), COAP_POST, request_token, 8, options, 5, body,
                                  sizeof(body));
    assert_true(length > 0);

    struct coap_message message;
    assert_int_equal(coap_tcp_decode(out, (size_t)length, &message), COAP_OK);
    assert_int_equal(message.code, COAP_POST);
    assert_int_equal(message.option_count, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(message.options[i].number, options[i].number);
        assert_int_equal(message.options[i].length, options[i].length);
        assert_memory_equal(message.options[i].value, options[i].value, options[i].length);
    }
    uint32_t value = 0;
    assert_int_equal(
        coap_option_uint(coap_message_option(&message, COAP_OPTION_OCF_CONTENT_VERSION), &value),
        0);
    assert_int_equal(value, 2048);
    assert_int_equal(message.payload_length, sizeof(body));
    assert_memory_equal(message.payload, body, sizeof(body));
}

/*
 * Encodes a frame with no token and no options whose Length (marker plus
 * payload, or 0) is body, then checks the chosen Len nibble, the header
 * size, and that the frame decodes back.
 */
static void check_length_boundary(size_t body, unsigned nibble, size_t header)
{
    size_t payload_length = body == 0 ? 0 : body - 1;
    uint8_t *payload = malloc(payload_length + 1);
    uint8_t *out = malloc(body + 16);
    assert_non_null(payload);
    assert_non_null(out);
    for (size_t i = 0; i < payload_length; i++)
        payload[i] = (uint8_t)(i * 7);

    long length =
        coap_tcp_encode(out, body + 16, COAP_CONTENT, NULL, 0, NULL, 0, payload, payload_length);
    assert_int_equal(length, header + 1 + body);
    assert_int_equal(out[0] >> 4, nibble);
    assert_int_equal(out[header], COAP_CONTENT);

    size_t frame_length = 0;
    assert_int_equal(coap_tcp_frame_length(out, header, SIZE_MAX, &frame_length), COAP_OK);
    assert_int_equal(frame_length, (size_t)length);
    assert_int_equal(coap_tcp_frame_length(out, header - 1, SIZE_MAX, &frame_length),
                     COAP_NEED_MORE);

    struct coap_message message;
    assert_int_equal(coap_tcp_decode(out, (size_t)length, &message), COAP_OK);
    assert_int_equal(message.payload_length, payload_length);
    if (payload_length > 0)
        assert_memory_equal(message.payload, payload, payload_length);
    free(payload);
    free(out);
}

static void test_length_boundaries(void **state)
{
    (void)state;
    check_length_boundary(0, 0, 1);
    check_length_boundary(12, 12, 1);
    check_length_boundary(13, 13, 2);
    check_length_boundary(268, 13, 2);
    check_length_boundary(269, 14, 3);
    check_length_boundary(65804, 14, 3);
    check_length_boundary(65805, 15, 5);
    check_length_boundary(70000, 15, 5);
}

/* The extended length bytes carry Length minus 13, 269 or 65805. */
static void test_extended_length_bytes(void **state)
{
    (void)state;
    static const uint8_t len13[] = {0xD0, 0x00, 0x45};
    static const uint8_t len269[] = {0xE0, 0x00, 0x00, 0x45};
    static const uint8_t len65805[] = {0xF0, 0x00, 0x00, 0x00, 0x00, 0x45};
    static const uint8_t len_max16[] = {0xE0, 0xFF, 0xFF, 0x45};
    size_t frame_length;
    assert_int_equal(coap_tcp_frame_length(len13, sizeof(len13), SIZE_MAX, &frame_length), COAP_OK);
    assert_int_equal(frame_length, 3 + 13);
    assert_int_equal(coap_tcp_frame_length(len269, sizeof(len269), SIZE_MAX, &frame_length),
                     COAP_OK);
    assert_int_equal(frame_length, 4 + 269);
    assert_int_equal(coap_tcp_frame_length(len65805, sizeof(len65805), SIZE_MAX, &frame_length),
                     COAP_OK);
    assert_int_equal(frame_length, 6 + 65805);
    assert_int_equal(coap_tcp_frame_length(len_max16, sizeof(len_max16), SIZE_MAX, &frame_length),
                     COAP_OK);
    assert_int_equal(frame_length, 4 + 65535 + 269);
}

/* Option deltas and lengths at their own 13 / 269 boundaries. */
static void test_option_nibble_boundaries(void **state)
{
    (void)state;
    static const uint16_t lengths[] = {0, 12, 13, 268, 269, 1000};
    static const uint16_t numbers[] = {1, 12, 13, 268, 269, 2049, 65535};
    static uint8_t value[1000];
    for (size_t i = 0; i < sizeof(value); i++)
        value[i] = (uint8_t)i;
    for (size_t n = 0; n < sizeof(numbers) / sizeof(numbers[0]); n++) {
        for (size_t l = 0; l < sizeof(lengths) / sizeof(lengths[0]); l++) {
            struct coap_option options[2] = {
                {.number = numbers[n], .length = lengths[l], .value = value},
                {.number = numbers[n], .length = 1, .value = value + 5},
            };
            uint8_t out[2200];
            long length =
                coap_tcp_encode(out, sizeof(out), COAP_PUT, NULL, 0, options, 2, value, 3);
            assert_true(length > 0);
            struct coap_message message;
            assert_int_equal(coap_tcp_decode(out, (size_t)length, &message), COAP_OK);
            assert_int_equal(message.option_count, 2);
            assert_int_equal(message.options[0].number, numbers[n]);
            assert_int_equal(message.options[0].length, lengths[l]);
            if (lengths[l] > 0)
                assert_memory_equal(message.options[0].value, value, lengths[l]);
            else
                assert_null(message.options[0].value);
            assert_int_equal(message.options[1].number, numbers[n]);
            assert_int_equal(message.options[1].value[0], 5);
            assert_int_equal(message.payload_length, 3);
        }
    }
}

/* Every strict prefix of a frame: not a frame yet, and never decoded. */
static void test_truncated_prefixes(void **state)
{
    (void)state;
    uint8_t payload[300];
    memset(payload, 'p', sizeof(payload));
    struct coap_option option = text_option(COAP_OPTION_URI_PATH, "x.plgd.dev");
    uint8_t frame[400];
    long full = coap_tcp_encode(frame, sizeof(frame), COAP_POST, request_token, 8, &option, 1,
                                payload, sizeof(payload));
    assert_true(full > 0);
    for (size_t prefix = 0; prefix < (size_t)full; prefix++) {
        size_t frame_length = 0;
        int status = coap_tcp_frame_length(frame, prefix, 65536, &frame_length);
        if (prefix < 3) {
            assert_int_equal(status, COAP_NEED_MORE);
        } else {
            assert_int_equal(status, COAP_OK);
            assert_int_equal(frame_length, (size_t)full);
        }
        struct coap_message message;
        assert_int_equal(coap_tcp_decode(frame, prefix, &message), COAP_MALFORMED);
    }

    size_t frame_length = 0;
    for (size_t prefix = 0; prefix < sizeof(time_request); prefix++) {
        int status = coap_tcp_frame_length(time_request, prefix, 8192, &frame_length);
        assert_true(status == COAP_NEED_MORE ||
                    (status == COAP_OK && frame_length == sizeof(time_request)));
    }
}

static void expect_malformed(const uint8_t *frame, size_t length)
{
    struct coap_message message;
    assert_int_equal(coap_tcp_decode(frame, length, &message), COAP_MALFORMED);
}

static void test_malformed(void **state)
{
    (void)state;
    size_t frame_length;
    /* Token length 9 to 15 is reserved. */
    static const uint8_t long_token[] = {0x09, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    assert_int_equal(coap_tcp_frame_length(long_token, 1, 8192, &frame_length), COAP_MALFORMED);
    expect_malformed(long_token, sizeof(long_token));
    static const uint8_t token_15[] = {0xDF};
    assert_int_equal(coap_tcp_frame_length(token_15, 1, 8192, &frame_length), COAP_MALFORMED);

    /* Payload marker with nothing after it. */
    static const uint8_t empty_payload[] = {0x10, 0x45, 0xFF};
    expect_malformed(empty_payload, sizeof(empty_payload));
    /* Option delta nibble 15 that is not the marker, and length nibble 15. */
    static const uint8_t delta_15[] = {0x20, 0x45, 0xF1, 0x00};
    expect_malformed(delta_15, sizeof(delta_15));
    static const uint8_t length_15[] = {0x10, 0x45, 0x1F};
    expect_malformed(length_15, sizeof(length_15));
    /* Option value running past the frame. */
    static const uint8_t value_overrun[] = {0x20, 0x45, 0xB5, 'a'};
    expect_malformed(value_overrun, sizeof(value_overrun));
    /* Extended delta and length bytes missing. */
    static const uint8_t delta_ext_missing[] = {0x10, 0x45, 0xD0};
    expect_malformed(delta_ext_missing, sizeof(delta_ext_missing));
    static const uint8_t delta16_ext_missing[] = {0x20, 0x45, 0xE0, 0x01};
    expect_malformed(delta16_ext_missing, sizeof(delta16_ext_missing));
    static const uint8_t length_ext_missing[] = {0x20, 0x45, 0x1D, 0x00};
    expect_malformed(length_ext_missing, sizeof(length_ext_missing));
    /* Option numbers summing past 65535. */
    static const uint8_t number_overflow[] = {0x60, 0x45, 0xE0, 0xFF, 0x00, 0xE0, 0x01, 0x00};
    expect_malformed(number_overflow, sizeof(number_overflow));
    /* Trailing bytes after the announced frame, and a frame that is too short. */
    uint8_t trailing[sizeof(time_request) + 1];
    memcpy(trailing, time_request, sizeof(time_request));
    trailing[sizeof(time_request)] = 0;
    expect_malformed(trailing, sizeof(trailing));
    expect_malformed(time_request, sizeof(time_request) - 1);
    /* Empty input. */
    expect_malformed(time_request, 0);

    /* 33 one-byte options (delta 1, empty): one more than the decoder holds. */
    uint8_t frame[3 + 33];
    frame[0] = 0xD0;
    frame[1] = 33 - 13;
    frame[2] = COAP_CONTENT;
    memset(frame + 3, 0x10, 33);
    assert_int_equal(coap_tcp_frame_length(frame, sizeof(frame), 8192, &frame_length), COAP_OK);
    assert_int_equal(frame_length, sizeof(frame));
    expect_malformed(frame, sizeof(frame));
    /* Exactly 32 fit. */
    frame[1] = 32 - 13;
    struct coap_message message;
    assert_int_equal(coap_tcp_decode(frame, sizeof(frame) - 1, &message), COAP_OK);
    assert_int_equal(message.option_count, COAP_MAX_OPTIONS);
}

static void test_too_large(void **state)
{
    (void)state;
    size_t frame_length = 0;
    /* Len 15 with 0xFFFFFFFF: 4 GiB + 65805 bytes announced. */
    static const uint8_t huge[] = {0xF8, 0xFF, 0xFF, 0xFF, 0xFF};
    assert_int_equal(coap_tcp_frame_length(huge, sizeof(huge), 16384, &frame_length),
                     COAP_TOO_LARGE);
    assert_int_equal(coap_tcp_frame_length(huge, sizeof(huge), UINT32_MAX, &frame_length),
                     COAP_TOO_LARGE);
    assert_int_equal(coap_tcp_frame_length(huge, 4, 16384, &frame_length), COAP_NEED_MORE);

    /* The limit counts the whole frame: header, code and token included. */
    static const uint8_t at_limit[] = {0xE8, 0x00, 0x00};
    size_t exact = 3 + 1 + 8 + 269;
    assert_int_equal(coap_tcp_frame_length(at_limit, sizeof(at_limit), exact, &frame_length),
                     COAP_OK);
    assert_int_equal(frame_length, exact);
    assert_int_equal(coap_tcp_frame_length(at_limit, sizeof(at_limit), exact - 1, &frame_length),
                     COAP_TOO_LARGE);
}

static void test_encode_errors(void **state)
{
    (void)state;
    uint8_t out[64];
    struct coap_option unsorted[2] = {text_option(COAP_OPTION_URI_QUERY, "a"),
                                      text_option(COAP_OPTION_URI_PATH, "b")};
    assert_int_equal(coap_tcp_encode(out, sizeof(out), COAP_GET, NULL, 0, unsorted, 2, NULL, 0),
                     COAP_MALFORMED);
    uint8_t token[9] = {0};
    assert_int_equal(coap_tcp_encode(out, sizeof(out), COAP_GET, token, 9, NULL, 0, NULL, 0),
                     COAP_MALFORMED);

    /* Every capacity short of the frame is refused without writing past it. */
    uint8_t accept[4], version[4];
    struct coap_option options[4];
    time_request_options(options, accept, version);
    for (size_t capacity = 0; capacity < sizeof(time_request); capacity++) {
        uint8_t *exact = malloc(capacity + 1);
        assert_non_null(exact);
        assert_int_equal(
            coap_tcp_encode(exact, capacity, COAP_GET, request_token, 8, options, 4, NULL, 0),
            COAP_NO_SPACE);
        free(exact);
    }
}

static void test_uri_path(void **state)
{
    (void)state;
    struct coap_message message;
    assert_int_equal(coap_tcp_decode(time_request, sizeof(time_request), &message), COAP_OK);

    char path[32];
    /* "/x.plgd.dev/time" is 16 characters plus NUL. */
    assert_int_equal(coap_message_uri_path(&message, path, 17), 0);
    assert_string_equal(path, "/x.plgd.dev/time");
    assert_int_equal(coap_message_uri_path(&message, path, 16), -1);

    struct coap_message empty = {.code = COAP_GET};
    assert_int_equal(coap_message_uri_path(&empty, path, sizeof(path)), 0);
    assert_string_equal(path, "/");
    assert_int_equal(coap_message_uri_path(&empty, path, 1), -1);

    struct coap_message hostile = {.code = COAP_GET, .option_count = 2};
    hostile.options[0] = text_option(COAP_OPTION_URI_PATH, "api");
    hostile.options[1] = text_option(COAP_OPTION_URI_PATH, "a/b");
    assert_int_equal(coap_message_uri_path(&hostile, path, sizeof(path)), -1);
    static const uint8_t with_nul[] = {'a', '\0', 'b'};
    hostile.options[1] =
        (struct coap_option){.number = COAP_OPTION_URI_PATH, .length = 3, .value = with_nul};
    assert_int_equal(coap_message_uri_path(&hostile, path, sizeof(path)), -1);

    /* Other options between segments are ignored. */
    struct coap_message mixed = {.code = COAP_GET, .option_count = 3};
    mixed.options[0] = text_option(COAP_OPTION_URI_HOST, "host");
    mixed.options[1] = text_option(COAP_OPTION_URI_PATH, "oic");
    mixed.options[2] = text_option(COAP_OPTION_URI_QUERY, "if=x");
    assert_int_equal(coap_message_uri_path(&mixed, path, sizeof(path)), 0);
    assert_string_equal(path, "/oic");
}

static void test_option_uint(void **state)
{
    (void)state;
    uint8_t storage[4];
    struct coap_option option;
    uint32_t value = 1;

    coap_option_make_uint(&option, COAP_OPTION_CONTENT_FORMAT, 0, storage);
    assert_int_equal(option.number, COAP_OPTION_CONTENT_FORMAT);
    assert_int_equal(option.length, 0);
    assert_int_equal(coap_option_uint(&option, &value), 0);
    assert_int_equal(value, 0);

    static const struct {
        uint32_t value;
        uint16_t length;
    } cases[] = {{1, 1},     {255, 1},       {256, 2},       {10000, 2},
                 {65536, 3}, {0x1000000, 4}, {UINT32_MAX, 4}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        coap_option_make_uint(&option, COAP_OPTION_MAX_AGE, cases[i].value, storage);
        assert_int_equal(option.length, cases[i].length);
        assert_int_equal(coap_option_uint(&option, &value), 0);
        assert_int_equal(value, cases[i].value);
    }
    coap_option_make_uint(&option, COAP_OPTION_ACCEPT, 10000, storage);
    assert_int_equal(storage[0], 0x27);
    assert_int_equal(storage[1], 0x10);

    static const uint8_t five[] = {1, 2, 3, 4, 5};
    struct coap_option too_long = {.number = COAP_OPTION_MAX_AGE, .length = 5, .value = five};
    assert_int_equal(coap_option_uint(&too_long, &value), -1);
}

/*
 * A CSM (7.01) carrying Max-Message-Size 16384 with a 4-byte token, the
 * shape the server may send: 0x34 (Len 3, TKL 4), 0xE1, token, then option 2
 * with 2 bytes: 0x22 0x40 0x00. Nine bytes, above the client's 6-byte read.
 */
static void test_signal_csm_round_trip(void **state)
{
    (void)state;
    static const uint8_t token[4] = {0xCA, 0xFE, 0xBA, 0xBE};
    static const uint8_t expected[] = {0x34, 0xE1, 0xCA, 0xFE, 0xBA, 0xBE, 0x22, 0x40, 0x00};
    uint8_t storage[4];
    struct coap_option option;
    coap_option_make_uint(&option, COAP_OPTION_CSM_MAX_MESSAGE_SIZE, 16384, storage);
    uint8_t out[32];
    long length = coap_tcp_encode(out, sizeof(out), COAP_SIGNAL_CSM, token, sizeof(token), &option,
                                  1, NULL, 0);
    assert_int_equal(length, sizeof(expected));
    assert_memory_equal(out, expected, sizeof(expected));

    struct coap_message message;
    assert_int_equal(coap_tcp_decode(out, (size_t)length, &message), COAP_OK);
    assert_int_equal(message.code, COAP_CODE(7, 1));
    assert_int_equal(message.token_length, 4);
    assert_memory_equal(message.token, token, 4);
    uint32_t value = 0;
    const struct coap_option *size =
        coap_message_option(&message, COAP_OPTION_CSM_MAX_MESSAGE_SIZE);
    assert_non_null(size);
    assert_int_equal(coap_option_uint(size, &value), 0);
    assert_int_equal(value, 16384);

    /* Ping and Pong with an empty body: two-byte header plus token. */
    length = coap_tcp_encode(out, sizeof(out), COAP_SIGNAL_PONG, token, 4, NULL, 0, NULL, 0);
    assert_int_equal(length, 6);
    assert_int_equal(out[0], 0x04);
    assert_int_equal(out[1], COAP_SIGNAL_PONG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_known_request),
        cmocka_unit_test(test_decode_known_request),
        cmocka_unit_test(test_ocf_options_round_trip),
        cmocka_unit_test(test_length_boundaries),
        cmocka_unit_test(test_extended_length_bytes),
        cmocka_unit_test(test_option_nibble_boundaries),
        cmocka_unit_test(test_truncated_prefixes),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_uri_path),
        cmocka_unit_test(test_option_uint),
        cmocka_unit_test(test_signal_csm_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
