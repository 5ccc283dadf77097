/*
 * loadgen_identity: deterministic device identities for fleet runs (see
 * loadgen_identity.h for the file and what it holds).
 *
 * A private scalar is SHA-256("dps-loadgen-fleet" | seed | index | counter),
 * the first value below the group order that is not zero; the public point
 * is computed once with EC_POINT_mul and stored next to it, so a run never
 * repeats the multiplication. The certificate is assembled from DER pieces:
 * issuer name and authority key id copied from the intermediate, a
 * per-device subject, serial and key, and the same constraints pki.c gives
 * demo devices (CA:FALSE, digitalSignature + keyAgreement, EKU clientAuth).
 */
#include "perf/loadgen_identity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "crypto/uuid.h"

#define FLEET_MAGIC "DPSFLEET"
#define FLEET_VERSION 1
#define RECORD_SIZE 640
#define SCALAR_SIZE 32
#define POINT_SIZE 65
#define DER_CAPACITY (RECORD_SIZE - SCALAR_SIZE - POINT_SIZE - 3)
#define VALIDITY_SECONDS (1825L * 86400)
#define BACKDATE_SECONDS 3600

/* The file header; records follow it. */
struct fleet_header {
    char magic[8];
    uint32_t version;
    uint32_t record_size;
    uint32_t count;
    uint32_t reserved;
    uint64_t seed;
    uint8_t issuer_hash[32]; /* SHA-256 of the intermediate's DER: the PKI the records belong to */
};

/* One record, RECORD_SIZE bytes. */
struct fleet_record {
    uint8_t scalar[SCALAR_SIZE];
    uint8_t point[POINT_SIZE];
    uint8_t der_length[2]; /* big-endian */
    uint8_t unused;
    uint8_t der[DER_CAPACITY];
};

_Static_assert(sizeof(struct fleet_record) == RECORD_SIZE, "record layout");
_Static_assert(sizeof(struct fleet_header) == 64, "header layout");

struct fleet_identities {
    const uint8_t *map;
    size_t map_length;
    const struct fleet_header *header;
};

/* What every certificate of one generation run shares. */
struct issuer {
    X509 *certificate;
    EVP_PKEY *key;
    uint8_t *name_der; /* the intermediate's subject, our issuer */
    int name_length;
    uint8_t key_id[64];
    size_t key_id_length;
    uint8_t hash[32];
};

/* ---- a minimal DER writer ---- */

struct der {
    uint8_t *data;
    size_t capacity;
    size_t length;
    bool overflow;
};

static void der_bytes(struct der *der, const void *bytes, size_t count)
{
    if (der->length + count > der->capacity) {
        der->overflow = true;
        return;
    }
    memcpy(der->data + der->length, bytes, count);
    der->length += count;
}

static void der_header(struct der *der, uint8_t tag, size_t length)
{
    uint8_t header[4] = {tag};
    size_t size;

    if (length < 0x80) {
        header[1] = (uint8_t)length;
        size = 2;
    } else if (length < 0x100) {
        header[1] = 0x81;
        header[2] = (uint8_t)length;
        size = 3;
    } else {
        header[1] = 0x82;
        header[2] = (uint8_t)(length >> 8);
        header[3] = (uint8_t)length;
        size = 4;
    }
    der_bytes(der, header, size);
}

static void der_item(struct der *der, uint8_t tag, const void *content, size_t length)
{
    der_header(der, tag, length);
    der_bytes(der, content, length);
}

/* Appends tag + the content accumulated in inner. */
static void der_wrap(struct der *der, uint8_t tag, const struct der *inner)
{
    if (inner->overflow)
        der->overflow = true;
    der_item(der, tag, inner->data, inner->length);
}

