/*
 * Tests for the PROXY protocol parser and the trusted-balancer ranges:
 * well-formed v1 and v2 headers give the device's address and the header's
 * length; every prefix of a valid header asks for more; malformed, foreign
 * and oversized headers are refused; CIDR ranges match what they cover.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "dataplane/proxy.h"

static const uint8_t signature[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                      0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* A v2 PROXY TCP4 header 10.1.2.3:40000 -> 10.0.0.1:15684, plus tlv_length bytes of TLVs. */
static size_t v2_tcp4(uint8_t *out, size_t tlv_length)
{
    memcpy(out, signature, 12);
    out[12] = 0x21;
    out[13] = 0x11;
    size_t body = 12 + tlv_length;
    out[14] = (uint8_t)(body >> 8);
    out[15] = (uint8_t)body;
    const uint8_t addresses[12] = {10, 1, 2, 3, 10, 0, 0, 1, 0x9c, 0x40, 0x3d, 0x24};
    memcpy(out + 16, addresses, 12);
    memset(out + 28, 0x04, tlv_length); /* NOOP TLVs' bytes; the parser skips them */
    return 16 + body;
}

static void assert_source(const struct proxy_header *header, const char *address, unsigned port)
{
    char text[INET6_ADDRSTRLEN];
    assert_true(header->has_source);
    if (header->source.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&header->source;
        inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
        assert_int_equal(ntohs(in->sin_port), port);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&header->source;
        inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
        assert_int_equal(ntohs(in6->sin6_port), port);
    }
    assert_string_equal(text, address);
}

static void test_v2_tcp4(void **state)
{
    (void)state;
    uint8_t buffer[128];
    size_t length = v2_tcp4(buffer, 7);
    buffer[length] = 0x16; /* the ClientHello that follows is not part of the header */
    struct proxy_header header;
    assert_int_equal(proxy_parse(buffer, length + 1, &header), PROXY_OK);
    assert_int_equal(header.length, length);
    assert_source(&header, "10.1.2.3", 40000);
    for (size_t prefix = 1; prefix < length; prefix++) {
        assert_int_equal(proxy_parse(buffer, prefix, &header), PROXY_NEED_MORE);
    }
}

static void test_v2_tcp6_and_local(void **state)
{
    (void)state;
    uint8_t buffer[64];
    memcpy(buffer, signature, 12);
    buffer[12] = 0x21;
    buffer[13] = 0x21;
    buffer[14] = 0;
    buffer[15] = 36;
    memset(buffer + 16, 0, 36);
    buffer[16] = 0x20;
    buffer[17] = 0x01;
    buffer[16 + 15] = 0x07;
    buffer[48] = 0x30;
    buffer[49] = 0x39;
    struct proxy_header header;
    assert_int_equal(proxy_parse(buffer, 52, &header), PROXY_OK);
    assert_source(&header, "2001::7", 12345);

    buffer[12] = 0x20; /* LOCAL: the balancer's own connection, no device address */
    buffer[13] = 0x00;
    buffer[15] = 0;
    assert_int_equal(proxy_parse(buffer, 16, &header), PROXY_OK);
    assert_int_equal(header.length, 16);
    assert_false(header.has_source);
}

static void test_v2_refused(void **state)
{
    (void)state;
    uint8_t buffer[PROXY_MAX_HEADER + 64];
    struct proxy_header header;
    size_t length = v2_tcp4(buffer, 0);

    buffer[12] = 0x11; /* version 1 in a binary header */
    assert_int_equal(proxy_parse(buffer, length, &header), PROXY_INVALID);
    buffer[12] = 0x22; /* unknown command */
    assert_int_equal(proxy_parse(buffer, length, &header), PROXY_INVALID);
    buffer[12] = 0x21;
    buffer[13] = 0x12; /* UDP */
    assert_int_equal(proxy_parse(buffer, length, &header), PROXY_INVALID);
    buffer[13] = 0x11;
    buffer[15] = 11; /* addresses cut short */
    assert_int_equal(proxy_parse(buffer, length, &header), PROXY_INVALID);
    /* Longer than we take: refused at once, before its body arrives. */
    length = v2_tcp4(buffer, PROXY_MAX_HEADER);
    assert_int_equal(proxy_parse(buffer, 16, &header), PROXY_INVALID);
    buffer[3] ^= 1; /* a broken signature is not a header */
    assert_int_equal(proxy_parse(buffer, 16, &header), PROXY_INVALID);
}

static enum proxy_status v1(const char *text, struct proxy_header *header)
{
    return proxy_parse((const uint8_t *)text, strlen(text), header);
}

