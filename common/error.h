/*
 * error: how a failure is reported, one rule per layer, and the one helper
 * that writes a reason.
 *
 * - Everywhere, by default: a function that can fail returns int, 0 on
 *   success and -1 on failure; one that creates returns the object or NULL.
 *   When a person will read why (an operator, an API caller, a log line), the
 *   caller passes `char *err, size_t err_length` and gets "where: problem"
 *   (no final period) through error_set(). Nothing else is returned beside it.
 * - When the caller acts differently per outcome (retry, refuse, close), the
 *   module returns its own enum, named `<module>_status` or `<module>_result`
 *   and 0 for success (store_status, redis_status, tls_status, proxy_status,
 *   coap_status, cluster_claim_result): never an int that also means a
 *   reason.
 * - At the kernel boundary only (dataplane/loop*.c and the socket helpers of
 *   dataplane/shard.c): 0 or -errno, because the caller acts on the errno
 *   (EAGAIN, ENOBUFS, EINTR). Callers above turn it into an err text.
 * - Handlers of the protocol and the API answer with a status code and a
 *   message (a CoAP code, an HTTP status): that is their output, not an error
 *   convention.
 */
#ifndef DPS_COMMON_ERROR_H
#define DPS_COMMON_ERROR_H

#include <stdarg.h>
#include <stddef.h>

/* Writes the formatted reason into err (when err_length > 0) and returns -1. */
int error_set(char *err, size_t err_length, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
int error_vset(char *err, size_t err_length, const char *format, va_list args)
    __attribute__((format(printf, 3, 0)));

/*
 * Paths that name a field in a message ("hubs[0].token.issuer"), at most
 * ERROR_PATH_MAX bytes with the NUL: an absurdly deep one is cut and ends
 * with "...". An empty parent gives the key alone.
 */
#define ERROR_PATH_MAX 256
void error_path_child(char out[ERROR_PATH_MAX], const char *parent, const char *key);
void error_path_index(char out[ERROR_PATH_MAX], const char *parent, size_t index);

#endif
