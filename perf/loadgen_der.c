/*
 * loadgen_der: CSRs built from DER pieces, certificates read from DER, PEM
 * blocks decoded (see loadgen_der.h).
 */
#include "perf/loadgen_der.h"

#include "common/base64.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

/* ---- reading DER ---- */

struct tlv {
    uint8_t tag;
    const uint8_t *value;
    size_t length;
};

/* The next element of [*position, end): definite lengths only, minimal length encoding. */
static int der_next(const uint8_t **position, const uint8_t *end, struct tlv *out)
{
    const uint8_t *p = *position;
    size_t length;

    if (end - p < 2)
        return -1;
    out->tag = *p++;
    if ((out->tag & 0x1f) == 0x1f)
        return -1; /* no multi-byte tags in a certificate's structure */
    length = *p++;
    if (length & 0x80) {
        size_t count = length & 0x7f;
        if (count == 0 || count > 3 || (size_t)(end - p) < count || *p == 0)
            return -1;
        length = 0;
        for (size_t i = 0; i < count; i++)
            length = length << 8 | *p++;
        if (length < 0x80)
            return -1;
    }
    if ((size_t)(end - p) < length)
        return -1;
    out->value = p;
    out->length = length;
    *position = p + length;
    return 0;
}

static int der_expect(const uint8_t **position, const uint8_t *end, uint8_t tag, struct tlv *out)
{
    return der_next(position, end, out) == 0 && out->tag == tag ? 0 : -1;
}

static bool two_digits(const uint8_t *text, int *value)
{
    if (text[0] < '0' || text[0] > '9' || text[1] < '0' || text[1] > '9')
        return false;
    *value = (text[0] - '0') * 10 + (text[1] - '0');
    return true;
}

/* UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ (RFC 5280 4.1.2.5). */
static int der_time(const struct tlv *item, time_t *out)
{
    const uint8_t *text = item->value;
    struct tm tm;
    int century, year, month, day, hour, minute, second;

    memset(&tm, 0, sizeof(tm));
    if (item->tag == 0x17 && item->length == 13) {
        if (!two_digits(text, &year))
            return -1;
        year += year < 50 ? 2000 : 1900;
        text += 2;
    } else if (item->tag == 0x18 && item->length == 15) {
        if (!two_digits(text, &century) || !two_digits(text + 2, &year))
            return -1;
        year += century * 100;
        text += 4;
    } else {
        return -1;
    }
    if (!two_digits(text, &month) || !two_digits(text + 2, &day) || !two_digits(text + 4, &hour) ||
        !two_digits(text + 6, &minute) || !two_digits(text + 8, &second) || text[10] != 'Z' ||
        month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
        return -1;
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    *out = timegm(&tm);
    return 0;
}

static const uint8_t OID_COMMON_NAME[] = {0x55, 0x04, 0x03};
static const uint8_t OID_EXT_KEY_USAGE[] = {0x55, 0x1d, 0x25};
static const uint8_t OID_SERVER_AUTH[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01};
static const uint8_t OID_CLIENT_AUTH[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02};

static bool oid_is(const struct tlv *item, const uint8_t *oid, size_t length)
{
    return item->tag == 0x06 && item->length == length && memcmp(item->value, oid, length) == 0;
}

/* Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }: the first CN. */
static int read_name(const struct tlv *name, char *cn, size_t cn_capacity)
{
    const uint8_t *p = name->value, *end = p + name->length;
    struct tlv set, pair, type, value;

    cn[0] = '\0';
    while (p < end) {
        if (der_expect(&p, end, 0x31, &set) != 0)
            return -1;
        const uint8_t *q = set.value, *set_end = q + set.length;
        while (q < set_end) {
            if (der_expect(&q, set_end, 0x30, &pair) != 0)
                return -1;
            const uint8_t *r = pair.value, *pair_end = r + pair.length;
            if (der_expect(&r, pair_end, 0x06, &type) != 0 || der_next(&r, pair_end, &value) != 0 ||
                r != pair_end)
                return -1;
            if (cn[0] == '\0' && oid_is(&type, OID_COMMON_NAME, sizeof(OID_COMMON_NAME))) {
                if ((value.tag != 0x0c && value.tag != 0x13) || value.length >= cn_capacity ||
                    memchr(value.value, 0, value.length) != NULL)
                    return -1;
                memcpy(cn, value.value, value.length);
                cn[value.length] = '\0';
            }
        }
    }
    return 0;
}

/* ExtKeyUsageSyntax ::= SEQUENCE SIZE (1..MAX) OF KeyPurposeId, inside the extension's OCTET
 * STRING. */
static int read_eku(const struct tlv *octets, struct cert_fields *fields)
{
    const uint8_t *p = octets->value, *end = p + octets->length;
    struct tlv list, purpose;

    if (der_expect(&p, end, 0x30, &list) != 0 || p != end || list.length == 0)
        return -1;
    fields->eku_present = true;
    p = list.value;
    end = p + list.length;
    while (p < end) {
        if (der_expect(&p, end, 0x06, &purpose) != 0)
            return -1;
        fields->eku_server |= oid_is(&purpose, OID_SERVER_AUTH, sizeof(OID_SERVER_AUTH));
        fields->eku_client |= oid_is(&purpose, OID_CLIENT_AUTH, sizeof(OID_CLIENT_AUTH));
    }
    return 0;
}

/* [3] EXPLICIT Extensions ::= SEQUENCE OF SEQUENCE { OID, critical BOOLEAN DEFAULT FALSE, OCTET
 * STRING } */
static int read_extensions(const struct tlv *explicit, struct cert_fields *fields)
{
    const uint8_t *p = explicit->value, *end = p + explicit->length;
    struct tlv list, extension, oid, item;

    if (der_expect(&p, end, 0x30, &list) != 0 || p != end)
        return -1;
    p = list.value;
    end = p + list.length;
    while (p < end) {
        if (der_expect(&p, end, 0x30, &extension) != 0)
            return -1;
        const uint8_t *q = extension.value, *extension_end = q + extension.length;
        if (der_expect(&q, extension_end, 0x06, &oid) != 0 || der_next(&q, extension_end, &item))
            return -1;
        if (item.tag == 0x01) {
            if (item.length != 1 || der_next(&q, extension_end, &item) != 0)
                return -1;
        }
        if (item.tag != 0x04 || q != extension_end)
            return -1;
        if (oid_is(&oid, OID_EXT_KEY_USAGE, sizeof(OID_EXT_KEY_USAGE)) &&
            read_eku(&item, fields) != 0)
            return -1;
    }
    return 0;
}

int der_read_certificate(const uint8_t *der, size_t length, struct cert_fields *fields)
{
    const uint8_t *p = der, *end = der + length;
    struct tlv certificate, tbs, item, validity, before, after;

    memset(fields, 0, sizeof(*fields));
    if (der_expect(&p, end, 0x30, &certificate) != 0 || p != end)
        return -1;
    p = certificate.value;
    end = p + certificate.length;
    if (der_expect(&p, end, 0x30, &tbs) != 0 || der_expect(&p, end, 0x30, &item) != 0 ||
        der_expect(&p, end, 0x03, &item) != 0 || item.length < 2 || p != end)
        return -1; /* tbsCertificate, signatureAlgorithm, signatureValue */
    p = tbs.value;
    end = p + tbs.length;
    if (der_next(&p, end, &item) != 0)
        return -1;
    if (item.tag == 0xa0 && der_next(&p, end, &item) != 0) /* [0] version */
        return -1;
    if (item.tag != 0x02 || item.length == 0 ||  /* serialNumber */
        der_expect(&p, end, 0x30, &item) != 0 || /* signature */
        der_expect(&p, end, 0x30, &item) != 0 || /* issuer */
        der_expect(&p, end, 0x30, &validity) != 0 || der_expect(&p, end, 0x30, &item) != 0 ||
        read_name(&item, fields->cn, sizeof(fields->cn)) != 0)
        return -1;
    fields->spki = p;
    if (der_expect(&p, end, 0x30, &item) != 0) /* subjectPublicKeyInfo */
        return -1;
    fields->spki_length = (size_t)(p - fields->spki);
    const uint8_t *v = validity.value, *validity_end = v + validity.length;
    if (der_next(&v, validity_end, &before) != 0 || der_next(&v, validity_end, &after) != 0 ||
        v != validity_end || der_time(&before, &fields->not_before) != 0 ||
        der_time(&after, &fields->not_after) != 0)
        return -1;
    while (p < end) {
        if (der_next(&p, end, &item) != 0)
            return -1;
        if (item.tag == 0xa3 && read_extensions(&item, fields) != 0)
            return -1;
        if (item.tag != 0x81 && item.tag != 0x82 && item.tag != 0xa1 && item.tag != 0xa2 &&
            item.tag != 0xa3)
            return -1;
    }
    return 0;
}

/* ---- PEM ---- */

/* Strict base64 of text[0..length), whitespace between characters allowed. */
static long base64_decode(const char *text, size_t length, uint8_t *out, size_t capacity)
{
    struct base64_decoder decoder;

    base64_decoder_init(&decoder, BASE64_STANDARD, true, out, capacity);
    if (base64_decoder_feed(&decoder, text, length) != 0 || base64_decoder_finish(&decoder) != 0)
        return -1;
    return (long)decoder.length;
}

long pem_next_certificate(const char *pem, size_t length, size_t *offset, uint8_t *out,
                          size_t capacity)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    static const char end_marker[] = "-----END CERTIFICATE-----";
    const char *start =
        *offset < length ? memmem(pem + *offset, length - *offset, begin, sizeof(begin) - 1) : NULL;

    if (start == NULL)
        return 0;
    const char *body = start + sizeof(begin) - 1;
    const char *stop =
        memmem(body, (size_t)(pem + length - body), end_marker, sizeof(end_marker) - 1);
    if (stop == NULL)
        return -1;
    *offset = (size_t)(stop - pem) + sizeof(end_marker) - 1;
    long decoded = base64_decode(body, (size_t)(stop - body), out, capacity);
    return decoded > 0 ? decoded : -1;
}

