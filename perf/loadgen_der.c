/*
 * loadgen_der: CSRs built from DER pieces, certificates read from DER, PEM
 * blocks decoded (see loadgen_der.h).
 */
#include "perf/loadgen_der.h"

#include "common/base64.h"
#include "common/der.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

/* ---- reading DER ---- */

static bool two_digits(const uint8_t *text, int *value)
{
    if (text[0] < '0' || text[0] > '9' || text[1] < '0' || text[1] > '9')
        return false;
    *value = (text[0] - '0') * 10 + (text[1] - '0');
    return true;
}

/* UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ (RFC 5280 4.1.2.5). */
static int der_time(const struct der_element *item, time_t *out)
{
    const uint8_t *text = item->content.data;
    struct tm tm;
    int century, year, month, day, hour, minute, second;

    memset(&tm, 0, sizeof(tm));
    if (item->tag == DER_UTC_TIME && item->content.length == 13) {
        if (!two_digits(text, &year))
            return -1;
        year += year < 50 ? 2000 : 1900;
        text += 2;
    } else if (item->tag == DER_GENERALIZED_TIME && item->content.length == 15) {
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

static bool oid_is(const struct der_element *item, const uint8_t *oid, size_t length)
{
    return item->tag == DER_OID && der_equals(&item->content, oid, length);
}

/* Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }: the first CN. */
static int read_name(const struct der_element *name, char *cn, size_t cn_capacity)
{
    struct der sets = name->content;
    struct der_element set, pair, type, value;

    cn[0] = '\0';
    while (sets.length > 0) {
        if (der_expect(&sets, DER_SET, &set) != 0)
            return -1;
        struct der pairs = set.content;
        while (pairs.length > 0) {
            if (der_expect(&pairs, DER_SEQUENCE, &pair) != 0)
                return -1;
            struct der fields = pair.content;
            if (der_expect(&fields, DER_OID, &type) != 0 || der_read(&fields, &value) != 0 ||
                fields.length != 0)
                return -1;
            if (cn[0] == '\0' && oid_is(&type, OID_COMMON_NAME, sizeof(OID_COMMON_NAME))) {
                if ((value.tag != DER_UTF8_STRING && value.tag != DER_PRINTABLE_STRING) ||
                    value.content.length >= cn_capacity ||
                    memchr(value.content.data, 0, value.content.length) != NULL)
                    return -1;
                memcpy(cn, value.content.data, value.content.length);
                cn[value.content.length] = '\0';
            }
        }
    }
    return 0;
}

/* ExtKeyUsageSyntax ::= SEQUENCE SIZE (1..MAX) OF KeyPurposeId, inside the extension's OCTET
 * STRING. */
static int read_eku(const struct der_element *octets, struct cert_fields *fields)
{
    struct der run = octets->content;
    struct der_element list, purpose;

    if (der_expect(&run, DER_SEQUENCE, &list) != 0 || run.length != 0 || list.content.length == 0)
        return -1;
    fields->eku_present = true;
    struct der purposes = list.content;
    while (purposes.length > 0) {
        if (der_expect(&purposes, DER_OID, &purpose) != 0)
            return -1;
        fields->eku_server |= oid_is(&purpose, OID_SERVER_AUTH, sizeof(OID_SERVER_AUTH));
        fields->eku_client |= oid_is(&purpose, OID_CLIENT_AUTH, sizeof(OID_CLIENT_AUTH));
    }
    return 0;
}

/* [3] EXPLICIT Extensions ::= SEQUENCE OF SEQUENCE { OID, critical BOOLEAN DEFAULT FALSE, OCTET
 * STRING } */
static int read_extensions(const struct der_element *explicit, struct cert_fields *fields)
{
    struct der run = explicit->content;
    struct der_element list, extension, oid, item;

    if (der_expect(&run, DER_SEQUENCE, &list) != 0 || run.length != 0)
        return -1;
    struct der extensions = list.content;
    while (extensions.length > 0) {
        if (der_expect(&extensions, DER_SEQUENCE, &extension) != 0)
            return -1;
        struct der parts = extension.content;
        if (der_expect(&parts, DER_OID, &oid) != 0 || der_read(&parts, &item) != 0)
            return -1;
        if (item.tag == DER_BOOLEAN) {
            if (item.content.length != 1 || der_read(&parts, &item) != 0)
                return -1;
        }
        if (item.tag != DER_OCTET_STRING || parts.length != 0)
            return -1;
        if (oid_is(&oid, OID_EXT_KEY_USAGE, sizeof(OID_EXT_KEY_USAGE)) &&
            read_eku(&item, fields) != 0)
            return -1;
    }
    return 0;
}

int der_read_certificate(const uint8_t *der, size_t length, struct cert_fields *fields)
{
    struct der input = {der, length};
    struct der_element certificate, tbs, item, validity, before, after, spki;

    memset(fields, 0, sizeof(*fields));
    if (der_expect(&input, DER_SEQUENCE, &certificate) != 0 || input.length != 0)
        return -1;
    struct der outer = certificate.content;
    if (der_expect(&outer, DER_SEQUENCE, &tbs) != 0 ||
        der_expect(&outer, DER_SEQUENCE, &item) != 0 ||
        der_expect(&outer, DER_BIT_STRING, &item) != 0 || item.content.length < 2 ||
        outer.length != 0)
        return -1; /* tbsCertificate, signatureAlgorithm, signatureValue */
    struct der body = tbs.content;
    if (der_read(&body, &item) != 0)
        return -1;
    if (item.tag == 0xa0 && der_read(&body, &item) != 0) /* [0] version */
        return -1;
    if (item.tag != DER_INTEGER || item.content.length == 0) /* serialNumber */
        return -1;
    fields->serial = item.content.data;
    fields->serial_length = item.content.length;
    if (der_expect(&body, DER_SEQUENCE, &item) != 0 ||     /* signature */
        der_expect(&body, DER_SEQUENCE, &item) != 0 ||     /* issuer */
        der_expect(&body, DER_SEQUENCE, &validity) != 0 || /* validity */
        der_expect(&body, DER_SEQUENCE, &item) != 0 ||     /* subject */
        read_name(&item, fields->cn, sizeof(fields->cn)) != 0 ||
        der_expect(&body, DER_SEQUENCE, &spki) != 0) /* subjectPublicKeyInfo */
        return -1;
    fields->spki = spki.whole.data;
    fields->spki_length = spki.whole.length;
    struct der times = validity.content;
    if (der_read(&times, &before) != 0 || der_read(&times, &after) != 0 || times.length != 0 ||
        der_time(&before, &fields->not_before) != 0 || der_time(&after, &fields->not_after) != 0)
        return -1;
    while (body.length > 0) {
        if (der_read(&body, &item) != 0)
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
    n = (size_t)(der_put_header(info, 0x30, info_length) - (info));
    memcpy(info + n, (const uint8_t[]){0x02, 0x01, 0x00}, 3);
    n += 3;
    n += (size_t)(der_put_header(info + n, 0x30, name) - (info + n));
    n += (size_t)(der_put_header(info + n, 0x31, set) - (info + n));
    n += (size_t)(der_put_header(info + n, 0x30, pair) - (info + n));
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
    size_t length = (size_t)(der_put_header(csr, 0x30, body) - (csr));
    memcpy(csr + length, info, n);
    length += n;
    memcpy(csr + length, ECDSA_SHA256, sizeof(ECDSA_SHA256));
    length += sizeof(ECDSA_SHA256);
    length += (size_t)(der_put_header(csr + length, 0x03, bits) - (csr + length));
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
