/*
 * proxy: see proxy.h. Version 2 is binary (a 12-byte signature, version and
 * command, family, a 16-bit length, the addresses, then TLVs we skip);
 * version 1 is one text line "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n".
 */
#include "dataplane/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v2_signature[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                         0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
#define V1_MAX_LINE 107

static void set_v4(struct proxy_header *header, const uint8_t address[4], uint16_t port)
{
    struct sockaddr_in *in = (struct sockaddr_in *)&header->source;
    memset(&header->source, 0, sizeof(header->source));
    in->sin_family = AF_INET;
    memcpy(&in->sin_addr, address, 4);
    in->sin_port = htons(port);
    header->source_length = sizeof(*in);
    header->has_source = true;
}

static void set_v6(struct proxy_header *header, const uint8_t address[16], uint16_t port)
{
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&header->source;
    memset(&header->source, 0, sizeof(header->source));
    in6->sin6_family = AF_INET6;
    memcpy(&in6->sin6_addr, address, 16);
    in6->sin6_port = htons(port);
    header->source_length = sizeof(*in6);
    header->has_source = true;
}

static enum proxy_status parse_v2(const uint8_t *data, size_t length, struct proxy_header *header)
{
    if (length < 16) {
        return PROXY_NEED_MORE;
    }
    uint8_t version = data[12] >> 4, command = data[12] & 0x0f;
    uint8_t family = data[13];
    size_t body = (size_t)data[14] << 8 | data[15];
    if (version != 2 || command > 1 || 16 + body > PROXY_MAX_HEADER) {
        return PROXY_INVALID;
    }
    if (length < 16 + body) {
        return PROXY_NEED_MORE;
    }
    header->length = 16 + body;
    header->has_source = false;
    const uint8_t *p = data + 16;
    if (command == 0) { /* LOCAL: the balancer speaking for itself */
        return PROXY_OK;
    }
    switch (family) {
    case 0x11: /* TCP over IPv4 */
        if (body < 12) {
            return PROXY_INVALID;
        }
        set_v4(header, p, (uint16_t)(p[8] << 8 | p[9]));
        return PROXY_OK;
    case 0x21: /* TCP over IPv6 */
        if (body < 36) {
            return PROXY_INVALID;
        }
        set_v6(header, p, (uint16_t)(p[32] << 8 | p[33]));
        return PROXY_OK;
    case 0x00: /* UNSPEC: keep the connection's address */
        return PROXY_OK;
    default: /* UDP, unix sockets: not a device over TCP */
        return PROXY_INVALID;
    }
}

/* A decimal port 0..65535 without sign, leading zeros or spaces. */
static int parse_port(const char *text, uint16_t *port)
{
    size_t digits = strlen(text);
    if (digits == 0 || digits > 5 || (digits > 1 && text[0] == '0')) {
        return -1;
    }
    unsigned long value = 0;
    for (size_t i = 0; i < digits; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return -1;
        }
        value = value * 10 + (unsigned long)(text[i] - '0');
    }
    if (value > 65535) {
        return -1;
    }
    *port = (uint16_t)value;
    return 0;
}

