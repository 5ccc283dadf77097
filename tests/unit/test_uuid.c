/*
 * test_uuid: UUID parsing and formatting, version 5 name-based UUIDs and the
 * owner-to-UUID mapping devices see as devowneruuid.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "crypto/uuid.h"

static void format_owner(const char *owner, char out[UUID_STRING_LENGTH + 1])
{
    struct dps_uuid uuid;
    uuid_from_owner(owner, &uuid);
    uuid_format(&uuid, out);
}

static void test_parse_format_round_trip(void **state)
{
    const char *text = "6ba7b811-9dad-11d1-80b4-00c04fd430c8";
    struct dps_uuid uuid;
    char out[UUID_STRING_LENGTH + 1];

    (void)state;
    assert_int_equal(uuid_text_parse(text, strlen(text), &uuid), 0);
    assert_memory_equal(uuid.bytes, UUID_NAMESPACE_URL.bytes, 16);
    uuid_format(&uuid, out);
    assert_string_equal(out, text);
}

static void test_parse_upper_case(void **state)
{
    const char *text = "6BA7B814-9DAD-11D1-80B4-00C04FD430C8";
    struct dps_uuid uuid;
    char out[UUID_STRING_LENGTH + 1];

    (void)state;
    assert_int_equal(uuid_text_parse(text, strlen(text), &uuid), 0);
    assert_memory_equal(uuid.bytes, UUID_NAMESPACE_X500.bytes, 16);
    uuid_format(&uuid, out);
    assert_string_equal(out, "6ba7b814-9dad-11d1-80b4-00c04fd430c8");
}

static void test_parse_rejects_wrong_length(void **state)
{
    struct dps_uuid uuid;
    const char *text = "6ba7b811-9dad-11d1-80b4-00c04fd430c8";

    (void)state;
    assert_int_equal(uuid_text_parse(text, 35, &uuid), -1);
    assert_int_equal(uuid_text_parse("6ba7b811-9dad-11d1-80b4-00c04fd430c8a", 37, &uuid), -1);
    assert_int_equal(uuid_text_parse("", 0, &uuid), -1);
    assert_int_equal(uuid_text_parse("6ba7b8119dad11d180b400c04fd430c8", 32, &uuid), -1);
}

static void test_parse_rejects_missing_dashes(void **state)
{
    struct dps_uuid uuid;

    (void)state;
    assert_int_equal(uuid_text_parse("6ba7b811x9dad-11d1-80b4-00c04fd430c8", 36, &uuid), -1);
    assert_int_equal(uuid_text_parse("6ba7b8119-dad-11d1-80b4-00c04fd430c8", 36, &uuid), -1);
    assert_int_equal(uuid_text_parse("6ba7b811-9dad-11d1-80b4000c04fd430c8", 36, &uuid), -1);
    assert_int_equal(uuid_text_parse("6ba7b811-9dad-11d1-80b4-00c04fd430c-", 36, &uuid), -1);
}

static void test_parse_rejects_non_hex(void **state)
{
    struct dps_uuid uuid;

    (void)state;
    assert_int_equal(uuid_text_parse("6ba7b811-9dad-11d1-80b4-00c04fd430cg", 36, &uuid), -1);
    assert_int_equal(uuid_text_parse("6ba7b811-9dad-11d1-80b4-00c04fd430c ", 36, &uuid), -1);
    assert_int_equal(uuid_text_parse("+ba7b811-9dad-11d1-80b4-00c04fd430c8", 36, &uuid), -1);
}

static void test_nil(void **state)
{
    struct dps_uuid uuid;

    (void)state;
    assert_int_equal(uuid_text_parse("00000000-0000-0000-0000-000000000000", 36, &uuid), 0);
    assert_true(uuid_is_nil(&uuid));
    assert_false(uuid_is_nil(&UUID_NAMESPACE_URL));
}

static void test_v5_known_vector(void **state)
{
    /* RFC 4122 errata / Python's uuid.uuid5(NAMESPACE_DNS, "python.org"). */
    const struct dps_uuid dns = {{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00,
                                  0xc0, 0x4f, 0xd4, 0x30, 0xc8}};
    struct dps_uuid uuid;
    char out[UUID_STRING_LENGTH + 1];

    (void)state;
    uuid_v5(&dns, "python.org", strlen("python.org"), &uuid);
    uuid_format(&uuid, out);
    assert_string_equal(out, "886313e1-3b8a-5372-9b90-0c9aee199e5d");
}

static void test_owner_one(void **state)
{
    char out[UUID_STRING_LENGTH + 1];

    (void)state;
    format_owner("1", out);
    assert_string_equal(out, "b80c8fef-a677-5340-85fb-2c162d75df03");
}

static void test_owner_uuid_returned_as_is(void **state)
{
    char out[UUID_STRING_LENGTH + 1];

    (void)state;
    format_owner("A1B2C3D4-0000-4000-8000-00000000ABCD", out);
    assert_string_equal(out, "a1b2c3d4-0000-4000-8000-00000000abcd");
}

static void test_owner_nil_uuid_goes_through_v5(void **state)
{
    const char *nil = "00000000-0000-0000-0000-000000000000";
    struct dps_uuid expected;
    char want[UUID_STRING_LENGTH + 1];
    char out[UUID_STRING_LENGTH + 1];

    (void)state;
    uuid_v5(&UUID_NAMESPACE_URL, nil, strlen(nil), &expected);
    uuid_format(&expected, want);
    format_owner(nil, out);
    assert_string_equal(out, want);
    assert_string_not_equal(out, nil);
    assert_int_equal(out[14], '5');
}

static void test_owner_free_text(void **state)
{
    char first[UUID_STRING_LENGTH + 1];
    char second[UUID_STRING_LENGTH + 1];

    (void)state;
    format_owner("alice@example.com", first);
    format_owner("bob@example.com", second);
    assert_string_not_equal(first, second);
    assert_int_equal(first[14], '5');
    assert_true(strchr("89ab", first[19]) != NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_format_round_trip),
        cmocka_unit_test(test_parse_upper_case),
        cmocka_unit_test(test_parse_rejects_wrong_length),
        cmocka_unit_test(test_parse_rejects_missing_dashes),
        cmocka_unit_test(test_parse_rejects_non_hex),
        cmocka_unit_test(test_nil),
        cmocka_unit_test(test_v5_known_vector),
        cmocka_unit_test(test_owner_one),
        cmocka_unit_test(test_owner_uuid_returned_as_is),
        cmocka_unit_test(test_owner_nil_uuid_goes_through_v5),
        cmocka_unit_test(test_owner_free_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
