/*
 * address: the HOST:PORT text of a TCP peer (an IPv6 host in brackets, [::1]:6379), split into
 * the host, brackets removed, and the port. Listeners, gateways, the cluster's Redis and
 * Sentinel addresses and the peers' API URLs are given this way; this is the one splitter.
 */
#ifndef DPS_COMMON_ADDRESS_H
#define DPS_COMMON_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * NULL with the host (NUL-terminated, in host_size bytes), a port from 1 to 65535 and
 * *bracketed (the host was written [ADDRESS]) when text is HOST:PORT; else what is wrong, as a
 * phrase a message can carry ("the host is empty"). An IPv6 host must be in brackets. The host
 * is not resolved nor checked further.
 */
const char *address_parse(const char *text, char *host, size_t host_size, uint16_t *port,
                          bool *bracketed);

/* address_parse() without the reason: 0, or -1 when text is not HOST:PORT. */
int address_split(const char *text, char *host, size_t host_size, uint16_t *port);

#endif