static void der_time(struct der *der, time_t when)
{
    struct tm tm;
    char text[20];

    gmtime_r(&when, &tm);
    strftime(text, sizeof(text), "%Y%m%d%H%M%SZ", &tm);
    if (tm.tm_year + 1900 < 2050)
        der_item(der, 0x17, text + 2, 13); /* UTCTime: two-digit year */
    else
        der_item(der, 0x18, text, 15);
}

/* ---- key derivation ---- */

static const uint8_t P256_ORDER[32] = {
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
};

static void put_be64(uint8_t *out, uint64_t value)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)value;
        value >>= 8;
    }
}

/* SHA-256 over a label, the seed, the index and a counter. */
static int derive(const EVP_MD *sha256, const char *label, uint64_t seed, unsigned index,
                  uint32_t counter, uint8_t out[32])
{
    uint8_t input[64];
    size_t label_length = strlen(label);

    memcpy(input, label, label_length);
    put_be64(input + label_length, seed);
    put_be64(input + label_length + 8, index);
    put_be64(input + label_length + 16, counter);
    return EVP_Digest(input, label_length + 24, out, NULL, sha256, NULL) == 1 ? 0 : -1;
}

static bool is_zero(const uint8_t *bytes, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (bytes[i] != 0)
            return false;
    return true;
}

static int derive_scalar(const EVP_MD *sha256, uint64_t seed, unsigned index, uint8_t out[32])
{
    for (uint32_t counter = 0; counter < 16; counter++) {
        if (derive(sha256, "dps-loadgen-fleet", seed, index, counter, out) != 0)
            return -1;
        if (!is_zero(out, 32) && memcmp(out, P256_ORDER, 32) < 0)
            return 0;
    }
    return -1;
}

/* ---- the issuer ---- */

static void issuer_free(struct issuer *issuer)
{
    X509_free(issuer->certificate);
    EVP_PKEY_free(issuer->key);
    OPENSSL_free(issuer->name_der);
    memset(issuer, 0, sizeof(*issuer));
}

static X509 *read_certificate(const char *path)
{
    BIO *bio = BIO_new_file(path, "r");
    X509 *certificate = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    return certificate;
}

static int issuer_hash(X509 *certificate, uint8_t out[32])
{
    uint8_t *der = NULL;
    int length = i2d_X509(certificate, &der);
    int result = -1;

    if (length > 0 && EVP_Digest(der, (size_t)length, out, NULL, EVP_sha256(), NULL) == 1)
        result = 0;
    OPENSSL_free(der);
    return result;
}

static int issuer_load(const char *pki_dir, bool with_key, struct issuer *issuer, char *err,
                       size_t err_length)
{
    char path[4096];

    memset(issuer, 0, sizeof(*issuer));
    snprintf(path, sizeof(path), "%s/mfg-intermediate.pem", pki_dir);
    issuer->certificate = read_certificate(path);
    if (issuer->certificate == NULL) {
        snprintf(err, err_length, "cannot read %s", path);
        goto fail;
    }
    if (with_key) {
        snprintf(path, sizeof(path), "%s/mfg-intermediate.key", pki_dir);
        FILE *file = fopen(path, "r");
        if (file != NULL) {
            issuer->key = PEM_read_PrivateKey(file, NULL, NULL, NULL);
            fclose(file);
        }
        if (issuer->key == NULL) {
            snprintf(err, err_length, "cannot read %s", path);
            goto fail;
        }
    }
    issuer->name_length =
        i2d_X509_NAME(X509_get_subject_name(issuer->certificate), &issuer->name_der);
    const ASN1_OCTET_STRING *key_id = X509_get0_subject_key_id(issuer->certificate);
    if (key_id != NULL && (size_t)ASN1_STRING_length(key_id) <= sizeof(issuer->key_id)) {
        issuer->key_id_length = (size_t)ASN1_STRING_length(key_id);
        memcpy(issuer->key_id, ASN1_STRING_get0_data(key_id), issuer->key_id_length);
    }
    if (issuer->name_length <= 0 || issuer_hash(issuer->certificate, issuer->hash) != 0) {
        snprintf(err, err_length, "cannot encode the intermediate's name");
        goto fail;
    }
    ERR_clear_error();
    return 0;
fail:
    issuer_free(issuer);
    ERR_clear_error();
    return -1;
}

