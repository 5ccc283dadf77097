/*
 * blocklist: the set of blocked identities the data plane checks, built by
 * the control plane into each snapshot and then only read. An entry is an
 * owner and a key: "record:<record id>" (a manufacturer certificate's public
 * key, which is what a record id names), "device:<device id>", or
 * "serial:<serial hex>/<issuer DN>". A block applies only to devices of
 * enrollment groups with the same owner, so one tenant cannot block
 * another's devices.
 *
 * Open addressing over 64-bit hashes: a lookup is a hash, a probe or two and
 * one string comparison, whatever the list's size.
 */
#ifndef DPS_BLOCKLIST_H
#define DPS_BLOCKLIST_H

#include <stdbool.h>
#include <stddef.h>

struct blocklist;

/* An empty set sized for count entries. NULL when out of memory. */
struct blocklist *blocklist_new(size_t count);
void blocklist_free(struct blocklist *blocklist);

/* 0, or -1 when full (more than the count given to blocklist_new) or out of memory. */
int blocklist_add(struct blocklist *blocklist, const char *owner, const char *key);

bool blocklist_contains(const struct blocklist *blocklist, const char *owner, const char *key);

/* True when the set holds any "serial:" entry (the handshake skips formatting names otherwise). */
bool blocklist_has_serials(const struct blocklist *blocklist);

#endif
