/*
 * issuer: a hub's identity CA, loaded from PEM files, and the device
 * identity certificates it signs (PROTOCOL.md 2.4).
 *
 * An issuer belongs to one signer worker and its OpenSSL library context:
 * everything, from loading the key to fetching SHA-256 for a signature, goes
 * through that context, so workers share no OpenSSL state. Only that worker
 * calls issuer_issue(), so the issuer keeps reusable buffers and contexts.
 *
 * The certificate file lists the CA first and then its issuers in order.
 * issuer_load() checks that order, so a misordered file fails at start-up
 * instead of producing chains devices cannot verify. The chain handed out
 * with each certificate is every certificate that is not self-signed; the
 * trust anchor is the file's last certificate (the root, normally).
 *
 * Certificates are not built through OpenSSL's X509 object API, which parses
 * the key, builds and re-encodes a tree of objects and costs several times
 * the signature itself (DESIGN.md). Everything constant per CA (issuer name,
 * signature algorithm, extensions, authority key identifier) is encoded once
 * at load; issuing concatenates it with the serial, validity, subject and key
 * into the TBSCertificate DER, signs that with EVP_DigestSign and wraps it.
 *
 * The subject is a template too: exactly CN=uuid:<device id>, the id patched
 * in. Nothing of a CSR's subject reaches a certificate, as nothing of its
 * extensions does: a device that asks for O=, OU=, UID= or serialNumber=
 * gets its id and nothing else, so no relying party can be misled by
 * attributes the device chose. The key is taken as given after a structural
 * DER check: the caller has parsed it out of a CSR whose signature it
 * verified.
 */
#include "crypto/issuer.h"
#include "common/error.h"
#include "crypto/keyfile.h"
#include "crypto/uuid.h"

#include "common/base64.h"
#include "common/der.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define DER_CONTEXT_0_PRIMITIVE 0x80
#define DER_EXPLICIT_3 0xa3

/*
 * Subjects, keys and the CA's name longer than this are refused, so that a
 * whole certificate stays under 2^24 bytes and every length fits 3 bytes.
 */
#define DER_INPUT_MAX 0xffff
/* A tag, the length-of-length octet and up to 3 length bytes. */
#define TIME_DER_MAX 17
#define KEY_ID_LENGTH 20

/* version [0] EXPLICIT INTEGER 2 (v3) */
static const uint8_t version_der[] = {0xa0, 0x03, 0x02, 0x01, 0x02};