/* ---- the CSR ---- */

static const uint8_t SPKI_P256_PREFIX[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                           0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                           0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
static const uint8_t ECDSA_SHA256[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                       0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};

int spki_p256(const EVP_PKEY *key, uint8_t out[SPKI_P256_LENGTH])
{
    size_t length = 0;

    memcpy(out, SPKI_P256_PREFIX, sizeof(SPKI_P256_PREFIX));
    if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                        out + sizeof(SPKI_P256_PREFIX), 65, &length) != 1 ||
        length != 65 || out[sizeof(SPKI_P256_PREFIX)] != 0x04)
        return -1;
    return 0;
}

/* Writes tag and a length below 0x10000; returns the header size. */
static size_t put_header(uint8_t *out, uint8_t tag, size_t length)
{
    out[0] = tag;
    if (length < 0x80) {
        out[1] = (uint8_t)length;
        return 2;
    }
    if (length < 0x100) {
        out[1] = 0x81;
        out[2] = (uint8_t)length;
        return 3;
    }
    out[1] = 0x82;
    out[2] = (uint8_t)(length >> 8);
    out[3] = (uint8_t)length;
    return 4;
}

int csr_pem(EVP_MD_CTX *sign, OSSL_LIB_CTX *libctx, EVP_PKEY *key,
            const uint8_t spki[SPKI_P256_LENGTH], const char *di, char pem[CSR_PEM_CAPACITY])
{
    static const char head[] = "-----BEGIN CERTIFICATE REQUEST-----\n";
    static const char tail[] = "-----END CERTIFICATE REQUEST-----\n";
    static const uint8_t name_start[] = {0x06, 0x03, 0x55, 0x04, 0x03, 0x0c};
    uint8_t info[256], csr[400], signature[80];
    size_t cn_length = strlen(di) + 5, n = 0, signature_length = sizeof(signature);

    if (cn_length > 64)
        return -1;
    /* CertificationRequestInfo: version 0, subject, SPKI, attributes [0] {} */
    size_t pair = sizeof(name_start) + 1 + cn_length, set = 2 + pair, name = 2 + set;
    size_t info_length = 3 + 2 + name + SPKI_P256_LENGTH + 2;
    n = put_header(info, 0x30, info_length);
    memcpy(info + n, (const uint8_t[]){0x02, 0x01, 0x00}, 3);
    n += 3;
    n += put_header(info + n, 0x30, name);
    n += put_header(info + n, 0x31, set);
    n += put_header(info + n, 0x30, pair);
    memcpy(info + n, name_start, sizeof(name_start));
    n += sizeof(name_start);
    info[n++] = (uint8_t)cn_length;
    memcpy(info + n, "uuid:", 5);
    memcpy(info + n + 5, di, cn_length - 5);
    n += cn_length;
    memcpy(info + n, spki, SPKI_P256_LENGTH);
    n += SPKI_P256_LENGTH;
    info[n++] = 0xa0;
    info[n++] = 0x00;
    if (EVP_MD_CTX_reset(sign) != 1 ||
        EVP_DigestSignInit_ex(sign, NULL, "SHA256", libctx, NULL, key, NULL) != 1 ||
        EVP_DigestSign(sign, signature, &signature_length, info, n) != 1 || signature_length > 72)
        return -1;
    /* CertificationRequest: info, algorithm, BIT STRING signature */
    size_t bits = 1 + signature_length;
    size_t body = n + sizeof(ECDSA_SHA256) + 2 + bits;
    size_t length = put_header(csr, 0x30, body);
    memcpy(csr + length, info, n);
    length += n;
    memcpy(csr + length, ECDSA_SHA256, sizeof(ECDSA_SHA256));
    length += sizeof(ECDSA_SHA256);
    length += put_header(csr + length, 0x03, bits);
    csr[length++] = 0x00;
    memcpy(csr + length, signature, signature_length);
    length += signature_length;
    /* PEM: 64 characters a line */
    size_t out = sizeof(head) - 1;
    memcpy(pem, head, out);
    for (size_t i = 0; i < length; i += 48) {
        size_t chunk = length - i < 48 ? length - i : 48;
        out += (size_t)EVP_EncodeBlock((unsigned char *)pem + out, csr + i, (int)chunk);
        pem[out++] = '\n';
    }
    memcpy(pem + out, tail, sizeof(tail));
    return 0;
}
