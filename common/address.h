/*
 * address: the HOST:PORT text of a TCP peer (an IPv6 host in brackets, [::1]:6379), split into
 * the host, brackets removed, and the port. Listeners, gateways, the cluster's Redis and
 * Sentinel addresses and the peers' API URLs are given this way; this is the one splitter.
 * A listen setting (the device listeners, api.listen, api.healthListen, the cluster's Redis and
 * Sentinels) is HOST:PORT with an IP address for a host: address_listen() turns it into the
 * socket address every listener binds, with the same reasons wherever the text came from (the
 * configuration file or a command-line override).
 */
#ifndef DPS_COMMON_ADDRESS_H
#define DPS_COMMON_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

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

/*
 * NULL with *address (AF_INET, or AF_INET6 for a bracketed host) when text is HOST:PORT with an
 * IP address for a host; else what is wrong, as address_parse() says it or "the host must be an
 * IP address". Names are not resolved: a listener binds what the operator wrote.
 */
const char *address_listen(const char *text, struct sockaddr_storage *address);

/* True for 127.0.0.0/8 and ::1: where plain HTTP may listen. */
bool address_is_loopback(const struct sockaddr_storage *address);

/* The port of an AF_INET or AF_INET6 address, in host order. */
uint16_t address_port(const struct sockaddr_storage *address);

/* The length bind() takes for address. */
socklen_t address_length(const struct sockaddr_storage *address);

#endif
