/*
 * address: HOST:PORT, the port after the last colon; a colon in the host is only allowed inside
 * brackets, so an IPv6 address without them is refused rather than split somewhere in its middle.
 */
#include "common/address.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

const char *address_parse(const char *text, char *host, size_t host_size, uint16_t *port,
                          bool *bracketed)
{
    const char *colon;
    const char *host_start = text;
    size_t host_length;
    *bracketed = text[0] == '[';
    if (*bracketed) {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return "an IPv6 address must be written [ADDRESS]:PORT";
        host_start = text + 1;
        host_length = (size_t)(close - host_start);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL)
            return "must be HOST:PORT";
        if (memchr(text, ':', (size_t)(colon - text)) != NULL)
            return "an IPv6 address must be written [ADDRESS]:PORT";
        host_length = (size_t)(colon - text);
    }
    if (host_length == 0)
        return "the host is empty";
    if (host_length >= host_size)
        return "the host is too long";

    const char *digits = colon + 1;
    char *end;
    errno = 0;
    long number = strtol(digits, &end, 10);
    if (digits[0] < '0' || digits[0] > '9' || *end != '\0' || errno != 0 || number < 1 ||
        number > 65535)
        return "the port must be a number from 1 to 65535";
    memcpy(host, host_start, host_length);
    host[host_length] = '\0';
    *port = (uint16_t)number;
    return NULL;
}

int address_split(const char *text, char *host, size_t host_size, uint16_t *port)
{
    bool bracketed;
    return address_parse(text, host, host_size, port, &bracketed) == NULL ? 0 : -1;
}

const char *address_listen(const char *text, struct sockaddr_storage *address)
{
    char host[256];
    uint16_t port;
    bool bracketed;
    const char *problem = address_parse(text, host, sizeof(host), &port, &bracketed);
    if (problem != NULL)
        return problem;
    memset(address, 0, sizeof(*address));
    if (bracketed) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)address;
        if (inet_pton(AF_INET6, host, &v6->sin6_addr) != 1)
            return "the host must be an IP address";
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        return NULL;
    }
    struct sockaddr_in *v4 = (struct sockaddr_in *)address;
    if (inet_pton(AF_INET, host, &v4->sin_addr) != 1)
        return "the host must be an IP address";
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    return NULL;
}

bool address_is_loopback(const struct sockaddr_storage *address)
{
    if (address->ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)address)->sin6_addr);
    return (ntohl(((const struct sockaddr_in *)address)->sin_addr.s_addr) >> 24) == 127;
}

uint16_t address_port(const struct sockaddr_storage *address)
{
    if (address->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)address)->sin6_port);
    return ntohs(((const struct sockaddr_in *)address)->sin_port);
}

socklen_t address_length(const struct sockaddr_storage *address)
{
    return address->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                          : sizeof(struct sockaddr_in);
}
