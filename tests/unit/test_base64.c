/*
 * Tests for the one base64 codec: RFC 4648's vectors in both alphabets,
 * round trips of every length, and strictness: one spelling per value
 * (non-zero spare bits, misplaced or missing padding, the other alphabet's
 * characters, anything after padding are refused), whitespace only where
 * asked for, and output that does not fit is refused, never cut.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/base64.h"

static void test_rfc4648_vectors(void **state)
{
    (void)state;
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const padded[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                         "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    static const char *const url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char *encoded =
            base64_encode_string(BASE64_STANDARD, (const uint8_t *)plain[i], strlen(plain[i]));
        assert_string_equal(encoded, padded[i]);
        free(encoded);
        encoded = base64_encode_string(BASE64_URL, (const uint8_t *)plain[i], strlen(plain[i]));
        assert_string_equal(encoded, url[i]);
        free(encoded);
        size_t length;
        uint8_t *decoded =
            base64_decode_alloc(BASE64_STANDARD, padded[i], strlen(padded[i]), &length);
        assert_non_null(decoded);
        assert_int_equal(length, strlen(plain[i]));
        assert_string_equal((char *)decoded, plain[i]);
        free(decoded);
        decoded = base64_decode_alloc(BASE64_URL, url[i], strlen(url[i]), &length);
        assert_non_null(decoded);
        assert_string_equal((char *)decoded, plain[i]);
        free(decoded);
    }
}

static void test_round_trip_every_length(void **state)
{
    (void)state;
    uint8_t data[300];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 37 + 11);
    for (int alphabet = BASE64_STANDARD; alphabet <= BASE64_URL; alphabet++) {
        for (size_t length = 0; length <= sizeof(data); length++) {
            char *text = base64_encode_string(alphabet, data, length);
            assert_int_equal(strlen(text), base64_encoded_length(alphabet, length));
            size_t decoded_length;
            uint8_t *decoded = base64_decode_alloc(alphabet, text, strlen(text), &decoded_length);
            assert_non_null(decoded);
            assert_int_equal(decoded_length, length);
            assert_memory_equal(decoded, data, length);
            free(decoded);
            free(text);
        }
    }
    /* Every byte value survives, in both alphabets' special characters. */
    uint8_t all[3] = {0xfb, 0xff, 0xbf};
    char *text = base64_encode_string(BASE64_URL, all, 3);
    assert_string_equal(text, "-_-_");
    free(text);
    text = base64_encode_string(BASE64_STANDARD, all, 3);
    assert_string_equal(text, "+/+/");
    free(text);
}

static bool decodes(enum base64_alphabet alphabet, const char *text)
{
    size_t length;
    uint8_t *decoded = base64_decode_alloc(alphabet, text, strlen(text), &length);
    free(decoded);
    return decoded != NULL;
}

static void test_one_spelling_per_value(void **state)
{
    (void)state;
    static const char *const bad_standard[] = {
        "Zh==",     /* spare bits set: "Zg==" is the spelling */
        "Zm9=",     /* same, two bytes */
        "Zg",       /* padding missing */
        "Zg=",      /* padding short */
        "Z===",     /* one character cannot carry a byte */
        "Zg==Zg==", /* data after padding */
        "Zg=a",     /* data inside padding */
        "Zm9v=",    /* padding after a full quantum */
        "Zm-v",     /* the URL alphabet's character */
        "Zm9 v",    /* whitespace not asked for */
        "====",
    };
    for (size_t i = 0; i < sizeof(bad_standard) / sizeof(bad_standard[0]); i++) {
        if (decodes(BASE64_STANDARD, bad_standard[i]))
            fail_msg("standard accepted \"%s\"", bad_standard[i]);
    }
    static const char *const bad_url[] = {"Zh", "Zm9", "Z", "Zg==", "Zm+v", "Zm/v", "Zm9vY"};
    for (size_t i = 0; i < sizeof(bad_url) / sizeof(bad_url[0]); i++) {
        if (decodes(BASE64_URL, bad_url[i]))
            fail_msg("URL accepted \"%s\"", bad_url[i]);
    }
}

