/*
 * Tests for HOST:PORT splitting (common/address.c): IPv4, bracketed IPv6 and names; the port
 * from 1 to 65535 and nothing after it; an empty host or one that does not fit is refused,
 * never cut.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/address.h"

static void test_hosts_and_ports(void **state)
{
    char host[64];
    uint16_t port = 0;

    (void)state;
    assert_int_equal(address_split("127.0.0.1:6379", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6379);
    assert_int_equal(address_split("[::1]:26379", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 26379);
    assert_int_equal(address_split("redis.local:1", host, sizeof(host), &port), 0);
    assert_string_equal(host, "redis.local");
    assert_int_equal(port, 1);
    assert_int_equal(address_split("10.0.0.1:65535", host, sizeof(host), &port), 0);
    assert_int_equal(port, 65535);
}

static void test_refused(void **state)
{
    static const char *const refused[] = {
        "127.0.0.1",       "127.0.0.1:",    "127.0.0.1:0",
        "127.0.0.1:65536", "127.0.0.1:63x", ":6379",
        "[]:6379",         "[::1]",         "",
    };
    char host[64];
    char small[4];
    uint16_t port = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        assert_int_equal(address_split(refused[i], host, sizeof(host), &port), -1);
    assert_int_equal(address_split("1.2.3.4:80", small, sizeof(small), &port), -1);
    assert_int_equal(address_split("1.2:80", small, sizeof(small), &port), 0);
    assert_string_equal(small, "1.2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hosts_and_ports),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
