/*
 * peer_client: the management API asking another node of the cluster for
 * its part of a list (control/api.c fans GET lists out; control/cluster_view.h
 * names the peers).
 *
 * One request per call (a GET, or a DELETE), HTTP/1.1 over TCP (to a loopback address only, and
 * only when this node's API is plain HTTP too: the peers' URLs come from Redis and a token must not
 * cross a network in clear), or over TLS when the peer's URL is https (the peer's certificate must
 * chain to, or be, a certificate of trust_file: the nodes share the API certificate or its CA; the
 * name is not checked, peers are addressed by the address they announce). Not libcurl: dpsd must
 * not load the system's libssl beside a bundled OpenSSL.
 *
 * Over TLS the node presents its own API certificate and key as its client
 * certificate (certificate_pem, key_pem: the PEM text the API serves with,
 * chain included), so peers that require client certificates (api.clientCA)
 * admit it when that certificate is issued by their clientCA: the nodes of a
 * cluster share the API certificate or its CA already, and no other key has
 * to be handed out. The certificate only opens the door; the caller's
 * token still decides what the peer shows.
 *
 * The request carries the caller's bearer token, so the peer applies the
 * caller's own walls, and "X-Dps-Forwarded: 1", so the peer answers from its
 * own store only (a forwarded request never fans out again: no loops).
 * Every step is bounded: the connection within connect_ms, then at most
 * stall_ms without a byte.
 */
#ifndef DPS_PEER_CLIENT_H
#define DPS_PEER_CLIENT_H

#include <stddef.h>

#define PEER_FORWARDED_HEADER "X-Dps-Forwarded"

/*
 * GET base_url (scheme://host:port) + path (with its query) and write the
 * body of a 200 answer to fd as it arrives. certificate_pem and key_pem
 * (both or neither; https only) are the client certificate and its key. 0 when the body ended
 * cleanly; -1 with err (unreachable, timed out, another status, a cut body, fd closed by its
 * reader).
 */
int peer_get(const char *base_url, const char *trust_file, const char *certificate_pem,
             const char *key_pem, const char *path, const char *token, unsigned connect_ms,
             unsigned stall_ms, int fd, char *err, size_t err_length);

/* The same with another method (DELETE: control/api_stream.c deletes records on every node). */
int peer_request(const char *method, const char *base_url, const char *trust_file,
                 const char *certificate_pem, const char *key_pem, const char *path,
                 const char *token, unsigned connect_ms, unsigned stall_ms, int fd, char *err,
                 size_t err_length);

#endif