static void test_pieces_space_and_capacity(void **state)
{
    (void)state;
    uint8_t out[6];
    struct base64_decoder decoder;

    /* Fed in pieces, as PEM lines arrive, with line ends when asked for. */
    base64_decoder_init(&decoder, BASE64_STANDARD, true, out, sizeof(out));
    assert_int_equal(base64_decoder_feed(&decoder, "Zm9v\r\n", 6), 0);
    assert_int_equal(base64_decoder_feed(&decoder, " YmE\n=", 6), 0);
    assert_int_equal(base64_decoder_finish(&decoder), 0);
    assert_int_equal(decoder.length, 5);
    assert_memory_equal(out, "fooba", 5);

    /* A quantum split across pieces is still one quantum. */
    base64_decoder_init(&decoder, BASE64_STANDARD, false, out, sizeof(out));
    assert_int_equal(base64_decoder_feed(&decoder, "Zm", 2), 0);
    assert_int_equal(base64_decoder_feed(&decoder, "9v", 2), 0);
    assert_int_equal(base64_decoder_finish(&decoder), 0);
    assert_int_equal(decoder.length, 3);

    /* Seven bytes into six: refused as too large, nothing cut. */
    base64_decoder_init(&decoder, BASE64_STANDARD, false, out, sizeof(out));
    assert_int_equal(base64_decoder_feed(&decoder, "Zm9vYmFyYg==", 12), -2);
    base64_decoder_init(&decoder, BASE64_STANDARD, false, out, sizeof(out));
    assert_int_equal(base64_decoder_feed(&decoder, "Zm9vYmFy", 8), 0);
    assert_int_equal(base64_decoder_finish(&decoder), 0);
    assert_int_equal(decoder.length, 6);

    /* A padded text that stops inside its padding is incomplete. */
    base64_decoder_init(&decoder, BASE64_STANDARD, false, out, sizeof(out));
    assert_int_equal(base64_decoder_feed(&decoder, "Zg=", 3), 0);
    assert_int_equal(base64_decoder_finish(&decoder), -1);
}

/* PEM text: 64-character lines, the frame, the tail, for lengths around each line's end. */
static void test_pem_layout(void **state)
{
    (void)state;
    uint8_t der[200];
    for (size_t i = 0; i < sizeof(der); i++)
        der[i] = (uint8_t)(i * 37 + 11);
    static const size_t lengths[] = {0, 1, 2, 3, 47, 48, 49, 95, 96, 97, 200};
    for (size_t l = 0; l < sizeof(lengths) / sizeof(lengths[0]); l++) {
        size_t length = lengths[l];
        char *pem = base64_pem("CERTIFICATE", der, length, "tail\n", 5);
        assert_non_null(pem);
        const char *begin = "-----BEGIN CERTIFICATE-----\n";
        assert_memory_equal(pem, begin, strlen(begin));
        const char *body = pem + strlen(begin);
        const char *footer = strstr(body, "-----END");
        assert_non_null(footer);
        assert_string_equal(footer, "-----END CERTIFICATE-----\ntail\n");
        /* Every line but the last is 64 characters; together they decode to der. */
        uint8_t decoded[sizeof(der)];
        struct base64_decoder decoder;
        base64_decoder_init(&decoder, BASE64_STANDARD, true, decoded, sizeof(decoded));
        for (const char *line = body; line < footer;) {
            const char *newline = memchr(line, '\n', (size_t)(footer - line));
            assert_non_null(newline);
            if (newline + 1 < footer)
                assert_int_equal(newline - line, 64);
            else
                assert_true(newline - line > 0 && newline - line <= 64);
            assert_int_equal(base64_decoder_feed(&decoder, line, (size_t)(newline + 1 - line)), 0);
            line = newline + 1;
        }
        assert_int_equal(base64_decoder_finish(&decoder), 0);
        assert_int_equal(decoder.length, length);
        assert_memory_equal(decoded, der, length);
        free(pem);
    }
    /* Without a tail the text ends with the frame. */
    char *pem = base64_pem("X", der, 3, NULL, 0);
    assert_string_equal(pem, "-----BEGIN X-----\nCzBV\n-----END X-----\n");
    free(pem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_round_trip_every_length),
        cmocka_unit_test(test_one_spelling_per_value),
        cmocka_unit_test(test_pieces_space_and_capacity),
        cmocka_unit_test(test_pem_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