static enum proxy_status parse_v1(const uint8_t *data, size_t length, struct proxy_header *header)
{
    const uint8_t *end = memchr(data, '\n', length < V1_MAX_LINE ? length : V1_MAX_LINE);
    if (end == NULL) {
        return length < V1_MAX_LINE ? PROXY_NEED_MORE : PROXY_INVALID;
    }
    size_t line_length = (size_t)(end - data) + 1;
    if (line_length < 8 || end[-1] != '\r') {
        return PROXY_INVALID;
    }
    char line[V1_MAX_LINE + 1];
    memcpy(line, data, line_length - 2);
    line[line_length - 2] = '\0';
    for (size_t i = 0; i < line_length - 2; i++) {
        if (line[i] < 0x20 || line[i] > 0x7e) {
            return PROXY_INVALID;
        }
    }
    header->length = line_length;
    header->has_source = false;
    if (strncmp(line, "PROXY UNKNOWN", 13) == 0 && (line[13] == '\0' || line[13] == ' ')) {
        return PROXY_OK;
    }
    /* Exactly six fields separated by single spaces. */
    char *fields[6];
    size_t count = 0;
    char *cursor = line;
    for (;;) {
        if (count == 6) {
            return PROXY_INVALID;
        }
        fields[count++] = cursor;
        char *space = strchr(cursor, ' ');
        if (space == NULL) {
            break;
        }
        *space = '\0';
        cursor = space + 1;
    }
    if (count != 6 || strcmp(fields[0], "PROXY") != 0) {
        return PROXY_INVALID;
    }
    bool v4 = strcmp(fields[1], "TCP4") == 0;
    if (!v4 && strcmp(fields[1], "TCP6") != 0) {
        return PROXY_INVALID;
    }
    uint8_t source[16], destination[16];
    uint16_t source_port, destination_port;
    int family = v4 ? AF_INET : AF_INET6;
    if (inet_pton(family, fields[2], source) != 1 ||
        inet_pton(family, fields[3], destination) != 1 ||
        parse_port(fields[4], &source_port) != 0 || parse_port(fields[5], &destination_port) != 0) {
        return PROXY_INVALID;
    }
    if (v4) {
        set_v4(header, source, source_port);
    } else {
        set_v6(header, source, source_port);
    }
    return PROXY_OK;
}

enum proxy_status proxy_parse(const uint8_t *data, size_t length, struct proxy_header *header)
{
    memset(header, 0, sizeof(*header));
    size_t compare = length < sizeof(v2_signature) ? length : sizeof(v2_signature);
    if (memcmp(data, v2_signature, compare) == 0) {
        return length < sizeof(v2_signature) ? PROXY_NEED_MORE : parse_v2(data, length, header);
    }
    compare = length < 6 ? length : 6;
    if (memcmp(data, "PROXY ", compare) == 0) {
        return length < 6 ? PROXY_NEED_MORE : parse_v1(data, length, header);
    }
    return PROXY_INVALID;
}

int proxy_cidr_parse(const char *text, struct proxy_cidr *cidr)
{
    char address[64];
    const char *slash = strchr(text, '/');
    size_t length = slash != NULL ? (size_t)(slash - text) : strlen(text);
    if (length == 0 || length >= sizeof(address)) {
        return -1;
    }
    memcpy(address, text, length);
    address[length] = '\0';
    memset(cidr, 0, sizeof(*cidr));
    unsigned maximum;
    if (inet_pton(AF_INET, address, cidr->address) == 1) {
        cidr->family = 4;
        maximum = 32;
    } else if (inet_pton(AF_INET6, address, cidr->address) == 1) {
        cidr->family = 6;
        maximum = 128;
    } else {
        return -1;
    }
    cidr->prefix = (uint8_t)maximum;
    if (slash != NULL) {
        uint16_t prefix;
        if (parse_port(slash + 1, &prefix) != 0 || prefix > maximum) {
            return -1;
        }
        cidr->prefix = (uint8_t)prefix;
    }
    return 0;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, bytes) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

bool proxy_cidr_match(const struct proxy_cidr *ranges, size_t count, const struct sockaddr *address)
{
    uint8_t bytes[16];
    uint8_t family;
    if (address->sa_family == AF_INET) {
        memcpy(bytes, &((const struct sockaddr_in *)address)->sin_addr, 4);
        family = 4;
    } else if (address->sa_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)address)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(in6)) {
            memcpy(bytes, &in6->s6_addr[12], 4);
            family = 4;
        } else {
            memcpy(bytes, in6, 16);
            family = 6;
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        if (ranges[i].family == family &&
            prefix_equal(ranges[i].address, bytes, ranges[i].prefix)) {
            return true;
        }
    }
    return false;
}
