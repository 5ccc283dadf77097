/*
 * address: the HOST:PORT text of a TCP peer (an IPv6 host in brackets, [::1]:6379), split into
 * the host, brackets removed, and the port. The cluster's Redis and Sentinel addresses are given
 * this way.
 */
#ifndef DPS_COMMON_ADDRESS_H
#define DPS_COMMON_ADDRESS_H

#include <stddef.h>
#include <stdint.h>

/*
 * 0 with the host (NUL-terminated, in host_size bytes) and a port from 1 to 65535; -1 when text
 * has no port, a port out of range, an empty host or one that does not fit. The host is not
 * resolved nor checked further.
 */
int address_split(const char *text, char *host, size_t host_size, uint16_t *port);

#endif