/* ---- one certificate ---- */

static const uint8_t ECDSA_SHA256[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                       0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
static const uint8_t SPKI_P256_PREFIX[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                           0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                           0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
static const uint8_t EXT_BASIC_CONSTRAINTS[] = {0x30, 0x0c, 0x06, 0x03, 0x55, 0x1d, 0x13,
                                                0x01, 0x01, 0xff, 0x04, 0x02, 0x30, 0x00};
static const uint8_t EXT_KEY_USAGE[] = {0x30, 0x0e, 0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01,
                                        0x01, 0xff, 0x04, 0x04, 0x03, 0x02, 0x03, 0x88};
static const uint8_t EXT_CLIENT_AUTH[] = {0x30, 0x13, 0x06, 0x03, 0x55, 0x1d, 0x25,
                                          0x04, 0x0c, 0x30, 0x0a, 0x06, 0x08, 0x2b,
                                          0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02};
static const uint8_t OID_AUTHORITY_KEY_ID[] = {0x06, 0x03, 0x55, 0x1d, 0x23};
static const uint8_t OID_ORGANIZATION[] = {0x06, 0x03, 0x55, 0x04, 0x0a};
static const uint8_t OID_COMMON_NAME[] = {0x06, 0x03, 0x55, 0x04, 0x03};

static void name_attribute(struct der *name, const uint8_t *oid, size_t oid_length,
                           const char *value)
{
    uint8_t pair_bytes[128], set_bytes[136];
    struct der pair = {pair_bytes, sizeof(pair_bytes), 0, false};
    struct der set = {set_bytes, sizeof(set_bytes), 0, false};

    der_bytes(&pair, oid, oid_length);
    der_item(&pair, 0x0c, value, strlen(value));
    der_wrap(&set, 0x30, &pair);
    der_wrap(name, 0x31, &set);
}

static void extensions(struct der *out, const struct issuer *issuer)
{
    uint8_t list_inner[200], list_bytes[210], key_id[80], key_id_sequence[90], aki_inner[110];
    struct der list = {list_inner, sizeof(list_inner), 0, false};
    struct der wrapper = {list_bytes, sizeof(list_bytes), 0, false};

    der_bytes(&list, EXT_BASIC_CONSTRAINTS, sizeof(EXT_BASIC_CONSTRAINTS));
    der_bytes(&list, EXT_KEY_USAGE, sizeof(EXT_KEY_USAGE));
    der_bytes(&list, EXT_CLIENT_AUTH, sizeof(EXT_CLIENT_AUTH));
    if (issuer->key_id_length > 0) {
        /* AuthorityKeyIdentifier ::= SEQUENCE { [0] keyIdentifier } in an OCTET STRING */
        struct der value = {key_id, sizeof(key_id), 0, false};
        struct der sequence = {key_id_sequence, sizeof(key_id_sequence), 0, false};
        struct der extension = {aki_inner, sizeof(aki_inner), 0, false};
        der_item(&value, 0x80, issuer->key_id, issuer->key_id_length);
        der_wrap(&sequence, 0x30, &value);
        der_bytes(&extension, OID_AUTHORITY_KEY_ID, sizeof(OID_AUTHORITY_KEY_ID));
        der_wrap(&extension, 0x04, &sequence);
        der_wrap(&list, 0x30, &extension);
    }
    der_wrap(&wrapper, 0x30, &list);
    der_wrap(out, 0xa3, &wrapper);
}

/* Builds and signs device index's certificate into der (capacity DER_CAPACITY). */
static int build_certificate(const struct issuer *issuer, EVP_MD_CTX *sign, const EVP_MD *sha256,
                             uint64_t seed, unsigned index, const uint8_t point[POINT_SIZE],
                             time_t now, uint8_t *out, size_t *out_length)
{
    uint8_t tbs_inner[600], tbs_bytes[640], name_inner[160], name_bytes[170], validity_inner[40];
    uint8_t serial[16], signature[80], signature_field[90], cert_inner[DER_CAPACITY];
    struct der tbs = {tbs_inner, sizeof(tbs_inner), 0, false};
    struct der tbs_der = {tbs_bytes, sizeof(tbs_bytes), 0, false};
    struct der name = {name_inner, sizeof(name_inner), 0, false};
    struct der name_der = {name_bytes, sizeof(name_bytes), 0, false};
    struct der validity = {validity_inner, sizeof(validity_inner), 0, false};
    struct der certificate = {cert_inner, sizeof(cert_inner), 0, false};
    struct der result = {out, DER_CAPACITY, 0, false};
    char common_name[64];
    size_t signature_length = sizeof(signature);
    static const uint8_t version[] = {0xa0, 0x03, 0x02, 0x01, 0x02};

    if (derive(sha256, "dps-loadgen-serial", seed, index, 0, signature) != 0)
        return -1;
    memcpy(serial, signature, sizeof(serial));
    serial[0] = (uint8_t)((serial[0] & 0x3f) | 0x40); /* positive, no leading zero byte */
    snprintf(common_name, sizeof(common_name), "Fleet Device %llu-%u", (unsigned long long)seed,
             index);
    name_attribute(&name, OID_ORGANIZATION, sizeof(OID_ORGANIZATION), "Demo Manufacturer");
    name_attribute(&name, OID_COMMON_NAME, sizeof(OID_COMMON_NAME), common_name);
    der_wrap(&name_der, 0x30, &name);
    der_time(&validity, now - BACKDATE_SECONDS);
    der_time(&validity, now + VALIDITY_SECONDS);

    der_bytes(&tbs, version, sizeof(version));
    der_item(&tbs, 0x02, serial, sizeof(serial));
    der_bytes(&tbs, ECDSA_SHA256, sizeof(ECDSA_SHA256));
    der_bytes(&tbs, issuer->name_der, (size_t)issuer->name_length);
    der_wrap(&tbs, 0x30, &validity);
    der_bytes(&tbs, name_der.data, name_der.length);
    der_bytes(&tbs, SPKI_P256_PREFIX, sizeof(SPKI_P256_PREFIX));
    der_bytes(&tbs, point, POINT_SIZE);
    extensions(&tbs, issuer);
    der_wrap(&tbs_der, 0x30, &tbs);
    if (tbs_der.overflow || name_der.overflow)
        return -1;

    if (EVP_DigestSignInit_ex(sign, NULL, "SHA256", NULL, NULL, issuer->key, NULL) != 1 ||
        EVP_DigestSign(sign, signature, &signature_length, tbs_der.data, tbs_der.length) != 1)
        return -1;
    signature_field[0] = 0; /* no unused bits */
    memcpy(signature_field + 1, signature, signature_length);

    der_bytes(&certificate, tbs_der.data, tbs_der.length);
    der_bytes(&certificate, ECDSA_SHA256, sizeof(ECDSA_SHA256));
    der_item(&certificate, 0x03, signature_field, signature_length + 1);
    der_wrap(&result, 0x30, &certificate);
    if (result.overflow)
        return -1;
    *out_length = result.length;
    return 0;
}

/* ---- the file ---- */

static void fleet_path(const char *pki_dir, uint64_t seed, char *out, size_t capacity)
{
    snprintf(out, capacity, "%s/fleet-%llu.bin", pki_dir, (unsigned long long)seed);
}

static bool header_valid(const struct fleet_header *header, uint64_t seed, const uint8_t hash[32])
{
    return memcmp(header->magic, FLEET_MAGIC, 8) == 0 && header->version == FLEET_VERSION &&
           header->record_size == RECORD_SIZE && header->seed == seed &&
           memcmp(header->issuer_hash, hash, 32) == 0;
}

static int generate_record(const struct issuer *issuer, const EC_GROUP *group, EC_POINT *point,
                           BIGNUM *scalar, BN_CTX *bn_ctx, EVP_MD_CTX *sign, const EVP_MD *sha256,
                           uint64_t seed, unsigned index, time_t now, struct fleet_record *record)
{
    size_t der_length;

    memset(record, 0, sizeof(*record));
    if (derive_scalar(sha256, seed, index, record->scalar) != 0 ||
        BN_bin2bn(record->scalar, SCALAR_SIZE, scalar) == NULL ||
        EC_POINT_mul(group, point, scalar, NULL, NULL, bn_ctx) != 1 ||
        EC_POINT_point2oct(group, point, POINT_CONVERSION_UNCOMPRESSED, record->point, POINT_SIZE,
                           bn_ctx) != POINT_SIZE ||
        build_certificate(issuer, sign, sha256, seed, index, record->point, now, record->der,
                          &der_length) != 0)
        return -1;
    record->der_length[0] = (uint8_t)(der_length >> 8);
    record->der_length[1] = (uint8_t)der_length;
    return 0;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* Appends records [have, count) to an open file whose header says have. */
static int append_records(int fd, const struct issuer *issuer, uint64_t seed, unsigned have,
                          unsigned count, char *err, size_t err_length)
{
    EC_GROUP *group = EC_GROUP_new_by_curve_name_ex(NULL, NULL, NID_X9_62_prime256v1);
    EC_POINT *point = group != NULL ? EC_POINT_new(group) : NULL;
    BIGNUM *scalar = BN_secure_new();
    BN_CTX *bn_ctx = BN_CTX_new();
    EVP_MD_CTX *sign = EVP_MD_CTX_new();
    EVP_MD *sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    enum { BATCH = 256 };
    struct fleet_record *batch = calloc(BATCH, sizeof(*batch));
    time_t now = time(NULL);
    int result = -1;

    if (group == NULL || point == NULL || scalar == NULL || bn_ctx == NULL || sign == NULL ||
        sha256 == NULL || batch == NULL) {
        snprintf(err, err_length, "out of memory");
        goto done;
    }
    for (unsigned start = have; start < count; start += BATCH) {
        unsigned n = count - start < BATCH ? count - start : BATCH;
        for (unsigned i = 0; i < n; i++) {
            if (EVP_MD_CTX_reset(sign) != 1 ||
                generate_record(issuer, group, point, scalar, bn_ctx, sign, sha256, seed,
                                start + i + 1, now, &batch[i]) != 0) {
                snprintf(err, err_length, "cannot build identity %u", start + i + 1);
                goto done;
            }
        }
        off_t offset = (off_t)sizeof(struct fleet_header) + (off_t)start * RECORD_SIZE;
        size_t bytes = (size_t)n * RECORD_SIZE;
        if (pwrite(fd, batch, bytes, offset) != (ssize_t)bytes) {
            snprintf(err, err_length, "write: %s", strerror(errno));
            goto done;
        }
    }
    result = 0;
done:
    if (batch != NULL)
        OPENSSL_cleanse(batch, BATCH * sizeof(*batch));
    free(batch);
    EVP_MD_free(sha256);
    EVP_MD_CTX_free(sign);
    BN_CTX_free(bn_ctx);
    BN_clear_free(scalar);
    EC_POINT_free(point);
    EC_GROUP_free(group);
    ERR_clear_error();
    return result;
}

int fleet_identities_ensure(const char *pki_dir, uint64_t seed, unsigned count,
                            struct fleet_generation *report, char *err, size_t err_length)
{
    char path[4200];
    struct issuer issuer;
    struct fleet_header header;
    struct timespec started;
    int fd;
    int result = -1;

    memset(report, 0, sizeof(*report));
    if (issuer_load(pki_dir, true, &issuer, err, err_length) != 0)
        return -1;
    fleet_path(pki_dir, seed, path, sizeof(path));
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, err_length, "%s: %s", path, strerror(errno));
        issuer_free(&issuer);
        return -1;
    }
    if (pread(fd, &header, sizeof(header), 0) != (ssize_t)sizeof(header) ||
        !header_valid(&header, seed, issuer.hash)) {
        /* Missing, foreign or made for another PKI: start again. */
        memset(&header, 0, sizeof(header));
        memcpy(header.magic, FLEET_MAGIC, 8);
        header.version = FLEET_VERSION;
        header.record_size = RECORD_SIZE;
        header.seed = seed;
        memcpy(header.issuer_hash, issuer.hash, 32);
        if (ftruncate(fd, 0) != 0) {
            snprintf(err, err_length, "%s: %s", path, strerror(errno));
            goto done;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &started);
    if (header.count < count) {
        if (append_records(fd, &issuer, seed, header.count, count, err, err_length) != 0)
            goto done;
        report->generated = count - header.count;
        header.count = count;
    }
    if (pwrite(fd, &header, sizeof(header), 0) != (ssize_t)sizeof(header) || fsync(fd) != 0) {
        snprintf(err, err_length, "%s: %s", path, strerror(errno));
        goto done;
    }
    report->seconds = seconds_since(&started);
    report->total = header.count;
    report->file_bytes = sizeof(header) + (uint64_t)header.count * RECORD_SIZE;
    result = 0;
done:
    close(fd);
    issuer_free(&issuer);
    return result;
}

struct fleet_identities *fleet_identities_open(const char *pki_dir, uint64_t seed, char *err,
                                               size_t err_length)
{
    char path[4200];
    struct issuer issuer;
    struct stat status;
    struct fleet_identities *identities = NULL;
    int fd;

    if (issuer_load(pki_dir, false, &issuer, err, err_length) != 0)
        return NULL;
    fleet_path(pki_dir, seed, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &status) != 0 || (size_t)status.st_size < sizeof(struct fleet_header)) {
        snprintf(err, err_length, "%s: %s", path, fd < 0 ? strerror(errno) : "too short");
        goto done;
    }
    void *map = mmap(NULL, (size_t)status.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        snprintf(err, err_length, "mmap %s: %s", path, strerror(errno));
        goto done;
    }
    const struct fleet_header *header = map;
    if (!header_valid(header, seed, issuer.hash) ||
        (size_t)status.st_size < sizeof(*header) + (size_t)header->count * RECORD_SIZE) {
        snprintf(err, err_length, "%s was not made for this PKI and seed", path);
        munmap(map, (size_t)status.st_size);
        goto done;
    }
    identities = calloc(1, sizeof(*identities));
    if (identities == NULL) {
        munmap(map, (size_t)status.st_size);
        snprintf(err, err_length, "out of memory");
        goto done;
    }
    identities->map = map;
    identities->map_length = (size_t)status.st_size;
    identities->header = header;
done:
    if (fd >= 0)
        close(fd);
    issuer_free(&issuer);
    return identities;
}

void fleet_identities_close(struct fleet_identities *identities)
{
    if (identities == NULL)
        return;
    munmap((void *)identities->map, identities->map_length);
    free(identities);
}

unsigned fleet_identities_count(const struct fleet_identities *identities)
{
    return identities->header->count;
}

static const struct fleet_record *record_at(const struct fleet_identities *identities,
                                            unsigned index)
{
    if (index == 0 || index > identities->header->count)
        return NULL;
    return (const struct fleet_record *)(identities->map + sizeof(struct fleet_header) +
                                         (size_t)(index - 1) * RECORD_SIZE);
}

static EVP_PKEY *record_key(OSSL_LIB_CTX *libctx, const struct fleet_record *record)
{
    OSSL_PARAM_BLD *builder = OSSL_PARAM_BLD_new();
    BIGNUM *scalar = BN_secure_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *context = EVP_PKEY_CTX_new_from_name(libctx, "EC", NULL);
    EVP_PKEY *key = NULL;

    if (builder == NULL || scalar == NULL || context == NULL ||
        BN_bin2bn(record->scalar, SCALAR_SIZE, scalar) == NULL ||
        !OSSL_PARAM_BLD_push_utf8_string(builder, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(builder, OSSL_PKEY_PARAM_PUB_KEY, record->point,
                                          POINT_SIZE) ||
        !OSSL_PARAM_BLD_push_BN(builder, OSSL_PKEY_PARAM_PRIV_KEY, scalar) ||
        (params = OSSL_PARAM_BLD_to_param(builder)) == NULL ||
        EVP_PKEY_fromdata_init(context) != 1 ||
        EVP_PKEY_fromdata(context, &key, EVP_PKEY_KEYPAIR, params) != 1)
        key = NULL;
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(builder);
    BN_clear_free(scalar);
    EVP_PKEY_CTX_free(context);
    return key;
}

int fleet_identity_load(const struct fleet_identities *identities, OSSL_LIB_CTX *libctx,
                        unsigned index, X509 **certificate, EVP_PKEY **key)
{
    const struct fleet_record *record = record_at(identities, index);
    size_t length;

    *certificate = NULL;
    *key = NULL;
    if (record == NULL)
        return -1;
    length = (size_t)record->der_length[0] << 8 | record->der_length[1];
    const uint8_t *der = record->der;
    *certificate = X509_new_ex(libctx, NULL);
    if (length > DER_CAPACITY || *certificate == NULL ||
        d2i_X509(certificate, &der, (long)length) == NULL ||
        (*key = record_key(libctx, record)) == NULL) {
        X509_free(*certificate);
        *certificate = NULL;
        ERR_clear_error();
        return -1;
    }
    return 0;
}

long fleet_identities_check(const char *pki_dir, uint64_t seed, char *err, size_t err_length)
{
    struct fleet_identities *identities = fleet_identities_open(pki_dir, seed, err, err_length);
    struct issuer issuer;
    long bad = 0;

    if (identities == NULL)
        return -1;
    if (issuer_load(pki_dir, false, &issuer, err, err_length) != 0) {
        fleet_identities_close(identities);
        return -1;
    }
    EVP_PKEY *issuer_key = X509_get0_pubkey(issuer.certificate);
    for (unsigned index = 1; index <= fleet_identities_count(identities); index++) {
        X509 *certificate;
        EVP_PKEY *key;
        if (fleet_identity_load(identities, NULL, index, &certificate, &key) != 0) {
            bad++;
            continue;
        }
        uint32_t usage = X509_get_extended_key_usage(certificate);
        if (X509_verify(certificate, issuer_key) != 1 ||
            EVP_PKEY_eq(X509_get0_pubkey(certificate), key) != 1 ||
            X509_check_issued(issuer.certificate, certificate) != X509_V_OK ||
            (usage & XKU_SSL_CLIENT) == 0)
            bad++;
        X509_free(certificate);
        EVP_PKEY_free(key);
    }
    ERR_clear_error();
    issuer_free(&issuer);
    fleet_identities_close(identities);
    return bad;
}

void fleet_identity_device_id(uint64_t seed, unsigned index, char out[37])
{
    char name[80];
    struct dps_uuid uuid;
    int length =
        snprintf(name, sizeof(name), "dps-loadgen-fleet-%llu-%u", (unsigned long long)seed, index);

    uuid_v5(&UUID_NAMESPACE_URL, name, (size_t)length, &uuid);
    uuid_format(&uuid, out);
}
