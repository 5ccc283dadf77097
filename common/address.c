/*
 * address: HOST:PORT, the port after the last colon; a colon in the host is only allowed inside
 * brackets, so an IPv6 address without them is refused rather than split somewhere in its middle.
 */
#include "common/address.h"

#include <errno.h>
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
