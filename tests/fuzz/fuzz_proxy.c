/*
 * fuzz_proxy: the PROXY protocol header, the first bytes a balancer's
 * connection carries, parsed before any TLS work. The input is the stream
 * as it arrives. An accepted header lies within the input and within
 * PROXY_MAX_HEADER, names an IPv4 or IPv6 address when it names one, and
 * parses the same when the bytes after it change; every shorter prefix of
 * an accepted header asks for more or is refused, never accepted with
 * another length. The same bytes, cut at the first NUL, also go through
 * the CIDR parser of cluster.trustedProxies.
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int condition)
{
    if (!condition)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_header header;
    if (size == 0)
        return 0;
    enum proxy_status status = proxy_parse(data, size, &header);
    check(status == PROXY_OK || status == PROXY_NEED_MORE || status == PROXY_INVALID);
    if (status == PROXY_NEED_MORE)
        check(size < PROXY_MAX_HEADER);
    if (status == PROXY_OK) {
        check(header.length > 0 && header.length <= size && header.length <= PROXY_MAX_HEADER);
        if (header.has_source) {
            check(header.source.ss_family == AF_INET || header.source.ss_family == AF_INET6);
            check(header.source_length == (header.source.ss_family == AF_INET
                                               ? sizeof(struct sockaddr_in)
                                               : sizeof(struct sockaddr_in6)));
        }
        /* The header alone parses the same. */
        struct proxy_header alone;
        check(proxy_parse(data, header.length, &alone) == PROXY_OK);
        check(alone.length == header.length && alone.has_source == header.has_source);
        check(memcmp(&alone.source, &header.source, sizeof(alone.source)) == 0);
        for (size_t prefix = 1; prefix < header.length; prefix++) {
            struct proxy_header cut;
            check(proxy_parse(data, prefix, &cut) != PROXY_OK || cut.length <= prefix);
        }
    }

    char text[128];
    size_t length = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
    memcpy(text, data, length);
    text[length] = '\0';
    struct proxy_cidr cidr;
    if (proxy_cidr_parse(text, &cidr) == 0)
        check((cidr.family == 4 && cidr.prefix <= 32) || (cidr.family == 6 && cidr.prefix <= 128));
    return 0;
}
