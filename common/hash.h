/*
 * hash: FNV-1a (64 bits) of a NUL-terminated text, for the small
 * open-addressing tables of the data plane (a shard's rate buckets, the
 * node's per-source table). Not for anything an attacker must not steer:
 * tables that use it bound their probes.
 */
#ifndef DPS_COMMON_HASH_H
#define DPS_COMMON_HASH_H

#include <stdint.h>

static inline uint64_t hash_text(const char *text)
{
    uint64_t hash = 14695981039346656037u;
    for (; *text != '\0'; text++)
        hash = (hash ^ (unsigned char)*text) * 1099511628211u;
    return hash;
}

#endif
