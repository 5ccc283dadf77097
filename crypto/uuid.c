/*
 * uuid: canonical text form of UUIDs and name-based (version 5) UUIDs, used
 * for the owner UUID sent to devices and for provisioning record ids.
 */
#include "crypto/uuid.h"

#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

const struct dps_uuid UUID_NAMESPACE_URL = {{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80,
                                             0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}};
const struct dps_uuid UUID_NAMESPACE_X500 = {{0x6b, 0xa7, 0xb8, 0x14, 0x9d, 0xad, 0x11, 0xd1, 0x80,
                                              0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}};

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_dash_position(size_t i)
{
    return i == 8 || i == 13 || i == 18 || i == 23;
}

int uuid_text_parse(const char *text, size_t length, struct dps_uuid *uuid)
{
    struct dps_uuid parsed;
    size_t byte = 0;

    if (text == NULL || length != UUID_STRING_LENGTH)
        return -1;
    for (size_t i = 0; i < UUID_STRING_LENGTH;) {
        if (is_dash_position(i)) {
            if (text[i] != '-')
                return -1;
            i++;
            continue;
        }
        int high = hex_value(text[i]);
        int low = hex_value(text[i + 1]);
        if (high < 0 || low < 0)
            return -1;
        parsed.bytes[byte++] = (uint8_t)(high << 4 | low);
        i += 2;
    }
    *uuid = parsed;
    return 0;
}

void uuid_format(const struct dps_uuid *uuid, char out[UUID_STRING_LENGTH + 1])
{
    static const char digits[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < sizeof(uuid->bytes); i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = digits[uuid->bytes[i] >> 4];
        out[o++] = digits[uuid->bytes[i] & 0x0f];
    }
    out[o] = '\0';
}

bool uuid_is_nil(const struct dps_uuid *uuid)
{
    for (size_t i = 0; i < sizeof(uuid->bytes); i++)
        if (uuid->bytes[i] != 0)
            return false;
    return true;
}

/*
 * SHA-1 cannot fail here short of memory exhaustion in OpenSSL's default
 * context, which the caller could not handle either: the digest is computed
 * into a zeroed buffer, so such a failure yields a fixed (wrong but harmless)
 * id rather than undefined behaviour.
 */
void uuid_v5(const struct dps_uuid *name_space, const void *name, size_t name_length,
             struct dps_uuid *uuid)
{
    uuid_v5_ex(NULL, name_space, name, name_length, uuid);
}

void uuid_v5_ex(OSSL_LIB_CTX *libctx, const struct dps_uuid *name_space, const void *name,
                size_t name_length, struct dps_uuid *uuid)
{
    unsigned char digest[EVP_MAX_MD_SIZE] = {0};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_MD *sha1 = EVP_MD_fetch(libctx, "SHA1", NULL);

    if (ctx != NULL && sha1 != NULL && EVP_DigestInit_ex(ctx, sha1, NULL) == 1 &&
        EVP_DigestUpdate(ctx, name_space->bytes, sizeof(name_space->bytes)) == 1 &&
        EVP_DigestUpdate(ctx, name, name_length) == 1)
        EVP_DigestFinal_ex(ctx, digest, NULL);
    EVP_MD_free(sha1);
    EVP_MD_CTX_free(ctx);

    memcpy(uuid->bytes, digest, sizeof(uuid->bytes));
    uuid->bytes[6] = (uint8_t)((uuid->bytes[6] & 0x0f) | 0x50);
    uuid->bytes[8] = (uint8_t)((uuid->bytes[8] & 0x3f) | 0x80);
}

int uuid_random(struct dps_uuid *uuid)
{
    if (RAND_bytes(uuid->bytes, sizeof(uuid->bytes)) != 1)
        return -1;
    uuid->bytes[6] = (uint8_t)((uuid->bytes[6] & 0x0f) | 0x40);
    uuid->bytes[8] = (uint8_t)((uuid->bytes[8] & 0x3f) | 0x80);
    return 0;
}

void uuid_from_owner(const char *owner, struct dps_uuid *uuid)
{
    size_t length = strlen(owner);

    if (uuid_text_parse(owner, length, uuid) == 0 && !uuid_is_nil(uuid))
        return;
    uuid_v5(&UUID_NAMESPACE_URL, owner, length, uuid);
}
