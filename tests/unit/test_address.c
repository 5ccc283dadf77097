/*
 * Tests for HOST:PORT splitting (common/address.c): IPv4, bracketed IPv6 and names; the port
 * from 1 to 65535 and nothing after it; an empty host or one that does not fit is refused,
 * never cut; the reason said for each refusal. A listen setting's host is an IP address, and
 * its socket address is what the text says.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

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

/* address_parse says what is wrong, and an IPv6 host must be in brackets. */
static void test_reasons(void **state)
{
    char host[64];
    uint16_t port = 0;
    bool bracketed = false;

    (void)state;
    assert_null(address_parse("[fd00::1]:15684", host, sizeof(host), &port, &bracketed));
    assert_string_equal(host, "fd00::1");
    assert_int_equal(port, 15684);
    assert_true(bracketed);
    assert_null(address_parse("10.0.0.1:80", host, sizeof(host), &port, &bracketed));
    assert_false(bracketed);
    assert_string_equal(address_parse("::1:80", host, sizeof(host), &port, &bracketed),
                        "an IPv6 address must be written [ADDRESS]:PORT");
    assert_int_equal(address_split("::1:80", host, sizeof(host), &port), -1);
    assert_string_equal(address_parse("host", host, sizeof(host), &port, &bracketed),
                        "must be HOST:PORT");
    assert_string_equal(address_parse(":80", host, sizeof(host), &port, &bracketed),
                        "the host is empty");
    assert_string_equal(address_parse("h:+80", host, sizeof(host), &port, &bracketed),
                        "the port must be a number from 1 to 65535");
}

/* address_listen: the socket address of a listen setting, or the same reasons as address_parse. */
static void test_listen(void **state)
{
    struct sockaddr_storage address;
    unsigned char loopback6[16] = {0};
    loopback6[15] = 1;

    (void)state;
    assert_null(address_listen("[::1]:15684", &address));
    assert_int_equal(address.ss_family, AF_INET6);
    assert_memory_equal(&((struct sockaddr_in6 *)&address)->sin6_addr, loopback6, 16);
    assert_int_equal(address_port(&address), 15684);
    assert_true(address_is_loopback(&address));
    assert_int_equal(address_length(&address), sizeof(struct sockaddr_in6));
    assert_null(address_listen("[::]:1", &address));
    assert_false(address_is_loopback(&address));
    assert_null(address_listen("127.9.9.9:65535", &address));
    assert_int_equal(address.ss_family, AF_INET);
    assert_int_equal(ntohl(((struct sockaddr_in *)&address)->sin_addr.s_addr), 0x7f090909);
    assert_int_equal(address_port(&address), 65535);
    assert_true(address_is_loopback(&address));
    assert_int_equal(address_length(&address), sizeof(struct sockaddr_in));
    assert_null(address_listen("0.0.0.0:9100", &address));
    assert_false(address_is_loopback(&address));

    assert_string_equal(address_listen("localhost:9100", &address),
                        "the host must be an IP address");
    assert_string_equal(address_listen("[127.0.0.1]:9100", &address),
                        "the host must be an IP address");
    assert_string_equal(address_listen("[::1", &address),
                        "an IPv6 address must be written [ADDRESS]:PORT");
    assert_string_equal(address_listen("::1:9100", &address),
                        "an IPv6 address must be written [ADDRESS]:PORT");
    assert_string_equal(address_listen("127.0.0.1", &address), "must be HOST:PORT");
    assert_string_equal(address_listen("127.0.0.1:0", &address),
                        "the port must be a number from 1 to 65535");
    assert_string_equal(address_listen(":9100", &address), "the host is empty");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hosts_and_ports),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_reasons),
        cmocka_unit_test(test_listen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
