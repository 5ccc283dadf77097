/*
 * address: HOST:PORT split at its last colon, so that a bracketed IPv6 host keeps its own.
 */
#include "common/address.h"

#include <stdlib.h>
#include <string.h>

int address_split(const char *text, char *host, size_t host_size, uint16_t *port)
{
    const char *colon = strrchr(text, ':');
    if (colon == NULL)
        return -1;
    const char *start = text;
    size_t length = (size_t)(colon - text);
    if (text[0] == '[' && length >= 2 && colon[-1] == ']') {
        start++;
        length -= 2;
    }
    char *end;
    long number = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || number < 1 || number > 65535 || length == 0 ||
        length >= host_size)
        return -1;
    memcpy(host, start, length);
    host[length] = '\0';
    *port = (uint16_t)number;
    return 0;
}
