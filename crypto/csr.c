/*
 * csr: checks a device's PEM PKCS#10 request before anything is signed for
 * it, on the shard thread, once per provisioning.
 *
 * OpenSSL 3.0's generic path (d2i_X509_REQ, then the provider key decoders
 * behind X509_REQ_get0_pubkey) costs about ten times the ECDSA verification
 * itself. Only one shape of request is acceptable here, so this file decodes
 * the PEM armour and walks the DER with a small strict reader (definite,
 * minimal lengths; every element bounds-checked; nothing trailing), compares
 * the key and algorithm identifiers with the only encodings we accept, builds
 * the key from its raw point with EVP_PKEY_fromdata (which refuses points off
 * the curve) and leaves OpenSSL only the verification. Checks run cheapest
 * first; the signature is verified last.
 */
#include "crypto/csr.h"
#include "common/error.h"

#include "common/base64.h"
#include "common/der.h"
#include "crypto/lean_provider.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define CN_PREFIX "uuid:"
#define CN_PREFIX_LENGTH (sizeof(CN_PREFIX) - 1)

#define DER_CONTEXT_0 0xa0

#define P256_POINT_LENGTH 65

/*
 * The one SubjectPublicKeyInfo accepted, up to the point: id-ecPublicKey with
 * namedCurve prime256v1, a BIT STRING with no unused bits, then 0x04 and the
 * 64 bytes of x and y.
 */
static const uint8_t P256_SPKI_PREFIX[] = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
    0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
};
#define P256_SPKI_LENGTH (sizeof(P256_SPKI_PREFIX) - 1 + P256_POINT_LENGTH)

/* AlgorithmIdentifier ecdsa-with-SHA256 (1.2.840.10045.4.3.2), parameters absent. */
static const uint8_t ECDSA_SHA256_ALGORITHM[] = {
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
};

/* commonName, 2.5.4.3, as OBJECT IDENTIFIER content. */
static const uint8_t COMMON_NAME_OID[] = {0x55, 0x04, 0x03};

static const char REASON_NOT_PEM[] = "CSR is not valid PEM";
static const char REASON_TOO_LARGE[] = "CSR is too large";
static const char REASON_NOT_PKCS10[] = "CSR is not a valid PKCS#10 request";
static const char REASON_NOT_P256[] = "CSR key is not EC P-256";
static const char REASON_NOT_ECDSA_SHA256[] = "CSR signature algorithm is not ecdsa-with-SHA256";
static const char REASON_BAD_CN[] = "CSR subject CN is not uuid:<device id>";
static const char REASON_BAD_SIGNATURE[] = "CSR signature does not verify";

static int fail(char *err, size_t err_length, const char *reason)
{
    return error_set(err, err_length, "%s", reason);
}

/* ---- PEM ---------------------------------------------------------------- */

struct text {
    const char *data;
    size_t length;
};

static bool text_skip(struct text *text, const char *expected)
{
    size_t length = strlen(expected);

    if (text->length < length || memcmp(text->data, expected, length) != 0)
        return false;
    text->data += length;
    text->length -= length;
    return true;
}

/* A line ends with "\n" or "\r\n". */
static bool text_skip_line_end(struct text *text)
{
    return text_skip(text, "\n") || text_skip(text, "\r\n");
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * The armour is "-----BEGIN CERTIFICATE REQUEST-----" (or the older "NEW
 * CERTIFICATE REQUEST"), non-empty base64 lines, then the matching END line.
 * Whitespace may surround it and NULs may follow it (a C string's terminator
 * sent along); anything else, encapsulated headers included, is refused.
 */
static int pem_decode(const char *pem, size_t pem_length, uint8_t *der, size_t *der_length,
                      char *err, size_t err_length)
{
    static const char *const labels[] = {"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"};
    struct text text = {pem, pem_length};
    const char *label = NULL;

    while (text.length > 0 && is_space(text.data[0])) {
        text.data++;
        text.length--;
    }
    if (!text_skip(&text, "-----BEGIN "))
        return fail(err, err_length, REASON_NOT_PEM);
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]) && label == NULL; i++) {
        struct text attempt = text;
        if (text_skip(&attempt, labels[i]) && text_skip(&attempt, "-----") &&
            text_skip_line_end(&attempt)) {
            label = labels[i];
            text = attempt;
        }
    }
    if (label == NULL)
        return fail(err, err_length, REASON_NOT_PEM);

    struct base64_decoder decoder;
    base64_decoder_init(&decoder, BASE64_STANDARD, false, der, CSR_MAX_DER);
    while (!text_skip(&text, "-----END ")) {
        size_t line_length = 0;
        while (line_length < text.length && text.data[line_length] != '\n' &&
               text.data[line_length] != '\r')
            line_length++;
        if (line_length == 0)
            return fail(err, err_length, REASON_NOT_PEM);
        int status = base64_decoder_feed(&decoder, text.data, line_length);
        if (status == -2)
            return fail(err, err_length, REASON_TOO_LARGE);
        if (status != 0)
            return fail(err, err_length, REASON_NOT_PEM);
        text.data += line_length;
        text.length -= line_length;
        if (!text_skip_line_end(&text))
            return fail(err, err_length, REASON_NOT_PEM);
    }
    if (base64_decoder_finish(&decoder) != 0 || decoder.length == 0 || !text_skip(&text, label) ||
        !text_skip(&text, "-----"))
        return fail(err, err_length, REASON_NOT_PEM);
    for (size_t i = 0; i < text.length; i++) {
        if (!is_space(text.data[i]) && text.data[i] != '\0')
            return fail(err, err_length, REASON_NOT_PEM);
    }
    *der_length = decoder.length;
    return 0;
}

