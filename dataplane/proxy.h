/*
 * proxy: the PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1
 * and 2) that an L4 load balancer sends before the device's first TLS byte,
 * naming the device's real address.
 *
 * The shard reads it only on connections from a configured balancer
 * (cluster.trustedProxies), before any TLS work; from any other address the
 * same bytes are simply not TLS and the handshake fails. The parser is
 * strict: a header must be complete within PROXY_MAX_HEADER bytes, the
 * addresses must be well formed, and anything else is PROXY_INVALID (the
 * connection is closed). It never reads past what it was given.
 */
#ifndef DPS_PROXY_H
#define DPS_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* A v1 line is at most 107 bytes; v2 allows 16 + 65535, we take at most this. */
#define PROXY_MAX_HEADER 1024

enum proxy_status {
    PROXY_OK = 0,
    PROXY_NEED_MORE = 1, /* a prefix of a valid header: wait for more bytes */
    PROXY_INVALID = -1,  /* not a PROXY header, malformed, or too long */
};

struct proxy_header {
    size_t length; /* bytes the header took; the TLS stream starts after them */
    /*
     * The device's address and port. has_source is false for v2 LOCAL
     * (the balancer's own health check) and v1 UNKNOWN: the connection's
     * own peer address stands.
     */
    bool has_source;
    struct sockaddr_storage source;
    socklen_t source_length;
};

/* Parses the header at the start of data[0..length). */
enum proxy_status proxy_parse(const uint8_t *data, size_t length, struct proxy_header *header);

/* A list of CIDR ranges (IPv4 and IPv6), for cluster.trustedProxies. */
struct proxy_cidr {
    uint8_t family; /* 4 or 6 */
    uint8_t prefix; /* bits */
    uint8_t address[16];
};

/* Parses "10.0.0.0/8", "2001:db8::/32" or a bare address (a /32 or /128). 0 or -1. */
int proxy_cidr_parse(const char *text, struct proxy_cidr *cidr);

/* Whether address (AF_INET or AF_INET6; v4-mapped v6 counts as v4) is in one of the ranges. */
bool proxy_cidr_match(const struct proxy_cidr *ranges, size_t count,
                      const struct sockaddr *address);

#endif
