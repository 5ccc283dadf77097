/*
 * Tests for the blocklist set: entries are found only under their owner,
 * many entries stay findable, capacity is enforced, serial entries are noted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>

#include "dataplane/blocklist.h"

static void test_entries_belong_to_their_owner(void **state)
{
    (void)state;
    struct blocklist *blocklist = blocklist_new(4);
    assert_int_equal(blocklist_add(blocklist, "1", "device:0f4a3c55-8e3b-4f4e-9a5e-6b2f7d1c9e01"),
                     0);
    assert_true(blocklist_contains(blocklist, "1", "device:0f4a3c55-8e3b-4f4e-9a5e-6b2f7d1c9e01"));
    assert_false(blocklist_contains(blocklist, "2", "device:0f4a3c55-8e3b-4f4e-9a5e-6b2f7d1c9e01"));
    assert_false(blocklist_contains(blocklist, "1", "device:other"));
    /* The separator cannot be forged by splitting differently. */
    assert_false(blocklist_contains(blocklist, "1\ndevice:0f4a3c55", "-8e3b"));
    blocklist_free(blocklist);
}

static void test_many_entries_stay_findable(void **state)
{
    (void)state;
    struct blocklist *blocklist = blocklist_new(10000);
    char key[64];
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "record:%08d", i);
        assert_int_equal(blocklist_add(blocklist, i % 2 ? "a" : "b", key), 0);
    }
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "record:%08d", i);
        assert_true(blocklist_contains(blocklist, i % 2 ? "a" : "b", key));
        assert_false(blocklist_contains(blocklist, i % 2 ? "b" : "a", key));
    }
    assert_false(blocklist_contains(blocklist, "a", "record:99999999"));
    blocklist_free(blocklist);
}

static void test_capacity_is_enforced_and_duplicates_are_free(void **state)
{
    (void)state;
    struct blocklist *blocklist = blocklist_new(2);
    assert_int_equal(blocklist_add(blocklist, "1", "device:a"), 0);
    assert_int_equal(blocklist_add(blocklist, "1", "device:a"), 0);
    assert_int_equal(blocklist_add(blocklist, "1", "device:b"), 0);
    assert_int_equal(blocklist_add(blocklist, "1", "device:c"), -1);
    blocklist_free(blocklist);
}

static void test_serial_entries_are_noted(void **state)
{
    (void)state;
    struct blocklist *blocklist = blocklist_new(2);
    assert_false(blocklist_has_serials(blocklist));
    blocklist_add(blocklist, "1", "record:x");
    assert_false(blocklist_has_serials(blocklist));
    blocklist_add(blocklist, "1", "serial:0a1b/CN=Maker");
    assert_true(blocklist_has_serials(blocklist));
    assert_false(blocklist_contains(NULL, "1", "record:x"));
    blocklist_free(blocklist);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entries_belong_to_their_owner),
        cmocka_unit_test(test_many_entries_stay_findable),
        cmocka_unit_test(test_capacity_is_enforced_and_duplicates_are_free),
        cmocka_unit_test(test_serial_entries_are_noted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