/* ---- DER ---------------------------------------------------------------- */

/* ---- PKCS#10 ------------------------------------------------------------ */

struct request {
    struct der info; /* the signed bytes: certificationRequestInfo with its header */
    struct der spki;
    struct der signature_algorithm;
    struct der signature; /* the ECDSA-Sig-Value, without the unused-bits byte */
    struct der common_name;
    uint8_t common_name_tag;
    unsigned common_names;
};

/*
 * Name ::= SEQUENCE OF SET SIZE (1..MAX) OF SEQUENCE { type OID, value ANY }.
 * Remembers the commonName values: how many and the last one.
 */
static int parse_subject(struct der rdns, struct request *request)
{
    while (rdns.length > 0) {
        struct der_element rdn;
        if (der_expect(&rdns, DER_SET, &rdn) != 0 || rdn.content.length == 0)
            return -1;
        struct der attributes = rdn.content;
        while (attributes.length > 0) {
            struct der_element attribute, type, value;
            if (der_expect(&attributes, DER_SEQUENCE, &attribute) != 0 ||
                der_expect_oid(&attribute.content, &type) != 0 ||
                der_read(&attribute.content, &value) != 0 || attribute.content.length != 0)
                return -1;
            if (der_equals(&type.content, COMMON_NAME_OID, sizeof(COMMON_NAME_OID))) {
                request->common_names++;
                request->common_name = value.content;
                request->common_name_tag = value.tag;
            }
        }
    }
    return 0;
}

/* attributes [0] IMPLICIT SET OF SEQUENCE { type OID, values SET OF ANY }. */
static int parse_attributes(struct der attributes)
{
    while (attributes.length > 0) {
        struct der_element attribute, type, values;
        if (der_expect(&attributes, DER_SEQUENCE, &attribute) != 0 ||
            der_expect_oid(&attribute.content, &type) != 0 ||
            der_expect(&attribute.content, DER_SET, &values) != 0 ||
            attribute.content.length != 0 || der_skip_all(&values.content) != 0)
            return -1;
    }
    return 0;
}

/* SubjectPublicKeyInfo ::= SEQUENCE { algorithm SEQUENCE { OID, ANY OPTIONAL }, BIT STRING }. */
static int parse_spki(struct der spki)
{
    struct der_element outer, algorithm, oid, key;

    if (der_expect(&spki, DER_SEQUENCE, &outer) != 0 ||
        der_expect(&outer.content, DER_SEQUENCE, &algorithm) != 0 ||
        der_expect_oid(&algorithm.content, &oid) != 0 || der_skip_all(&algorithm.content) != 0 ||
        der_expect(&outer.content, DER_BIT_STRING, &key) != 0 || outer.content.length != 0 ||
        key.content.length == 0)
        return -1;
    return 0;
}

static int parse_request(const uint8_t *der, size_t der_length, struct request *request)
{
    struct der input = {der, der_length};
    struct der_element request_element, info, version, subject, spki, attributes, algorithm,
        signature, oid;

    if (der_expect(&input, DER_SEQUENCE, &request_element) != 0 || input.length != 0)
        return -1;
    struct der body = request_element.content;
    if (der_expect(&body, DER_SEQUENCE, &info) != 0 ||
        der_expect(&body, DER_SEQUENCE, &algorithm) != 0 ||
        der_expect(&body, DER_BIT_STRING, &signature) != 0 || body.length != 0)
        return -1;

    struct der fields = info.content;
    if (der_expect(&fields, DER_INTEGER, &version) != 0 || version.content.length != 1 ||
        version.content.data[0] != 0 || der_expect(&fields, DER_SEQUENCE, &subject) != 0 ||
        der_expect(&fields, DER_SEQUENCE, &spki) != 0 ||
        der_expect(&fields, DER_CONTEXT_0, &attributes) != 0 || fields.length != 0)
        return -1;

    struct der algorithm_fields = algorithm.content;
    if (der_expect_oid(&algorithm_fields, &oid) != 0 || der_skip_all(&algorithm_fields) != 0)
        return -1;
    if (signature.content.length < 2 || signature.content.data[0] != 0)
        return -1;

    *request = (struct request){
        .info = info.whole,
        .spki = spki.whole,
        .signature_algorithm = algorithm.whole,
        .signature = {signature.content.data + 1, signature.content.length - 1},
    };
    if (parse_subject(subject.content, request) != 0 || parse_spki(spki.whole) != 0 ||
        parse_attributes(attributes.content) != 0)
        return -1;
    return 0;
}

