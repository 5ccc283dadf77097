/*
 * uuid: parsing, formatting and name-based (version 5, SHA-1) UUIDs.
 *
 * The DPS protocol derives two identifiers by name: the owner UUID sent to
 * devices (OwnerToUUID, URL namespace) and the provisioning record id (X.500
 * namespace over the manufacturer leaf's DER SubjectPublicKeyInfo).
 */
#ifndef DPS_UUID_H
#define DPS_UUID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#define UUID_STRING_LENGTH 36

struct dps_uuid {
    uint8_t bytes[16];
};

extern const struct dps_uuid UUID_NAMESPACE_URL;  /* 6ba7b811-9dad-11d1-80b4-00c04fd430c8 */
extern const struct dps_uuid UUID_NAMESPACE_X500; /* 6ba7b814-9dad-11d1-80b4-00c04fd430c8 */

/* Parses the canonical 8-4-4-4-12 form, hex case-insensitive, exactly length bytes. 0 or -1. */
int uuid_text_parse(const char *text, size_t length, struct dps_uuid *uuid);

/* Writes the lower-case canonical form and a NUL. */
void uuid_format(const struct dps_uuid *uuid, char out[UUID_STRING_LENGTH + 1]);

bool uuid_is_nil(const struct dps_uuid *uuid);

/* RFC 4122 version 5: SHA-1 over namespace bytes then name. */
void uuid_v5(const struct dps_uuid *name_space, const void *name, size_t name_length,
             struct dps_uuid *uuid);

/* The same with SHA-1 fetched from libctx (shard threads never use the default context). */
void uuid_v5_ex(OSSL_LIB_CTX *libctx, const struct dps_uuid *name_space, const void *name,
                size_t name_length, struct dps_uuid *uuid);

/* A random (version 4) UUID from OpenSSL's generator. 0, or -1 when it has no randomness. */
int uuid_random(struct dps_uuid *uuid);

/*
 * OwnerToUUID of the reference: the owner itself when it parses as a non-nil
 * UUID, otherwise uuid_v5(URL namespace, owner). Owner "1" gives
 * b80c8fef-a677-5340-85fb-2c162d75df03.
 */
void uuid_from_owner(const char *owner, struct dps_uuid *uuid);

#endif