static void test_v1(void **state)
{
    (void)state;
    struct proxy_header header;
    const char *line = "PROXY TCP4 192.0.2.10 10.0.0.1 51000 15684\r\n";
    assert_int_equal(v1(line, &header), PROXY_OK);
    assert_int_equal(header.length, strlen(line));
    assert_source(&header, "192.0.2.10", 51000);
    char with_tls[128];
    snprintf(with_tls, sizeof(with_tls), "%s\x16\x03\x01", line);
    assert_int_equal(v1(with_tls, &header), PROXY_OK);
    assert_int_equal(header.length, strlen(line));

    assert_int_equal(v1("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", &header), PROXY_OK);
    assert_source(&header, "2001:db8::1", 1);
    assert_int_equal(v1("PROXY UNKNOWN\r\n", &header), PROXY_OK);
    assert_false(header.has_source);
    assert_int_equal(v1("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", &header), PROXY_OK);

    for (size_t prefix = 1; prefix < strlen(line); prefix++) {
        char cut[128];
        memcpy(cut, line, prefix);
        cut[prefix] = '\0';
        assert_int_equal(v1(cut, &header), PROXY_NEED_MORE);
    }
}

static void test_v1_refused(void **state)
{
    (void)state;
    struct proxy_header header;
    static const char *const bad[] = {
        "PROXY TCP4 192.0.2.10 10.0.0.1 51000 15684\n",    /* no CR */
        "PROXY TCP4 192.0.2.300 10.0.0.1 51000 15684\r\n", /* not an address */
        "PROXY TCP4 2001:db8::1 10.0.0.1 51000 15684\r\n", /* v6 in TCP4 */
        "PROXY TCP4 192.0.2.10 10.0.0.1 65536 15684\r\n",  /* port out of range */
        "PROXY TCP4 192.0.2.10 10.0.0.1 051000 15684\r\n", /* leading zero */
        "PROXY TCP4 192.0.2.10 10.0.0.1 -1 15684\r\n",
        "PROXY TCP4 192.0.2.10  10.0.0.1 51000 15684\r\n",  /* double space */
        "PROXY TCP4 192.0.2.10 10.0.0.1 51000\r\n",         /* a field missing */
        "PROXY TCP4 192.0.2.10 10.0.0.1 51000 15684 7\r\n", /* one too many */
        "PROXY UDP4 192.0.2.10 10.0.0.1 51000 15684\r\n",
        "PROXY TCP4 192.0.2.10 10.0.0.1 51000 156\x01"
        "84\r\n",
        "proxy TCP4 192.0.2.10 10.0.0.1 51000 15684\r\n",
        "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", /* a ClientHello, no header */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(v1(bad[i], &header), PROXY_INVALID);
    }
    /* A line longer than 107 bytes without its end is refused, not waited for. */
    char longer[200];
    memset(longer, '1', sizeof(longer));
    memcpy(longer, "PROXY TCP4 ", 11);
    assert_int_equal(proxy_parse((const uint8_t *)longer, sizeof(longer), &header), PROXY_INVALID);
    assert_int_equal(proxy_parse((const uint8_t *)longer, 100, &header), PROXY_NEED_MORE);
}

static struct sockaddr_storage address_of(const char *text)
{
    struct sockaddr_storage storage;
    memset(&storage, 0, sizeof(storage));
    struct sockaddr_in *in = (struct sockaddr_in *)&storage;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&storage;
    if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
        in6->sin6_family = AF_INET6;
    }
    return storage;
}

static bool matches(const struct proxy_cidr *ranges, size_t count, const char *text)
{
    struct sockaddr_storage address = address_of(text);
    return proxy_cidr_match(ranges, count, (const struct sockaddr *)&address);
}

static void test_cidr(void **state)
{
    (void)state;
    struct proxy_cidr ranges[3];
    assert_int_equal(proxy_cidr_parse("10.0.0.0/8", &ranges[0]), 0);
    assert_int_equal(proxy_cidr_parse("192.168.1.7", &ranges[1]), 0);
    assert_int_equal(proxy_cidr_parse("fd00::/8", &ranges[2]), 0);
    assert_true(matches(ranges, 3, "10.200.1.1"));
    assert_false(matches(ranges, 3, "11.0.0.1"));
    assert_true(matches(ranges, 3, "192.168.1.7"));
    assert_false(matches(ranges, 3, "192.168.1.8"));
    assert_true(matches(ranges, 3, "fdab::1"));
    assert_false(matches(ranges, 3, "fe80::1"));
    assert_true(matches(ranges, 3, "::ffff:10.1.1.1")); /* v4-mapped counts as v4 */

    assert_int_equal(proxy_cidr_parse("10.0.0.0/12", &ranges[0]), 0);
    assert_true(matches(ranges, 1, "10.15.255.255"));
    assert_false(matches(ranges, 1, "10.16.0.0"));

    static const char *const bad[] = {"10.0.0.0/33", "fd00::/129",  "10.0.0.0/", "10.0.0/8",
                                      "/8",          "10.0.0.0/8x", "host/8",    "",
                                      "10.0.0.0/-1", "10.0.0.0/08"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(proxy_cidr_parse(bad[i], &ranges[0]), -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v2_tcp4),    cmocka_unit_test(test_v2_tcp6_and_local),
        cmocka_unit_test(test_v2_refused), cmocka_unit_test(test_v1),
        cmocka_unit_test(test_v1_refused), cmocka_unit_test(test_cidr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