/* AlgorithmIdentifier ecdsa-with-SHA256 (1.2.840.10045.4.3.2), no parameters (RFC 5758). */
static const uint8_t ecdsa_sha256_der[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                           0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
/* AlgorithmIdentifier sha256WithRSAEncryption (1.2.840.113549.1.1.11), NULL parameters. */
static const uint8_t rsa_sha256_der[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                         0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00};

/*
 * The extensions every identity certificate carries, in order:
 * basicConstraints critical CA:FALSE (an empty SEQUENCE: cA defaults to false),
 * keyUsage critical digitalSignature + keyAgreement (bits 0 and 4, 3 unused),
 * extendedKeyUsage serverAuth, clientAuth, OCF identity 1.3.6.1.4.1.44924.1.6.
 */
static const uint8_t constant_extensions_der[] = {
    0x30, 0x0c, 0x06, 0x03, 0x55, 0x1d, 0x13, 0x01, 0x01, 0xff, 0x04, 0x02, 0x30, 0x00, 0x30,
    0x0e, 0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01, 0xff, 0x04, 0x04, 0x03, 0x02, 0x03, 0x88,
    0x30, 0x29, 0x06, 0x03, 0x55, 0x1d, 0x25, 0x04, 0x22, 0x30, 0x20, 0x06, 0x08, 0x2b, 0x06,
    0x01, 0x05, 0x05, 0x07, 0x03, 0x01, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03,
    0x02, 0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0xde, 0x7c, 0x01, 0x06};

/*
 * The subject up to the device id: Name ::= SEQUENCE { SET { SEQUENCE {
 * commonName (2.5.4.3), UTF8String "uuid:" + the 36 characters of the id } } }.
 */
static const uint8_t subject_prefix_der[] = {0x30, 0x34, 0x31, 0x32, 0x30, 0x30, 0x06, 0x03, 0x55,
                                             0x04, 0x03, 0x0c, 0x29, 'u',  'u',  'i',  'd',  ':'};
#define SUBJECT_LENGTH (sizeof(subject_prefix_der) + UUID_STRING_LENGTH)

/* subjectKeyIdentifier extension up to its 20-byte key identifier. */
static const uint8_t subject_key_id_prefix[] = {0x30, 0x1d, 0x06, 0x03, 0x55, 0x1d,
                                                0x0e, 0x04, 0x16, 0x04, 0x14};

/* authorityKeyIdentifier OID 2.5.29.35 */
static const uint8_t authority_key_id_oid[] = {0x06, 0x03, 0x55, 0x1d, 0x23};

struct issuer {
    OSSL_LIB_CTX *libctx;
    EVP_PKEY *key;
    EVP_MD *sha1;
    /*
     * Initialised once for SHA-256 with the key; before each signature the
     * context the last one finalised is reset, then the template copied in.
     * Without the reset, OpenSSL 3.5's EVP_MD_CTX_copy_ex takes a shortcut for
     * an equal digest that copies a NULL digest state and crashes
     * (openssl/openssl#31831). Reset and copy is a little cheaper than
     * re-initialising (perf/bench-issue: sign_copy_us, sign_reinit_us).
     */
    EVP_MD_CTX *sign_template;
    EVP_MD_CTX *sign_context;
    const uint8_t *algorithm;
    size_t algorithm_length;
    uint8_t *issuer_name;
    size_t issuer_name_length;
    uint8_t *authority_key_id;
    size_t authority_key_id_length;
    uint8_t *signature;
    size_t signature_max;
    uint8_t *der;
    size_t der_size;
    char *chain_pem;
    size_t chain_pem_length;
    char *root_pem;
};

/* error_set, and the OpenSSL error queue left empty. */
static int fail(char *err, size_t err_length, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t err_length, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    error_vset(err, err_length, format, args);
    va_end(args);
    ERR_clear_error();
    return -1;
}

/* Keys are stored unencrypted: never fall back to prompting on a terminal. */
static int no_passphrase(char *buffer, int size, int rwflag, void *user)
{
    return 0;
}

static STACK_OF(X509) *
    read_certificates(OSSL_LIB_CTX *libctx, const char *path, char *err, size_t err_length)
{
    BIO *bio = BIO_new_file(path, "r");
    STACK_OF(X509) *certificates = NULL;

    if (bio == NULL) {
        fail(err, err_length, "%s: cannot read the CA certificate file", path);
        return NULL;
    }
    certificates = sk_X509_new_null();
    for (;;) {
        X509 *certificate = X509_new_ex(libctx, NULL);
        if (certificate == NULL || certificates == NULL ||
            PEM_read_bio_X509(bio, &certificate, no_passphrase, NULL) == NULL) {
            X509_free(certificate);
            break;
        }
        if (sk_X509_push(certificates, certificate) <= 0) {
            X509_free(certificate);
            break;
        }
    }
    unsigned long last = ERR_peek_last_error();
    bool clean_end =
        ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
    BIO_free(bio);
    if (certificates == NULL || sk_X509_num(certificates) == 0 || !clean_end) {
        fail(err, err_length, "%s: not a PEM list of certificates", path);
        sk_X509_pop_free(certificates, X509_free);
        return NULL;
    }
    ERR_clear_error();
    return certificates;
}

static EVP_PKEY *read_key(OSSL_LIB_CTX *libctx, const char *path, char *err, size_t err_length)
{
    BIO *bio = BIO_new_file(path, "r");
    EVP_PKEY *key = NULL;

    if (bio == NULL) {
        fail(err, err_length, "%s: cannot read the CA key file", path);
        return NULL;
    }
    if (keyfile_check_loaded(path, err, err_length) != 0) {
        BIO_free(bio);
        return NULL;
    }
    key = PEM_read_bio_PrivateKey_ex(bio, NULL, no_passphrase, NULL, libctx, NULL);
    BIO_free(bio);
    if (key == NULL) {
        fail(err, err_length, "%s: not an unencrypted PEM private key", path);
        return NULL;
    }
    if (!(EVP_PKEY_is_a(key, "EC") ||
          (EVP_PKEY_is_a(key, "RSA") && EVP_PKEY_get_bits(key) >= 2048))) {
        fail(err, err_length, "%s: CA key must be EC or RSA of 2048 bits or more", path);
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

static bool is_self_signed(X509 *certificate)
{
    return X509_check_issued(certificate, certificate) == X509_V_OK;
}

static int append_pem(BIO *bio, X509 *certificate)
{
    return PEM_write_bio_X509(bio, certificate) == 1 ? 0 : -1;
}

static char *bio_to_string(BIO *bio)
{
    char *data = NULL;
    long length = BIO_get_mem_data(bio, &data);
    char *text = malloc((size_t)length + 1);

    if (text == NULL)
        return NULL;
    if (length > 0)
        memcpy(text, data, (size_t)length);
    text[length] = '\0';
    return text;
}

/* Every certificate must be issued by the next one in the file. */
static int check_order(STACK_OF(X509) * certificates, const char *path, char *err,
                       size_t err_length)
{
    for (int i = 0; i + 1 < sk_X509_num(certificates); i++) {
        if (X509_check_issued(sk_X509_value(certificates, i + 1), sk_X509_value(certificates, i)) !=
            X509_V_OK)
            return fail(err, err_length,
                        "%s: certificate %d is not issued by certificate %d (CA first, root last)",
                        path, i + 1, i + 2);
    }
    return 0;
}

static int build_pems(struct issuer *issuer, STACK_OF(X509) * certificates)
{
    BIO *chain = BIO_new(BIO_s_mem());
    BIO *root = BIO_new(BIO_s_mem());
    int status = -1;
    int count = sk_X509_num(certificates);

    if (chain == NULL || root == NULL)
        goto out;
    for (int i = 0; i < count; i++) {
        X509 *certificate = sk_X509_value(certificates, i);
        if (!is_self_signed(certificate) && append_pem(chain, certificate) != 0)
            goto out;
    }
    if (append_pem(root, sk_X509_value(certificates, count - 1)) != 0)
        goto out;
    issuer->chain_pem = bio_to_string(chain);
    issuer->root_pem = bio_to_string(root);
    if (issuer->chain_pem != NULL && issuer->root_pem != NULL) {
        issuer->chain_pem_length = strlen(issuer->chain_pem);
        status = 0;
    }
out:
    BIO_free(chain);
    BIO_free(root);
    return status;
}

/*
 * SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier,
 * subjectPublicKey BIT STRING }, exactly length bytes, with no unused bits.
 * Sets *key to the key bytes (the BIT STRING without its unused-bits octet).
 */
static int spki_public_key(const uint8_t *der, size_t length, const uint8_t **key,
                           size_t *key_length)
{
    struct der input = {der, length};
    struct der_element spki, algorithm, oid, bits;

    if (der == NULL || length > DER_INPUT_MAX || der_expect(&input, DER_SEQUENCE, &spki) != 0 ||
        input.length != 0)
        return -1;
    struct der body = spki.content, algorithm_body;
    if (der_expect(&body, DER_SEQUENCE, &algorithm) != 0)
        return -1;
    algorithm_body = algorithm.content;
    if (der_expect(&algorithm_body, DER_OID, &oid) != 0 || oid.content.length == 0 ||
        der_expect(&body, DER_BIT_STRING, &bits) != 0 || body.length != 0 ||
        bits.content.length < 2 || bits.content.data[0] != 0)
        return -1;
    *key = bits.content.data + 1;
    *key_length = bits.content.length - 1;
    return 0;
}

/* RFC 5280 4.1.2.5: UTCTime for 1950 to 2049, GeneralizedTime otherwise; 0 if unrepresentable. */
static size_t der_time(uint8_t out[TIME_DER_MAX], time_t when)
{
    struct tm tm;
    char text[32];
    int year;
    int length;

    if (gmtime_r(&when, &tm) == NULL)
        return 0;
    year = tm.tm_year + 1900;
    if (year >= 1950 && year <= 2049)
        length = snprintf(text, sizeof(text), "%02d%02d%02d%02d%02d%02dZ", year % 100,
                          tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    else if (year >= 0 && year <= 9999)
        length = snprintf(text, sizeof(text), "%04d%02d%02d%02d%02d%02dZ", year, tm.tm_mon + 1,
                          tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    else
        return 0;
    uint8_t *end =
        der_put_header(out, length == 13 ? DER_UTC_TIME : DER_GENERALIZED_TIME, (size_t)length);
    end = der_put(end, text, (size_t)length);
    return (size_t)(end - out);
}

/* authorityKeyIdentifier: the CA's subjectKeyIdentifier, or SHA-1 of its public key. */
static int build_authority_key_id(struct issuer *issuer, X509 *ca)
{
    const ASN1_OCTET_STRING *ca_key_id = X509_get0_subject_key_id(ca);
    uint8_t digest[KEY_ID_LENGTH];
    const uint8_t *key_id = digest;
    size_t key_id_length = sizeof(digest);

    if (ca_key_id != NULL) {
        key_id = ASN1_STRING_get0_data(ca_key_id);
        key_id_length = (size_t)ASN1_STRING_length(ca_key_id);
        if (key_id_length > DER_INPUT_MAX)
            return -1;
    } else {
        const ASN1_BIT_STRING *public_key = X509_get0_pubkey_bitstr(ca);
        if (public_key == NULL ||
            EVP_Digest(ASN1_STRING_get0_data(public_key), (size_t)ASN1_STRING_length(public_key),
                       digest, NULL, issuer->sha1, NULL) != 1)
            return -1;
    }
    size_t identifier_length = der_size(key_id_length);
    size_t octets_length = der_size(identifier_length);
    size_t extension_length = sizeof(authority_key_id_oid) + der_size(octets_length);
    issuer->authority_key_id_length = der_size(extension_length);
    issuer->authority_key_id = malloc(issuer->authority_key_id_length);
    if (issuer->authority_key_id == NULL)
        return -1;
    uint8_t *p = der_put_header(issuer->authority_key_id, DER_SEQUENCE, extension_length);
    p = der_put(p, authority_key_id_oid, sizeof(authority_key_id_oid));
    p = der_put_header(p, DER_OCTET_STRING, octets_length);
    p = der_put_header(p, DER_SEQUENCE, identifier_length);
    p = der_put_header(p, DER_CONTEXT_0_PRIMITIVE, key_id_length);
    der_put(p, key_id, key_id_length);
    return 0;
}

/* Encodes everything that does not change from one certificate to the next. */
static int prepare_templates(struct issuer *issuer, X509 *ca)
{
    unsigned char *name = NULL;
    int name_length = i2d_X509_NAME(X509_get_subject_name(ca), &name);

    if (name_length <= 0)
        return -1;
    issuer->issuer_name = name;
    if (name_length > DER_INPUT_MAX)
        return -1;
    issuer->issuer_name_length = (size_t)name_length;
    if (EVP_PKEY_is_a(issuer->key, "EC")) {
        issuer->algorithm = ecdsa_sha256_der;
        issuer->algorithm_length = sizeof(ecdsa_sha256_der);
    } else {
        issuer->algorithm = rsa_sha256_der;
        issuer->algorithm_length = sizeof(rsa_sha256_der);
    }
    issuer->sha1 = EVP_MD_fetch(issuer->libctx, "SHA1", NULL);
    if (issuer->sha1 == NULL || build_authority_key_id(issuer, ca) != 0)
        return -1;
    issuer->sign_template = EVP_MD_CTX_new();
    issuer->sign_context = EVP_MD_CTX_new();
    if (issuer->sign_template == NULL || issuer->sign_context == NULL ||
        EVP_DigestSignInit_ex(issuer->sign_template, NULL, "SHA256", issuer->libctx, NULL,
                              issuer->key, NULL) != 1)
        return -1;
    int signature_max = EVP_PKEY_get_size(issuer->key);
    if (signature_max <= 0 || signature_max > DER_INPUT_MAX)
        return -1;
    issuer->signature_max = (size_t)signature_max;
    issuer->signature = malloc(issuer->signature_max);
    return issuer->signature != NULL ? 0 : -1;
}

struct issuer *issuer_load(OSSL_LIB_CTX *libctx, const char *cert_file, const char *key_file,
                           char *err, size_t err_length)
{
    struct issuer *issuer = calloc(1, sizeof(*issuer));
    STACK_OF(X509) *certificates = NULL;
    X509 *ca;

    if (issuer == NULL) {
        fail(err, err_length, "out of memory");
        return NULL;
    }
    issuer->libctx = libctx;
    certificates = read_certificates(libctx, cert_file, err, err_length);
    if (certificates == NULL)
        goto error;
    ca = sk_X509_value(certificates, 0);
    if (check_order(certificates, cert_file, err, err_length) != 0)
        goto error;
    uint32_t flags = X509_get_extension_flags(ca);
    if (!(flags & EXFLAG_BCONS) || !(flags & EXFLAG_CA) ||
        !(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN)) {
        fail(err, err_length, "%s: the first certificate is not a CA (basicConstraints CA:TRUE)",
             cert_file);
        goto error;
    }
    issuer->key = read_key(libctx, key_file, err, err_length);
    if (issuer->key == NULL)
        goto error;
    if (X509_check_private_key(ca, issuer->key) != 1) {
        fail(err, err_length, "%s: key does not match the CA certificate in %s", key_file,
             cert_file);
        goto error;
    }
    if (build_pems(issuer, certificates) != 0) {
        fail(err, err_length, "out of memory");
        goto error;
    }
    if (prepare_templates(issuer, ca) != 0) {
        fail(err, err_length, "%s: cannot prepare signing with the key in %s", cert_file, key_file);
        goto error;
    }
    sk_X509_pop_free(certificates, X509_free);
    return issuer;

error:
    sk_X509_pop_free(certificates, X509_free);
    issuer_free(issuer);
    return NULL;
}

void issuer_free(struct issuer *issuer)
{
    if (issuer == NULL)
        return;
    EVP_PKEY_free(issuer->key);
    EVP_MD_free(issuer->sha1);
    EVP_MD_CTX_free(issuer->sign_template);
    EVP_MD_CTX_free(issuer->sign_context);
    OPENSSL_free(issuer->issuer_name);
    free(issuer->authority_key_id);
    free(issuer->signature);
    free(issuer->der);
    free(issuer->chain_pem);
    free(issuer->root_pem);
    free(issuer);
}

const char *issuer_chain_pem(const struct issuer *issuer)
{
    return issuer->chain_pem;
}

const char *issuer_root_pem(const struct issuer *issuer)
{
    return issuer->root_pem;
}

static int reserve(struct issuer *issuer, size_t size)
{
    if (size <= issuer->der_size)
        return 0;
    uint8_t *der = realloc(issuer->der, size);
    if (der == NULL)
        return -1;
    issuer->der = der;
    issuer->der_size = size;
    return 0;
}

/*
 * A positive 128-bit serial whose DER content is exactly 16 bytes: the top
 * bit is cleared so it is not negative, and the first byte is non-zero so
 * the encoding is not shortened.
 */
static int random_serial(struct issuer *issuer, uint8_t serial[ISSUER_SERIAL_LENGTH])
{
    if (RAND_bytes_ex(issuer->libctx, serial, ISSUER_SERIAL_LENGTH, 0) != 1)
        return -1;
    serial[0] &= 0x7f;
    if (serial[0] == 0)
        serial[0] = 0x01;
    return 0;
}

/* The PEM of one certificate followed by the chain, as PEM_write_bio_X509 lays it out. */
static char *certificate_pem(const struct issuer *issuer, const uint8_t *der, size_t length)
{
    return base64_pem("CERTIFICATE", der, length, issuer->chain_pem, issuer->chain_pem_length);
}

int issuer_issue(struct issuer *issuer, const char *device_id, const uint8_t *spki_der,
                 size_t spki_length, time_t not_before, time_t not_after,
                 struct issued_certificate *out, char *err, size_t err_length)
{
    uint8_t times[2][TIME_DER_MAX];
    size_t time_lengths[2];
    const uint8_t *key;
    size_t key_length;
    uint8_t key_id[KEY_ID_LENGTH];
    struct dps_uuid uuid;
    uint8_t subject_der[SUBJECT_LENGTH];
    const size_t subject_length = SUBJECT_LENGTH;

    memset(out, 0, sizeof(*out));
    if (not_after <= not_before)
        return fail(err, err_length, "certificate validity ends before it starts");
    if (device_id == NULL || uuid_text_parse(device_id, strlen(device_id), &uuid) != 0 ||
        uuid_is_nil(&uuid))
        return fail(err, err_length, "certificate device id is not a non-nil UUID");
    char canonical[UUID_STRING_LENGTH + 1];
    uuid_format(&uuid, canonical);
    memcpy(subject_der, subject_prefix_der, sizeof(subject_prefix_der));
    memcpy(subject_der + sizeof(subject_prefix_der), canonical, UUID_STRING_LENGTH);
    if (spki_public_key(spki_der, spki_length, &key, &key_length) != 0)
        return fail(err, err_length, "certificate key is not a DER SubjectPublicKeyInfo");
    time_lengths[0] = der_time(times[0], not_before);
    time_lengths[1] = der_time(times[1], not_after);
    if (time_lengths[0] == 0 || time_lengths[1] == 0)
        return fail(err, err_length, "certificate validity is outside years 0 to 9999");
    if (EVP_Digest(key, key_length, key_id, NULL, issuer->sha1, NULL) != 1 ||
        random_serial(issuer, out->serial) != 0)
        return fail(err, err_length, "cannot build the certificate");

    size_t validity_length = time_lengths[0] + time_lengths[1];
    size_t extensions_length = sizeof(constant_extensions_der) + sizeof(subject_key_id_prefix) +
                               KEY_ID_LENGTH + issuer->authority_key_id_length;
    size_t tbs_content_length = sizeof(version_der) + der_size(ISSUER_SERIAL_LENGTH) +
                                issuer->algorithm_length + issuer->issuer_name_length +
                                der_size(validity_length) + subject_length + spki_length +
                                der_size(der_size(extensions_length));
    size_t tbs_length = der_size(tbs_content_length);
    size_t certificate_max = DER_HEADER_MAX + tbs_length + issuer->algorithm_length +
                             DER_HEADER_MAX + 1 + issuer->signature_max;
    if (reserve(issuer, certificate_max) != 0)
        return fail(err, err_length, "out of memory");

    /* The TBSCertificate goes after room for the Certificate header, written once signed. */
    uint8_t *tbs = issuer->der + DER_HEADER_MAX;
    uint8_t *p = der_put_header(tbs, DER_SEQUENCE, tbs_content_length);
    p = der_put(p, version_der, sizeof(version_der));
    p = der_put_header(p, DER_INTEGER, ISSUER_SERIAL_LENGTH);
    p = der_put(p, out->serial, ISSUER_SERIAL_LENGTH);
    p = der_put(p, issuer->algorithm, issuer->algorithm_length);
    p = der_put(p, issuer->issuer_name, issuer->issuer_name_length);
    p = der_put_header(p, DER_SEQUENCE, validity_length);
    p = der_put(p, times[0], time_lengths[0]);
    p = der_put(p, times[1], time_lengths[1]);
    p = der_put(p, subject_der, subject_length);
    p = der_put(p, spki_der, spki_length);
    p = der_put_header(p, DER_EXPLICIT_3, der_size(extensions_length));
    p = der_put_header(p, DER_SEQUENCE, extensions_length);
    p = der_put(p, constant_extensions_der, sizeof(constant_extensions_der));
    p = der_put(p, subject_key_id_prefix, sizeof(subject_key_id_prefix));
    p = der_put(p, key_id, KEY_ID_LENGTH);
    p = der_put(p, issuer->authority_key_id, issuer->authority_key_id_length);

    size_t signature_length = issuer->signature_max;
    if (EVP_MD_CTX_reset(issuer->sign_context) != 1 ||
        EVP_MD_CTX_copy_ex(issuer->sign_context, issuer->sign_template) != 1 ||
        EVP_DigestSign(issuer->sign_context, issuer->signature, &signature_length, tbs,
                       tbs_length) != 1)
        return fail(err, err_length, "cannot sign the certificate");
    p = der_put(p, issuer->algorithm, issuer->algorithm_length);
    p = der_put_header(p, DER_BIT_STRING, 1 + signature_length);
    *p++ = 0;
    p = der_put(p, issuer->signature, signature_length);

    size_t content_length = (size_t)(p - tbs);
    uint8_t *certificate = tbs - der_header_length(content_length);
    der_put_header(certificate, DER_SEQUENCE, content_length);
    out->pem = certificate_pem(issuer, certificate, (size_t)(p - certificate));
    if (out->pem == NULL)
        return fail(err, err_length, "out of memory");
    out->not_before = not_before;
    out->not_after = not_after;
    return 0;
}