static bool spki_is_p256(const struct der *spki)
{
    return spki->length == P256_SPKI_LENGTH &&
           memcmp(spki->data, P256_SPKI_PREFIX, sizeof(P256_SPKI_PREFIX)) == 0;
}

/* Exactly one CN: a text string "uuid:" (any case) then a non-nil UUID. */
static int device_id_from_common_name(const struct request *request, struct dps_uuid *device_id)
{
    const struct der *value = &request->common_name;

    if (request->common_names != 1)
        return -1;
    if (request->common_name_tag != DER_UTF8_STRING &&
        request->common_name_tag != DER_PRINTABLE_STRING &&
        request->common_name_tag != DER_IA5_STRING)
        return -1;
    if (value->length != CN_PREFIX_LENGTH + UUID_STRING_LENGTH ||
        strncasecmp((const char *)value->data, CN_PREFIX, CN_PREFIX_LENGTH) != 0)
        return -1;
    if (uuid_text_parse((const char *)value->data + CN_PREFIX_LENGTH, UUID_STRING_LENGTH,
                        device_id) != 0 ||
        uuid_is_nil(device_id))
        return -1;
    return 0;
}

/*
 * The point is imported through the EC key manager directly, skipping the
 * decoder machinery d2i_PUBKEY goes through. Import refuses a point that is
 * not on the curve (checked by the unit tests).
 */
static EVP_PKEY *p256_key(OSSL_LIB_CTX *libctx, const uint8_t *point)
{
    /* A context of lean_libctx_new() keeps the curve: copied, not built again (its point
     * import refuses a point off the curve the same way). */
    EVP_PKEY *parameters = lean_p256_parameters(libctx);
    if (parameters != NULL) {
        EVP_PKEY *copy = EVP_PKEY_new();
        if (copy == NULL || EVP_PKEY_copy_parameters(copy, parameters) != 1 ||
            EVP_PKEY_set1_encoded_public_key(copy, point, P256_POINT_LENGTH) != 1) {
            EVP_PKEY_free(copy);
            return NULL;
        }
        return copy;
    }
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(libctx, "EC", NULL);
    EVP_PKEY *key = NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)point,
                                          P256_POINT_LENGTH),
        OSSL_PARAM_construct_end(),
    };

    if (ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1)
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
    return key;
}

static bool signature_verifies(OSSL_LIB_CTX *libctx, EVP_PKEY *key, const struct request *request)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool verified = md != NULL &&
                    EVP_DigestVerifyInit_ex(md, NULL, "SHA256", libctx, NULL, key, NULL) == 1 &&
                    EVP_DigestVerify(md, request->signature.data, request->signature.length,
                                     request->info.data, request->info.length) == 1;

    EVP_MD_CTX_free(md);
    return verified;
}

int csr_check(OSSL_LIB_CTX *libctx, const char *pem, size_t pem_length, struct csr_result *result,
              char *err, size_t err_length)
{
    uint8_t der[CSR_MAX_DER];
    size_t der_length = 0;
    struct request request;

    if (pem == NULL || pem_length == 0)
        return fail(err, err_length, "CSR is empty");
    if (pem_length > CSR_MAX_PEM)
        return fail(err, err_length, REASON_TOO_LARGE);
    if (pem_decode(pem, pem_length, der, &der_length, err, err_length) != 0)
        return -1;
    if (parse_request(der, der_length, &request) != 0)
        return fail(err, err_length, REASON_NOT_PKCS10);
    if (!spki_is_p256(&request.spki))
        return fail(err, err_length, REASON_NOT_P256);
    if (!der_equals(&request.signature_algorithm, ECDSA_SHA256_ALGORITHM,
                    sizeof(ECDSA_SHA256_ALGORITHM)))
        return fail(err, err_length, REASON_NOT_ECDSA_SHA256);
    if (device_id_from_common_name(&request, &result->device_id) != 0)
        return fail(err, err_length, REASON_BAD_CN);

    EVP_PKEY *key = p256_key(libctx, request.spki.data + sizeof(P256_SPKI_PREFIX) - 1);
    int status = 0;
    if (key == NULL)
        status = fail(err, err_length, REASON_NOT_P256);
    else if (!signature_verifies(libctx, key, &request))
        status = fail(err, err_length, REASON_BAD_SIGNATURE);
    EVP_PKEY_free(key);
    ERR_clear_error();
    if (status != 0)
        return status;

    memcpy(result->spki_der, request.spki.data, request.spki.length);
    result->spki_length = request.spki.length;
    return 0;
}
